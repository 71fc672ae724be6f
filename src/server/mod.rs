//! `tern serve`: the conversation server. `app(state)` is the axum router; handlers are in
//! their own modules.
//!
//! The handlers are adapters: conversations go through
//! [`Conversations`](tern_engine::conversation::Conversations) (ordering, dedupe, runs detached
//! from requests, history, the webhook outbox), integrations through
//! [`Integrations`](tern_integrations::Integrations).

mod admin;
mod auth;
mod channel_admin;
pub mod channel_request;
pub mod console;
mod error;
mod events;
pub mod health;
mod incoming;
mod json_errors;
pub mod listen;
mod mask;
mod messages;
mod metrics;
pub mod openapi;
pub mod pages;
mod platform_webhook;
mod runs;
#[cfg(test)]
mod tests;
pub mod web_chat;

pub use metrics::Metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use secrecy::SecretString;
use serde_json::json;
use tern_engine::conversation::Conversations;
use tern_engine::conversation::{ConversationId, Inbound, MessageId, Trigger};
use tern_engine::secrets::LayeredSecrets;
use tern_integrations::{CallbackParams, Integrations};
use tern_store::Backend;

/// Everything the handlers share.
pub struct AppState {
    /// The conversation service.
    pub conversations: Conversations,
    /// The store (integrations, secrets).
    pub store: Arc<dyn Backend>,
    /// The integrations service.
    pub integrations: Arc<Integrations>,
    /// Where channels are looked up by name: the edge for every message request (their
    /// credentials, see [`channel_request`]) and the outbox.
    pub channels: Arc<dyn tern_engine::channel::ChannelDirectory>,
    /// The channels service behind `channels`: the admin API and the console save and remove
    /// channels through it.
    pub channel_service: Arc<tern_engine::channels::Channels>,
    /// `{{secrets.NAME}}` values; the admin API updates the stored layer.
    pub secrets: Arc<LayeredSecrets>,
    /// The bearer token for the admin API.
    pub admin_token: SecretString,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Console sign-in sessions (each with its CSRF token).
    pub sessions: console::session::Sessions,
    /// Whether session cookies are `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Flow files in the flow directory that did not load, with their diagnostics (the console
    /// shows them).
    pub invalid_flows: std::sync::RwLock<Vec<InvalidFlow>>,
    /// Most requests handled at once; more get 503 with Retry-After.
    pub max_concurrency: usize,
    /// Longest time one request may take.
    pub request_timeout: std::time::Duration,
    /// How long a message request waits for the run's answer before answering 202 with the
    /// URL to fetch it from.
    pub reply_wait: std::time::Duration,
    /// The last readiness check of the store (`/readyz`, `/healthz`).
    pub readiness: health::ReadyCache,
    /// Where the server is reached from outside (`--public-url`): the URL a platform that signs
    /// it (Twilio) requested is this and the route's path.
    pub public_url: url::Url,
    /// The web chat's limits and open streams.
    pub web: web_chat::WebEdge,
    /// The step plugins loaded at start (the console's plugin page); installing one needs a
    /// restart.
    pub plugins: Vec<tern_plugins::PluginSummary>,
}

impl AppState {
    /// How long a request may wait for a run: the reply wait, within the request timeout.
    pub fn answer_wait(&self) -> std::time::Duration {
        let margin = std::time::Duration::from_millis(500);
        self.reply_wait.min(self.request_timeout.saturating_sub(margin)).max(std::time::Duration::from_millis(100))
    }
}

/// A flow file that did not load.
#[derive(Clone, Debug)]
pub struct InvalidFlow {
    /// The file.
    pub file: String,
    /// Its diagnostics, one line each (`line:col: error[code] at /pointer: message`).
    pub problems: Vec<String>,
}

/// One route: the method, the path (axum's `{param}` syntax, which is also OpenAPI's) and the
/// handler.
pub type Route = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// Every route of the server. [`app`] serves exactly these, and the OpenAPI document
/// ([`openapi`]) describes each of them (a test compares the two).
pub fn routes() -> Vec<Route> {
    vec![
        (Method::POST, "/v1/conversations/{id}/messages", post(messages::post_message)),
        (Method::GET, "/v1/conversations/{id}/messages/{message_id}", get(messages::get_message)),
        (Method::POST, "/v1/channels/{name}/conversations/{id}/messages", post(messages::post_channel_message)),
        (
            Method::GET,
            "/v1/channels/{name}/conversations/{id}/messages/{message_id}",
            get(messages::get_channel_message),
        ),
        (Method::POST, "/v1/channels/{name}/webhook", post(platform_webhook::post_webhook)),
        (Method::GET, "/v1/channels/{name}/webhook", get(platform_webhook::get_webhook)),
        (Method::GET, "/v1/channels/{name}/web/widget.js", get(web_chat::get_widget_js)),
        (Method::GET, "/v1/channels/{name}/web/widget.css", get(web_chat::get_widget_css)),
        // The visitors' routes answer the browser's CORS preflight (OPTIONS) too.
        (Method::POST, "/v1/channels/{name}/web/sessions", post(web_chat::post_session).options(web_chat::preflight)),
        (Method::POST, "/v1/channels/{name}/web/messages", post(web_chat::post_message).options(web_chat::preflight)),
        (Method::GET, "/v1/channels/{name}/web/history", get(web_chat::get_history).options(web_chat::preflight)),
        (Method::GET, "/v1/channels/{name}/web/stream", get(web_chat::get_stream).options(web_chat::preflight)),
        (Method::GET, "/v1/runs", get(runs::list_runs)),
        (Method::GET, "/v1/runs/{id}", get(runs::get_run)),
        (Method::GET, "/oauth/callback", get(callback)),
        (Method::GET, "/v1/integrations", get(admin::api_list)),
        (Method::PUT, "/v1/integrations/{name}", put(admin::put_integration)),
        (Method::DELETE, "/v1/integrations/{name}", delete(admin::delete_integration)),
        (Method::GET, "/v1/secrets", get(admin::list_secrets)),
        (Method::PUT, "/v1/secrets/{name}", put(admin::put_secret)),
        (Method::DELETE, "/v1/secrets/{name}", delete(admin::delete_secret)),
        (Method::GET, "/v1/flows", get(admin::list_flows)),
        (Method::GET, "/v1/channels", get(channel_admin::list_channels)),
        (Method::GET, "/v1/channels/{name}", get(channel_admin::get_channel)),
        (Method::PUT, "/v1/channels/{name}", put(channel_admin::put_channel)),
        (Method::DELETE, "/v1/channels/{name}", delete(channel_admin::delete_channel)),
        (Method::POST, "/v1/integrations/{name}/events", post(events::post_event)),
        (Method::GET, "/healthz", get(health::healthz)),
        (Method::GET, "/livez", get(health::livez)),
        (Method::GET, "/readyz", get(health::readyz)),
        (Method::GET, "/metrics", get(metrics_text)),
        (Method::GET, "/openapi.json", get(openapi::openapi_json)),
    ]
}

/// The router: every route has a body limit (64 KiB), a request timeout and a concurrency
/// limit that answers 503 with `Retry-After` instead of queueing without bound. Every error
/// answer is JSON (see [`json_errors`]), unknown paths included.
pub fn app(state: Arc<AppState>) -> Router {
    let limits = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(state.max_concurrency)
        .timeout(state.request_timeout);
    // Every console page shows a banner while a channel is open (`--insecure-open-channel`).
    let mut router =
        console::router().layer(axum::middleware::from_fn_with_state(state.clone(), console::open_channels::banner));
    for (_, path, handler) in routes() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        // Inside the limits: the masking layer reads request bodies, so that buffering counts
        // against the concurrency limit and the request timeout like every handler's.
        .layer(axum::middleware::from_fn(mask::mask_answer))
        .layer(limits)
        .layer(axum::middleware::from_fn(json_errors::json_errors))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

/// Every answer is private to its caller (a contact's replies, run history, channel
/// settings): no cache between Tern and the caller keeps it (`Cache-Control: no-store`, unless
/// a route says otherwise), and no browser guesses its type.
async fn no_store(mut r: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    r
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route; GET /openapi.json lists them")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "this route does not take this method; GET /openapi.json lists them")
}

async fn overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "the server is at its concurrency limit; retry shortly");
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "the request took longer than the server's request timeout");
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
    }
    error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text", body = String),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = openapi::ErrorBody),
    )
)]
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(state.conversations.activity()),
    )
        .into_response()
}

pub(crate) use json_errors::rejection_text;

/// A JSON error body with a status (an [`ApiError`](error::ApiError) answered at once).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    error::ApiError::new(status, message).into_response()
}

/// Resumes a conversation waiting for a contact's login with the outcome. The replies reach
/// the channel through the webhook.
async fn resume_after_login(state: &Arc<AppState>, done: &tern_integrations::Completed, error: Option<String>) -> bool {
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
#[utoipa::path(
    get,
    path = "/oauth/callback",
    tag = "integrations",
    params(CallbackParams),
    responses(
        (status = 200, description = "A contact's login finished: the outcome as a page (the conversation resumes)", content_type = "text/html", body = String),
        (status = 303, description = "An operator's authorization: back to the integrations page with the outcome", headers(("location" = String, description = "`/?authorized=NAME` or `/?error=…`"))),
        (status = 400, description = "The query string is malformed", body = openapi::ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = openapi::ErrorBody),
    )
)]
async fn callback(
    State(state): State<Arc<AppState>>,
    query: Result<axum::extract::Query<CallbackParams>, QueryRejection>,
) -> Response {
    let axum::extract::Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the callback's query string is malformed: {}", rejection_text(&e.body_text())),
            );
        }
    };
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
