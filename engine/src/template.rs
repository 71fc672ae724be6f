//! `{{name}}` templates, parsed once when a flow is loaded.
//!
//! A template is literal text with placeholders. A placeholder names a flow variable (optionally
//! followed by a dotted path into its JSON value, `{{user.emails.0}}`) or one of the built-in
//! roots: `message.text`, `contact.*`, `conversation.id`, `secrets.NAME` and
//! `integration.NAME.FIELD`. One filter exists, `{{contact.name | default: "there"}}`: the
//! literal (a JSON string, number or boolean) stands in when the value is missing, `null` or the
//! empty string. Anything else inside the braces is an expression (`{{ total * 1.2 }}`,
//! `{{ deals.filter(d, d.open).size() }}`; see [`crate::expr`]): checked when the flow loads,
//! evaluated without I/O and within bounds. No placeholder yields an access token: tokens are
//! injected by the HTTP layer, never read by a flow.
//!
//! How a value is escaped depends on where it lands, so rendering is parameterised by an
//! encoder: URL templates percent-encode (see [`crate::http::UrlTemplate`]), JSON bodies keep the
//! value's JSON type ([`JsonTemplate`]) and headers reject CR/LF.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use crate::expr::Expression;
use crate::ids::{IntegrationName, VarName};

/// Largest string a single template may render to.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Names that cannot be used as flow variables because they are template roots.
pub const RESERVED_ROOTS: &[&str] = &["message", "contact", "conversation", "secrets", "integration", "event"];

/// What a placeholder refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// A flow variable.
    Var(VarName),
    /// The message that triggered or resumed the run (`message.text`).
    Message,
    /// The contact of the conversation (`contact.id`, plus any attributes the channel sent).
    Contact,
    /// The conversation (`conversation.id`).
    Conversation,
    /// The integration event that started the run (`event.*`).
    Event,
    /// A named secret (`secrets.NAME`); the path has exactly one element.
    Secret(String),
    /// Token-response metadata of an integration (`integration.NAME.FIELD`).
    Integration(IntegrationName),
}

/// A parsed placeholder: a root and a path into its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarRef {
    /// What the placeholder starts from.
    pub root: Root,
    /// Field names or array indexes below the root.
    pub path: Vec<String>,
    /// The placeholder as written, without braces, for error messages.
    pub raw: String,
    /// The `| default: …` literal, used when the value is missing, `null` or `""`.
    pub default: Option<Value>,
}

impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl VarRef {
    /// Parses the inside of `{{ … }}`: a reference, optionally followed by
    /// `| default: LITERAL` where the literal is a JSON string, number or boolean.
    pub fn parse_placeholder(inner: &str) -> Result<Self, String> {
        let Some((reference, filter)) = inner.split_once('|') else {
            return Self::parse(inner);
        };
        let whole = inner.trim();
        let literal = filter.trim().strip_prefix("default").map(str::trim_start).and_then(|f| f.strip_prefix(':'));
        let Some(literal) = literal else {
            return Err(format!(
                "`{whole}`: the only filter is `| default: \"text\"` (an expression cannot take a filter)"
            ));
        };
        let default: Value = serde_json::from_str(literal.trim()).map_err(|_| {
            format!(
                "`{whole}`: the default must be a quoted string, a number or true/false, such as `| default: \"there\"`"
            )
        })?;
        if !matches!(default, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(format!("`{whole}`: the default must be a quoted string, a number or true/false"));
        }
        let mut var = Self::parse(reference)?;
        if matches!(var.root, Root::Secret(_) | Root::Integration(_)) {
            return Err(format!(
                "`{whole}`: secrets and integration metadata cannot have a default; set the secret or authorize the integration"
            ));
        }
        var.raw = whole.to_string();
        var.default = Some(default);
        Ok(var)
    }

    /// Parses a reference without a filter (`user.emails.0`, `message.text`).
    pub fn parse(inner: &str) -> Result<Self, String> {
        let raw = inner.trim().to_string();
        if raw.is_empty() {
            return Err("empty placeholder `{{}}`".into());
        }
        let parts: Vec<&str> = raw.split('.').collect();
        if let Some(bad) = parts.iter().find(|p| p.is_empty()) {
            let _ = bad;
            return Err(format!("`{raw}` has an empty path segment"));
        }
        for p in &parts {
            if let Some(c) = p.chars().find(|c| !crate::ids::is_ident_char(*c)) {
                return Err(format!(
                    "`{raw}` contains `{c}`; write a name or a dotted path here; a `default` cannot follow an expression (write `x != null ? x : 'none'` instead)"
                ));
            }
        }
        let rest = |n: usize| parts[n..].iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let root = match parts[0] {
            "message" => Root::Message,
            "contact" => Root::Contact,
            "conversation" => Root::Conversation,
            "event" => Root::Event,
            "secrets" => {
                if parts.len() != 2 {
                    return Err(format!("`{raw}`: write secrets as `secrets.NAME`"));
                }
                return Ok(Self { root: Root::Secret(parts[1].to_string()), path: Vec::new(), raw, default: None });
            }
            "integration" => {
                if parts.len() != 3 {
                    return Err(format!(
                        "`{raw}`: write integration metadata as `integration.NAME.FIELD` (for example `integration.zoho.api_domain`)"
                    ));
                }
                let name = IntegrationName::new(parts[1]).map_err(|e| format!("`{raw}`: {e}"))?;
                return Ok(Self { root: Root::Integration(name), path: rest(2), raw, default: None });
            }
            first => Root::Var(VarName::new(first).map_err(|e| format!("`{raw}`: {e}"))?),
        };
        Ok(Self { root, path: rest(1), raw, default: None })
    }

    /// Resolves the placeholder, using its default when the value is missing, `null` or `""`.
    pub fn resolve<'s>(&'s self, scope: &'s dyn Scope) -> Result<Cow<'s, Value>, RenderError> {
        let Some(default) = &self.default else {
            return scope.resolve(self);
        };
        match scope.resolve(self) {
            Ok(v) if !(v.is_null() || v.as_str() == Some("")) => Ok(v),
            Ok(_) | Err(RenderError::Missing { .. }) => Ok(Cow::Borrowed(default)),
            Err(e) => Err(e),
        }
    }
}

/// Why a template could not be rendered at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The placeholder names something that has no value in this run.
    #[error("`{{{{{var}}}}}` has no value: {reason}")]
    Missing {
        /// The placeholder as written.
        var: String,
        /// What was found instead.
        reason: String,
    },
    /// The rendered text is larger than [`MAX_RENDERED_BYTES`].
    #[error("the rendered text is larger than {MAX_RENDERED_BYTES} bytes")]
    TooLarge,
    /// The value cannot go where the placeholder is (for example CR/LF in a header).
    #[error("`{{{{{var}}}}}` {reason}")]
    Rejected {
        /// The placeholder as written.
        var: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An expression outside a placeholder (a branch condition, a mapping's `transform`)
    /// failed.
    #[error("`{expression}` {reason}")]
    Expression {
        /// The expression as written.
        expression: String,
        /// What went wrong, in the designer's words.
        reason: String,
    },
}

impl RenderError {
    /// The error as a placeholder's: an expression's failure names the expression in braces,
    /// as the designer wrote it in the template.
    fn in_placeholder(self) -> Self {
        match self {
            RenderError::Expression { expression, reason } => RenderError::Rejected { var: expression, reason },
            other => other,
        }
    }
}

/// Resolves placeholders against the state of a run.
pub trait Scope {
    /// The value a placeholder refers to.
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError>;

    /// The whole value of a root (`var` has an empty path) for an expression to read. The
    /// default resolves it like a placeholder; a scope that counts what placeholders splice in
    /// counts the expression's result instead ([`Scope::charge`]).
    fn root(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        self.resolve(var)
    }

    /// Counts an expression's result (`raw` is the expression as written) against the scope's
    /// limits; the default accepts everything.
    fn charge(&self, raw: &str, value: &Value) -> Result<(), RenderError> {
        let _ = (raw, value);
        Ok(())
    }
}

/// Follows a dotted path into a JSON value, explaining what is missing when it fails.
pub fn walk_path<'v>(value: &'v Value, path: &[String], raw: &str) -> Result<&'v Value, RenderError> {
    crate::dot_path::walk(value, path)
        .map_err(|miss| RenderError::Missing { var: raw.to_string(), reason: miss.explain(path, "the value") })
}

pub use crate::dot_path::describe;

/// The text form of a value when it is spliced into a string: strings as they are, `null` as
/// nothing, everything else as compact JSON.
pub fn value_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Var(VarRef),
    Expr(Box<Expression>),
}

impl Part {
    /// Parses the inside of `{{ … }}`: a reference (with its `default` filter) when it looks
    /// like one, an expression otherwise.
    fn placeholder(inner: &str) -> Result<Self, TemplateError> {
        let trimmed = inner.trim();
        let literal =
            matches!(trimmed, "true" | "false" | "null") || trimmed.parse::<f64>().is_ok() || trimmed.starts_with('-');
        let reference_error = match VarRef::parse_placeholder(inner) {
            Ok(v) if !literal => return Ok(Part::Var(v)),
            Ok(_) => String::new(),
            Err(message) => message,
        };
        let plain = !literal && trimmed.chars().all(|c| crate::ids::is_ident_char(c) || c == '.');
        let filter = trimmed.replace("||", "").contains('|');
        if plain || filter {
            return Err(TemplateError { message: reference_error, expression: false });
        }
        Expression::parse(trimmed)
            .map(|e| Part::Expr(Box::new(e)))
            .map_err(|e| TemplateError { message: e.to_string(), expression: true })
    }

    /// The value of a placeholder part.
    fn value<'s>(&'s self, scope: &'s dyn Scope) -> Result<Cow<'s, Value>, RenderError> {
        match self {
            Part::Lit(s) => Ok(Cow::Owned(Value::String(s.clone()))),
            Part::Var(v) => v.resolve(scope),
            Part::Expr(e) => e.eval(scope).map(Cow::Owned).map_err(RenderError::in_placeholder),
        }
    }

    /// The placeholder as written, for messages.
    fn raw(&self) -> &str {
        match self {
            Part::Lit(s) => s,
            Part::Var(v) => &v.raw,
            Part::Expr(e) => e.source(),
        }
    }
}

/// A parsed template string.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that does not parse, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Whether the placeholder was read as an expression (its hint is about expressions).
    pub expression: bool,
}

impl TemplateError {
    /// A hint for the designer: how placeholders or expressions are written.
    pub fn hint(&self) -> &'static str {
        if self.expression {
            "expressions are CEL, such as `{{ total * 1.2 }}` or `{{ items.map(i, i.name).join(', ') }}`; see the README's Expressions section"
        } else {
            "placeholders look like `{{name}}` or `{{message.text}}`"
        }
    }
}

impl Template {
    /// Parses a template. `{{` always opens a placeholder; an unclosed one is an error.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError {
                message: format!("`{{{{` at byte {} is never closed with `}}}}`", source.len() - rest.len() + open),
                expression: false,
            })?;
            parts.push(Part::placeholder(&after[..close])?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The placeholders, in order, and what the expressions among them read.
    pub fn vars(&self) -> impl Iterator<Item = &VarRef> {
        self.parts.iter().flat_map(|p| match p {
            Part::Var(v) => std::slice::from_ref(v),
            Part::Expr(e) => e.refs(),
            Part::Lit(_) => &[],
        })
    }

    /// The expressions among the placeholders, in order.
    pub fn expressions(&self) -> impl Iterator<Item = &Expression> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e.as_ref()),
            _ => None,
        })
    }

    /// The text when the template has no placeholders.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// The placeholder when the whole template is exactly one placeholder (not an expression).
    pub fn as_single_var(&self) -> Option<&VarRef> {
        match self.parts.as_slice() {
            [Part::Var(v)] => Some(v),
            _ => None,
        }
    }

    /// The one placeholder or expression, when the whole template is exactly that.
    fn single(&self) -> Option<&Part> {
        match self.parts.as_slice() {
            [p @ (Part::Var(_) | Part::Expr(_))] => Some(p),
            _ => None,
        }
    }

    /// Whether the whole template is one placeholder or one expression, which keeps its
    /// value's JSON type when rendered as a value.
    pub fn is_single_placeholder(&self) -> bool {
        self.single().is_some()
    }

    /// The template with `stand_in` in place of every placeholder and expression, nothing
    /// evaluated (to check the literal text around them, as URL templates do).
    pub fn with_stand_in(&self, stand_in: &str) -> String {
        self.parts.iter().map(|p| if let Part::Lit(s) = p { s.as_str() } else { stand_in }).collect()
    }

    /// Renders to a string, splicing values with [`value_text`].
    pub fn render(&self, scope: &dyn Scope) -> Result<String, RenderError> {
        self.render_encoded(scope, |_, value, out| {
            out.push_str(&value_text(value));
            Ok(())
        })
    }

    /// Renders to a string; each value goes through `encode` (literal text does not), which
    /// usually escapes its [`value_text`]. `encode` gets the placeholder as written (for its
    /// messages), the value and the output.
    pub fn render_encoded(
        &self,
        scope: &dyn Scope,
        mut encode: impl FnMut(&str, &Value, &mut String) -> Result<(), RenderError>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                placeholder => {
                    let value = placeholder.value(scope)?;
                    encode(placeholder.raw(), &value, &mut out)?;
                }
            }
            if out.len() > MAX_RENDERED_BYTES {
                return Err(RenderError::TooLarge);
            }
        }
        Ok(out)
    }

    /// Renders to a JSON value: a template that is exactly one placeholder keeps the value's JSON
    /// type; anything else is a string.
    pub fn render_value(&self, scope: &dyn Scope) -> Result<Value, RenderError> {
        match self.single() {
            Some(p) => Ok(p.value(scope)?.into_owned()),
            None => self.render(scope).map(Value::String),
        }
    }

    /// Renders to one or more texts: a template that is exactly one placeholder holding an
    /// array gives one text per element (repeated query parameters and form fields); anything
    /// else gives one text.
    pub fn render_texts(&self, scope: &dyn Scope, out: &mut Vec<String>) -> Result<(), RenderError> {
        if let Some(p) = self.single() {
            let value = p.value(scope)?;
            if let Value::Array(items) = value.as_ref() {
                out.extend(items.iter().map(|item| value_text(item).into_owned()));
                return Ok(());
            }
            out.push(value_text(&value).into_owned());
            return Ok(());
        }
        out.push(self.render(scope)?);
        Ok(())
    }
}

/// A JSON value whose strings are templates, rendered into a JSON value (never by splicing text
/// into JSON source, so a value can never break out of its string).
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// A value without templates.
    Literal(Value),
    /// A string template; see [`Template::render_value`].
    Text(Template),
    /// An array of templates.
    Array(Vec<JsonTemplate>),
    /// An object whose values are templates (keys are literal).
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Parses every string in `value` as a template. Errors carry the JSON pointer (relative to
    /// `value`) of the bad string.
    pub fn parse(value: &Value) -> Result<Self, (String, TemplateError)> {
        Self::parse_at(value, "")
    }

    fn parse_at(value: &Value, pointer: &str) -> Result<Self, (String, TemplateError)> {
        Ok(match value {
            Value::String(s) => {
                let t = Template::parse(s).map_err(|e| (pointer.to_string(), e))?;
                match t.as_literal() {
                    Some(_) => JsonTemplate::Literal(value.clone()),
                    None => JsonTemplate::Text(t),
                }
            }
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::parse_at(v, &format!("{pointer}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| {
                        let p = crate::diagnostics::pointer_push(pointer, k);
                        Ok((k.clone(), Self::parse_at(v, &p)?))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    /// Every placeholder with the JSON pointer (relative to the template root) of its string.
    pub fn vars(&self) -> Vec<(String, &VarRef)> {
        let mut out = Vec::new();
        self.collect_vars("", &mut out);
        out
    }

    fn collect_vars<'a>(&'a self, pointer: &str, out: &mut Vec<(String, &'a VarRef)>) {
        match self {
            JsonTemplate::Literal(_) => {}
            JsonTemplate::Text(t) => out.extend(t.vars().map(|v| (pointer.to_string(), v))),
            JsonTemplate::Array(items) => {
                for (i, t) in items.iter().enumerate() {
                    t.collect_vars(&format!("{pointer}/{i}"), out);
                }
            }
            JsonTemplate::Object(fields) => {
                for (k, t) in fields {
                    t.collect_vars(&crate::diagnostics::pointer_push(pointer, k), out);
                }
            }
        }
    }

    /// Renders into a JSON value.
    pub fn render(&self, scope: &dyn Scope) -> Result<Value, RenderError> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Text(t) => t.render_value(scope)?,
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|t| t.render(scope)).collect::<Result<_, _>>()?)
            }
            JsonTemplate::Object(fields) => Value::Object(
                fields.iter().map(|(k, t)| Ok((k.clone(), t.render(scope)?))).collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A scope over one JSON object: its keys are the variables, and `message` and `contact`.
    pub(crate) struct Vars(pub(crate) Value);
    impl Scope for Vars {
        fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
            let name = match &var.root {
                Root::Var(n) => n.as_str().to_string(),
                Root::Message => "message".into(),
                Root::Contact => "contact".into(),
                other => panic!("unexpected root {other:?}"),
            };
            let root = self
                .0
                .get(&name)
                .ok_or_else(|| RenderError::Missing { var: var.raw.clone(), reason: "not set".into() })?;
            walk_path(root, &var.path, &var.raw).map(Cow::Borrowed)
        }
    }

    #[test]
    fn parses_roots() {
        let t = Template::parse("Hi {{ first }} {{message.text}} {{secrets.API_KEY}} {{integration.zoho.api_domain}}")
            .unwrap();
        let roots: Vec<_> = t.vars().map(|v| v.root.clone()).collect();
        assert!(matches!(roots[0], Root::Var(_)));
        assert_eq!(roots[1], Root::Message);
        assert_eq!(roots[2], Root::Secret("API_KEY".into()));
        assert!(matches!(roots[3], Root::Integration(_)));
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("{{ unclosed").unwrap_err().message.contains("never closed"));
        assert!(Template::parse("{{ a + }}").unwrap_err().message.contains("ends too early"));
        assert!(Template::parse("{{ a.b$ }}").unwrap_err().message.contains("`$`"));
        assert!(Template::parse("{{}}").is_err());
        assert!(Template::parse("{{secrets}}").is_err());
        assert!(Template::parse("{{integration.zoho}}").is_err());
        assert!(Template::parse("{{a..b}}").is_err());
    }

    #[test]
    fn renders_text_and_values() {
        let scope = Vars(json!({"id": 42, "user": {"emails": ["a@b.c"]}, "n": null}));
        let t = Template::parse("id={{id}} email={{user.emails.0}} n={{n}}").unwrap();
        assert_eq!(t.render(&scope).unwrap(), "id=42 email=a@b.c n=");
        assert_eq!(Template::parse("{{id}}").unwrap().render_value(&scope).unwrap(), json!(42));
        let err = Template::parse("{{user.phone}}").unwrap().render(&scope).unwrap_err();
        assert!(err.to_string().contains("has no `phone`"), "{err}");
    }

    #[test]
    fn json_templates_cannot_break_out() {
        let scope = Vars(json!({"id": "\"},\"x\":1", "n": 7}));
        let t = JsonTemplate::parse(&json!({"id": "{{id}}", "n": "{{n}}", "s": "n={{n}}", "k": [true]})).unwrap();
        let out = t.render(&scope).unwrap();
        assert_eq!(out, json!({"id": "\"},\"x\":1", "n": 7, "s": "n=7", "k": [true]}));
        assert_eq!(t.vars().len(), 3);
    }

    #[test]
    fn default_filter() {
        let scope = Vars(json!({"empty": "", "nothing": null, "name": "Bo", "tags": ["a", "b"]}));
        let t = Template::parse(r#"{{ missing | default: "there" }}/{{empty|default:"e"}}/{{nothing | default: 3}}/{{name | default: "x"}}"#)
            .unwrap();
        assert_eq!(t.render(&scope).unwrap(), "there/e/3/Bo");
        assert_eq!(Template::parse("{{missing | default: 0}}").unwrap().render_value(&scope).unwrap(), json!(0));
        assert_eq!(Template::parse(r#"{{a.b | default: "|}"}}"#).unwrap().render(&scope).unwrap(), "|}");
        for bad in ["{{name | upcase}}", "{{name | default}}", "{{name | default: there}}", "{{name | default: [1]}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Template::parse(r#"{{secrets.KEY | default: "k"}}"#).unwrap_err().message.contains("cannot have a default")
        );
        assert!(VarRef::parse("name | default: \"x\"").is_err(), "only placeholders take a filter");
        let mut out = Vec::new();
        Template::parse("{{tags}}").unwrap().render_texts(&scope, &mut out).unwrap();
        Template::parse("x{{tags}}").unwrap().render_texts(&scope, &mut out).unwrap();
        assert_eq!(out, ["a", "b", r#"x["a","b"]"#]);
    }
}
