//! Name/value fields as flows write them for `query`, `form` and `multipart`: each value is a
//! template or a list of templates, and a placeholder that holds a list expands to one field per
//! element (`tag=retail&tag=wholesale`). Fields keep the order they are written in.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::diagnostics::pointer_push;
use crate::template::{RenderError, Scope, Template, VarRef, describe};

/// One field's value as written: a template, or a list of templates (one field each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// `"tag": "{{wanted}}"`: one field, or one per element when the placeholder holds a list.
    One(String),
    /// `"tag": ["retail", "{{other}}"]`: one field per entry.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let bad = |v: &Value| {
            D::Error::custom(format!(
                "expected a text such as \"{{{{name}}}}\" or a list of texts, but {}",
                describe(v)
            ))
        };
        match v {
            Value::String(s) => Ok(Self::One(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Err(bad(&other)),
                })
                .collect::<Result<_, _>>()
                .map(Self::Many),
            other => Err(bad(&other)),
        }
    }
}

impl JsonSchema for FieldValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A template, or a list of templates sent as repeated fields. A placeholder holding a list also repeats the field.",
            "oneOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// Fields in the order written (`{"tag": "a", "page": "2"}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, FieldValue)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of names and values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, FieldValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for Fields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fields".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<FieldValue>();
        schemars::json_schema!({ "type": "object", "additionalProperties": value })
    }
}

impl Fields {
    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compiled fields.
#[derive(Clone, Debug, Default)]
pub struct FieldTemplates(Vec<(String, Vec<Template>)>);

impl FieldTemplates {
    /// Compiles every value; errors carry a pointer below `base` (`/query/tag/1`).
    pub fn compile(fields: &Fields, base: &str, errors: &mut Vec<(String, String)>) -> Self {
        let mut out = Vec::with_capacity(fields.0.len());
        for (name, value) in &fields.0 {
            let at = pointer_push(base, name);
            let texts: Vec<(String, &str)> = match value {
                FieldValue::One(t) => vec![(at.clone(), t.as_str())],
                FieldValue::Many(ts) => ts.iter().enumerate().map(|(i, t)| (format!("{at}/{i}"), t.as_str())).collect(),
            };
            let mut templates = Vec::with_capacity(texts.len());
            for (p, text) in texts {
                match Template::parse(text) {
                    Ok(t) => templates.push(t),
                    Err(e) => errors.push((p, e.message)),
                }
            }
            out.push((name.clone(), templates));
        }
        Self(out)
    }

    /// The field names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Every placeholder with its pointer below `base`.
    pub fn vars<'a>(&'a self, base: &'a str) -> impl Iterator<Item = (String, &'a VarRef)> + 'a {
        self.0.iter().flat_map(move |(name, ts)| {
            let at = pointer_push(base, name);
            ts.iter().flat_map(move |t| {
                t.vars().map({
                    let at = at.clone();
                    move |v| (at.clone(), v)
                })
            })
        })
    }

    /// Renders to name/value pairs, lists expanded into repeated pairs.
    pub fn render(&self, scope: &dyn Scope) -> Result<Vec<(String, String)>, RenderError> {
        let mut pairs = Vec::new();
        let mut texts = Vec::new();
        for (name, templates) in &self.0 {
            for t in templates {
                t.render_texts(scope, &mut texts)?;
            }
            pairs.extend(texts.drain(..).map(|text| (name.clone(), text)));
        }
        Ok(pairs)
    }
}
