//! What `http_request` and `fetch_variables` share: the request with its integration, status
//! patterns, and mapping response fields into variables.
//!
//! The two steps' config structs repeat the common fields on purpose: serde's `flatten` does
//! not work with `deny_unknown_fields`, and unknown-field errors with suggestions matter more
//! to flow designers than a few repeated lines.

use std::collections::BTreeMap;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tern_engine::diagnostics::pointer_push;
use tern_engine::http::{HttpResponse, RequestConfig, RequestTemplate, display_url};
use tern_engine::mapping::{Mapping, MappingConfig};
use tern_engine::{BuildContext, IntegrationName, StepContext, StepFailure, TokenOwner, VarName};

/// Whose token to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenChoice {
    /// The operator's authorization of the integration (default).
    #[default]
    Workspace,
    /// The conversation contact's own login (`oauth_request`).
    Contact,
}

/// A status code (`404`) or class (`"2xx"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusPattern {
    lo: u16,
    hi: u16,
}

impl StatusPattern {
    fn matches(self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let bad =
            || D::Error::custom(format!("expected a status code such as 404 or a class such as \"2xx\", found {v}"));
        match &v {
            Value::Number(n) => match n.as_u64() {
                Some(c @ 100..=599) => Ok(Self { lo: c as u16, hi: c as u16 }),
                _ => Err(bad()),
            },
            Value::String(s) => match s.as_bytes() {
                [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                    let lo = u16::from(d - b'0') * 100;
                    Ok(Self { lo, hi: lo + 99 })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl JsonSchema for StatusPattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusPattern".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a status code such as 404 or a class such as \"2xx\"",
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^[1-5][xX][xX]$" }
            ]
        })
    }
}

/// A compiled request with its integration and accepted statuses.
#[derive(Debug)]
pub struct Call {
    request: RequestTemplate,
    integration: Option<IntegrationName>,
    token: TokenChoice,
    accept: Vec<StatusPattern>,
}

impl Call {
    /// Compiles the request part of a step.
    pub fn build(
        cx: &mut BuildContext<'_>,
        request: &RequestConfig,
        integration: Option<&IntegrationName>,
        token: TokenChoice,
        accept: &[StatusPattern],
    ) -> Option<Self> {
        if let Some(i) = integration {
            cx.integration("/integration", i);
        } else if token == TokenChoice::Contact {
            cx.error("invalid-value", "/token", "`token: contact` needs an `integration`", None);
            return None;
        }
        let request = cx.request("/request", request)?;
        let accept = if accept.is_empty() { vec![StatusPattern { lo: 200, hi: 299 }] } else { accept.to_vec() };
        Some(Self { request, integration: integration.cloned(), token, accept })
    }

    /// Whether the status counts as success.
    pub fn accepts(&self, status: u16) -> bool {
        self.accept.iter().any(|p| p.matches(status))
    }

    /// Renders and sends the request, recording summaries for the run history.
    pub async fn perform(&self, cx: &mut StepContext<'_>) -> Result<HttpResponse, StepFailure> {
        let mut prepared = self.request.render(&cx.scope(), cx.default_timeout())?;
        prepared.timeout = prepared.timeout.min(cx.time_left());
        let owner = match self.token {
            TokenChoice::Workspace => TokenOwner::Workspace,
            TokenChoice::Contact => TokenOwner::Contact(
                cx.contact_id()
                    .ok_or_else(|| StepFailure::Other {
                        code: "no-contact",
                        message: "`token: contact` needs the conversation's contact id, and the message had none"
                            .into(),
                    })?
                    .to_string(),
            ),
        };
        let mut summary = json!({ "method": prepared.method.as_str(), "url": display_url(&prepared.url) });
        if let Some(i) = &self.integration {
            summary["integration"] = Value::from(i.as_str());
        }
        if !prepared.headers.is_empty() {
            summary["headers"] = prepared.headers.keys().map(|k| k.as_str()).collect();
        }
        cx.record("request", summary);
        let started = Instant::now();
        let auth = self.integration.as_ref().map(|i| (i, &owner));
        let resp = cx.outbound().execute(&prepared, auth).await?;
        cx.record(
            "response",
            json!({
                "status": resp.status.as_u16(),
                "content_type": resp.content_type(),
                "bytes": resp.body.len(),
                "duration_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }),
        );
        Ok(resp)
    }

    /// The error for a status that is not accepted.
    pub fn status_error(&self, resp: &HttpResponse) -> StepFailure {
        let excerpt = resp.excerpt();
        StepFailure::Status {
            status: resp.status.as_u16(),
            url: display_url(&resp.url),
            excerpt: if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") },
        }
    }
}

/// Compiles `variables` mappings, recording the variables as defined.
pub fn build_mappings(
    cx: &mut BuildContext<'_>,
    mappings: &BTreeMap<VarName, MappingConfig>,
) -> Option<Vec<(VarName, Mapping)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, cfg) in mappings {
        let rel = pointer_push("/variables", name.as_str());
        cx.defines(&rel, name);
        match cx.mapping(&rel, cfg) {
            Some(m) => out.push((name.clone(), m)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Applies mappings to a body: every variable is set, or none is and the error lists every
/// missing path.
pub fn apply_mappings(
    cx: &mut StepContext<'_>,
    mappings: &[(VarName, Mapping)],
    body: &Value,
) -> Result<(), StepFailure> {
    let mut values = Vec::with_capacity(mappings.len());
    let mut missing = Vec::new();
    for (name, m) in mappings {
        match m.apply(body) {
            Ok(v) => values.push((name, v)),
            Err(reason) => missing.push((name.clone(), reason)),
        }
    }
    if !missing.is_empty() {
        return Err(StepFailure::Mapping { missing });
    }
    for (name, value) in values {
        cx.set_var(name, value);
    }
    Ok(())
}
