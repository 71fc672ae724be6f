//! The request part of `http_request` and `fetch_variables` steps: the serializable config, its
//! compiled form, and the rendered request that the client sends.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::UrlTemplate;
use super::body::{self, BodyTemplate, TEXT_CONTENT_TYPE};
use super::fields::{FieldTemplates, Fields};
use crate::diagnostics::pointer_push;
use crate::template::{JsonTemplate, RenderError, Scope, Template, VarRef, value_text};

/// HTTP methods a step may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET (the default).
    #[default]
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
}

impl Method {
    /// Whether repeating the request has the same effect as sending it once (RFC 9110
    /// §9.2.2): GET, HEAD, PUT and DELETE are; POST and PATCH are not.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }

    /// The reqwest method.
    pub fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        }
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

/// A request as written in a flow.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// The HTTP method; GET when omitted.
    #[serde(default)]
    pub method: Method,
    /// The URL. Placeholders in the path and query are percent-encoded; the host is fixed.
    pub url: String,
    /// Query parameters added to the URL, in order (values are templates, form-encoded). A list,
    /// or a placeholder holding a list, repeats the parameter: `tag=retail&tag=wholesale`.
    #[serde(default)]
    pub query: Fields,
    /// Request headers (values are templates; CR/LF is rejected).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body. Strings are templates; a string that is exactly one placeholder keeps the
    /// value's JSON type. Sent as `application/json` unless `headers` set a `Content-Type`.
    #[serde(default)]
    pub body: Option<Value>,
    /// A form body (`application/x-www-form-urlencoded`), fields in order; lists repeat a field.
    #[serde(default)]
    pub form: Option<Fields>,
    /// A text body (a template), sent in the charset of the `Content-Type` header
    /// (default `text/plain; charset=utf-8`).
    #[serde(default)]
    pub text: Option<String>,
    /// A `multipart/form-data` body of text fields, in order; lists repeat a field.
    #[serde(default)]
    pub multipart: Option<Fields>,
    /// Timeout for the whole request in milliseconds (default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl RequestConfig {
    /// Whether the request has a body of any kind.
    pub fn has_body(&self) -> bool {
        self.body.is_some() || self.form.is_some() || self.text.is_some() || self.multipart.is_some()
    }
}

#[derive(Clone, Debug)]
enum Body {
    Json(JsonTemplate),
    Other(BodyTemplate),
}

/// A compiled request.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    method: Method,
    url: UrlTemplate,
    query: FieldTemplates,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Body>,
    timeout: Option<Duration>,
}

/// Largest timeout a step may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

fn compile_body(cfg: &RequestConfig, errors: &mut Vec<(String, String)>) -> Option<Body> {
    let kinds: Vec<&str> = [
        ("body", cfg.body.is_some()),
        ("form", cfg.form.is_some()),
        ("text", cfg.text.is_some()),
        ("multipart", cfg.multipart.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if kinds.len() > 1 {
        errors.push((
            format!("/{}", kinds[1]),
            format!(
                "a request has one body; choose one of {}",
                kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
        return None;
    }
    if let Some(kind) = kinds.first()
        && matches!(cfg.method, Method::Get | Method::Head)
    {
        errors.push((
            format!("/{kind}"),
            format!("a {} request cannot have a body; use `query` or another method", cfg.method.as_str()),
        ));
    }
    let content_type = cfg.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if let Some((k, _)) = content_type
        && (cfg.form.is_some() || cfg.multipart.is_some())
    {
        errors.push((
            pointer_push("/headers", k),
            "Tern sets the Content-Type of a `form` or `multipart` body; remove this header".into(),
        ));
    }
    if let Some(b) = &cfg.body {
        return match JsonTemplate::parse(b) {
            Ok(t) => Some(Body::Json(t)),
            Err((p, e)) => {
                errors.push((format!("/body{p}"), e.message));
                None
            }
        };
    }
    if let Some(text) = &cfg.text {
        let ct = content_type.map_or(TEXT_CONTENT_TYPE, |(_, v)| v.as_str());
        if !ct.contains("{{")
            && let Err(e) = body::text_encoding(ct)
        {
            errors.push((
                pointer_push("/headers", content_type.map_or("Content-Type", |(k, _)| k.as_str())),
                e.to_string(),
            ));
        }
        return match Template::parse(text) {
            Ok(t) => Some(Body::Other(BodyTemplate::Text(t))),
            Err(e) => {
                errors.push(("/text".into(), e.message));
                None
            }
        };
    }
    let (fields, at, multipart) = match (&cfg.form, &cfg.multipart) {
        (Some(f), _) => (f, "/form", false),
        (None, Some(m)) => (m, "/multipart", true),
        (None, None) => return None,
    };
    let before = errors.len();
    let compiled = FieldTemplates::compile(fields, at, errors);
    if multipart {
        for name in compiled.names() {
            if let Err(e) = body::check_part_name(name) {
                errors.push((pointer_push(at, name), e.to_string()));
            }
        }
    }
    (errors.len() == before)
        .then(|| Body::Other(if multipart { BodyTemplate::Multipart(compiled) } else { BodyTemplate::Form(compiled) }))
}

impl RequestTemplate {
    /// Compiles a request config. Errors come with a JSON pointer relative to the config.
    pub fn compile(cfg: &RequestConfig) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let url = UrlTemplate::parse(&cfg.url).map_err(|e| errors.push(("/url".to_string(), e))).ok();
        let query = FieldTemplates::compile(&cfg.query, "/query", &mut errors);
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            let p = pointer_push("/headers", k);
            let name = match HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    errors.push((p, format!("`{k}` is not a valid header name")));
                    continue;
                }
            };
            if name == reqwest::header::AUTHORIZATION {
                errors.push((p.clone(), "set `integration` on the step instead of an Authorization header: Tern injects the token and refreshes it".into()));
            }
            if name == reqwest::header::HOST || name == reqwest::header::CONTENT_LENGTH {
                errors.push((p.clone(), format!("`{k}` is set by Tern and cannot be overridden")));
            }
            match Template::parse(v) {
                Ok(t) => {
                    if let Some(lit) = t.as_literal()
                        && HeaderValue::from_str(lit).is_err()
                    {
                        errors.push((p, format!("the value of `{k}` contains characters not allowed in a header")));
                        continue;
                    }
                    headers.push((name, t));
                }
                Err(e) => errors.push((p, e.message)),
            }
        }
        let body = compile_body(cfg, &mut errors);
        let timeout = cfg.timeout_ms.map(Duration::from_millis);
        if let Some(t) = timeout
            && (t.is_zero() || t > MAX_TIMEOUT)
        {
            errors.push(("/timeout_ms".into(), format!("must be between 1 and {} ms", MAX_TIMEOUT.as_millis())));
        }
        match url {
            Some(url) if errors.is_empty() => Ok(Self { method: cfg.method, url, query, headers, body, timeout }),
            _ => Err(errors),
        }
    }

    /// The URL's origin when the flow writes it out (see [`UrlTemplate::literal_origin`]).
    pub fn literal_origin(&self) -> Option<url::Url> {
        self.url.literal_origin()
    }

    /// Every placeholder with its pointer relative to the config.
    pub fn vars(&self) -> Vec<(String, &VarRef)> {
        let mut out: Vec<(String, &VarRef)> = self.url.vars().map(|v| ("/url".to_string(), v)).collect();
        out.extend(self.query.vars("/query"));
        out.extend(
            self.headers.iter().flat_map(|(k, t)| t.vars().map(move |v| (pointer_push("/headers", k.as_str()), v))),
        );
        match &self.body {
            Some(Body::Json(b)) => out.extend(b.vars().into_iter().map(|(p, v)| (format!("/body{p}"), v))),
            Some(Body::Other(BodyTemplate::Text(t))) => out.extend(t.vars().map(|v| ("/text".to_string(), v))),
            Some(Body::Other(BodyTemplate::Form(f))) => out.extend(f.vars("/form")),
            Some(Body::Other(BodyTemplate::Multipart(f))) => out.extend(f.vars("/multipart")),
            None => {}
        }
        out
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Whether the step sets an `Idempotency-Key` header (retrying a POST or PATCH needs one).
    pub fn has_idempotency_key(&self) -> bool {
        self.headers.iter().any(|(name, _)| name.as_str() == "idempotency-key")
    }

    /// Renders the request. The values spliced into all its templates together count against
    /// [`MAX_REQUEST_TEMPLATE_BYTES`](super::MAX_REQUEST_TEMPLATE_BYTES).
    pub fn render(&self, scope: &dyn Scope, default_timeout: Duration) -> Result<PreparedRequest, RenderError> {
        let budgeted = super::budget::Budgeted::new(scope, super::MAX_REQUEST_TEMPLATE_BYTES);
        let scope: &dyn Scope = &budgeted;
        let mut url = self.url.render(scope)?;
        let pairs = self.query.render(scope)?;
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let mut headers = HeaderMap::new();
        for (name, t) in &self.headers {
            let text = t.render_encoded(scope, |var, value, out| {
                let text = value_text(value);
                if text.contains(['\r', '\n', '\0']) {
                    return Err(RenderError::Rejected {
                        var: var.to_string(),
                        reason: format!("contains CR, LF or NUL and cannot go into header `{name}`"),
                    });
                }
                out.push_str(&text);
                Ok(())
            })?;
            let value = HeaderValue::from_str(&text).map_err(|_| RenderError::Rejected {
                var: name.to_string(),
                reason: "renders to a value not allowed in a header".into(),
            })?;
            headers.append(name.clone(), value);
        }
        let body = match &self.body {
            None => None,
            Some(Body::Json(b)) => Some(RequestBody::Json(b.render(scope)?)),
            Some(Body::Other(b)) => {
                let declared = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let encoded = b.render(scope, declared)?;
                Some(RequestBody::Encoded { content_type: encoded.content_type, bytes: encoded.bytes })
            }
        };
        Ok(PreparedRequest {
            method: self.method,
            url,
            headers,
            body,
            timeout: self.timeout.unwrap_or(default_timeout),
        })
    }
}

/// A request body.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestBody {
    /// JSON, sent with `Content-Type: application/json`.
    Json(Value),
    /// Bytes as they are, with whatever content type the headers say (plugins).
    Bytes(Vec<u8>),
    /// A form, text or multipart body, sent with its content type unless the step's headers
    /// set one.
    Encoded {
        /// The `Content-Type` it needs.
        content_type: HeaderValue,
        /// The encoded bytes.
        bytes: Vec<u8>,
    },
}

impl RequestBody {
    /// The bytes sent (JSON encoded compactly).
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            RequestBody::Json(v) => v.to_string().into_bytes().into(),
            RequestBody::Bytes(b) | RequestBody::Encoded { bytes: b, .. } => b.as_slice().into(),
        }
    }
}

/// A rendered request, ready to send.
#[derive(Clone, Debug)]
pub struct PreparedRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Url,
    /// Headers the flow set.
    pub headers: HeaderMap,
    /// The body.
    pub body: Option<RequestBody>,
    /// Time allowed for the whole exchange, redirects included.
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> RequestConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compile_errors_have_pointers() {
        let errs = RequestTemplate::compile(&cfg(json!({
            "url": "https://{{h}}/x",
            "headers": {"Authorization": "Bearer x", "bad header": "v", "X-A": "{{"},
            "body": {"a": ["{{ok}}", "{{"]},
        })))
        .unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert!(pointers.contains(&"/url"), "{errs:?}");
        assert!(pointers.contains(&"/headers/Authorization"), "{errs:?}");
        assert!(pointers.contains(&"/headers/bad header"), "{errs:?}");
        assert!(pointers.contains(&"/headers/X-A"), "{errs:?}");
        assert!(pointers.contains(&"/body/a/1"), "{errs:?}");
        assert!(pointers.contains(&"/body"), "GET with body: {errs:?}");
    }
}
