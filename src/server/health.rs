//! `GET /livez` (the process answers), `GET /readyz` (the store answers a query and takes a
//! write, see [`tern_store::health`]) and `GET /healthz`, the documented health check, which
//! is readiness: a load balancer that checks it stops sending messages to an instance whose
//! store is down, and sends them again when it is back.
//!
//! Readiness is checked at most once per [`READY_CACHE`] (requests in between get the last
//! result; one check at a time), so that a flood of `/readyz` requests cannot turn into a
//! flood of writes. The answer names the failed check and its fault in words; the database's
//! location and the driver's message go to the log, once when readiness changes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tern_store::health::Readiness;

use super::AppState;
use super::openapi::ErrorBody;

/// How long a readiness result is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// What `Retry-After` says on a 503 of readiness, in seconds.
pub const NOT_READY_RETRY_SECS: u32 = 5;

/// The last readiness result, and whether it was logged.
#[derive(Debug, Default)]
pub struct ReadyCache {
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Readiness)>>,
}

impl ReadyCache {
    /// The store's readiness, checked again when the last result is older than [`READY_CACHE`].
    /// A change is logged: the failed check with its detail, or that the store is back.
    pub async fn get(&self, store: &dyn tern_store::Backend) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < READY_CACHE
        {
            return r.clone();
        }
        let fresh = store.readiness().await;
        let before = last.as_ref().map(|(_, r)| r);
        log_change(before, &fresh);
        *last = Some((tokio::time::Instant::now(), fresh.clone()));
        fresh
    }
}

/// Logs a change of readiness (and the first result when it is not ready).
fn log_change(before: Option<&Readiness>, now: &Readiness) {
    let faults = |r: &Readiness| r.checks.iter().map(|c| c.fault).collect::<Vec<_>>();
    if before.is_some_and(|b| faults(b) == faults(now)) || (before.is_none() && now.is_ready()) {
        return;
    }
    match now.failed() {
        Some(check) => tracing::error!(
            check = check.name,
            fault = %check.fault.map(|f| f.to_string()).unwrap_or_default(),
            error = %check.detail.as_deref().unwrap_or(""),
            "not ready: a store check failed; messages are answered only once stored, and fail while the store refuses writes"
        ),
        None => tracing::info!("ready again: the store answers and takes writes"),
    }
}

/// `GET /livez`'s and a passing `GET /readyz`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// The checks (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
}

/// One readiness check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckOutcome {
    /// `store-query` (the store answers a query) or `store-write` (it takes a write).
    #[schema(value_type = String, example = "store-write")]
    pub name: &'static str,
    /// `ok` or `failed`.
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// Why it failed: `unreachable`, `timed-out`, `read-only`, `disk-full`, `locked`, `io`,
    /// `not-available`, `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "disk-full")]
    pub fault: Option<tern_store::health::Fault>,
    /// The fault in words (never the database's location or the driver's message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failing `GET /readyz`'s answer: the error body ([`ErrorBody`]'s `error` and `code`) with
/// the checks.
#[derive(Debug, Serialize)]
pub struct NotReady {
    /// `unavailable`.
    pub status: &'static str,
    /// Which check failed and why, in words.
    pub error: String,
    /// `not-ready`.
    pub code: &'static str,
    /// Every check.
    pub checks: Vec<CheckOutcome>,
}

fn outcomes(r: &Readiness) -> Vec<CheckOutcome> {
    r.checks
        .iter()
        .map(|c| CheckOutcome {
            name: c.name,
            status: if c.fault.is_some() { "failed" } else { "ok" },
            fault: c.fault,
            error: c.fault.map(|f| f.to_string()),
        })
        .collect()
}

/// `GET /livez`.
#[utoipa::path(
    get,
    path = "/livez",
    tag = "operations",
    description = "Liveness: the process answers HTTP. It does not look at the store (restarting an instance does not fix a database outage); use `/readyz` (or `/healthz`) to route traffic.",
    responses(
        (status = 200, description = "The process answers", body = Health),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn livez() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", checks: Vec::new() })
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    description = "Readiness: the store answers a query and takes a write, each within 2 s (checked at most once a second). Comes back by itself when the database does. `/healthz` is the same check.",
    responses(
        (status = 200, description = "Ready: every check passed", body = Health),
        (status = 503, description = "Not ready (`not-ready`, `Retry-After`): the error body with `status: \"unavailable\"` and `checks` (each check's `name`, `status`, and when it failed its `fault` and `error`); or at the concurrency limit", body = ErrorBody, headers(("retry-after" = u32, description = "Seconds"))),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    ready_answer(&state).await
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    description = "The documented health check: readiness, the same as `/readyz` (the store answers a query and takes a write). For liveness alone, `/livez`.",
    responses(
        (status = 200, description = "Ready: every check passed", body = Health),
        (status = 503, description = "Not ready (`not-ready`, `Retry-After`): the error body with `status: \"unavailable\"` and `checks` (each check's `name`, `status`, and when it failed its `fault` and `error`); or at the concurrency limit", body = ErrorBody, headers(("retry-after" = u32, description = "Seconds"))),
    )
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    ready_answer(&state).await
}

/// The store's readiness; when it fails, the conversation service is told, so that no message
/// is answered before its commit until one succeeds again.
pub async fn check(state: &AppState) -> Readiness {
    let r = state.readiness.get(&*state.store).await;
    if !r.is_ready() {
        state.conversations.store_refuses_writes();
    }
    r
}

/// How often `tern serve` checks readiness on its own (logging a change), load balancer or
/// not.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Checks readiness every [`CHECK_EVERY`], for as long as the server runs.
pub async fn watch(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        check(&state).await;
    }
}

async fn ready_answer(state: &AppState) -> Response {
    let r = check(state).await;
    let checks = outcomes(&r);
    let Some(failed) = r.failed() else {
        return axum::Json(Health { status: "ok", checks }).into_response();
    };
    let fault = failed.fault.map(|f| f.to_string()).unwrap_or_default();
    let body = NotReady {
        status: "unavailable",
        error: format!(
            "not ready: the check `{}` failed: {fault}; send traffic elsewhere until it passes (the server log has the cause)",
            failed.name
        ),
        code: "not-ready",
        checks,
    };
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(NOT_READY_RETRY_SECS));
    resp
}
