//! Diagnostics: every problem found while loading a flow, each with a JSON pointer into the
//! document, a line and column, a stable code and a hint that says what to do.
//!
//! Validation collects diagnostics instead of stopping at the first one, so a flow designer sees
//! every mistake in one pass. Positions are computed only when there is something to report, from
//! a span-preserving parse of the same text (`jsonc-parser`), so the happy path pays nothing.

use std::fmt;

use serde::Serialize;

/// How bad a diagnostic is. Errors stop a flow from loading; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The flow is not loaded.
    Error,
    /// The flow loads, but something looks wrong.
    Warning,
}

/// One problem in a flow document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable, kebab-case code such as `unknown-field` or `dangling-target`.
    pub code: &'static str,
    /// RFC 6901 JSON pointer to the offending value (`""` is the whole document).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// 1-based line of the pointed-to value in the source text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (in characters) of the pointed-to value, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Diagnostic {
    /// A new error at `pointer`.
    pub fn error(code: &'static str, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            pointer: pointer.into(),
            message: message.into(),
            hint: None,
            line: None,
            column: None,
        }
    }

    /// A new warning at `pointer`.
    pub fn warning(code: &'static str, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, pointer, message) }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Is this an error (as opposed to a warning)?
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        let at = if self.pointer.is_empty() { "(document)" } else { &self.pointer };
        write!(f, "{sev}[{}] at {at}: {}", self.code, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Appends one reference token to a JSON pointer, escaping `~` and `/` (RFC 6901).
pub fn pointer_push(base: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{base}/{escaped}")
}

/// Splits a JSON pointer into its unescaped reference tokens.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Fills in `line` and `column` for each diagnostic from the source text. A pointer to something
/// that does not exist (a missing field) resolves to the nearest existing ancestor.
pub fn locate(source: &str, diagnostics: &mut [Diagnostic]) {
    if diagnostics.iter().all(|d| d.line.is_some()) {
        return;
    }
    let parsed = jsonc_parser::parse_to_ast(
        source,
        &jsonc_parser::CollectOptions::default(),
        &jsonc_parser::ParseOptions::default(),
    );
    let Ok(parsed) = parsed else { return };
    let Some(root) = parsed.value else { return };
    let lines = LineIndex::new(source);
    for d in diagnostics.iter_mut().filter(|d| d.line.is_none()) {
        let offset = offset_of(&root, &pointer_tokens(&d.pointer));
        let (line, column) = lines.position(offset);
        d.line = Some(line);
        d.column = Some(column);
    }
}

/// Byte offset of the value a pointer names; for an object member, the member's key, so that an
/// unknown field is reported where its name is written.
fn offset_of(root: &jsonc_parser::ast::Value<'_>, tokens: &[String]) -> usize {
    use jsonc_parser::ast::Value;
    let mut current = root;
    let mut offset = value_start(root);
    for token in tokens {
        match current {
            Value::Object(obj) => match obj.properties.iter().find(|p| p.name.as_str() == token) {
                Some(prop) => {
                    offset = prop.range.start;
                    current = &prop.value;
                }
                None => return offset,
            },
            Value::Array(arr) => match token.parse::<usize>().ok().and_then(|i| arr.elements.get(i)) {
                Some(v) => {
                    offset = value_start(v);
                    current = v;
                }
                None => return offset,
            },
            _ => return offset,
        }
    }
    offset
}

fn value_start(v: &jsonc_parser::ast::Value<'_>) -> usize {
    use jsonc_parser::ast::Value;
    match v {
        Value::StringLit(s) => s.range.start,
        Value::NumberLit(n) => n.range.start,
        Value::BooleanLit(b) => b.range.start,
        Value::Object(o) => o.range.start,
        Value::Array(a) => a.range.start,
        Value::NullKeyword(n) => n.range.start,
    }
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&word_lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d < word.len().max(1) && *d <= 1.max(word.len().min(c.len()) / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Maps byte offsets to 1-based line and character column.
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Self { source, starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.source.get(start..offset).map(|s| s.chars().count()).unwrap_or(0);
        (line, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_and_split() {
        let p = pointer_push("/steps/0", "a/b~c");
        assert_eq!(p, "/steps/0/a~1b~0c");
        assert_eq!(pointer_tokens(&p), vec!["steps", "0", "a/b~c"]);
        assert!(pointer_tokens("").is_empty());
    }

    #[test]
    fn locates_members_and_missing_members() {
        let src = "{\n  \"steps\": [\n    {\"id\": \"a\",\n     \"nxt\": \"b\"}\n  ]\n}\n";
        let mut ds = vec![
            Diagnostic::error("x", "/steps/0/nxt", "m"),
            Diagnostic::error("x", "/steps/0/missing", "m"),
            Diagnostic::error("x", "", "m"),
        ];
        locate(src, &mut ds);
        assert_eq!((ds[0].line, ds[0].column), (Some(4), Some(6)));
        assert_eq!((ds[1].line, ds[1].column), (Some(3), Some(5)));
        assert_eq!((ds[2].line, ds[2].column), (Some(1), Some(1)));
    }
}
