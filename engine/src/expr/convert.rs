//! Between JSON and CEL values, and CEL's run-time errors in a flow designer's words.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::Key;
use cel::{ExecutionError, Value};
use serde_json::Value as Json;

use super::MAX_VALUE_DEPTH;
use super::functions::Number;
use crate::template::MAX_RENDERED_BYTES;

/// A JSON value as CEL sees it: every number is a whole number (`int`) when it is one and
/// fits, a `double` otherwise; never CEL's `uint`, which would not mix with the others.
/// Why a value cannot go into or come out of an expression. Messages are in the designer's
/// words.
#[derive(Debug, thiserror::Error)]
pub(super) enum ValueError {
    /// A value read is nested deeper than [`MAX_VALUE_DEPTH`].
    #[error("reads a value nested more than {MAX_VALUE_DEPTH} levels deep; select a part of it first")]
    TooDeepToRead,
    /// The result is nested deeper than [`MAX_VALUE_DEPTH`].
    #[error("gives a value nested more than {MAX_VALUE_DEPTH} levels deep")]
    TooDeepToGive,
    /// The result is larger than [`MAX_RENDERED_BYTES`] as JSON.
    #[error("gives a result larger than {MAX_RENDERED_BYTES} bytes; select less")]
    TooLarge,
    /// The result is NaN or infinite.
    #[error("gives a number that is not finite")]
    NotFinite,
    /// The result has no JSON form (the kind, in words).
    #[error("gives {0}, which cannot be stored; an optional value (`x.?field`) needs `.orValue(default)`")]
    NoJson(&'static str),
}

pub(super) fn from_json(value: &Json) -> Result<Value, ValueError> {
    if depth(value) > MAX_VALUE_DEPTH {
        return Err(ValueError::TooDeepToRead);
    }
    Ok(convert_in(value))
}

/// How deeply `value` nests, without recursion.
fn depth(value: &Json) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        if d > MAX_VALUE_DEPTH {
            break;
        }
        match v {
            Json::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Json::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}

fn convert_in(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(convert_in).collect())),
        Json::Object(map) => {
            let map: HashMap<Key, Value> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), convert_in(v))).collect();
            Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// The number a value holds, if it is one.
pub(super) fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Int(i) => Some(Number::Int(*i)),
        Value::UInt(u) => Some(i64::try_from(*u).map(Number::Int).unwrap_or(Number::Float(*u as f64))),
        Value::Float(f) => Some(Number::Float(*f)),
        _ => None,
    }
}

/// A result as JSON: a whole `double` becomes a whole number (`3.0` → `3`), a time its RFC 3339
/// text, a duration its seconds. Refused when larger than
/// [`MAX_RENDERED_BYTES`](crate::template::MAX_RENDERED_BYTES) (measured before anything is
/// copied) or when it has no JSON form.
pub(super) fn to_json(value: &Value) -> Result<Json, ValueError> {
    let mut left = MAX_RENDERED_BYTES;
    convert(value, &mut left, 1)
}

fn take(left: &mut usize, n: usize) -> Result<(), ValueError> {
    *left = left.checked_sub(n).ok_or(ValueError::TooLarge)?;
    Ok(())
}

fn convert(value: &Value, left: &mut usize, depth: usize) -> Result<Json, ValueError> {
    take(left, 8)?;
    if depth > MAX_VALUE_DEPTH {
        return Err(ValueError::TooDeepToGive);
    }
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                Json::from(*f as i64)
            } else {
                serde_json::Number::from_f64(*f).map(Json::Number).ok_or(ValueError::NotFinite)?
            }
        }
        Value::String(s) => {
            take(left, s.len())?;
            Json::String(s.to_string())
        }
        Value::List(items) => Json::Array(items.iter().map(|v| convert(v, left, depth + 1)).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::new();
            let mut entries: Vec<_> = map.map.iter().collect();
            entries.sort_by_key(|e| key_text(e.0));
            for (k, v) in entries {
                let key = key_text(k);
                take(left, key.len())?;
                out.insert(key, convert(v, left, depth + 1)?);
            }
            Json::Object(out)
        }
        Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        Value::Duration(d) => {
            let seconds = d.num_milliseconds() as f64 / 1000.0;
            convert(&Value::Float(seconds), left, depth)?
        }
        other => return Err(ValueError::NoJson(kind_words(other))),
    })
}

fn key_text(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// A value's kind in a flow designer's words.
pub(super) fn kind_words(value: &Value) -> &'static str {
    match value {
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => "a number",
        Value::String(_) => "a text",
        Value::Bool(_) => "true/false",
        Value::List(_) => "a list",
        Value::Map(_) => "an object",
        Value::Null => "null (no value)",
        Value::Timestamp(_) => "a time",
        Value::Duration(_) => "a duration",
        Value::Bytes(_) => "bytes",
        _ => "a value of its own kind",
    }
}

/// CEL's type names in a flow designer's words.
fn type_words(name: &str) -> &str {
    match name {
        "Arc<String>" => "a text",
        "Arc<Vec<Value>>" => "a list",
        "i64" | "u64" | "f64" => "a number",
        "int" | "uint" | "double" => "a number",
        "string" => "a text",
        "bool" => "true/false",
        "list" => "a list",
        "map" => "an object",
        "null_type" => "null (no value)",
        "google.protobuf.Timestamp" | "timestamp" => "a time",
        "google.protobuf.Duration" | "duration" => "a duration",
        other => other,
    }
}

/// A value's kind from its debug text (what CEL puts in some errors), never the value itself.
fn debug_words(debug: &str) -> &'static str {
    let head = debug.split('(').next().unwrap_or_default();
    match head {
        "Int" | "UInt" | "Float" => "a number",
        "String" => "a text",
        "List" => "a list",
        "Map" | "DefaultMap" => "an object",
        "Bool" => "true/false",
        "Null" => "null (no value)",
        "Timestamp" => "a time",
        "Duration" => "a duration",
        _ => "a value of another kind",
    }
}

/// The longest run-time message, in characters (values are never quoted whole).
const MAX_MESSAGE_CHARS: usize = 300;

/// A run-time error in a flow designer's words, at most [`MAX_MESSAGE_CHARS`].
pub(super) fn explain(error: &ExecutionError) -> String {
    let text = words(error);
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

fn words(error: &ExecutionError) -> String {
    match error {
        ExecutionError::FunctionError { function, message } if function.is_empty() => message.clone(),
        ExecutionError::FunctionError { function, message } => match function.as_str() {
            "int" | "uint" => {
                "`int` could not read a whole number from the text; check it first with `x.matches('^-?[0-9]+$')`"
                    .into()
            }
            "double" => "`double` could not read a number from the text".into(),
            "timestamp" => {
                "`timestamp` could not read a time; write it as RFC 3339, such as 2026-12-07T10:00:00Z".into()
            }
            "duration" => "`duration` could not read a duration; write it such as 90s, 10m or 1h30m".into(),
            _ => format!("`{function}`: {message}"),
        },
        ExecutionError::NoSuchKey(key) => format!(
            "reads the field `{key}`, which is not there; check with `has(x.{key})` or write `x.?{key}.orValue(…)`"
        ),
        ExecutionError::UndeclaredReference(name) => format!("`{name}` is not known here"),
        ExecutionError::NoSuchOverload(o) => {
            let types: Vec<&str> = o.argument_types().iter().map(|t| type_words(t)).collect();
            let name = o.function().trim_matches('_');
            if name == "." && types.first() == Some(&"null (no value)") {
                return "reads a field of something that is null (not set); check it first with `x != null`, or write `x.?field.orValue(…)`".into();
            }
            if o.is_member_function() && types.len() == 1 {
                format!("`.{name}()` cannot be used on {}", types[0])
            } else if o.is_member_function() && !types.is_empty() {
                format!("`.{name}()` cannot be used on {} with {} as argument", types[0], types[1..].join(", "))
            } else {
                format!("`{name}` cannot be used with {}", types.join(" and "))
            }
        }
        ExecutionError::IndexOutOfBounds(i) => {
            format!(
                "index {} is outside the list (items are counted from 0)",
                to_json(i).map(|j| j.to_string()).unwrap_or_default()
            )
        }
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => "divides by zero".into(),
        ExecutionError::Overflow(..) => "the result is too large for a number".into(),
        ExecutionError::UnexpectedType { got, want } => {
            format!("expected {}, got {}", type_words(want), debug_words(got))
        }
        ExecutionError::ValuesNotComparable(a, b) => format!("cannot compare {} with {}", kind_words(a), kind_words(b)),
        ExecutionError::UnsupportedIndex(i, on) => format!("cannot read item {} of {}", kind_words(i), kind_words(on)),
        other => other.to_string(),
    }
}
