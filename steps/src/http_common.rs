//! What `http_request` and `fetch_variables` share: the request with its integration, status
//! patterns, and mapping response fields into variables.
//!
//! The two steps' config structs repeat the common fields on purpose: serde's `flatten` does
//! not work with `deny_unknown_fields`, and unknown-field errors with suggestions matter more
//! to flow designers than a few repeated lines.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tern_engine::diagnostics::pointer_push;
use tern_engine::http::retry::{self, RetryConfig};
use tern_engine::http::{HttpResponse, PreparedRequest, RequestConfig, RequestTemplate, display_url};
use tern_engine::mapping::{Mapping, MappingConfig};
use tern_engine::{BuildContext, IntegrationName, StepContext, StepFailure, TokenOwner, VarName};

/// Journal numbers reserved per call of a step: its attempts (the first and up to
/// [`retry::MAX_RETRIES`] retries) are numbered `call * ATTEMPTS_PER_CALL + attempt`.
const ATTEMPTS_PER_CALL: u32 = 16;

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
    /// Every 2xx status.
    pub const SUCCESS: Self = Self { lo: 200, hi: 299 };

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

/// A compiled request with its integration, accepted statuses and retry policy.
#[derive(Debug)]
pub struct Call {
    request: RequestTemplate,
    integration: Option<IntegrationName>,
    token: TokenChoice,
    accept: Vec<StatusPattern>,
    retry: Option<RetryConfig>,
}

impl Call {
    /// Compiles the request part of a step: `request`, `integration`, `token`, `accept_status`
    /// and `retry`.
    pub fn build(
        cx: &mut BuildContext<'_>,
        request: &RequestConfig,
        integration: Option<&IntegrationName>,
        token: TokenChoice,
        accept: &[StatusPattern],
        policy: Option<RetryConfig>,
    ) -> Option<Self> {
        if let Some(i) = integration {
            cx.integration("/integration", i);
        } else if token == TokenChoice::Contact {
            cx.error("invalid-value", "/token", "`token: contact` needs an `integration`", None);
            return None;
        }
        let request = cx.request("/request", request)?;
        if let Some(r) = policy
            && r.max > 0
            && !retry::is_idempotent(request.method())
            && !request.has_idempotency_key()
        {
            cx.error(
                "invalid-value",
                "/retry",
                format!(
                    "a {} request is not idempotent, so retrying it could do the same thing twice",
                    request.method().as_str()
                ),
                Some("send an `Idempotency-Key` header the API understands (for example \"{{conversation.id}}-order\"), or remove `retry`".into()),
            );
            return None;
        }
        let accept = if accept.is_empty() { vec![StatusPattern::SUCCESS] } else { accept.to_vec() };
        Some(Self { request, integration: integration.cloned(), token, accept, retry: policy.filter(|r| r.max > 0) })
    }

    /// Whether the status counts as success.
    pub fn accepts(&self, status: u16) -> bool {
        self.accept.iter().any(|p| p.matches(status))
    }

    /// Renders and sends the request, retrying as the step's `retry` allows, and records
    /// summaries (with every attempt) for the run history.
    pub async fn perform(&self, cx: &mut StepContext<'_>) -> Result<HttpResponse, StepFailure> {
        let prepared = self.render(cx)?;
        self.send(cx, prepared, 0).await
    }

    /// Renders the request for this run.
    pub fn render(&self, cx: &StepContext<'_>) -> Result<PreparedRequest, StepFailure> {
        Ok(self.request.render(&cx.scope(), cx.default_timeout())?)
    }

    /// Sends a rendered request (the step's `call`-th, from 0: a paginated step sends one per
    /// page), retrying as the step's `retry` allows, and records summaries (with every
    /// attempt) for the run history. Each attempt of each call is journaled under its own
    /// number.
    pub async fn send(
        &self,
        cx: &mut StepContext<'_>,
        mut prepared: PreparedRequest,
        call: u32,
    ) -> Result<HttpResponse, StepFailure> {
        let step_timeout = prepared.timeout;
        let owner = match self.token {
            TokenChoice::Workspace => TokenOwner::Workspace,
            TokenChoice::Contact => TokenOwner::Contact(
                cx.contact_id()
                    .ok_or_else(|| StepFailure::Other {
                        code: "no-contact",
                        message: "`token: contact` needs the conversation's contact id, and the message had none"
                            .into(),
                    })?
                    .into_owned(),
            ),
        };
        let mut summary = json!({ "method": prepared.method.as_str(), "url": display_url(&prepared.url) });
        if let Some(i) = &self.integration {
            summary["integration"] = Value::from(i.as_str());
        }
        if !prepared.headers.is_empty() {
            summary["headers"] = prepared.headers.keys().map(|k| k.as_str()).collect();
        }
        // A paginated step's trace shows its first call here (the one its variables read);
        // every page is in `detail.pagination`.
        let first_call = call == 0;
        if first_call {
            cx.record("request", summary);
        }
        let auth = self.integration.as_ref().map(|i| (i, &owner));
        let mut attempts = Vec::new();
        let mut retries = 0u8;
        loop {
            prepared.timeout = step_timeout.min(cx.time_left());
            let started = Instant::now();
            let attempt_no = call.saturating_mul(ATTEMPTS_PER_CALL).saturating_add(u32::from(retries));
            let result = cx.send_attempt(&prepared, auth, attempt_no).await;
            let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let (mut attempt, retryable, server_wait) = match &result {
                Ok(resp) => {
                    let status = resp.status.as_u16();
                    let mut response = json!({
                        "status": status,
                        "content_type": resp.content_type(),
                        "bytes": resp.body.len(),
                        "duration_us": duration_us,
                    });
                    if resp.token_refreshed {
                        response["token_refreshed"] = Value::from(
                            "the provider rejected the token; Tern refreshed it and sent the request again",
                        );
                    }
                    if resp.rate_limit_wait.is_some() || resp.retried_after_429 {
                        let wait = resp.rate_limit_wait.unwrap_or_default();
                        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                        response["rate_limit_wait_ms"] = Value::from(ms);
                        response["rate_limited"] = Value::from(if resp.retried_after_429 {
                            format!(
                                "the API answered 429 Too Many Requests; Tern waited {ms} ms (its Retry-After, and the integration's rate limit) and sent the request again"
                            )
                        } else {
                            format!("Tern waited {ms} ms for the integration's rate limit before sending")
                        });
                    }
                    if first_call {
                        cx.record("response", response);
                    }
                    let mut attempt = json!({ "status": status, "duration_us": duration_us });
                    if resp.retried_after_429 {
                        // Sent twice within this attempt: a 429, its Retry-After, then this answer.
                        attempt["resent_after_429"] = Value::Bool(true);
                    }
                    (
                        attempt,
                        !self.accepts(status) && retry::is_retryable_status(status),
                        retry::retry_after(&resp.headers, SystemTime::now()),
                    )
                }
                Err(e) => {
                    let retryable = matches!(e, StepFailure::Http(h) if retry::is_retryable_error(h));
                    (json!({ "error": e.to_string(), "duration_us": duration_us }), retryable, None)
                }
            };
            let Some(policy) = self.retry else {
                return result;
            };
            let next = if retryable && retries < policy.max {
                retries += 1;
                let wait = server_wait.unwrap_or_else(|| policy.jittered_wait(retries));
                if wait > retry::MAX_WAIT || wait >= cx.time_left() {
                    attempt["gave_up"] = Value::from(format!(
                        "waiting {} ms before retrying would pass the run's deadline",
                        wait.as_millis()
                    ));
                    None
                } else {
                    attempt["wait_ms"] = Value::from(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                    Some(wait)
                }
            } else {
                None
            };
            attempts.push(attempt);
            match next {
                // A recording answers at once: no need to wait between attempts.
                Some(_) if cx.outbound().replaying() => {}
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    if first_call {
                        cx.record("attempts", Value::Array(attempts));
                    }
                    return result;
                }
            }
        }
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
/// missing path. An empty body (`None`, a 204) has no fields: defaults apply, and a variable
/// without one is reported as missing because the body was empty.
pub fn apply_mappings(
    cx: &mut StepContext<'_>,
    mappings: &[(VarName, Mapping)],
    body: Option<&Value>,
    status: u16,
) -> Result<(), StepFailure> {
    let mut values = Vec::with_capacity(mappings.len());
    let mut missing = Vec::new();
    for (name, m) in mappings {
        let found = match body {
            Some(body) => m.apply(body),
            None => m.default.clone().ok_or_else(|| {
                format!(
                    "`{}` not found: the response body was empty (status {status}); give the variable a default",
                    m.path.raw()
                )
            }),
        };
        match found {
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

/// Maps the response into variables when its status is one to map on (`map_status`, default
/// 2xx). For another accepted status nothing is read from the body: variables with a default
/// get it, the others are left as they were, and the trace says so.
pub fn map_response(
    cx: &mut StepContext<'_>,
    mappings: &[(VarName, Mapping)],
    map_status: &[StatusPattern],
    resp: &HttpResponse,
) -> Result<(), StepFailure> {
    let status = resp.status.as_u16();
    let map_on = if map_status.is_empty() { &[StatusPattern::SUCCESS][..] } else { map_status };
    if !map_on.iter().any(|p| p.matches(status)) {
        cx.record("mapping", Value::from(format!("skipped: status {status} is not one to map on (map_status)")));
        for (name, m) in mappings {
            if let Some(d) = &m.default {
                cx.set_var(name, d.clone());
            }
        }
        return Ok(());
    }
    let body = resp.json_body()?;
    apply_mappings(cx, mappings, body.as_ref(), status)
}
