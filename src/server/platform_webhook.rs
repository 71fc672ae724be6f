//! `POST /v1/channels/{name}/webhook`: where a messaging platform posts its updates for a
//! platform channel (`--kind telegram`). An adapter over the engine's platform modules
//! ([`tern_engine::platforms`]) and the conversation service:
//!
//! 1. the platform's proof is checked on the headers, before the body is read
//!    ([`ChannelAuth::admit_platform`](tern_engine::channel_auth::ChannelAuth::admit_platform));
//!    a refusal is a 401 like every channel route's;
//! 2. the update is read; a message is queued and made durable at once (it is processed after a
//!    crash) and acknowledged with 200 without waiting for its run: replies go through the
//!    platform's API from the outbox;
//! 3. an update that will never be a message (another update type, a payload Tern cannot read)
//!    is acknowledged with 200 too, and logged and counted: the platform retries what is not
//!    acknowledged, and retrying it would not help. Only "not now" (overloaded, the store down)
//!    is a 429/503, so that the platform sends it again.
//!
//! Each outcome is counted in `tern_platform_updates_total{channel, outcome}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tern_engine::channel::ChannelRef;
use tern_engine::conversation::{ConversationId, Inbound, MessageId};
use tern_engine::platforms::Platform;
use tern_engine::platforms::telegram::{self, Update};

use super::AppState;
use super::channel_request::{log_refusal, read_body, unauthorized_platform};
use super::error::ApiError;
use super::openapi::ErrorBody;

/// `POST /v1/channels/{name}/webhook`.
#[utoipa::path(
    post,
    path = "/v1/channels/{name}/webhook",
    tag = "conversations",
    description = "Where a messaging platform posts its updates for the platform channel `name` (Telegram: set it with setWebhook and the channel's secret token). Messages are acknowledged at once and processed in the background; replies go through the platform's API.",
    params(("name" = String, Path, description = "The channel name")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The platform's payload (Telegram: an Update)"),
    security(("platform_secret" = [])),
    responses(
        (status = 200, description = "Acknowledged: a message queued durably, or an update Tern does not handle (logged and counted). Telegram: may carry an answerCallbackQuery", body = serde_json::Value),
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = match state.channel_auth().admit_platform(&name, &headers).await {
        Ok(c) => c,
        Err(refusal) => {
            log_refusal(&name, &format!("/v1/channels/{name}/webhook"), &refusal);
            // Only a channel found to exist is a label (not one that is unknown, nor one whose
            // lookup failed): any other name would make the metric unbounded.
            use tern_engine::channel_auth::Refusal;
            let known = matches!(refusal, Refusal::NotAPlatform | Refusal::WrongPlatformProof { .. });
            state.metrics.platform_update(if known { &name } else { "unknown" }, refusal.reason());
            return unauthorized_platform();
        }
    };
    let label = channel.name.to_string();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let update = match &channel.platform {
        Some(Platform::Telegram(_)) => telegram::parse_update(tern_engine::json::without_bom(&body)),
        None => return unauthorized_platform(),
    };
    let update = match update {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform update cannot be read; acknowledged so that it is not sent again");
            state.metrics.platform_update(&label, "malformed");
            return acknowledged(serde_json::json!({}));
        }
    };
    let message = match &update {
        Update::Ignored { update_type } => {
            tracing::info!(channel = %label, update_type = %update_type.escape_debug(), "a platform update Tern does not handle; acknowledged");
            state.metrics.platform_update(&label, "ignored");
            return acknowledged(serde_json::json!({}));
        }
        Update::Message(m) => m,
    };
    let inbound = match inbound(&channel, message) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform update has ids Tern cannot take; acknowledged");
            state.metrics.platform_update(&label, "malformed");
            return acknowledged(serde_json::json!({}));
        }
    };
    state.metrics.message();
    let queued = match state.conversations.submit(inbound, None) {
        Ok(mut ticket) => state.conversations.accept(&mut ticket).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match queued {
        Ok(()) => {
            state.metrics.platform_update(&label, "accepted");
            acknowledged(telegram::webhook_response(&update))
        }
        Err(e) if e.is_retryable() => {
            state.metrics.platform_update(&label, "retry-later");
            ApiError::from(e).into_response()
        }
        Err(e) => {
            tracing::warn!(channel = %label, error = %e, "a platform message was refused; acknowledged so that it is not sent again");
            state.metrics.platform_update(&label, e.code());
            acknowledged(serde_json::json!({}))
        }
    }
}

/// The message of an update in the channel's conversation of its chat.
fn inbound(
    channel: &tern_engine::channel::Channel,
    m: &telegram::UpdateMessage,
) -> Result<Inbound, tern_engine::conversation::ConversationError> {
    let conversation = ConversationId::for_channel(&ChannelRef::of(channel), &m.chat_id)?;
    let mut inbound = Inbound::message(conversation, Some(MessageId::from_channel(m.update_id.as_str())?), &m.text);
    inbound.contact = m.contact.clone();
    inbound.metadata = m.metadata.clone();
    Ok(inbound)
}

fn acknowledged(body: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}
