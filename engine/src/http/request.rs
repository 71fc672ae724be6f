//! The request part of `http_request` and `fetch_variables` steps: the serializable config, its
//! compiled form, and the rendered request that the client sends.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::UrlTemplate;
use crate::diagnostics::pointer_push;
use crate::template::{JsonTemplate, RenderError, Scope, Template, VarRef};

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
    /// Query parameters added to the URL (values are templates, form-encoded).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request headers (values are templates; CR/LF is rejected).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body. Strings are templates; a string that is exactly one placeholder keeps the
    /// value's JSON type.
    #[serde(default)]
    pub body: Option<Value>,
    /// Timeout for the whole request in milliseconds (default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A compiled request.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    method: Method,
    url: UrlTemplate,
    query: Vec<(String, Template)>,
    headers: Vec<(HeaderName, Template)>,
    body: Option<JsonTemplate>,
    timeout: Option<Duration>,
}

/// Largest timeout a step may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

impl RequestTemplate {
    /// Compiles a request config. Errors come with a JSON pointer relative to the config.
    pub fn compile(cfg: &RequestConfig) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let url = UrlTemplate::parse(&cfg.url).map_err(|e| errors.push(("/url".to_string(), e))).ok();
        let mut query = Vec::new();
        for (k, v) in &cfg.query {
            match Template::parse(v) {
                Ok(t) => query.push((k.clone(), t)),
                Err(e) => errors.push((pointer_push("/query", k), e.message)),
            }
        }
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
        let body = match &cfg.body {
            Some(b) => match JsonTemplate::parse(b) {
                Ok(t) => Some(t),
                Err((p, e)) => {
                    errors.push((format!("/body{p}"), e.message));
                    None
                }
            },
            None => None,
        };
        if cfg.body.is_some() && matches!(cfg.method, Method::Get | Method::Head) {
            errors.push((
                "/body".into(),
                format!("a {} request cannot have a body; use `query` or another method", cfg.method.as_str()),
            ));
        }
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

    /// Every placeholder with its pointer relative to the config.
    pub fn vars(&self) -> Vec<(String, &VarRef)> {
        let mut out: Vec<(String, &VarRef)> = self.url.vars().map(|v| ("/url".to_string(), v)).collect();
        out.extend(self.query.iter().flat_map(|(k, t)| t.vars().map(move |v| (pointer_push("/query", k), v))));
        out.extend(
            self.headers.iter().flat_map(|(k, t)| t.vars().map(move |v| (pointer_push("/headers", k.as_str()), v))),
        );
        if let Some(b) = &self.body {
            out.extend(b.vars().into_iter().map(|(p, v)| (format!("/body{p}"), v)));
        }
        out
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Renders the request. The values spliced into all its templates together count against
    /// [`MAX_REQUEST_TEMPLATE_BYTES`](super::MAX_REQUEST_TEMPLATE_BYTES).
    pub fn render(&self, scope: &dyn Scope, default_timeout: Duration) -> Result<PreparedRequest, RenderError> {
        let budgeted = super::budget::Budgeted::new(scope, super::MAX_REQUEST_TEMPLATE_BYTES);
        let scope: &dyn Scope = &budgeted;
        let mut url = self.url.render(scope)?;
        if !self.query.is_empty() {
            let rendered: Vec<(String, String)> = self
                .query
                .iter()
                .map(|(k, t)| Ok((k.clone(), t.render(scope)?)))
                .collect::<Result<_, RenderError>>()?;
            url.query_pairs_mut().extend_pairs(rendered);
        }
        let mut headers = HeaderMap::new();
        for (name, t) in &self.headers {
            let text = t.render_encoded(scope, |var, text, out| {
                if text.contains(['\r', '\n', '\0']) {
                    return Err(RenderError::Rejected {
                        var: var.raw.clone(),
                        reason: format!("contains CR, LF or NUL and cannot go into header `{name}`"),
                    });
                }
                out.push_str(text);
                Ok(())
            })?;
            let value = HeaderValue::from_str(&text).map_err(|_| RenderError::Rejected {
                var: name.to_string(),
                reason: "renders to a value not allowed in a header".into(),
            })?;
            headers.append(name.clone(), value);
        }
        let body = self.body.as_ref().map(|b| b.render(scope)).transpose()?.map(RequestBody::Json);
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
