//! Parsing a flow document while noticing keys written twice in one object.
//!
//! JSON parsers (serde_json included) keep the last of two equal keys silently, so a second
//! `"text"` in a step, a variable set twice in `set_variables` or a query key repeated would
//! change a flow without a word. The document is parsed once, through a seed that builds the
//! same [`Value`] and records every repeated key with the pointer of its object; positions of
//! both occurrences are looked up only when there is one to report.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::diagnostics::{Diagnostic, pointer_push, pointer_tokens};

/// The key serde_json uses for numbers kept as text (`arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A key written more than once in one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DuplicateKey {
    /// Pointer of the object.
    pub object: String,
    /// The repeated key.
    pub key: String,
}

/// Parses JSON text into a value, collecting repeated keys.
pub(crate) fn parse(source: &str) -> Result<(Value, Vec<DuplicateKey>), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(source);
    let mut duplicates = Vec::new();
    let value = Seed { pointer: String::new(), duplicates: &mut duplicates }.deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicates))
}

/// One diagnostic per extra occurrence, placed on it and naming where the key was first written.
pub(crate) fn diagnostics(source: &str, duplicates: &[DuplicateKey]) -> Vec<Diagnostic> {
    let parsed = jsonc_parser::parse_to_ast(
        source,
        &jsonc_parser::CollectOptions::default(),
        &jsonc_parser::ParseOptions::default(),
    );
    let root = parsed.ok().and_then(|p| p.value);
    let lines = crate::diagnostics::LineIndex::new(source);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dup in duplicates {
        if !seen.insert(dup) {
            continue;
        }
        let pointer = pointer_push(&dup.object, &dup.key);
        let starts = root.as_ref().map(|r| key_offsets(r, &pointer_tokens(&dup.object), &dup.key)).unwrap_or_default();
        let Some((first, rest)) = starts.split_first() else {
            out.push(duplicate(&pointer, &dup.key, None));
            continue;
        };
        let (line, column) = lines.position(*first);
        for offset in rest {
            let mut d = duplicate(&pointer, &dup.key, Some((line, column)));
            let (l, c) = lines.position(*offset);
            d.line = Some(l);
            d.column = Some(c);
            out.push(d);
        }
    }
    out
}

fn duplicate(pointer: &str, key: &str, first: Option<(usize, usize)>) -> Diagnostic {
    let message = match first {
        Some((l, c)) => format!("`{key}` is written twice in this object; it is first written at {l}:{c}"),
        None => format!("`{key}` is written twice in this object"),
    };
    Diagnostic::error("duplicate-key", pointer, message)
        .with_hint("only the last one would count; remove one, or rename it if both are meant")
}

/// Byte offsets of every member called `key` of the object at `tokens`.
fn key_offsets(root: &jsonc_parser::ast::Value<'_>, tokens: &[String], key: &str) -> Vec<usize> {
    use jsonc_parser::ast::Value as Ast;
    let mut current = root;
    for token in tokens {
        current = match current {
            Ast::Object(o) => match o.properties.iter().rev().find(|p| p.name.as_str() == token) {
                Some(p) => &p.value,
                None => return Vec::new(),
            },
            Ast::Array(a) => match token.parse::<usize>().ok().and_then(|i| a.elements.get(i)) {
                Some(v) => v,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
    }
    match current {
        Ast::Object(o) => o.properties.iter().filter(|p| p.name.as_str() == key).map(|p| p.range.start).collect(),
        _ => Vec::new(),
    }
}

struct Seed<'a> {
    pointer: String,
    duplicates: &'a mut Vec<DuplicateKey>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let pointer = pointer_push(&self.pointer, &out.len().to_string());
            match seq.next_element_seed(Seed { pointer, duplicates: &mut *self.duplicates })? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NUMBER_TOKEN {
                let digits: String = map.next_value()?;
                return digits.parse::<Number>().map(Value::Number).map_err(de::Error::custom);
            }
            let pointer = pointer_push(&self.pointer, &key);
            let value = map.next_value_seed(Seed { pointer, duplicates: &mut *self.duplicates })?;
            if out.contains_key(&key) {
                self.duplicates.push(DuplicateKey { object: self.pointer.clone(), key: key.clone() });
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_keys_at_any_depth() {
        let src = "{\"a\": 1, \"s\": [{\"text\": \"x\",\n \"text\": \"y\"}], \"q\": {\"tag\": 1, \"tag\": 2}}";
        let (value, dups) = parse(src).unwrap();
        assert_eq!(value, serde_json::json!({"a": 1, "s": [{"text": "y"}], "q": {"tag": 2}}));
        assert_eq!(
            dups,
            vec![
                DuplicateKey { object: "/s/0".into(), key: "text".into() },
                DuplicateKey { object: "/q".into(), key: "tag".into() }
            ]
        );
        let diags = diagnostics(src, &dups);
        assert_eq!(diags[0].pointer, "/s/0/text");
        assert_eq!((diags[0].line, diags[0].column), (Some(2), Some(2)));
        assert!(diags[0].message.contains("first written at 1:17"), "{}", diags[0].message);
    }

    #[test]
    fn same_value_as_serde_json() {
        let src = r#"{"n": [1, -2, 3.5, 18446744073709551615], "t": true, "z": null, "s": "é"}"#;
        let (value, dups) = parse(src).unwrap();
        assert!(dups.is_empty());
        assert_eq!(value, serde_json::from_str::<Value>(src).unwrap());
        assert!(parse("{} x").is_err());
    }
}
