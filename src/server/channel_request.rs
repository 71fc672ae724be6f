//! The edge's extractor: [`ChannelRequest`], a request authenticated as its channel's before
//! anything of it is stored or run. The channel is the path's `{name}`
//! (`/v1/channels/{name}/…`) or `default` (`/v1/conversations/…`); the check is
//! [`tern_engine::channel_auth`] (a bearer token, or a Standard Webhooks signature over the raw
//! body with replay protection). The raw body is read once here, and the handler parses JSON
//! from it.
//!
//! Every refusal is logged with its own reason (never a secret value) and answered with the
//! same 401 ([`unauthorized`]), whether the channel, the conversation or the message exists or
//! not.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use tern_engine::channel::{Channel, DEFAULT_CHANNEL};
use tern_engine::channel_auth::{Admission, ChannelAuth, Credential};

use super::AppState;
use super::error::ApiError;

/// The one answer to a request without valid channel credentials.
pub const UNAUTHORIZED: &str = "this route needs the channel's credentials: `Authorization: Bearer <channel token>`, or a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) made with the channel's secret";

/// Largest body read (the router's limit).
const MAX_BODY: usize = 64 * 1024;

/// Longest a request's body (at most 64 KiB) may take to arrive once its headers passed the
/// channel's check (a bearer token, or signature headers); then `408`.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The one answer to a request to a platform webhook route without the platform's proof.
pub const UNAUTHORIZED_PLATFORM: &str = "this route takes a messaging platform's updates for a platform channel, with the platform's proof: Telegram's secret token in `X-Telegram-Bot-Api-Secret-Token`; WhatsApp's `X-Hub-Signature-256` by the Meta app secret; Twilio's `X-Twilio-Signature` by the auth token over the public URL; Slack's `X-Slack-Signature` by the signing secret, within 5 minutes";

/// `401` with `{"error": UNAUTHORIZED, "code": "unauthorized"}` and `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> axum::response::Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED).code("unauthorized").into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `401` of a platform webhook route: [`UNAUTHORIZED_PLATFORM`], the same whatever the reason.
pub fn unauthorized_platform() -> axum::response::Response {
    ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED_PLATFORM).code("unauthorized").into_response()
}

/// A request that carries its channel's credentials, with its path parameters and raw body.
#[derive(Debug)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: Arc<Channel>,
    /// How the request proved it is the channel's.
    pub credential: Credential,
    /// The path parameters (`id`, `message_id`, …) as the caller wrote them, decoded.
    pub params: HashMap<String, String>,
    /// The request's headers.
    pub headers: axum::http::HeaderMap,
    /// The raw body (at most 64 KiB).
    pub body: Bytes,
    /// What the caller sent, as the masking layer kept it (answers are masked with it).
    pub caller: Option<super::mask::CallerInput>,
}

impl ChannelRequest {
    /// A path parameter (empty when the route has none of that name, which the routes rule out).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    /// The conversation of the path's `{id}` in this channel (its incarnation's).
    ///
    /// # Errors
    /// A bad id.
    pub fn conversation(&self) -> Result<tern_engine::conversation::ConversationId, ApiError> {
        let channel = tern_engine::channel::ChannelRef::of(&self.channel);
        Ok(tern_engine::conversation::ConversationId::for_channel(&channel, self.param("id"))?)
    }

    /// The body parsed as JSON, exactly as `axum::Json` does it (415 without a JSON content
    /// type, 400 for malformed JSON, 422 for JSON of the wrong shape).
    ///
    /// # Errors
    /// Axum's [`JsonRejection`](axum::extract::rejection::JsonRejection).
    pub async fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, axum::extract::rejection::JsonRejection> {
        json_body(&self.headers, &self.body).await
    }
}

/// A JSON request body read the one way every route reads JSON: one leading UTF-8 byte order
/// mark is skipped ([`tern_engine::json`]), then exactly as `axum::Json` does it (415 without
/// a JSON content type, 400 for malformed JSON, 422 for JSON of the wrong shape).
///
/// # Errors
/// Axum's [`JsonRejection`](axum::extract::rejection::JsonRejection).
pub async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &Bytes,
) -> Result<T, axum::extract::rejection::JsonRejection> {
    let bom = body.len() - tern_engine::json::without_bom(body).len();
    let mut req = Request::new(axum::body::Body::from(body.slice(bom..)));
    *req.headers_mut() = headers.clone();
    axum::Json::<T>::from_request(req, &()).await.map(|axum::Json(v)| v)
}

/// The body of a request whose headers passed its channel's check: at most 64 KiB (else
/// `413`), within [`BODY_READ_TIMEOUT`] (else `408`).
///
/// # Errors
/// The answer to send instead.
pub async fn read_body(body: axum::body::Body) -> Result<Bytes, axum::response::Response> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is over 64 KiB").into_response())
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        )
        .into_response()),
    }
}

/// Logs a refused channel request: the channel name as sent (escaped, cut), the path, the
/// reason (never a secret value).
pub fn log_refusal(name: &str, path: &str, refusal: &tern_engine::channel_auth::Refusal) {
    let shown: String = name.chars().take(64).collect();
    tracing::warn!(
        channel = %shown.escape_debug(),
        path = %path.chars().take(256).collect::<String>().escape_debug(),
        reason = refusal.reason(),
        error = %refusal,
        "refused a channel request"
    );
}

impl AppState {
    /// The check of channel requests over this server's channels, store and clock.
    pub(crate) fn channel_auth(&self) -> ChannelAuth {
        ChannelAuth { channels: self.channels.clone(), seen: self.store.clone(), clock: tern_engine::clock::system() }
    }
}

impl FromRequest<Arc<AppState>> for ChannelRequest {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        // A path that does not decode names no channel: refused like an unknown one.
        let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        let name = if parts.uri.path().starts_with("/v1/channels/") {
            params.get("name").cloned().unwrap_or_default()
        } else {
            DEFAULT_CHANNEL.to_string()
        };
        // The headers first: a request without valid credentials is refused before its body is
        // read, so that it cannot hold a connection by sending the body slowly.
        let auth = state.channel_auth();
        let admitted = auth.admit(&name, &parts.headers).await;
        let body = match &admitted {
            Ok(_) => read_body(body).await?,
            Err(_) => Bytes::new(),
        };
        let authenticated = match admitted {
            Ok(Admission::Decided(channel, credential)) => Ok((channel, credential)),
            Ok(Admission::Signed(channel)) => auth.verify(channel, &parts.headers, &body).await,
            Err(refusal) => Err(refusal),
        };
        match authenticated {
            Ok((channel, credential)) => {
                if matches!(credential, Credential::Open) {
                    tracing::debug!(channel = %channel.name, "request to an open channel (--insecure-open-channel)");
                }
                let caller = parts.extensions.get::<super::mask::CallerInput>().cloned();
                Ok(Self { channel, credential, params, headers: parts.headers, body, caller })
            }
            Err(refusal) => {
                log_refusal(&name, parts.uri.path(), &refusal);
                Err(unauthorized())
            }
        }
    }
}
