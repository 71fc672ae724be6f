//! Text from outside (an API's answer, a token endpoint's `error_description`, a contact's
//! message) as it may be printed on an operator's terminal: every secret the process knows
//! masked, and every control character but line breaks and tabs shown as `�`, so that no
//! escape sequence an API sends can retitle, clear or rewrite the terminal.

/// `text`, masked and without control characters (`\n` and `\t` kept).
pub fn safe(text: &str) -> String {
    tern_engine::secrets::known::mask(text)
        .chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{FFFD}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        let hostile = "500: \u{1b}]0;PWNED\u{7}\u{1b}[2Jdone\r\nnext\tline";
        assert_eq!(super::safe(hostile), "500: \u{FFFD}]0;PWNED\u{FFFD}\u{FFFD}[2Jdone\u{FFFD}\nnext\tline");
    }
}
