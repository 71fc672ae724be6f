//! `tern serve`: the conversation server. `app(state)` is the axum router; handlers are in
//! their own modules.
//!
//! Messages of one conversation are processed one at a time, in arrival order (an async mutex
//! per conversation); different conversations run in parallel. A paused run is stored
//! (encrypted) with the content hash of the flow version it started with, so it resumes on
//! that version after a reload or a restart.

mod admin;
mod events;
pub mod listen;
mod mask;
mod messages;
mod metrics;
mod web;

pub use metrics::Metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Digest;
use tern_engine::integrations::{CallbackParams, Integrations};
use tern_engine::store::SqliteStore;
use tern_engine::{CompiledFlow, Engine, LoadOptions, load_flow};

/// A loaded flow and its version.
pub struct LoadedFlow {
    /// SHA-256 of the source.
    pub hash: String,
    /// The compiled flow.
    pub flow: Arc<CompiledFlow>,
}

/// Everything the handlers share.
pub struct AppState {
    pub engine: Engine,
    pub store: Arc<SqliteStore>,
    pub integrations: Arc<Integrations>,
    /// `{{secrets.NAME}}` values; the admin API updates the stored layer.
    pub secrets: Arc<crate::cli::context::LayeredSecrets>,
    /// Flows that can start, by trigger priority (highest first), then id; replaced as a
    /// whole on reload.
    pub flows: std::sync::RwLock<Arc<Vec<LoadedFlow>>>,
    /// Every flow version seen by this process, by hash.
    pub versions: Mutex<HashMap<String, Arc<CompiledFlow>>>,
    /// One lock per conversation being processed.
    pub locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How long a paused run waits for the next message.
    pub pause_ttl_secs: i64,
    /// The bearer token for the admin API.
    pub admin_token: SecretString,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The web page's CSRF token (random per process).
    pub csrf: SecretString,
    /// Where every run's replies are also posted, when set.
    pub webhook: Option<url::Url>,
    /// Most requests handled at once; more get 503 with Retry-After.
    pub max_concurrency: usize,
    /// Longest time one request may take.
    pub request_timeout: std::time::Duration,
}

/// SHA-256 of a flow's source, hex.
pub fn flow_hash(source: &str) -> String {
    sha2::Sha256::digest(source.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl AppState {
    /// The flow version with this hash: in memory, or recompiled from the stored source.
    pub async fn version(&self, hash: &str) -> Option<Arc<CompiledFlow>> {
        if let Some(f) = self.versions.lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
            return Some(f.clone());
        }
        let source = self.store.flow_version(hash).await.ok().flatten()?;
        let opts = LoadOptions { registry: &self.engine.registry, integrations: None, limits: Default::default() };
        let flow = Arc::new(load_flow(&source, &opts).ok()?);
        self.versions.lock().unwrap_or_else(|p| p.into_inner()).insert(hash.to_string(), flow.clone());
        Some(flow)
    }

    fn is_admin(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), self.admin_token.expose_secret().as_bytes()).into()
    }
}

/// The router: every route has a body limit (64 KiB), a request timeout and a concurrency
/// limit that answers 503 with `Retry-After` instead of queueing without bound.
pub fn app(state: Arc<AppState>) -> Router {
    let limits = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(state.max_concurrency)
        .timeout(state.request_timeout);
    Router::new()
        .route("/v1/conversations/{id}/messages", post(messages::post_message))
        .route("/v1/runs/{id}", get(get_run))
        .route("/oauth/callback", get(callback))
        .route("/", get(web::page))
        .route("/integrations", post(web::add))
        .route("/integrations/{name}/authorize", post(web::authorize))
        .route("/v1/integrations", get(web::api_list))
        .route("/v1/integrations/{name}", put(admin::put_integration).delete(admin::delete_integration))
        .route("/v1/secrets", get(admin::list_secrets))
        .route("/v1/secrets/{name}", put(admin::put_secret).delete(admin::delete_secret))
        .route("/v1/flows", get(admin::list_flows))
        .route("/v1/integrations/{name}/events", post(events::post_event))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(limits)
        .layer(axum::middleware::from_fn(mask::mask_answer))
        .with_state(state)
}

async fn overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "the server is at its concurrency limit; retry shortly");
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the request took longer than the server's request timeout");
    }
    error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// A JSON error body with a status.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn get_run(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.is_admin(&headers) {
        return error(StatusCode::UNAUTHORIZED, "the admin API needs `Authorization: Bearer <admin token>`");
    }
    match state.store.run(&id).await {
        Ok(Some(result)) => ([(axum::http::header::CONTENT_TYPE, "application/json")], result).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Resumes a conversation waiting for a contact's login with the outcome.
async fn resume_after_login(
    state: &Arc<AppState>,
    done: &tern_engine::integrations::Completed,
    error: Option<String>,
) -> bool {
    let (Some(conversation), tern_engine::TokenOwner::Contact(contact)) = (&done.conversation, &done.owner) else {
        return false;
    };
    let mut login = json!({"integration": done.integration.as_str(), "success": error.is_none()});
    if let Some(e) = error {
        login["error"] = json!(e);
    }
    let mut who = serde_json::Map::new();
    who.insert("id".into(), json!(contact));
    let msg = messages::IncomingMessage { text: String::new(), contact: Some(who), message_id: None };
    if let Err(e) = messages::handle_locked(state, conversation, msg, Some(json!({"login": login}))).await {
        tracing::warn!(error = %e, "could not resume the conversation after a login");
    }
    true
}

/// Completes an authorization. An operator's goes back to the integrations page with the
/// banner; a contact's resumes the conversation that asked for it and shows the outcome.
async fn callback(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<CallbackParams>,
) -> Response {
    match state.integrations.complete_with_context(&q).await {
        Ok(done) => {
            state.integrations.invalidate(&done.integration);
            if resume_after_login(&state, &done, None).await {
                return crate::cli::callback_page(&Ok(())).into_response();
            }
            axum::response::Redirect::to(&format!("/?authorized={}", done.integration)).into_response()
        }
        Err((context, e)) => {
            let message = e.to_string();
            if let Some(done) = context
                && resume_after_login(&state, &done, Some(message.clone())).await
            {
                return crate::cli::callback_page(&Err(message)).into_response();
            }
            let q: String =
                url::form_urlencoded::Serializer::new(String::new()).append_pair("error", &message).finish();
            axum::response::Redirect::to(&format!("/?{q}")).into_response()
        }
    }
}
