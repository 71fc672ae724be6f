//! URL templates with context-aware escaping.
//!
//! The scheme and host of a URL are fixed when the flow is loaded: a placeholder may stand for
//! the whole origin only when it names operator-controlled data (`{{integration.NAME.FIELD}}`,
//! such as Zoho's `api_domain`, or `{{secrets.NAME}}`), never a flow variable, and never part of
//! the host. A value in the path or the query is percent-encoded as one unreserved-only
//! component, so it can never add `/`, `?`, `#` or `&`, and a value that would still change the
//! path (`..`) is rejected before anything is sent.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::template::{RenderError, Root, Scope, Template, VarRef};

/// Everything but RFC 3986 unreserved characters is encoded (also the form of a secret value
/// in a URL that the masker knows, [`crate::secrets::known`]).
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Clone, Debug)]
enum Origin {
    Literal(String),
    Var(VarRef),
}

/// A compiled URL template.
#[derive(Clone, Debug)]
pub struct UrlTemplate {
    raw: String,
    origin: Origin,
    path: Template,
    query: Option<Template>,
    /// The parsed URL when the template has no placeholders at all (rendering is a clone).
    fixed: Option<Url>,
}

fn encode_component(var: &str, value: &serde_json::Value, out: &mut String) -> Result<(), RenderError> {
    if value.is_array() {
        return Err(RenderError::Rejected {
            var: var.to_string(),
            reason: "holds a list, which cannot go into the URL; put the parameter in the step's `query` to send it once per element (`tag=a&tag=b`)".into(),
        });
    }
    out.extend(utf8_percent_encode(&crate::template::value_text(value), COMPONENT));
    Ok(())
}

impl UrlTemplate {
    /// Parses and checks a URL template.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (origin, rest) = if let Some(after) = raw.strip_prefix("{{") {
            let close = after.find("}}").ok_or("`{{` is never closed with `}}`")?;
            let var = VarRef::parse(&after[..close])?;
            if !matches!(var.root, Root::Integration(_) | Root::Secret(_)) {
                return Err(format!(
                    "`{{{{{var}}}}}` cannot choose the scheme and host; only `{{{{integration.NAME.FIELD}}}}` or `{{{{secrets.NAME}}}}` may stand for the origin"
                ));
            }
            (Origin::Var(var), &after[close + 2..])
        } else {
            let lower = raw.to_ascii_lowercase();
            let scheme_len = if lower.starts_with("https://") {
                8
            } else if lower.starts_with("http://") {
                7
            } else {
                return Err(
                    "the URL must start with `https://` or `http://` (or an `{{integration.NAME.FIELD}}` origin)"
                        .into(),
                );
            };
            let end = raw[scheme_len..].find(['/', '?', '#']).map_or(raw.len(), |i| i + scheme_len);
            let origin = &raw[..end];
            if origin.contains("{{") {
                return Err(
                    "a placeholder cannot be part of the host; the host is fixed when the flow is loaded".into()
                );
            }
            let parsed = Url::parse(origin).map_err(|e| format!("`{origin}` is not a valid origin: {e}"))?;
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err("credentials in the URL are not allowed; use an integration or a header".into());
            }
            (Origin::Literal(parsed.origin().ascii_serialization()), &raw[end..])
        };
        if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') || rest.starts_with('#')) {
            return Err("the origin must be followed by `/`, `?` or the end of the URL".into());
        }
        let rest = match rest.split_once('#') {
            Some((before, fragment)) => {
                if fragment.contains("{{") {
                    return Err("placeholders are not allowed in the fragment (it is never sent)".into());
                }
                before
            }
            None => rest,
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let tpl = |s: &str| Template::parse(s).map_err(|e| e.message);
        let mut this =
            Self { raw: raw.to_string(), origin, path: tpl(path)?, query: query.map(tpl).transpose()?, fixed: None };
        // Check the literal parts with every placeholder standing for a plain value: they must
        // survive URL parsing unchanged, or a value could never be placed safely.
        let sample = |t: &Template| -> Result<String, RenderError> { Ok(t.with_stand_in("x")) };
        let origin = match &this.origin {
            Origin::Literal(o) => o.clone(),
            Origin::Var(_) => "https://origin.invalid".into(),
        };
        let path = sample(&this.path).map_err(|e| e.to_string())?;
        let query = this.query.as_ref().map(sample).transpose().map_err(|e| e.to_string())?;
        let sample = assemble(&origin, &path, query.as_deref())
            .map_err(|e| format!("{e}; percent-encode special characters in the URL's literal text"))?;
        let computed = this.path.expressions().next().is_some()
            || this.query.as_ref().is_some_and(|q| q.expressions().next().is_some());
        if this.vars().next().is_none() && !computed {
            this.fixed = Some(sample);
        }
        Ok(this)
    }

    /// The template as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The origin when the flow writes it out (`https://api.example.com`), or `None` when a
    /// placeholder stands for it.
    pub fn literal_origin(&self) -> Option<Url> {
        match &self.origin {
            Origin::Literal(o) => Url::parse(o).ok(),
            Origin::Var(_) => None,
        }
    }

    /// Every placeholder in the URL.
    pub fn vars(&self) -> impl Iterator<Item = &VarRef> {
        let origin = match &self.origin {
            Origin::Var(v) => Some(v),
            Origin::Literal(_) => None,
        };
        origin.into_iter().chain(self.path.vars()).chain(self.query.iter().flat_map(|q| q.vars()))
    }

    /// Renders the URL.
    pub fn render(&self, scope: &dyn Scope) -> Result<Url, RenderError> {
        if let Some(url) = &self.fixed {
            return Ok(url.clone());
        }
        let origin = match &self.origin {
            Origin::Literal(o) => o.clone(),
            Origin::Var(v) => {
                let value = v.resolve(scope)?;
                let text = crate::template::value_text(&value);
                origin_of(&text).map_err(|reason| RenderError::Rejected { var: v.raw.clone(), reason })?
            }
        };
        let path = self.path.render_encoded(scope, encode_component)?;
        let query = self.query.as_ref().map(|q| q.render_encoded(scope, encode_component)).transpose()?;
        assemble(&origin, &path, query.as_deref()).map_err(|reason| RenderError::Rejected {
            var: self.vars().map(|v| v.raw.clone()).collect::<Vec<_>>().join("}}, {{"),
            reason: format!("would change the URL: {reason}"),
        })
    }
}

/// Puts a URL together and checks that parsing kept the path and query exactly as rendered
/// (no dot-segment removal, no re-encoding).
fn assemble(origin: &str, path: &str, query: Option<&str>) -> Result<Url, String> {
    let path = if path.is_empty() { "/" } else { path };
    let text = match query {
        Some(q) => format!("{origin}{path}?{q}"),
        None => format!("{origin}{path}"),
    };
    let url = Url::parse(&text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if url.path() != path {
        return Err(format!("the path `{path}` would become `{}`", url.path()));
    }
    if url.query() != query {
        return Err(format!("the query `{}` would become `{}`", query.unwrap_or(""), url.query().unwrap_or("")));
    }
    Ok(url)
}

/// The `scheme://host[:port]` of a value that must be exactly an origin.
fn origin_of(text: &str) -> Result<String, String> {
    let url = Url::parse(text.trim_end_matches('/')).map_err(|e| format!("is not an origin URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("has scheme `{}`; only http and https are allowed", url.scheme()));
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("is not an origin (scheme://host[:port])".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be an origin only (scheme://host[:port]), without a path or query".into());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::borrow::Cow;

    struct S(Value);
    impl Scope for S {
        fn resolve(&self, v: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
            let key = match &v.root {
                Root::Var(n) => n.as_str().to_string(),
                Root::Integration(n) => format!("{n}.{}", v.path.join(".")),
                Root::Secret(n) => n.clone(),
                _ => unreachable!(),
            };
            Ok(Cow::Owned(self.0.get(&key).cloned().unwrap_or(Value::Null)))
        }
    }

    fn render(t: &str, vars: Value) -> Result<String, RenderError> {
        UrlTemplate::parse(t).unwrap().render(&S(vars)).map(|u| u.to_string())
    }

    #[test]
    fn encodes_path_and_query_values() {
        let v = json!({"id": "../admin", "q": "a?b=1#c&d", "n": 5});
        assert_eq!(
            render("https://api.example.com/contacts/{{id}}?q={{q}}&n={{n}}", v).unwrap(),
            "https://api.example.com/contacts/..%2Fadmin?q=a%3Fb%3D1%23c%26d&n=5"
        );
    }

    #[test]
    fn dot_segments_are_rejected() {
        let err = render("https://api.example.com/contacts/{{id}}/x", json!({"id": ".."})).unwrap_err();
        assert!(err.to_string().contains("would change the URL"), "{err}");
        assert!(render("https://api.example.com/a/{{id}}", json!({"id": "."})).is_err());
    }

    #[test]
    fn host_is_fixed() {
        assert!(UrlTemplate::parse("https://{{host}}/x").unwrap_err().contains("host"));
        assert!(UrlTemplate::parse("https://api.{{x}}.com/x").is_err());
        assert!(UrlTemplate::parse("{{host}}/x").unwrap_err().contains("cannot choose"));
        assert!(UrlTemplate::parse("ftp://x/y").is_err());
        assert!(UrlTemplate::parse("https://user:pw@x/y").is_err());
        assert!(UrlTemplate::parse("https://x/a b").is_err());
        assert!(UrlTemplate::parse("https://x/y#{{id}}").is_err());
    }

    #[test]
    fn an_expression_without_variables_is_evaluated_not_fixed() {
        assert_eq!(
            render("https://x/{{ 'abc' }}/{{ 1 + 1 }}?q={{ [1, 2].size() }}", json!({})).unwrap(),
            "https://x/abc/2?q=2"
        );
        assert_eq!(render("https://x/{{ 'a/b' }}", json!({})).unwrap(), "https://x/a%2Fb");
    }

    #[test]
    fn integration_origin() {
        let t = "{{integration.zoho.api_domain}}/crm/v8/Leads/{{id}}";
        let ok = render(t, json!({"zoho.api_domain": "https://www.zohoapis.eu", "id": "7"})).unwrap();
        assert_eq!(ok, "https://www.zohoapis.eu/crm/v8/Leads/7");
        assert!(render(t, json!({"zoho.api_domain": "https://evil.example/x", "id": "7"})).is_err());
        assert!(render(t, json!({"zoho.api_domain": "file:///etc/passwd", "id": "7"})).is_err());
    }
}
