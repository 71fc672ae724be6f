//! The host side of the world: what a plugin's `log` and `http-fetch` imports do.
//!
//! `http-fetch` goes through the same journaled call path as the built-in steps (a
//! [`CallJournal`]): the guarded [`Outbound`](tern_engine::http::Outbound) client with the SSRF
//! guard, redirects checked hop by hop, timeouts capped by the step's deadline, the response
//! size cap, and token injection with one refresh after a rejected token; and for a call that
//! is not idempotent (POST, PATCH) the effect journal (SECURITY R12): each of the step's calls
//! is recorded under its own number, so that a message processed again after a crash replays
//! a recorded answer instead of sending the call again, and a call whose answer was never
//! recorded comes back to the plugin as a `failed` error saying so. Before that, the host removes
//! any `Authorization` the plugin set, allows only the integrations the step's configuration
//! names, and sends requests without an integration only to the origins the operator allowed
//! for the plugin. The plugin never sees a token.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tern_engine::http::{HttpError as EngineHttpError, Method, PreparedRequest, RequestBody, display_url};
use tern_engine::secrets::Masker;
use tern_engine::step::{CallJournal, StepFailure};
use tern_engine::tokens::TokenError;
use tern_engine::{IntegrationName, TokenOwner as EngineOwner};
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::bindings::tern::step::host::{self, HttpError, HttpRequest, HttpResponse, LogLevel, TokenOwner};
use crate::fixture::{Call, NotAnswered, Replay};

/// Headers a plugin may not set: the host owns credentials.
const STRIPPED: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Where a plugin's `http-fetch` calls go.
pub(crate) enum Calls {
    /// Outside a run (`describe`): no call can be made.
    None,
    /// The step's journaled call path (guarded client, effect journal, call numbers).
    Journal(CallJournal),
    /// A test fixture's recorded answers (`tern plugins test`): no network, no token.
    Replay(Arc<Replay>),
}

/// The timeout of a replayed call that names none (nothing waits on a recording).
const REPLAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The store's data for one execution.
pub struct HostState {
    pub(crate) limits: StoreLimits,
    pub(crate) plugin: Arc<str>,
    pub(crate) step: String,
    /// Where `http-fetch` goes.
    pub(crate) calls: Calls,
    pub(crate) contact: Option<String>,
    /// Integrations the step's configuration names; the only ones `http-fetch` may use.
    pub(crate) integrations: Arc<BTreeSet<IntegrationName>>,
    /// Origins the operator allowed for requests without an integration.
    pub(crate) allowed_origins: Arc<Vec<url::Origin>>,
    pub(crate) http_calls_left: u32,
    pub(crate) deadline: tokio::time::Instant,
    /// Request summaries for the run trace.
    pub(crate) fetches: Vec<Value>,
    /// The run's secret values, masked in what the plugin logs.
    pub(crate) masker: Masker,
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.memory_growing(current, desired, maximum)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        // Masked before the cut, so a secret straddling it leaves no prefix behind.
        let window: String = message.chars().take(4096 + tern_engine::secrets::known::MAX_VALUE_BYTES).collect();
        let message: String = self.masker.mask(&window).chars().take(4096).collect();
        let (plugin, step) = (&*self.plugin, self.step.as_str());
        match level {
            LogLevel::Trace => tracing::trace!(plugin, step, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, step, "{message}"),
            LogLevel::Info => tracing::info!(plugin, step, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, step, "{message}"),
            LogLevel::Error => tracing::error!(plugin, step, "{message}"),
        }
    }

    async fn http_fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if self.http_calls_left == 0 {
            return Err(HttpError::Denied("this step already made its allowed number of http-fetch calls".into()));
        }
        let default_timeout = match &self.calls {
            Calls::None => return Err(outside_a_run()),
            Calls::Journal(c) => c.outbound().client.policy().default_timeout,
            Calls::Replay(_) => REPLAY_TIMEOUT,
        };
        self.http_calls_left -= 1;
        let (prepared, auth) = self.prepare(request, default_timeout)?;
        let mut summary = json!({"method": prepared.method.as_str(), "url": display_url(&prepared.url)});
        if let Some((i, _)) = &auth {
            summary["integration"] = Value::from(i.as_str());
        }
        let result = match &mut self.calls {
            Calls::None => return Err(outside_a_run()),
            Calls::Journal(calls) => calls.send_next(&prepared, auth.as_ref().map(|(i, o)| (i, o))).await,
            Calls::Replay(replay) => {
                let answer = replay_call(replay, &prepared, auth.as_ref().map(|(i, _)| i));
                match answer {
                    Ok((index, response)) => {
                        summary["status"] = Value::from(response.status);
                        summary["fixture"] = Value::from(format!("/http/{index}"));
                        self.fetches.push(summary);
                        return Ok(response);
                    }
                    Err(NotAnswered(words)) => {
                        summary["error"] = Value::from(words.as_str());
                        self.fetches.push(summary);
                        return Err(HttpError::Failed(words));
                    }
                }
            }
        };
        match &result {
            Ok(r) => summary["status"] = Value::from(r.status.as_u16()),
            Err(e) => {
                summary["error"] = Value::from(e.to_string());
                if let StepFailure::Other { code, .. } = e {
                    summary["code"] = Value::from(*code);
                }
            }
        }
        self.fetches.push(summary);
        let resp = result.map_err(to_wit_error)?;
        let headers = resp
            .headers
            .iter()
            .filter(|(k, _)| !k.as_str().eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect();
        Ok(HttpResponse { status: resp.status.as_u16(), headers, body: resp.body })
    }
}

impl HostState {
    /// Checks a plugin's request and turns it into an engine request.
    fn prepare(
        &self,
        r: HttpRequest,
        default_timeout: std::time::Duration,
    ) -> Result<(PreparedRequest, Option<(IntegrationName, EngineOwner)>), HttpError> {
        let denied = |m: String| HttpError::Denied(m);
        let method = match r.method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            other => {
                return Err(denied(format!("method `{other}` is not allowed (GET, POST, PUT, PATCH, DELETE, HEAD)")));
            }
        };
        let url = url::Url::parse(&r.url).map_err(|e| denied(format!("`{}` is not an absolute URL: {e}", r.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(denied(format!("scheme `{}` is not allowed", url.scheme())));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in r.headers {
            if STRIPPED.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                tracing::warn!(plugin = %self.plugin, step = %self.step, header = %name, "removed a credential header the plugin set");
                continue;
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| denied(format!("`{name}` is not a header name")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| denied(format!("the value of `{name}` is not allowed in a header")))?;
            headers.append(name, value);
        }
        let auth = match r.integration {
            None => {
                if !self.allowed_origins.contains(&url.origin()) {
                    return Err(denied(format!(
                        "{} is not an origin this plugin may call; name an integration, or allow it with `tern plugins install FILE --allow-origin ORIGIN`",
                        url.origin().ascii_serialization()
                    )));
                }
                None
            }
            Some(name) => {
                let name = IntegrationName::new(name.as_str()).map_err(|e| denied(e.to_string()))?;
                if !self.integrations.contains(&name) {
                    return Err(denied(format!(
                        "integration `{name}` is not named in this step's configuration (`integration` or `integrations`)"
                    )));
                }
                let owner = match r.token.unwrap_or(TokenOwner::Integration) {
                    TokenOwner::Integration => EngineOwner::Workspace,
                    TokenOwner::Contact => match &self.contact {
                        Some(c) => EngineOwner::Contact(c.clone()),
                        None => return Err(denied("`token: contact` needs a conversation contact with an id".into())),
                    },
                };
                Some((name, owner))
            }
        };
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout =
            r.timeout_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms))).unwrap_or(default_timeout).min(left);
        let body = r.body.filter(|b| !b.is_empty()).map(RequestBody::Bytes);
        if body.is_some() && matches!(method, Method::Get | Method::Head) {
            return Err(denied(format!("{} requests cannot have a body", method.as_str())));
        }
        Ok((PreparedRequest { method, url, headers, body, timeout }, auth))
    }
}

/// A call answered from a fixture's recording: the matching exchange's index and answer, or the
/// words that say what to record.
fn replay_call(
    replay: &Replay,
    r: &PreparedRequest,
    integration: Option<&IntegrationName>,
) -> Result<(usize, HttpResponse), NotAnswered> {
    let body = match &r.body {
        Some(RequestBody::Bytes(b)) => Some(&b[..]),
        _ => None,
    };
    let call =
        Call { method: r.method.as_str(), url: r.url.as_str(), integration: integration.map(|i| i.as_str()), body };
    let a = replay.answer(&call)?;
    Ok((a.index, HttpResponse { status: a.status, headers: a.headers, body: a.body }))
}

/// `http-fetch` where there is no step's run (`describe`).
fn outside_a_run() -> HttpError {
    HttpError::Denied("http-fetch is only available while the step runs".into())
}

/// A failed call in the world's terms. The journal's own failures (`outcome-unknown`, the store
/// could not record the call) are `failed`, with the message that says what happened.
fn to_wit_error(e: StepFailure) -> HttpError {
    let e = match e {
        StepFailure::Http(e) => e,
        other => return HttpError::Failed(other.to_string()),
    };
    let text = e.to_string();
    match e {
        EngineHttpError::Denied { .. }
        | EngineHttpError::OriginNotAllowed { .. }
        | EngineHttpError::Token(TokenError::Unknown { .. } | TokenError::NoTokenSource { .. }) => {
            HttpError::Denied(text)
        }
        EngineHttpError::Timeout { .. } => HttpError::Timeout(text),
        EngineHttpError::TooLarge { .. } => HttpError::TooLarge(text),
        EngineHttpError::Token(TokenError::NeedsReauthorization { .. } | TokenError::NotAuthorized { .. }) => {
            HttpError::NeedsReauthorization(text)
        }
        _ => HttpError::Failed(text),
    }
}
