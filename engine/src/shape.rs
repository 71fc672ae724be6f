//! Checking a config value against the JSON Schema of its type before deserializing it, so that
//! every problem is found in one pass and described in the flow's vocabulary ("expected a whole
//! number ≥ 0", "expected a list of strings") rather than in Rust's (`expected u32`).
//!
//! The schema is the one `schemars` generates for the config type (the same one `tern schema`
//! publishes), so the checker needs no list of fields of its own: unknown fields, missing fields
//! and wrong types are found structurally, at every depth, all at once. Only the subset of JSON
//! Schema that `schemars` produces is interpreted (`type`, `properties`, `required`,
//! `additionalProperties`, `patternProperties`, `items`, `$ref` into `$defs`, `oneOf`/`anyOf`,
//! `const`, `enum`, `minimum`/`maximum`, integer `format`s); other keywords are ignored here and
//! left to deserialization.
//!
//! A field whose value is wrong is dropped when the field is optional, so the step can still be
//! built from the rest and report its other problems (templates, targets). Even when a step
//! cannot be built, the checker collects what the step would define (values of `VarName` fields,
//! keys of variable maps) and the jump targets it names, so later steps get no false
//! `undefined-variable` errors and a misspelled target is still reported.

use serde_json::{Map, Value};

use crate::diagnostics::{Diagnostic, nearest, pointer_push, pointer_tokens};
// `IDENT_PATTERN` is the pattern `schemars` emits for identifier newtypes; keys of a map
// matching it are variable names.
use crate::ids::{FlowId, IDENT_PATTERN, IntegrationName, StepId, Target, VarName};

/// Checks the text of an identifier (`StepId::new` and the like).
type IdentCheck = fn(&str) -> Result<(), crate::ids::BadIdent>;

/// Deepest nesting the checker follows (flows are far shallower; `$ref` cycles stop here).
const MAX_DEPTH: usize = 64;

/// What checking one value found.
#[derive(Debug, Default)]
pub(crate) struct ShapeReport {
    /// Every problem, with absolute pointers.
    pub diags: Vec<Diagnostic>,
    /// Absolute pointers of optional fields whose values are wrong (or unknown fields), to drop
    /// before deserializing.
    pub removals: Vec<String>,
    /// Whether the value as a whole is unusable (a required part is wrong).
    pub fatal: bool,
    /// Variables the value defines (`VarName` values and keys of variable maps).
    pub defines: Vec<(String, VarName)>,
    /// Jump targets the value names.
    pub targets: Vec<(String, Target)>,
}

impl ShapeReport {
    /// `value` without the fields listed in `removals` (pointers under `base`).
    pub fn cleaned(&self, value: &Value, base: &str) -> Value {
        let mut value = value.clone();
        for pointer in &self.removals {
            let Some(rel) = pointer.strip_prefix(base) else { continue };
            let mut tokens = pointer_tokens(rel);
            let Some(last) = tokens.pop() else { continue };
            let parent = tokens.iter().try_fold(&mut value, |v, t| match v {
                Value::Object(m) => m.get_mut(t),
                Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            });
            if let Some(Value::Object(m)) = parent {
                m.remove(&last);
            }
        }
        value
    }
}

/// Checks `value` (found at `base`) against `schema`. `also_known` are fields handled elsewhere
/// at the top level (a step's common fields), offered in unknown-field suggestions.
pub(crate) fn check(value: &Value, schema: &Value, base: &str, also_known: &[&str]) -> ShapeReport {
    let empty = Map::new();
    let defs = schema.get("$defs").and_then(Value::as_object).unwrap_or(&empty);
    let mut walker = Walker { defs, also_known, base, report: ShapeReport::default() };
    let ok = walker.node(value, schema, base, 0);
    walker.report.fatal = !ok;
    walker.report
}

struct Walker<'s> {
    defs: &'s Map<String, Value>,
    also_known: &'s [&'s str],
    base: &'s str,
    report: ShapeReport,
}

impl<'s> Walker<'s> {
    fn error(&mut self, code: &'static str, pointer: &str, message: String, hint: Option<String>) {
        let mut d = Diagnostic::error(code, pointer, message);
        d.hint = hint;
        self.report.diags.push(d);
    }

    /// A value of the wrong JSON type; the hint shows the schema's `examples` when it has them
    /// (a duration: `"30s"`).
    fn wrong_type(&mut self, value: &Value, schema: &Value, pointer: &str) {
        let message = format!("expected {}, found {}", describe(schema, self.defs), found(value));
        let hint = schema
            .get("examples")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
            .map(|e| format!("for example {}", e.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")));
        self.error("invalid-type", pointer, message, hint);
    }

    /// Checks one value; `true` when it is usable (possibly after dropping optional fields).
    fn node(&mut self, value: &Value, schema: &'s Value, pointer: &str, depth: usize) -> bool {
        let Value::Object(s) = schema else {
            return schema.as_bool() != Some(false);
        };
        if depth > MAX_DEPTH {
            return true;
        }
        if let Some(name) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            return self.reference(value, name, pointer, depth);
        }
        if let Some(c) = s.get("const")
            && value != c
        {
            self.wrong_type(value, schema, pointer);
            return false;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            return self.one_of_values(value, allowed, pointer);
        }
        if let Some(variants) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
            return self.alternatives(value, variants, pointer, depth);
        }
        if !kind_matches(value, s) {
            self.wrong_type(value, schema, pointer);
            return false;
        }
        match value {
            Value::Number(_) => self.bounds(value, schema, pointer),
            Value::Object(m) if is_object_schema(s) => self.object(m, s, pointer, depth),
            Value::Array(items) => match s.get("items") {
                Some(item_schema) => {
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        ok &= self.node(item, item_schema, &pointer_push(pointer, &i.to_string()), depth + 1);
                    }
                    ok
                }
                None => true,
            },
            _ => true,
        }
    }

    /// `$ref`: identifiers are checked with their own rules (and recorded when they define a
    /// variable or name a target); other definitions are followed.
    fn reference(&mut self, value: &Value, name: &str, pointer: &str, depth: usize) -> bool {
        let ident: Option<IdentCheck> = match name {
            "StepId" => Some(|s| StepId::new(s).map(drop)),
            "FlowId" => Some(|s| FlowId::new(s).map(drop)),
            "IntegrationName" => Some(|s| IntegrationName::new(s).map(drop)),
            "VarName" | "Target" => Some(|_| Ok(())),
            _ => None,
        };
        let Some(check_ident) = ident else {
            return match self.defs.get(name) {
                Some(def) => self.node(value, def, pointer, depth + 1),
                None => true,
            };
        };
        let Some(text) = value.as_str() else {
            let message = format!("expected {}, found {}", ident_phrase(name), found(value));
            self.error("invalid-type", pointer, message, None);
            return false;
        };
        let parsed = match name {
            "VarName" => VarName::new(text)
                .map(|v| self.report.defines.push((pointer.to_string(), v)))
                .map_err(|e| e.to_string()),
            "Target" => serde_json::from_value::<Target>(value.clone())
                .map(|t| self.report.targets.push((pointer.to_string(), t)))
                .map_err(|e| e.to_string()),
            _ => check_ident(text).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(()) => true,
            Err(e) => {
                self.error("invalid-value", pointer, e, None);
                false
            }
        }
    }

    fn one_of_values(&mut self, value: &Value, allowed: &[Value], pointer: &str) -> bool {
        if allowed.contains(value) {
            return true;
        }
        let names: Vec<String> = allowed.iter().map(value_name).collect();
        let hint = value
            .as_str()
            .and_then(|v| nearest(v, names.iter().map(String::as_str)))
            .map(|n| format!("did you mean `{n}`?"));
        let message = format!("expected one of {}, found {}", backticked(&names), found(value));
        self.error("invalid-value", pointer, message, hint);
        false
    }

    fn alternatives(&mut self, value: &Value, variants: &'s [Value], pointer: &str, depth: usize) -> bool {
        let (nulls, variants): (Vec<&'s Value>, Vec<&'s Value>) =
            variants.iter().partition(|v| v.get("type").and_then(Value::as_str) == Some("null"));
        if value.is_null() && !nulls.is_empty() {
            return true;
        }
        // An enumeration written as one `const` per variant.
        let consts: Option<Vec<Value>> = variants.iter().map(|v| v.get("const").cloned()).collect();
        if let Some(consts) = consts {
            return self.one_of_values(value, &consts, pointer);
        }
        if let [only] = variants.as_slice() {
            return self.node(value, only, pointer, depth + 1);
        }
        // Objects told apart by a tag field (`"type": "message"`).
        if let (Value::Object(m), Some(tag)) = (value, tag_field(&variants)) {
            let tags: Vec<String> = variants
                .iter()
                .filter_map(|v| v.pointer(&format!("/properties/{tag}/const")))
                .map(value_name)
                .collect();
            let Some(given) = m.get(tag) else {
                let message = format!("missing field `{tag}`");
                self.error("missing-field", pointer, message, Some(format!("`{tag}` is one of {}", backticked(&tags))));
                return false;
            };
            let chosen = variants.iter().find(|v| v.pointer(&format!("/properties/{tag}/const")) == Some(given));
            return match chosen {
                Some(variant) => self.node(value, variant, pointer, depth + 1),
                None => self.one_of_values(
                    given,
                    &tags.iter().map(|t| Value::from(t.as_str())).collect::<Vec<_>>(),
                    &pointer_push(pointer, tag),
                ),
            };
        }
        // Otherwise: the first variant that accepts the value wins; when none does and exactly
        // one has the value's JSON kind, its problems are the useful ones.
        for &variant in &variants {
            let mut trial =
                Walker { defs: self.defs, also_known: &[], base: self.base, report: ShapeReport::default() };
            if trial.node(value, variant, pointer, depth + 1) && trial.report.diags.is_empty() {
                self.report.defines.extend(trial.report.defines);
                self.report.targets.extend(trial.report.targets);
                return true;
            }
        }
        let same_kind: Vec<&'s Value> =
            variants.iter().copied().filter(|v| kind_matches_loosely(value, v, self.defs)).collect();
        if let [only] = same_kind.as_slice() {
            return self.node(value, only, pointer, depth + 1);
        }
        let wanted: Vec<String> = variants.iter().map(|v| describe(v, self.defs)).collect();
        self.error("invalid-type", pointer, format!("expected {}, found {}", wanted.join(" or "), found(value)), None);
        false
    }

    fn bounds(&mut self, value: &Value, schema: &Value, pointer: &str) -> bool {
        let Some(n) = value.as_f64() else { return true };
        let (min, max) = number_bounds(schema);
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            self.wrong_type(value, schema, pointer);
            return false;
        }
        true
    }

    fn object(&mut self, m: &Map<String, Value>, s: &'s Map<String, Value>, pointer: &str, depth: usize) -> bool {
        let props = s.get("properties").and_then(Value::as_object);
        let pattern = s.get("patternProperties").and_then(Value::as_object).and_then(|p| p.iter().next());
        let additional = s.get("additionalProperties");
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut ok = true;
        // A required field given under a certain misspelling is reported once, as the typo.
        let misspelled: Vec<String> = match (props, additional.and_then(Value::as_bool)) {
            (Some(p), Some(false)) => m
                .keys()
                .filter(|k| !p.contains_key(k.as_str()))
                .filter_map(|k| self.meant(k, props, m, pointer))
                .collect(),
            _ => Vec::new(),
        };
        for name in &required {
            if misspelled.iter().any(|n| n == name) {
                ok = false;
            } else if !m.contains_key(*name) {
                let hint = props
                    .and_then(|p| p.get(*name))
                    .and_then(|p| p.get("description"))
                    .and_then(Value::as_str)
                    .map(|d| format!("add `\"{name}\"`: {}", first_sentence(d)));
                self.error("missing-field", pointer, format!("missing field `{name}`"), hint);
                ok = false;
            }
        }
        for (key, child) in m {
            let at = pointer_push(pointer, key);
            let valid = if let Some(p) = props.and_then(|p| p.get(key)) {
                self.node(child, p, &at, depth + 1)
            } else if let Some((pattern, p)) = pattern {
                let key_ok = self.map_key(key, pattern, &at);
                self.node(child, p, &at, depth + 1) && key_ok
            } else if additional.and_then(Value::as_bool) == Some(false) {
                self.unknown_field(key, props, &at, pointer);
                self.report.removals.push(at.clone());
                self.as_if_spelled_right(key, child, props, m, (&at, pointer), depth);
                continue;
            } else if let Some(p @ Value::Object(_)) = additional {
                self.node(child, p, &at, depth + 1)
            } else {
                true
            };
            if !valid {
                if required.contains(&key.as_str()) {
                    ok = false;
                } else {
                    self.report.removals.push(at);
                }
            }
        }
        ok
    }

    /// A key of a map whose keys follow a pattern (variable maps: each key defines a variable).
    fn map_key(&mut self, key: &str, pattern: &str, at: &str) -> bool {
        if pattern == IDENT_PATTERN {
            return match VarName::new(key) {
                Ok(v) => {
                    self.report.defines.push((at.to_string(), v));
                    true
                }
                Err(e) => {
                    self.error("invalid-value", at, e.to_string(), None);
                    false
                }
            };
        }
        match regex::RegexBuilder::new(pattern).size_limit(1 << 20).build() {
            Ok(r) if !r.is_match(key) => {
                self.error("invalid-value", at, format!("`{key}` does not match `{pattern}`"), None);
                false
            }
            _ => true,
        }
    }

    /// The fields an unknown one may be a typo of: this object's, and at the top level the
    /// fields handled elsewhere (a step's common fields).
    fn known<'k>(&'k self, props: Option<&'k Map<String, Value>>, parent: &str) -> Vec<&'k str> {
        let mut known: Vec<&str> = props.into_iter().flat_map(|p| p.keys().map(String::as_str)).collect();
        if parent == self.base {
            known.extend(self.also_known.iter().copied());
        }
        known
    }

    /// The field of this object that the unknown `key` certainly stands for: the one the hint
    /// names, when it is this object's own and not given too (`saveas` → `save_as`; `Next` →
    /// none, since it stands for the common field `next`).
    fn meant(
        &self,
        key: &str,
        props: Option<&Map<String, Value>>,
        present: &Map<String, Value>,
        parent: &str,
    ) -> Option<String> {
        let meant = nearest(key, self.known(props, parent).into_iter())?;
        (props?.contains_key(meant) && !present.contains_key(meant)).then(|| meant.to_string())
    }

    fn unknown_field(&mut self, key: &str, props: Option<&Map<String, Value>>, at: &str, parent: &str) {
        let known = self.known(props, parent);
        let hint = match (nearest(key, known.iter().copied()), self.one_level_down(key, props)) {
            (Some(n), _) => format!("did you mean `{n}`? Known fields: {}", known.join(", ")),
            (None, Some(inner)) => {
                let (parent, field) = inner.split_once('.').unwrap_or((inner.as_str(), key));
                format!("did you mean `{inner}`? `{field}` is a field of `{parent}`")
            }
            (None, None) if known.is_empty() => "this object has no fields".to_string(),
            (None, None) => format!("known fields: {}", known.join(", ")),
        };
        self.error("unknown-field", at, format!("unknown field `{key}`"), Some(hint));
    }

    /// `field.inner` when this object's `field` is an object with a field `inner` named `key` in
    /// any letter case (`keywords` written at the trigger level belongs in `match`).
    fn one_level_down(&self, key: &str, props: Option<&Map<String, Value>>) -> Option<String> {
        props?.iter().find_map(|(name, schema)| {
            self.object_schemas(schema, 0).iter().find_map(|s| {
                let props = s.get("properties").and_then(Value::as_object)?;
                props.keys().find(|k| k.eq_ignore_ascii_case(key)).map(|k| format!("{name}.{k}"))
            })
        })
    }

    /// The object schemas `schema` stands for, through `$ref`s and `oneOf`/`anyOf`.
    fn object_schemas(&self, schema: &'s Value, depth: usize) -> Vec<&'s Map<String, Value>> {
        let Value::Object(s) = schema else { return Vec::new() };
        if depth > 4 {
            return Vec::new();
        }
        if let Some(def) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| self.defs.get(name))
        {
            return self.object_schemas(def, depth + 1);
        }
        if let Some(variants) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
            return variants.iter().flat_map(|v| self.object_schemas(v, depth + 1)).collect();
        }
        if is_object_schema(s) { vec![s] } else { Vec::new() }
    }

    /// An unknown field that is a certain typo of a field this object does not have yet
    /// (`saveas` for `save_as`) counts for what that field would define and the targets it
    /// would name: the analyses that follow (undefined variables, reachability) see the flow
    /// as the designer meant it, so one typo is one error.
    fn as_if_spelled_right(
        &mut self,
        key: &str,
        value: &Value,
        props: Option<&'s Map<String, Value>>,
        present: &Map<String, Value>,
        (at, parent): (&str, &str),
        depth: usize,
    ) {
        let Some(meant) = self.meant(key, props, present, parent) else { return };
        let Some(schema) = props.and_then(|p| p.get(&meant)) else { return };
        let mut trial = Walker { defs: self.defs, also_known: &[], base: self.base, report: ShapeReport::default() };
        trial.node(value, schema, at, depth + 1);
        self.report.defines.extend(trial.report.defines);
        self.report.targets.extend(trial.report.targets);
    }
}

/// The field that tells tagged variants apart: a property with a `const` in every variant.
fn tag_field<'a>(variants: &[&'a Value]) -> Option<&'a str> {
    let first = variants.first()?.get("properties")?.as_object()?;
    first.iter().find_map(|(name, p)| {
        p.get("const")?;
        variants.iter().all(|v| v.pointer(&format!("/properties/{name}/const")).is_some()).then_some(name.as_str())
    })
}

fn is_object_schema(s: &Map<String, Value>) -> bool {
    ["properties", "additionalProperties", "patternProperties", "required"].iter().any(|k| s.contains_key(*k))
        || types_of(s).contains(&"object")
}

fn types_of(s: &Map<String, Value>) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn kind_matches(value: &Value, s: &Map<String, Value>) -> bool {
    let types = types_of(s);
    if types.is_empty() {
        return !is_object_schema(s) || value.is_object();
    }
    types.iter().any(|t| match *t {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    })
}

/// Whether a variant is meant for values of this JSON kind (following one `$ref`).
fn kind_matches_loosely(value: &Value, variant: &Value, defs: &Map<String, Value>) -> bool {
    let resolved = variant
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|n| defs.get(n))
        .unwrap_or(variant);
    match resolved.as_object() {
        Some(s) if !types_of(s).is_empty() || is_object_schema(s) => {
            kind_matches(value, s) || (value.is_number() && types_of(s).contains(&"integer"))
        }
        _ => false,
    }
}

/// Lower and upper bounds of a numeric schema, from `minimum`/`maximum` and integer formats.
fn number_bounds(schema: &Value) -> (Option<f64>, Option<f64>) {
    let format_bounds = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => (Some(0.0), Some(255.0)),
        Some("uint16") => (Some(0.0), Some(65535.0)),
        Some("uint32") => (Some(0.0), Some(4_294_967_295.0)),
        Some("uint" | "uint64" | "uint128") => (Some(0.0), None),
        Some("int8") => (Some(-128.0), Some(127.0)),
        Some("int16") => (Some(-32768.0), Some(32767.0)),
        Some("int32") => (Some(-2_147_483_648.0), Some(2_147_483_647.0)),
        _ => (None, None),
    };
    let min = schema.get("minimum").and_then(Value::as_f64).or(format_bounds.0);
    let max = schema.get("maximum").and_then(Value::as_f64).or(format_bounds.1);
    (min, max)
}

fn ident_phrase(name: &str) -> &'static str {
    match name {
        "StepId" => "a step id",
        "FlowId" => "a flow id",
        "IntegrationName" => "an integration name",
        "VarName" => "a variable name",
        _ => "a step id or `end`",
    }
}

/// What a schema accepts, as a noun phrase in the flow designer's words.
pub(crate) fn describe(schema: &Value, defs: &Map<String, Value>) -> String {
    describe_at(schema, defs, 0)
}

fn describe_at(schema: &Value, defs: &Map<String, Value>, depth: usize) -> String {
    let Value::Object(s) = schema else { return "any value".into() };
    if depth > 4 {
        return "a value".into();
    }
    if let Some(name) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        if matches!(name, "StepId" | "FlowId" | "IntegrationName" | "VarName" | "Target") {
            return ident_phrase(name).into();
        }
        let Some(def) = defs.get(name) else { return "a value".into() };
        return match def.get("description").and_then(Value::as_str) {
            Some(d) if d.starts_with(|c: char| c.is_lowercase()) => d.to_string(),
            _ => describe_at(def, defs, depth + 1),
        };
    }
    if let Some(c) = s.get("const") {
        return format!("`{}`", value_name(c));
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        return format!("one of {}", backticked(&allowed.iter().map(value_name).collect::<Vec<_>>()));
    }
    if let Some(variants) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
        let non_null: Vec<&Value> =
            variants.iter().filter(|v| v.get("type").and_then(Value::as_str) != Some("null")).collect();
        if let Some(consts) = non_null.iter().map(|v| v.get("const").map(value_name)).collect::<Option<Vec<_>>>() {
            return format!("one of {}", backticked(&consts));
        }
        if let Some(tag) = tag_field(&non_null) {
            let tags: Vec<String> = non_null
                .iter()
                .filter_map(|v| v.pointer(&format!("/properties/{tag}/const")))
                .map(value_name)
                .collect();
            return format!("an object whose `{tag}` is one of {}", backticked(&tags));
        }
        return non_null.iter().map(|v| describe_at(v, defs, depth + 1)).collect::<Vec<_>>().join(" or ");
    }
    let types: Vec<&str> = types_of(s).into_iter().filter(|t| *t != "null").collect();
    if types.is_empty() {
        return if is_object_schema(s) { object_phrase(s, defs, depth) } else { "any value".into() };
    }
    types
        .iter()
        .map(|t| match *t {
            "string" => "a string".to_string(),
            "integer" => whole_number(schema),
            "number" => "a number".to_string(),
            "boolean" => "true or false".to_string(),
            "array" => match s.get("items").map(|items| plural(items, defs, depth)) {
                Some(Some(items)) => format!("a list of {items}"),
                Some(None) => {
                    format!("a list, each item {}", describe_at(&s["items"], defs, depth + 1))
                }
                None => "a list".to_string(),
            },
            "object" => object_phrase(s, defs, depth),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn whole_number(schema: &Value) -> String {
    let explicit_max = schema.get("maximum").and_then(Value::as_f64);
    let (min, _) = number_bounds(schema);
    match (min, explicit_max) {
        (Some(lo), Some(hi)) => format!("a whole number from {lo} to {hi}"),
        (Some(lo), None) => format!("a whole number ≥ {lo}"),
        (None, Some(hi)) => format!("a whole number ≤ {hi}"),
        (None, None) => "a whole number".to_string(),
    }
}

fn object_phrase(s: &Map<String, Value>, defs: &Map<String, Value>, depth: usize) -> String {
    if let Some(props) = s.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty()) {
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut names: Vec<&str> = required.clone();
        names.extend(props.keys().map(String::as_str).filter(|k| !required.contains(k)));
        let shown: Vec<String> = names.iter().take(2).map(|n| format!("\"{n}\": …")).collect();
        return format!("an object like {{{}}}", shown.join(", "));
    }
    if s.get("patternProperties").and_then(Value::as_object).is_some_and(|p| p.contains_key(IDENT_PATTERN)) {
        return "an object of variable names to values".into();
    }
    match s.get("additionalProperties") {
        Some(p @ Value::Object(_)) => match plural(p, defs, depth) {
            Some(values) => format!("an object of names to {values}"),
            None => format!("an object whose values are each {}", describe_at(p, defs, depth + 1)),
        },
        _ => "an object".into(),
    }
}

/// The plural of a simple item schema (`strings`, `step ids`), if there is a short one.
fn plural(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Option<String> {
    let s = schema.as_object()?;
    if let Some(name) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        return match name {
            "StepId" => Some("step ids".into()),
            "VarName" => Some("variable names".into()),
            "IntegrationName" => Some("integration names".into()),
            _ => defs.get(name).filter(|_| depth < 4).and_then(|d| plural(d, defs, depth + 1)),
        };
    }
    let types: Vec<&str> = types_of(s).into_iter().filter(|t| *t != "null").collect();
    match types.as_slice() {
        ["string"] => Some("strings".into()),
        ["integer"] => Some("whole numbers".into()),
        ["number"] => Some("numbers".into()),
        ["boolean"] => Some("true/false values".into()),
        _ => None,
    }
}

/// The value a designer wrote, briefly: `the string "ten"`, `the number 1.5`, `a list`.
pub(crate) fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("the string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn value_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn backticked(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.split_once(". ").map_or(line, |(s, _)| s).trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "text": {"type": "string", "description": "The text. More."},
                "count": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "save_as": {"$ref": "#/$defs/VarName"},
                "when": {"type": "object", "properties": {"var": {"type": "string"}, "equals": {}}, "required": ["var"]}
            },
            "required": ["text"],
            "$defs": {"VarName": {"type": "string"}}
        })
    }

    #[test]
    fn every_problem_at_once_in_designer_words() {
        let value = json!({"count": "3", "tags": "a", "when": 1, "txt": "x", "save_as": "answer"});
        let r = check(&value, &schema(), "/steps/0", &["id"]);
        let messages: Vec<String> = r.diags.iter().map(|d| format!("{} {}", d.pointer, d.message)).collect();
        assert!(r.fatal, "`text` is still missing");
        // … reported once, as the typo that stands for it.
        assert!(!messages.iter().any(|m| m.contains("missing field `text`")), "{messages:?}");
        let r2 = check(&json!({"count": 1}), &schema(), "/steps/0", &["id"]);
        assert!(r2.diags.iter().any(|d| d.message == "missing field `text`"), "without a typo it is missing");
        assert!(messages.contains(&"/steps/0/count expected a whole number ≥ 0, found the string \"3\"".to_string()));
        assert!(messages.contains(&"/steps/0/tags expected a list of strings, found the string \"a\"".to_string()));
        assert!(messages.contains(
            &"/steps/0/when expected an object like {\"var\": …, \"equals\": …}, found the number 1".to_string()
        ));
        assert!(messages.contains(&"/steps/0/txt unknown field `txt`".to_string()));
        assert_eq!(r.defines.len(), 1, "the valid variable is still recorded");
    }

    #[test]
    fn a_certain_typo_counts_for_what_the_field_would_define() {
        let value = json!({"text": "hi", "saveas": "answer"});
        let r = check(&value, &schema(), "/steps/0", &[]);
        assert_eq!(r.diags.len(), 1, "{:?}", r.diags);
        assert_eq!(r.diags[0].hint.as_deref().map(|h| h.starts_with("did you mean `save_as`?")), Some(true));
        assert_eq!(r.defines.len(), 1, "{:?}", r.defines);
        assert_eq!(r.defines[0].0, "/steps/0/saveas");
        assert_eq!(r.defines[0].1.as_str(), "answer");
        assert!(r.removals.contains(&"/steps/0/saveas".to_string()));
        // A field far from every known one defines nothing.
        let r = check(&json!({"text": "hi", "output_variable": "answer"}), &schema(), "/steps/0", &[]);
        assert!(r.defines.is_empty(), "{:?}", r.defines);
        // A typo of a common field (`Next` for `next`) stands for nothing of this object's.
        let r = check(&json!({"Next": "b"}), &schema(), "/steps/0", &["next"]);
        assert!(r.diags.iter().any(|d| d.message == "missing field `text`"), "{:?}", r.diags);
        // A typo of a field that is also given is only unknown.
        let r = check(&json!({"text": "hi", "save_as": "a", "saveas": "b"}), &schema(), "/steps/0", &[]);
        assert_eq!(r.defines.len(), 1, "{:?}", r.defines);
    }

    #[test]
    fn a_field_of_a_nested_object_written_one_level_up_is_pointed_at() {
        let value = json!({"text": "hi", "equals": 3});
        let r = check(&value, &schema(), "", &[]);
        let hint = r.diags[0].hint.clone().unwrap_or_default();
        assert!(hint.starts_with("did you mean `when.equals`?"), "{hint}");
    }

    #[test]
    fn optional_fields_with_problems_are_dropped() {
        let value = json!({"text": "hi", "count": -1, "extra": true});
        let r = check(&value, &schema(), "", &[]);
        assert!(!r.fatal);
        assert_eq!(r.cleaned(&value, ""), json!({"text": "hi"}));
    }

    #[test]
    fn tagged_variants_and_enumerations() {
        let s = json!({"oneOf": [
            {"type": "object", "properties": {"type": {"const": "message"}}, "required": ["type"]},
            {"type": "object", "properties": {"type": {"const": "error"}}, "required": ["type"]}
        ]});
        let r = check(&json!({"type": "mesage"}), &s, "/trigger", &[]);
        assert_eq!(r.diags[0].pointer, "/trigger/type");
        assert_eq!(r.diags[0].hint.as_deref(), Some("did you mean `message`?"));
        let methods = json!({"oneOf": [{"const": "GET"}, {"const": "POST"}]});
        let r = check(&json!("PSOT"), &methods, "/method", &[]);
        assert_eq!(r.diags[0].message, "expected one of `GET`, `POST`, found the string \"PSOT\"");
    }
}
