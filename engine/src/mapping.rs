//! Response mapping: pulling fields such as `data.last_name` out of a JSON response.
//!
//! Two notations: a dot path (`data.last_name`, `data.emails.0.email`), the form flow designers
//! know from Bird's *Fetch variables*, and JSONPath (`$.data.emails[0].email`, RFC 9535 through
//! `jsonpath-rust`). Both are compiled when the flow is loaded; nothing is parsed per request.
//!
//! "Not found" and "found nothing" differ. A path whose names and indexes do not exist in the
//! response is not found (a default applies, or the step fails). A wildcard, slice, filter or
//! descendant query over parts that do exist yields the array of its matches, which is `[]`
//! when nothing matches (RFC 9535 §2.1: the result is a possibly empty node list).

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::dot_path::describe;

/// One name or index selector of a JSONPath query.
#[derive(Clone, Debug)]
pub enum Step {
    /// `.name` or `['name']`.
    Name(String),
    /// `[3]`, or `[-1]` from the end.
    Index(i64),
}

impl Step {
    fn select<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        match (self, value) {
            (Step::Name(n), Value::Object(m)) => m.get(n),
            (Step::Index(i), Value::Array(a)) => {
                let at = if *i < 0 { a.len().checked_sub(i.unsigned_abs() as usize)? } else { *i as usize };
                a.get(at)
            }
            _ => None,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Step::Name(n) => {
                out.push('.');
                out.push_str(n);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
}

/// A compiled path into a response body.
#[derive(Clone, Debug)]
pub enum ResponsePath {
    /// `data.last_name`: object fields and array indexes separated by dots.
    Dot {
        /// The path as written.
        raw: String,
        /// Its segments.
        segments: Vec<String>,
    },
    /// `$.data.emails[0].email`: a JSONPath query.
    JsonPath {
        /// The path as written.
        raw: String,
        /// The compiled query.
        query: Box<JpQuery>,
        /// Whether the query can select at most one node (names and indexes only). A singular
        /// query yields the node itself; any other yields an array of all matches.
        singular: bool,
        /// The leading name and index selectors (the whole query when it is singular): when
        /// they do not exist, the path is not found.
        prefix: Vec<Step>,
    },
}

impl ResponsePath {
    /// Compiles a path. Paths starting with `$` are JSONPath, others dot paths.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with('$') {
            let query = jsonpath_rust::parser::parse_json_path(raw)
                .map_err(|e| format!("`{raw}` is not valid JSONPath: {e}"))?;
            let prefix: Vec<Step> = query
                .segments
                .iter()
                .map_while(|s| match s {
                    Segment::Selector(Selector::Name(n)) => Some(Step::Name(n.clone())),
                    Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                    _ => None,
                })
                .collect();
            let singular = prefix.len() == query.segments.len();
            return Ok(Self::JsonPath { raw: raw.to_string(), query: Box::new(query), singular, prefix });
        }
        if raw.is_empty() {
            return Err("the path is empty; write `data.field` or `$.data.field`".into());
        }
        let segments: Vec<String> = raw.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("`{raw}` has an empty segment (two dots in a row, or a leading/trailing dot)"));
        }
        if let Some(seg) = segments.iter().find(|s| s.contains(['[', ']', '*', ' '])) {
            return Err(format!(
                "`{raw}`: segment `{seg}` is not a plain name; use `$.` JSONPath for brackets, wildcards or filters"
            ));
        }
        Ok(Self::Dot { raw: raw.to_string(), segments })
    }

    /// The path as written.
    pub fn raw(&self) -> &str {
        match self {
            Self::Dot { raw, .. } | Self::JsonPath { raw, .. } => raw,
        }
    }

    /// Selects the value; `Err` explains what was found instead.
    pub fn select(&self, body: &Value) -> Result<Value, String> {
        match self {
            Self::Dot { raw, segments } => crate::dot_path::walk(body, segments)
                .cloned()
                .map_err(|miss| format!("`{raw}` not found: {}", miss.explain(segments, "the response"))),
            Self::JsonPath { raw, query, singular, prefix } => {
                let mut current = body;
                let mut at = String::from("$");
                for step in prefix {
                    current = step.select(current).ok_or_else(|| {
                        let mut missing = String::new();
                        step.write(&mut missing);
                        let within = if at == "$" { "the response".to_string() } else { format!("`{at}`") };
                        format!(
                            "`{raw}` not found: {within} has no `{}` ({})",
                            &missing.trim_start_matches('.'),
                            describe(current)
                        )
                    })?;
                    step.write(&mut at);
                }
                if *singular {
                    return Ok(current.clone());
                }
                let found = jsonpath_rust::query::js_path_process(query, body)
                    .map_err(|e| format!("`{raw}` could not be evaluated: {e}"))?;
                Ok(Value::Array(found.into_iter().map(|r| r.val.clone()).collect()))
            }
        }
    }
}

/// A mapping as written in a flow: `"var": "data.path"` or `{ "path": ..., "default": ... }`.
#[derive(Clone, Debug, JsonSchema)]
#[serde(untagged)]
pub enum MappingConfig {
    /// A dot path or JSONPath.
    Path(String),
    /// A path with a default used when the path is missing.
    WithDefault(MappingWithDefault),
}

/// The long form of a mapping.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingWithDefault {
    /// A dot path (`data.last_name`) or JSONPath (`$.data.emails[0].email`).
    pub path: String,
    /// The value used when the path is missing. Without it, a missing path takes the step's
    /// error path.
    #[serde(default)]
    pub default: Option<Value>,
}

impl<'de> Deserialize<'de> for MappingConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self::Path(s)),
            v @ Value::Object(_) => serde_json::from_value(v).map(Self::WithDefault).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected a path such as \"data.last_name\" or {{\"path\": …, \"default\": …}}, but {}",
                describe(&other)
            ))),
        }
    }
}

impl MappingConfig {
    /// The path text and the default.
    pub fn parts(&self) -> (&str, Option<&Value>) {
        match self {
            Self::Path(p) => (p, None),
            Self::WithDefault(m) => (&m.path, m.default.as_ref()),
        }
    }
}

/// A compiled mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// Where to read.
    pub path: ResponsePath,
    /// What to use when the path is missing.
    pub default: Option<Value>,
}

impl Mapping {
    /// Reads the value, falling back to the default.
    pub fn apply(&self, body: &Value) -> Result<Value, String> {
        match self.path.select(body) {
            Ok(v) => Ok(v),
            Err(e) => self.default.clone().ok_or(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({"data": {"first_name": "Erlich", "last_name": "Bachman",
                        "emails": [{"type": "primary", "email": "e@piedpiper.com"}, {"email": "x@y.z"}]}})
    }

    #[test]
    fn dot_paths() {
        let p = ResponsePath::parse("data.last_name").unwrap();
        assert_eq!(p.select(&body()).unwrap(), json!("Bachman"));
        let p = ResponsePath::parse("data.emails.0.email").unwrap();
        assert_eq!(p.select(&body()).unwrap(), json!("e@piedpiper.com"));
        let err = ResponsePath::parse("data.lastname").unwrap().select(&body()).unwrap_err();
        assert!(err.contains("`data` has no `lastname`") && err.contains("last_name"), "{err}");
        assert!(ResponsePath::parse("data..x").is_err());
        assert!(ResponsePath::parse("data[0]").is_err());
    }

    #[test]
    fn json_paths() {
        let p = ResponsePath::parse("$.data.emails[0].email").unwrap();
        assert_eq!(p.select(&body()).unwrap(), json!("e@piedpiper.com"));
        let p = ResponsePath::parse("$.data.emails[*].email").unwrap();
        assert_eq!(p.select(&body()).unwrap(), json!(["e@piedpiper.com", "x@y.z"]));
        let p = ResponsePath::parse("$.data.emails[?@.type == 'primary'].email").unwrap();
        assert_eq!(p.select(&body()).unwrap(), json!(["e@piedpiper.com"]));
        assert!(ResponsePath::parse("$.data[").is_err());
        let err = ResponsePath::parse("$.data.phone").unwrap().select(&body()).unwrap_err();
        assert!(err.contains("not found: `$.data` has no `phone`"), "{err}");
        assert_eq!(ResponsePath::parse("$.data.emails[-1].email").unwrap().select(&body()).unwrap(), json!("x@y.z"));
    }

    #[test]
    fn empty_matches_are_empty_arrays_but_missing_parts_are_not_found() {
        let desk = json!({"desk": {"escalated": [], "open": [{"p": 1}, {"p": 3}]}});
        let sel = |p: &str| ResponsePath::parse(p).unwrap().select(&desk);
        assert_eq!(sel("$.desk.escalated[*]").unwrap(), json!([]));
        assert_eq!(sel("$.desk.open[?@.p > 5]").unwrap(), json!([]));
        assert_eq!(sel("$.desk.open[?@.p > 2].p").unwrap(), json!([3]));
        assert_eq!(sel("$.desk.open[*].missing").unwrap(), json!([]));
        assert_eq!(sel("$..nowhere").unwrap(), json!([]));
        let err = sel("$.desk.escalatd[*]").unwrap_err();
        assert!(err.contains("not found: `$.desk` has no `escalatd`") && err.contains("escalated"), "{err}");
        let m = Mapping { path: ResponsePath::parse("$.desk.escalated[*]").unwrap(), default: Some(json!("none")) };
        assert_eq!(m.apply(&desk).unwrap(), json!([]), "an empty match is a value, not a missing path");
    }

    #[test]
    fn defaults() {
        let m = Mapping { path: ResponsePath::parse("data.phone").unwrap(), default: Some(json!("none")) };
        assert_eq!(m.apply(&body()).unwrap(), json!("none"));
    }
}
