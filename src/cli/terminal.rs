//! Text from outside (an API's answer, a token endpoint's `error_description`, a contact's
//! message) as it may be printed on an operator's terminal: every secret the process knows
//! masked, and every control character but line breaks and tabs shown as `�`, so that no
//! escape sequence an API sends can retitle, clear or rewrite the terminal, and no
//! bidirectional override can make a line read otherwise than it is.

/// Whether `c` may not reach a terminal as it is: a control character (but a line break and a
/// tab), or a bidirectional embedding, override or isolate (U+202A–U+202E, U+2066–U+2069).
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text`, masked and without control characters (`\n` and `\t` kept).
pub fn safe(text: &str) -> String {
    tern_engine::secrets::known::mask(text).chars().map(|c| if unsafe_char(c) { '\u{FFFD}' } else { c }).collect()
}

/// A formatted log event as it may reach standard error: one line whatever the event holds
/// (a line break inside it is shown as `\n`, so that what an API answered cannot forge a log
/// line), no control character but the SGR colour sequences (`ESC[…m`) the formatter itself
/// writes on a terminal, and its final line break.
pub fn safe_log_line(line: &str) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push_str("\\n"),
            '\u{1b}' if chars.peek() == Some(&'[') => {
                // Only `ESC [ digits/semicolons m` (colours) is kept whole.
                let mut seq = String::from("[");
                chars.next();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit() || **d == ';') {
                    seq.push(d);
                    chars.next();
                }
                if chars.peek() == Some(&'m') {
                    chars.next();
                    out.push('\u{1b}');
                    out.push_str(&seq);
                    out.push('m');
                } else {
                    out.push('\u{FFFD}');
                    out.push_str(&seq);
                }
            }
            c if unsafe_char(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    if line.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_line_stays_one_line_with_its_colours_and_nothing_else() {
        let forged = "\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m step failed: 500: boom\n2026 WARN FORGED\u{1b}]0;t\u{7}\u{1b}[2J\n";
        assert_eq!(
            super::safe_log_line(forged),
            "\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m step failed: 500: boom\\n2026 WARN FORGED\u{FFFD}]0;t\u{FFFD}\u{FFFD}[2J\n"
        );
        assert_eq!(super::safe("a\u{202E}b"), "a\u{FFFD}b", "no bidirectional override");
    }

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        let hostile = "500: \u{1b}]0;PWNED\u{7}\u{1b}[2Jdone\r\nnext\tline";
        assert_eq!(super::safe(hostile), "500: \u{FFFD}]0;PWNED\u{FFFD}\u{FFFD}[2Jdone\u{FFFD}\nnext\tline");
    }
}
