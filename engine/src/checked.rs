//! A config value checked against the JSON Schema of its Rust type, then deserialized: the one
//! way the flow's top level, each step's common fields and each step type's own fields are read
//! (see [`crate::shape`] for the check). Every problem is reported at once in the flow's words;
//! what serde still says about a type is rewritten in those words too.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diagnostics::{Diagnostic, pointer_push};
use crate::shape::{self, ShapeReport};

/// The JSON Schema of `T` as a JSON value (what [`parse_checked`] checks against, and what
/// `tern schema` publishes).
pub fn schema_of<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// Checks `value` (at `base`) against the JSON Schema of `T`, reporting every problem in the
/// flow's vocabulary, then deserializes what is usable. `also_known` are fields handled
/// elsewhere at the top level of `value` (a step's common fields), offered as suggestions too.
///
/// Optional fields with problems are dropped before deserializing, so the value is still
/// returned and later checks can report more; the diagnostics already make the flow fail. The
/// report tells what the value defines and targets even when `T` could not be built.
pub(crate) fn parse_checked<T: DeserializeOwned + JsonSchema>(
    value: &Value,
    base: &str,
    also_known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> (Option<T>, ShapeReport) {
    let schema = schema_of::<T>();
    let mut report = shape::check(value, &schema, base, also_known);
    diags.append(&mut report.diags);
    if report.fatal {
        return (None, report);
    }
    let cleaned = report.cleaned(value, base);
    match serde_path_to_error::deserialize::<_, T>(&cleaned) {
        Ok(t) => (Some(t), report),
        Err(err) => {
            let pointer = path_tokens(err.path()).iter().fold(base.to_string(), |p, t| pointer_push(&p, t));
            let code =
                if err.inner().to_string().starts_with("missing field") { "missing-field" } else { "invalid-value" };
            diags.push(Diagnostic::error(code, pointer, designer_words(&err.inner().to_string())));
            report.fatal = true;
            (None, report)
        }
    }
}

fn path_tokens(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Rewrites what serde says about a type (`invalid type: string "x", expected u32`) in the flow's
/// words. The schema check catches these first; this covers custom validation messages, which
/// are written for designers already and pass through unchanged.
fn designer_words(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else { return message.to_string() };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else { return message.to_string() };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        "a map" => "an object",
        e if e.starts_with("struct ") => "an object",
        e => e,
    };
    let found = match found {
        "sequence" => "a list",
        "map" => "an object",
        f => f,
    };
    format!("expected {expected}, found {found}")
}
