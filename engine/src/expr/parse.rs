//! From text to a CEL syntax tree, within the bounds, with the parser's complaints reworded.

use std::sync::{Arc, LazyLock};

use cel::Env;

use super::{ExprError, MAX_DEPTH, MAX_EXPRESSION_BYTES};

/// The environment every expression is compiled and run with: CEL's standard library, its
/// `lists` and `math` extensions (which `check` narrows to what Tern offers) and the
/// standard macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`, `sortBy`).
pub(super) static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Registering an extension on a fresh environment cannot conflict; if a future version of
    // the crate made it fail, expressions would lose those functions, which `check` reports.
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
});

/// The parser recurses once per nesting level of the text; it runs on a thread of its own with
/// this stack, so that no expression the length bound lets through can overflow a worker's
/// stack (the depth of the tree is bounded afterwards, which keeps evaluation shallow).
const PARSE_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Parses `source` (already trimmed).
pub(super) fn parse(source: &str) -> Result<cel::IdedExpr, ExprError> {
    if source.is_empty() {
        return Err(ExprError::Syntax { expression: String::new(), message: "the expression is empty".into(), at: 1 });
    }
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(ExprError::TooLong { len: source.len() });
    }
    let depth = bracket_depth(source);
    if depth > MAX_DEPTH {
        return Err(ExprError::TooDeep {
            expression: source.into(),
            what: format!("brackets {depth} deep; the limit is {MAX_DEPTH}"),
        });
    }
    let compiled = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("tern-expr-parse".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(s, || ENV.compile(source).map(|p| p.expression().clone()))
            .ok()
            .and_then(|h| h.join().ok())
    });
    match compiled {
        Some(Ok(ast)) => Ok(ast),
        Some(Err(errors)) => {
            let first = errors.errors.first();
            // The parser counts columns from 1.
            let at = first.map(|e| usize::try_from(e.pos.1).unwrap_or(1).max(1)).unwrap_or(1);
            let mut message = first.map(|e| reword(&e.msg)).unwrap_or_else(|| "it does not parse".into());
            if let Some(hint) = mistake(source) {
                message = format!("{message} ({hint})");
            }
            Err(ExprError::Syntax { expression: source.into(), message, at })
        }
        None => Err(ExprError::TooDeep { expression: source.into(), what: "the parser gave up".into() }),
    }
}

/// How deeply `(`, `[` and `{` nest outside quoted text.
fn bracket_depth(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// A likely cause of a syntax error, from habits of other languages and of JSON.
fn mistake(source: &str) -> Option<&'static str> {
    let words: Vec<&str> = source.split(|c: char| !c.is_alphanumeric() && c != '_').collect();
    let single_equals = source.char_indices().any(|(i, c)| {
        c == '='
            && !matches!(source[..i].chars().last(), Some('=' | '!' | '<' | '>'))
            && !source[i + 1..].starts_with('=')
    });
    if source.contains('\\') {
        Some(
            "a backslash in a quoted text starts an escape such as `\\n`: write `\\\\` for one backslash (in a JSON string `\\\\\\\\`), or a raw text such as r'^\\w+$'",
        )
    } else if source.starts_with("{{") || source.ends_with("}}") {
        Some("conditions and transforms are written without `{{ }}`")
    } else if source.contains("===") || source.contains("!==") {
        Some("compare with `==` and `!=`")
    } else if single_equals {
        Some("compare with `==`; a single `=` does not assign anything")
    } else if words.iter().any(|w| matches!(*w, "and" | "or" | "not" | "AND" | "OR" | "NOT")) {
        Some("combine conditions with `&&`, `||` and `!`")
    } else if source.matches('{').count() > source.matches('}').count() {
        Some("`}}` ends a placeholder: write `} }` inside an expression")
    } else if source.contains('\n') {
        Some("the text has a line break: inside a JSON string, write `\\\\n` for CEL's `\\n`")
    } else {
        None
    }
}

/// The parser's message in a flow designer's words.
fn reword(msg: &str) -> String {
    // The token is quoted: `… at: ''abc'` or `… input 'n' expecting …`.
    let quoted = |prefix: &str| {
        let rest = msg.strip_prefix(prefix)?;
        Some(match rest.split_once("' ") {
            Some((token, _)) => token.to_string(),
            None => rest.strip_suffix('\'').unwrap_or(rest).to_string(),
        })
    };
    if msg.contains("'<EOF>'") {
        return "it ends too early (an operand, a closing bracket or a quote is missing)".into();
    }
    if let Some(token) = quoted("Syntax error: token recognition error at: '") {
        return match token.chars().next() {
            Some('\'' | '"') => "a quote is never closed".into(),
            _ => format!("`{token}` is not allowed here"),
        };
    }
    for prefix in [
        "Syntax error: extraneous input '",
        "Syntax error: mismatched input '",
        "Syntax error: no viable alternative at input '",
    ] {
        if let Some(token) = quoted(prefix) {
            return format!("unexpected `{token}` (is an operator such as `+`, `&&` or `==` missing, or a bracket?)");
        }
    }
    msg.trim_start_matches("Syntax error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_skips_quoted_brackets() {
        assert_eq!(bracket_depth("a(b[c])"), 2);
        assert_eq!(bracket_depth("'(((' + \"[[\\\"[\""), 0);
    }
}
