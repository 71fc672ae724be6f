//! `tern serve`: the conversation server. `app(state)` is the axum router; handlers are in
//! their own modules.
//!
//! The handlers are adapters: conversations go through
//! [`Conversations`](tern_engine::conversation::Conversations) (ordering, dedupe, runs detached
//! from requests, history, the webhook outbox), integrations through
//! [`Integrations`](tern_engine::integrations::Integrations).

mod admin;
mod events;
pub mod listen;
mod mask;
mod messages;
mod metrics;
pub mod pages;
#[cfg(test)]
mod tests;
mod web;

pub use metrics::Metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tern_engine::conversation::Conversations;
use tern_engine::conversation::{ConversationId, Inbound, MessageId, Trigger};
use tern_engine::integrations::{CallbackParams, Integrations};
use tern_engine::secrets::LayeredSecrets;
use tern_engine::store::SqliteStore;

/// Everything the handlers share.
pub struct AppState {
    /// The conversation service.
    pub conversations: Conversations,
    /// The store (integrations, secrets).
    pub store: Arc<SqliteStore>,
    /// The integrations service.
    pub integrations: Arc<Integrations>,
    /// `{{secrets.NAME}}` values; the admin API updates the stored layer.
    pub secrets: Arc<LayeredSecrets>,
    /// The bearer token for the admin API.
    pub admin_token: SecretString,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The web page's CSRF token (random per process).
    pub csrf: SecretString,
    /// Most requests handled at once; more get 503 with Retry-After.
    pub max_concurrency: usize,
    /// Longest time one request may take.
    pub request_timeout: std::time::Duration,
    /// How long a message request waits for the run's answer before answering 202 with the
    /// URL to fetch it from.
    pub reply_wait: std::time::Duration,
}

impl AppState {
    fn is_admin(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), self.admin_token.expose_secret().as_bytes()).into()
    }

    /// How long a request may wait for a run: the reply wait, within the request timeout.
    pub fn answer_wait(&self) -> std::time::Duration {
        let margin = std::time::Duration::from_millis(500);
        self.reply_wait.min(self.request_timeout.saturating_sub(margin)).max(std::time::Duration::from_millis(100))
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
        .route("/v1/conversations/{id}/messages/{message_id}", get(messages::get_message))
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
    match state.conversations.run(&id).await {
        Ok(Some(run)) => axum::Json(run).into_response(),
        Ok(None) => {
            error(StatusCode::NOT_FOUND, format!("no run {id} (runs are kept as long as --history-retention says)"))
        }
        Err(e) => {
            tracing::error!(run = %id, error = %e, "could not read a run");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be read; see the server log")
        }
    }
}

/// Resumes a conversation waiting for a contact's login with the outcome. The replies reach
/// the channel through the webhook.
async fn resume_after_login(
    state: &Arc<AppState>,
    done: &tern_engine::integrations::Completed,
    error: Option<String>,
) -> bool {
    let (Some(conversation), tern_engine::TokenOwner::Contact(contact)) = (&done.conversation, &done.owner) else {
        return false;
    };
    let Ok(conversation) = ConversationId::new(conversation.clone()) else { return false };
    let mut login = json!({"integration": done.integration.as_str(), "success": error.is_none()});
    if let Some(e) = error {
        login["error"] = json!(e);
    }
    let mut inbound = Inbound::message(conversation, Some(MessageId::generated()), "");
    inbound.contact.insert("id".into(), json!(contact));
    inbound.trigger = Trigger::Resume { event: json!({"login": login}) };
    match state.conversations.submit(inbound, None) {
        Ok(mut ticket) => {
            if ticket.wait_for(state.answer_wait()).await.is_none() {
                // The run goes on; make sure a crash cannot lose it.
                if let Err(e) = state.conversations.accept(&mut ticket).await {
                    tracing::warn!(error = %e, "could not make the resumed conversation durable");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not resume the conversation after a login"),
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
                return pages::callback_page(&Ok(())).into_response();
            }
            axum::response::Redirect::to(&format!("/?authorized={}", done.integration)).into_response()
        }
        Err((context, e)) => {
            let message = e.to_string();
            if let Some(done) = context
                && resume_after_login(&state, &done, Some(message.clone())).await
            {
                return pages::callback_page(&Err(message)).into_response();
            }
            let q: String =
                url::form_urlencoded::Serializer::new(String::new()).append_pair("error", &message).finish();
            axum::response::Redirect::to(&format!("/?{q}")).into_response()
        }
    }
}
