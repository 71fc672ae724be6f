//! `/v1/channels/{name}/webhook`: where a messaging platform posts its updates for a platform
//! channel (`--kind telegram|whatsapp`). An adapter over the engine's platform modules
//! ([`tern_engine::platforms::Platform`]) and the conversation service:
//!
//! 1. the platform's proof is checked on the headers, before the body is read
//!    ([`ChannelAuth::admit_platform`](tern_engine::channel_auth::ChannelAuth::admit_platform)),
//!    then on the body where the platform signs it (WhatsApp); a refusal is a 401 like every
//!    channel route's;
//! 2. the payload is read; each of its messages is queued and made durable at once (it is
//!    processed after a crash) and the payload acknowledged with 200 without waiting for the
//!    runs: replies go through the platform's API from the outbox;
//! 3. what will never be a message (another update type, a payload Tern cannot read) is
//!    acknowledged with 200 too, and logged and counted: the platform retries what is not
//!    acknowledged, and retrying it would not help. Only "not now" (overloaded, the store down)
//!    is a 429/503, so that the platform sends the payload again; the messages of it already
//!    queued are not run twice (their ids dedupe them).
//!
//! `GET` on the same path answers WhatsApp's verification handshake.
//!
//! Each outcome is counted in `tern_platform_updates_total{channel, outcome}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tern_engine::channel::ChannelRef;
use tern_engine::channel_auth::Refusal;
use tern_engine::conversation::{ConversationError, ConversationId, Inbound, MessageId};
use tern_engine::platforms::{Platform, PlatformMessage, Received};

use super::AppState;
use super::channel_request::{log_refusal, read_body, unauthorized_platform};
use super::error::ApiError;
use super::openapi::ErrorBody;

/// Counts and logs a refusal of the platform's proof, and answers it.
fn refused(state: &AppState, name: &str, refusal: &Refusal) -> Response {
    log_refusal(name, &format!("/v1/channels/{name}/webhook"), refusal);
    // Only a channel found to exist is a label (not one that is unknown, nor one whose lookup
    // failed): any other name would make the metric unbounded.
    let known = matches!(refusal, Refusal::NotAPlatform | Refusal::WrongPlatformProof { .. });
    state.metrics.platform_update(if known { name } else { "unknown" }, refusal.reason());
    unauthorized_platform()
}

/// `POST /v1/channels/{name}/webhook`.
#[utoipa::path(
    post,
    path = "/v1/channels/{name}/webhook",
    tag = "conversations",
    description = "Where a messaging platform posts its updates for the platform channel `name` (Telegram: set it with setWebhook and the channel's secret token; WhatsApp: the callback URL of the Meta app, whose notifications are signed with the app secret; Twilio: the number's incoming-message webhook, signed with the auth token over this URL; Slack: the Events API and interactivity request URL, signed with the signing secret; the url_verification challenge is answered). Messages are acknowledged at once and processed in the background; replies go through the platform's API.",
    params(("name" = String, Path, description = "The channel name")),
    request_body(
        description = "The platform's payload. JSON: Telegram's Update, WhatsApp's whatsapp_business_account notification, a Slack event. A form: Twilio's incoming message, a Slack interactive payload (`payload`)",
        content(
            (serde_json::Value = "application/json"),
            (String = "application/x-www-form-urlencoded"),
        )
    ),
    security(("platform_secret" = []), ("platform_signature" = []), ("twilio_signature" = []), ("slack_signature" = [])),
    responses(
        (status = 200, description = "Acknowledged: the messages queued durably, or a payload Tern does not handle (logged and counted). Telegram: may carry an answerCallbackQuery; Twilio: empty TwiML", content(
            (serde_json::Value = "application/json"),
            (String = "text/xml"),
        )),
        (status = 401, description = "Not the platform's request for this channel (`unauthorized`); the same answer whatever the reason", body = ErrorBody),
        (status = 408, description = "The body did not arrive within 10 s", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 429, description = "Too many messages waiting in this conversation (`Retry-After`): the platform sends it again", body = ErrorBody),
        (status = 503, description = "Overloaded, shutting down or the store down (`Retry-After`): the platform sends it again", body = ErrorBody),
    )
)]
pub async fn post_webhook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = match state.channel_auth().admit_platform(&name, &headers).await {
        Ok(c) => c,
        Err(refusal) => return refused(&state, &name, &refusal),
    };
    let label = channel.name.to_string();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let Some(platform) = &channel.platform else { return unauthorized_platform() };
    // The URL as the platform requested it (Twilio signs it): the public URL and the path.
    let url = format!(
        "{}/v1/channels/{name}/webhook{}",
        state.public_url.as_str().trim_end_matches('/'),
        query.as_deref().map(|q| format!("?{q}")).unwrap_or_default()
    );
    if let Err(refusal) = state.channel_auth().verify_platform(&channel, &headers, &url, &body) {
        return refused(&state, &label, &refusal);
    }
    let received = match platform.receive(tern_engine::json::without_bom(&body)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform update cannot be read; acknowledged so that it is not sent again");
            state.metrics.platform_update(&label, "malformed");
            return acknowledged(platform, &Received::default());
        }
    };
    for what in &received.ignored {
        tracing::info!(channel = %label, update_type = %what.escape_debug(), "a platform update Tern does not handle; acknowledged");
        state.metrics.platform_update(&label, "ignored");
    }
    for s in &received.statuses {
        let status = match s.status.as_str() {
            known @ ("sent" | "delivered" | "read" | "failed") => known,
            _ => "other",
        };
        if status == "failed" {
            tracing::warn!(channel = %label, message = %s.message_id.escape_debug(), recipient = %s.recipient.escape_debug(), error = %s.error.as_deref().unwrap_or_default().escape_debug(), "the platform could not deliver a reply");
        } else {
            tracing::info!(channel = %label, message = %s.message_id.escape_debug(), status, "a reply's status");
        }
        state.metrics.platform_update(&label, &format!("status-{status}"));
        // On the run's history, when the platform says whose reply it is. Best effort: the
        // status is logged above whatever happens there.
        let _ = state.conversations.record_delivery(s).await;
    }
    for m in &received.messages {
        if let Err(answer) = queue(&state, &channel, &label, m).await {
            return answer;
        }
    }
    acknowledged(platform, &received)
}

/// Queues one message durably; `Err` is the answer that makes the platform send the payload
/// again (not now). A message that will never be taken is logged, counted and skipped.
async fn queue(
    state: &AppState,
    channel: &tern_engine::channel::Channel,
    label: &str,
    m: &PlatformMessage,
) -> Result<(), Response> {
    let inbound = match inbound(channel, m) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform message has ids Tern cannot take; acknowledged");
            state.metrics.platform_update(label, "malformed");
            return Ok(());
        }
    };
    state.metrics.message();
    let queued = match state.conversations.submit(inbound, None) {
        Ok(mut ticket) => state.conversations.accept(&mut ticket).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match queued {
        Ok(()) => {
            state.metrics.platform_update(label, "accepted");
            Ok(())
        }
        Err(e) if e.is_retryable() => {
            state.metrics.platform_update(label, "retry-later");
            Err(ApiError::from(e).into_response())
        }
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform message was refused; acknowledged so that it is not sent again");
            state.metrics.platform_update(label, e.code());
            Ok(())
        }
    }
}

/// `GET /v1/channels/{name}/webhook`: WhatsApp's verification handshake.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}/webhook",
    tag = "conversations",
    description = "WhatsApp's verification handshake: Meta sends it when the callback URL is set in the app dashboard. The answer is `hub.challenge` when `hub.mode` is `subscribe` and `hub.verify_token` is the channel's.",
    params(
        ("name" = String, Path, description = "The channel name"),
        ("hub.mode" = Option<String>, Query, description = "`subscribe`"),
        ("hub.verify_token" = Option<String>, Query, description = "The channel's verify token"),
        ("hub.challenge" = Option<String>, Query, description = "What to answer"),
    ),
    responses(
        (status = 200, description = "The challenge, as plain text", body = String, content_type = "text/plain"),
        (status = 403, description = "Not the channel's verify token, or not a WhatsApp channel (`forbidden`); the same answer whatever the reason", body = ErrorBody),
    )
)]
pub async fn get_webhook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this is the verification of a WhatsApp channel's callback URL: Meta sends hub.mode=subscribe with the verify token typed into the app dashboard; it is not the channel's",
        )
        .code("forbidden")
        .into_response()
    };
    let channel = match tern_engine::channel::ChannelName::new(&name) {
        Ok(n) => state.channels.channel(&n).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(channel) = channel else {
        tracing::warn!(channel = %name.escape_debug(), "a webhook verification for a channel that does not exist");
        state.metrics.platform_update("unknown", "no-such-channel");
        return forbidden();
    };
    let label = channel.name.to_string();
    let Some(Platform::WhatsApp(whatsapp)) = &channel.platform else {
        tracing::warn!(channel = %label, "a webhook verification for a channel that is not WhatsApp's");
        state.metrics.platform_update(&label, "not-a-whatsapp-channel");
        return forbidden();
    };
    match tern_engine::platforms::whatsapp::handshake(whatsapp, query.as_deref().unwrap_or_default()) {
        Ok(challenge) => {
            tracing::info!(channel = %label, "the webhook verification passed");
            state.metrics.platform_update(&label, "verified");
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], challenge).into_response()
        }
        Err(refusal) => {
            tracing::warn!(channel = %label, reason = refusal.reason(), "a webhook verification was refused");
            state.metrics.platform_update(&label, refusal.reason());
            forbidden()
        }
    }
}

/// The message in the channel's conversation of its chat.
fn inbound(channel: &tern_engine::channel::Channel, m: &PlatformMessage) -> Result<Inbound, ConversationError> {
    let conversation = ConversationId::for_channel(&ChannelRef::of(channel), &m.chat_id)?;
    let mut inbound = Inbound::message(conversation, Some(MessageId::from_channel(m.message_id.as_str())?), &m.text);
    inbound.contact = m.contact.clone();
    inbound.metadata = m.metadata.clone();
    Ok(inbound)
}

/// `200` with the platform's acknowledgement ([`Platform::acknowledgement`]).
fn acknowledged(platform: &Platform, received: &Received) -> Response {
    let (content_type, body) = platform.acknowledgement(received);
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
