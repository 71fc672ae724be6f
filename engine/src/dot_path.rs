//! Dot paths into JSON values (`data.emails.0.email`): the one walker that templates
//! (`{{user.emails.0}}`) and response mapping (`data.last_name`) both use, and the words for
//! where such a path stops.

use serde_json::Value;

/// Where a dot path stopped: the segment that was not found and the value it was looked for in.
#[derive(Debug)]
pub struct PathMiss<'v> {
    /// The index of the segment that was not found.
    pub index: usize,
    /// The value the segment was looked for in.
    pub within: &'v Value,
}

impl PathMiss<'_> {
    /// `` `a.b` has no `c` (it is a string) ``, with `root` naming the value the path starts
    /// from (`the value`, `the response`) when the first segment is the one missing.
    pub fn explain<S: AsRef<str>>(&self, path: &[S], root: &str) -> String {
        let at = if self.index == 0 {
            root.to_string()
        } else {
            let walked: Vec<&str> = path[..self.index].iter().map(AsRef::as_ref).collect();
            format!("`{}`", walked.join("."))
        };
        let segment = path.get(self.index).map(AsRef::as_ref).unwrap_or_default();
        format!("{at} has no `{segment}` ({})", describe(self.within))
    }
}

/// Follows `path` from `value`: a segment is an object's key, or an array's index written in
/// decimal (`0`, `12`).
///
/// # Errors
/// [`PathMiss`] at the first segment that does not exist.
pub fn walk<'v, S: AsRef<str>>(mut value: &'v Value, path: &[S]) -> Result<&'v Value, PathMiss<'v>> {
    for (index, segment) in path.iter().enumerate() {
        let segment = segment.as_ref();
        let next = match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or(PathMiss { index, within: value })?;
    }
    Ok(value)
}

/// A short description of a JSON value for error messages: its type and, for objects, its keys.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "it is null".into(),
        Value::Bool(_) => "it is a boolean".into(),
        Value::Number(_) => "it is a number".into(),
        Value::String(_) => "it is a string".into(),
        Value::Array(a) => format!("it is an array of {} items", a.len()),
        Value::Object(m) if m.is_empty() => "it is an empty object".into(),
        Value::Object(m) => {
            let mut keys: Vec<&str> = m.keys().map(String::as_str).take(10).collect();
            if m.len() > 10 {
                keys.push("…");
            }
            format!("it has {}", keys.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::walk;

    #[test]
    fn keys_and_indexes_and_where_a_path_stops() {
        let v = json!({"data": {"emails": [{"email": "a@b"}], "name": "x"}});
        assert_eq!(walk(&v, &["data", "emails", "0", "email"]).unwrap(), "a@b");
        let path = ["data", "name", "first"];
        let miss = walk(&v, &path).unwrap_err();
        assert_eq!(miss.index, 2);
        assert_eq!(miss.explain(&path, "the value"), "`data.name` has no `first` (it is a string)");
        let path = ["nope"];
        assert_eq!(
            walk(&v, &path).unwrap_err().explain(&path, "the response"),
            "the response has no `nope` (it has data)"
        );
        assert!(walk(&v, &["data", "emails", "1"]).is_err());
    }
}
