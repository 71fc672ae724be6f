//! Response mapping: pulling fields such as `data.last_name` out of a JSON response.
//!
//! Two notations: a dot path (`data.last_name`, `data.emails.0.email`), the form flow designers
//! know from Bird's *Fetch variables*, and JSONPath (`$.data.emails[0].email`), exactly as RFC
//! 9535 defines it. Both are compiled when the flow is loaded; nothing is parsed per request.
//!
//! JSONPath goes through `serde_json_path`, which passes the whole official JSONPath Compliance
//! Test Suite (so does Tern: `engine/tests/jsonpath_cts.rs` runs the suite through this module).
//! `jsonpath-rust`, used before, failed 7 of its 687 cases (nested filters, the order of a
//! descendant segment with several names, function expressions used where the RFC forbids them).
//! The library owns the grammar; this module only asks it questions (is this prefix of the
//! query a query of its own? is it singular?), so there is no second JSONPath parser here.
//!
//! "Not found" and "found nothing" differ. A path whose names and indexes do not exist in the
//! response is not found (a default applies, or the step fails). A wildcard, slice, filter or
//! descendant query over parts that do exist yields the array of its matches, which is `[]`
//! when nothing matches (RFC 9535 §2.1: the result is a possibly empty node list).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::dot_path::describe;

/// The longest JSONPath query a flow may write, in bytes (longer ones are refused at load).
pub const MAX_JSON_PATH_BYTES: usize = 4096;
/// The deepest nesting of brackets and parentheses a JSONPath query may have (filters inside
/// filters): the parser's time grows exponentially with it, so deeper queries are refused
/// before it runs.
pub const MAX_JSON_PATH_NESTING: usize = 8;
/// The most segments (`.name`, `[0]`, `[*]`, …) a JSONPath query may have.
pub const MAX_JSON_PATH_SEGMENTS: usize = 64;
/// The most descendant segments (`..`) a JSONPath query may have: each one multiplies the
/// nodes the next visits, so two over a deep answer can select billions.
pub const MAX_JSON_PATH_DESCENDANTS: usize = 1;
/// The most JSON values (counting every value inside each selected node) one selection may
/// copy out of a response: `$..*` over a deep answer selects every subtree of every level.
pub const MAX_SELECTED_VALUES: usize = 200_000;

/// Blank space as RFC 9535 §2.1.1 defines it (`B`): space, tab, line feed, carriage return.
const BLANK: [char; 4] = [' ', '\t', '\n', '\r'];

/// Why a path could not be compiled. The message is in the flow designer's words.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty; write `data.field` or `$.data.field`")]
    Empty,
    /// A dot path with an empty segment.
    #[error("`{path}` has an empty segment (two dots in a row, or a leading/trailing dot)")]
    EmptySegment {
        /// The path as written.
        path: String,
    },
    /// A dot path segment with JSONPath syntax in it.
    #[error("`{path}`: segment `{segment}` is not a plain name; use `$.` JSONPath for brackets, wildcards or filters")]
    NotAName {
        /// The path as written.
        path: String,
        /// The offending segment.
        segment: String,
    },
    /// Blank space before or after a JSONPath query (RFC 9535 §2.1.1 allows none).
    #[error("`{path}` starts or ends with blank space, which JSONPath does not allow (RFC 9535 §2.1.1); remove it")]
    Blank {
        /// The path as written.
        path: String,
    },
    /// A JSONPath query longer than [`MAX_JSON_PATH_BYTES`].
    #[error("the JSONPath query is {len} bytes long; the limit is {MAX_JSON_PATH_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Brackets or parentheses nested deeper than [`MAX_JSON_PATH_NESTING`].
    #[error("the JSONPath query nests brackets or parentheses {depth} deep; the limit is {MAX_JSON_PATH_NESTING}")]
    TooDeep {
        /// How deep.
        depth: usize,
    },
    /// More segments than [`MAX_JSON_PATH_SEGMENTS`].
    #[error("the JSONPath query has more than {MAX_JSON_PATH_SEGMENTS} segments")]
    TooManySegments,
    /// More descendant segments (`..`) than [`MAX_JSON_PATH_DESCENDANTS`].
    #[error("the JSONPath query has {count} descendant segments (`..`); the limit is {MAX_JSON_PATH_DESCENDANTS}")]
    TooManyDescendants {
        /// How many.
        count: usize,
    },
    /// Not a JSONPath query as RFC 9535 defines it.
    #[error("`{path}` is not valid JSONPath (RFC 9535): {problem}")]
    JsonPath {
        /// The path as written.
        path: String,
        /// The parser's explanation, with the position.
        problem: String,
    },
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
        query: Box<JsonPath>,
        /// Whether the query can select at most one node (names and indexes only). A singular
        /// query yields the node itself; any other yields an array of all matches.
        singular: bool,
        /// The leading name and index segments (the whole query when it is singular): when one
        /// does not exist, the path is not found.
        prefix: Prefix,
    },
}

impl PathError {
    /// What to write instead, for the diagnostic's hint.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::JsonPath { .. }
            | Self::Blank { .. }
            | Self::TooLong { .. }
            | Self::TooDeep { .. }
            | Self::TooManySegments
            | Self::TooManyDescendants { .. } => {
                "JSONPath as RFC 9535 writes it: `$.data.emails[0].email`, `$.data[*].id`, `$.data[?@.type == 'primary'].email`; a function's result must be compared (`[?length(@.tags) > 2]`), except match() and search(), which are tests (`[?match(@.id, 'C[0-9]+')]`)"
            }
            Self::Empty | Self::EmptySegment { .. } | Self::NotAName { .. } => {
                "write `data.last_name`, or JSONPath such as `$.data.emails[0].email`"
            }
        }
    }
}

/// The leading singular parts of a JSONPath query (see [`ResponsePath::JsonPath`]): the query
/// as written up to each of `ends` is itself a singular query (RFC 9535 §2.3.5.1: names and
/// indexes only). Only the longest is kept compiled (the one every selection checks); the
/// others are compiled when a selection misses, to say which part is missing.
#[derive(Clone, Debug, Default)]
pub struct Prefix {
    ends: Vec<usize>,
    longest: Option<JsonPath>,
}

/// Whether `query` (a valid JSONPath query) is singular. RFC 9535 §2.3.5.1 lets a comparison
/// take only singular queries, so the library's own grammar answers.
fn is_singular(query: &str) -> bool {
    JsonPath::parse(&format!("$[?{query}==null]")).is_ok()
}

/// How deep brackets and parentheses nest in `raw`, and how many descendant segments (`..`) it
/// has, outside string literals.
fn nesting(raw: &str) -> (usize, usize) {
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0usize, None, false);
    let (mut descendants, mut previous) = (0usize, ' ');
    for c in raw.chars() {
        if quote.is_none() && c == '.' && previous == '.' {
            descendants += 1;
            previous = ' ';
            continue;
        }
        previous = c;
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' | ')' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    (deepest, descendants)
}

/// The ends of the leading singular parts of a valid query, shortest first, not counting `$`
/// alone. A prefix that parses as a query on its own ends at a segment boundary: one that cuts
/// a name, a string or a bracket open is not valid JSONPath.
fn singular_prefixes(raw: &str) -> Result<Vec<usize>, PathError> {
    let mut ends = Vec::new();
    let mut candidates = 0;
    for (end, c) in raw.char_indices().skip(1) {
        if !matches!(c, '.' | '[') && !BLANK.contains(&c) {
            continue;
        }
        let head = &raw[..end];
        if head == "$" || head.ends_with(BLANK) {
            continue;
        }
        candidates += 1;
        if candidates > MAX_JSON_PATH_SEGMENTS * 4 {
            return Err(PathError::TooManySegments);
        }
        match JsonPath::parse(head) {
            Ok(_) if is_singular(head) => {
                ends.push(end);
                if ends.len() >= MAX_JSON_PATH_SEGMENTS {
                    return Err(PathError::TooManySegments);
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    Ok(ends)
}

/// Counts the values in `v` (itself included) against `budget`; false once it runs out.
fn within_budget(v: &Value, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match v {
        Value::Array(items) => items.iter().all(|x| within_budget(x, budget)),
        Value::Object(map) => map.values().all(|x| within_budget(x, budget)),
        _ => true,
    }
}

impl ResponsePath {
    /// Compiles a path. Paths starting with `$` are JSONPath, others dot paths.
    ///
    /// # Errors
    /// [`PathError`] with the path and what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.trim_start_matches(BLANK).starts_with('$') {
            if raw.trim_matches(BLANK) != raw {
                return Err(PathError::Blank { path: raw.to_string() });
            }
            if raw.len() > MAX_JSON_PATH_BYTES {
                return Err(PathError::TooLong { len: raw.len() });
            }
            let (depth, descendants) = nesting(raw);
            if depth > MAX_JSON_PATH_NESTING {
                return Err(PathError::TooDeep { depth });
            }
            if descendants > MAX_JSON_PATH_DESCENDANTS {
                return Err(PathError::TooManyDescendants { count: descendants });
            }
            let query = JsonPath::parse(raw)
                .map_err(|e| PathError::JsonPath { path: raw.to_string(), problem: e.to_string() })?;
            let singular = is_singular(raw);
            let mut ends = singular_prefixes(raw)?;
            if singular && raw != "$" {
                ends.push(raw.len());
            }
            if ends.len() > MAX_JSON_PATH_SEGMENTS {
                return Err(PathError::TooManySegments);
            }
            let longest = match ends.last() {
                Some(&end) if end == raw.len() => Some(query.clone()),
                Some(&end) => JsonPath::parse(&raw[..end]).ok(),
                None => None,
            };
            let prefix = Prefix { ends, longest };
            return Ok(Self::JsonPath { raw: raw.to_string(), query: Box::new(query), singular, prefix });
        }
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        let segments: Vec<String> = raw.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(PathError::EmptySegment { path: raw.to_string() });
        }
        if let Some(seg) = segments.iter().find(|s| s.contains(['[', ']', '*', ' '])) {
            return Err(PathError::NotAName { path: raw.to_string(), segment: seg.clone() });
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
                match prefix.longest.as_ref().map(|q| q.query(body).first()) {
                    Some(None) => return Err(Self::missing(raw, &prefix.ends, body)),
                    Some(Some(node)) if *singular => return Ok(node.clone()),
                    None if *singular => return Ok(body.clone()),
                    _ => {}
                }
                let nodes = query.query(body).all();
                let mut budget = MAX_SELECTED_VALUES;
                if !nodes.iter().all(|n| within_budget(n, &mut budget)) {
                    return Err(format!(
                        "`{raw}` selects more than {MAX_SELECTED_VALUES} values in this response; narrow the query (a name after `..`, a filter)"
                    ));
                }
                Ok(Value::Array(nodes.into_iter().cloned().collect()))
            }
        }
    }

    /// Says which leading part of `raw` is missing and what is there instead. Whether a part
    /// exists is monotonic (a longer part exists only if the shorter ones do), so the first
    /// missing one is found by bisection: a few parses, however long the query.
    fn missing(raw: &str, ends: &[usize], body: &Value) -> String {
        let node = |end: usize| JsonPath::parse(&raw[..end]).ok().and_then(|q| q.query(body).first().cloned());
        // The first part that is missing is at `lo`: the parts before it exist.
        let (mut lo, mut hi) = (0, ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if node(ends[mid]).is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let Some(&end) = ends.get(lo) else { return format!("`{raw}` not found") };
        let at = if lo == 0 { 1 } else { ends[lo - 1] };
        let within = if lo == 0 { body.clone() } else { node(at).unwrap_or(Value::Null) };
        let place = if lo == 0 { "the response".to_string() } else { format!("`{}`", &raw[..at]) };
        let step = raw[at..end].trim_start_matches(BLANK);
        let step = step.strip_prefix('.').unwrap_or(step);
        format!("`{raw}` not found: {place} has no `{step}` ({})", describe(&within))
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
    /// An expression ([`crate::expr`]) applied to the selected value, which it reads as
    /// `value`: `"value.filter(d, d.status == 'open')"`, `"value.trim().lower()"`. Not applied
    /// to the `default`.
    #[serde(default)]
    pub transform: Option<String>,
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

    /// The `transform` expression, as written.
    pub fn transform(&self) -> Option<&str> {
        match self {
            Self::Path(_) => None,
            Self::WithDefault(m) => m.transform.as_deref(),
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
    /// What to compute from the selected value (it reads only `value`).
    pub transform: Option<crate::expr::Expression>,
}

/// The name a mapping's `transform` reads the selected value as.
pub const TRANSFORM_VALUE: &str = "value";

impl Mapping {
    /// A mapping of `path` alone.
    pub fn of(path: ResponsePath) -> Self {
        Self { path, default: None, transform: None }
    }

    /// Reads the value (and transforms it), falling back to the default.
    pub fn apply(&self, body: &Value) -> Result<Value, String> {
        let value = match self.path.select(body) {
            Ok(v) => v,
            Err(e) => return self.default.clone().ok_or(e),
        };
        match &self.transform {
            None => Ok(value),
            Some(t) => t.eval_with_locals(&NothingElse, &[(TRANSFORM_VALUE, &value)]).map_err(|e| e.to_string()),
        }
    }
}

/// The scope of a `transform`: it reads only `value`, checked when the flow loads.
struct NothingElse;

impl crate::template::Scope for NothingElse {
    fn resolve(
        &self,
        var: &crate::template::VarRef,
    ) -> Result<std::borrow::Cow<'_, Value>, crate::template::RenderError> {
        Err(crate::template::RenderError::Missing {
            var: var.raw.clone(),
            reason: "a transform reads only `value`".into(),
        })
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
        assert!(ResponsePath::parse(" data").is_err());
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
        let m = Mapping {
            path: ResponsePath::parse("$.desk.escalated[*]").unwrap(),
            default: Some(json!("none")),
            transform: None,
        };
        assert_eq!(m.apply(&desk).unwrap(), json!([]), "an empty match is a value, not a missing path");
    }

    #[test]
    fn rfc_9535_cases_the_old_library_got_wrong() {
        let sel = |p: &str, doc: Value| ResponsePath::parse(p).map_err(|e| e.to_string())?.select(&doc);
        assert_eq!(sel("$[?@[?@>1]]", json!([[0, 1], [2]])).unwrap(), json!([[2]]), "nested filter");
        assert_eq!(
            sel("$..['a','d']", json!({"a": 1, "b": {"d": 2, "a": 3}, "d": 4})).unwrap(),
            json!([1, 4, 3, 2]),
            "a descendant segment with several names yields in document order per node"
        );
        for bad in ["$[?length(@.a)]", "$[?value(@.a)]", "$[?count(@..*)]", "$[?length(@.*)<3]", " $.a", "$.a "] {
            let err = sel(bad, json!({})).unwrap_err();
            assert!(err.contains("RFC 9535"), "{bad}: {err}");
        }
    }

    #[test]
    fn bracket_names_and_the_missing_part_as_written() {
        let doc = json!({"a.b": {"x y": [10, 20]}, "c": {"d": 1}});
        let sel = |p: &str| ResponsePath::parse(p).unwrap().select(&doc);
        assert_eq!(sel("$['a.b']['x y'][1]").unwrap(), json!(20));
        assert_eq!(sel("$['a.b']['x y'][*]").unwrap(), json!([10, 20]));
        assert_eq!(sel("$").unwrap(), doc);
        let err = sel("$['a.b']['x z'][0]").unwrap_err();
        assert!(err.contains("`$['a.b']` has no `['x z']`"), "{err}");
        let err = sel("$.c.e[*]").unwrap_err();
        assert!(err.contains("`$.c` has no `e`"), "{err}");
        let err = sel("$.c.d.e").unwrap_err();
        assert!(err.contains("`$.c.d` has no `e`"), "{err}");
        assert!(matches!(ResponsePath::parse(&format!("$.{}", "a".repeat(5000))), Err(PathError::TooLong { .. })));
    }

    /// Queries whose parsing or compiled form would grow out of bounds are refused before
    /// the parser runs: nested filters (the parser's time is exponential in their depth) and
    /// thousands of segments; RFC 9535's blank space is only space, tab, LF and CR.
    #[test]
    fn bounded_queries() {
        let deep = format!("${}{}", "[?@".repeat(20), "]".repeat(20));
        assert!(matches!(ResponsePath::parse(&deep), Err(PathError::TooDeep { depth: 20 })));
        let unclosed = format!("${}", "[?@".repeat(20));
        assert!(matches!(ResponsePath::parse(&unclosed), Err(PathError::TooDeep { .. })));
        assert!(ResponsePath::parse("$[?@[?@[?@ > 1]]]").is_ok(), "a few levels are fine");
        assert!(ResponsePath::parse("$['[[[[[[[[[[']").is_ok(), "brackets in names do not count");
        assert!(matches!(ResponsePath::parse("$..a..b"), Err(PathError::TooManyDescendants { count: 2 })));
        assert!(ResponsePath::parse("$['..'][?@.x == '..']..a").is_ok(), "`..` in strings does not count");
        assert!(matches!(ResponsePath::parse(&format!("${}", "[0]".repeat(65))), Err(PathError::TooManySegments)));
        assert!(ResponsePath::parse(&format!("${}", "[0]".repeat(64))).is_ok());
        let mut deep = json!(1);
        for _ in 0..700 {
            deep = json!({"a": deep, "b": [1, 2, 3]});
        }
        let err = ResponsePath::parse("$..*").unwrap().select(&deep).unwrap_err();
        assert!(err.contains("selects more than"), "{err}");
        let long = format!("${}", "[0]".repeat(1364));
        assert!(matches!(ResponsePath::parse(&long), Err(PathError::TooManySegments)));
        let sixty = format!("${}", ".a".repeat(60));
        let p = ResponsePath::parse(&sixty).unwrap();
        let err = p.select(&json!({"a": {"a": 1}})).unwrap_err();
        assert!(err.contains("`$.a.a` has no `a` (it is a number)"), "{err}");
        let name = "$.a\u{a0}";
        assert_eq!(ResponsePath::parse(name).unwrap().select(&json!({"a\u{a0}": 7})).unwrap(), json!(7));
    }

    #[test]
    fn defaults() {
        let m =
            Mapping { path: ResponsePath::parse("data.phone").unwrap(), default: Some(json!("none")), transform: None };
        assert_eq!(m.apply(&body()).unwrap(), json!("none"));
    }

    #[test]
    fn a_transform_computes_from_the_selected_value_only() {
        let transform =
            crate::expr::Expression::parse_with_locals("value.filter(n, n > 1).size()", &["value"]).unwrap();
        let m = Mapping { transform: Some(transform), ..Mapping::of(ResponsePath::parse("$.n[*]").unwrap()) };
        assert_eq!(m.apply(&json!({"n": [1, 2, 3]})).unwrap(), json!(2));
        let with_default = Mapping { default: Some(json!("none")), ..m.clone() };
        assert_eq!(
            with_default.apply(&json!({"n": []})).unwrap(),
            json!(0),
            "an empty match is transformed like any value"
        );
        let missing = Mapping { path: ResponsePath::parse("data.x").unwrap(), ..with_default };
        assert_eq!(missing.apply(&json!({})).unwrap(), json!("none"), "the default is used as written");
    }
}
