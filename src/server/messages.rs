//! `POST /v1/conversations/{id}/messages` and `GET /v1/conversations/{id}/messages/{message_id}`:
//! adapters over the conversation service.
//!
//! A message is answered with its run's replies when the run finishes within the reply wait
//! (`--reply-wait`); otherwise with `202 Accepted`, the message id and the URL where the answer
//! appears (the run goes on, and the message is stored so that a crash cannot lose it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tern_engine::channel_auth::Credential;
use tern_engine::conversation::{Answer, ConversationId, Inbound, MessageId, MessageState, ReplyText, Ticket, Trigger};

use super::AppState;
use super::channel_request::ChannelRequest;
use super::error::ApiError;
use super::incoming::{IncomingError, IncomingMessage};
use super::mask::{CallerInput, json_bytes, masked_json};
use super::openapi::ErrorBody;

/// `202 Accepted`: the run goes on; its answer appears at `answer_url`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `running`.
    pub status: Running,
    /// The message's id (the channel's, or the one Tern gave it).
    pub message_id: String,
    /// Where the answer appears (also in `Location`).
    pub answer_url: String,
    /// Empty: the replies come with the answer.
    pub replies: Vec<ReplyText>,
}

/// The status of an accepted message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Running {
    /// The run has not finished yet.
    Running,
}

#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/messages",
    tag = "conversations",
    description = "A message in a conversation of the `default` channel (its token: `--channel-token` / `TERN_CHANNEL_TOKEN`).",
    params(("id" = String, Path, description = "The conversation id: 1 to 200 characters, no control, invisible or text-direction characters", min_length = 1, max_length = 200)),
    request_body(content = IncomingMessage, content_type = "application/json"),
    security(("channel_token" = []), ("channel_signature" = [])),
    responses(
        (status = 200, description = "The run's answer: replies, status and the failure if any", body = Answer),
        (status = 202, description = "The run takes longer than the reply wait; the answer appears at `answer_url`", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad conversation or message id (`bad-id`), or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid channel credentials (`unauthorized`); the same answer whatever the reason", body = ErrorBody),
        (status = 404, description = "No such route (an empty id)", body = ErrorBody),
        (status = 409, description = "The message id was already used in this conversation for a message with another text, contact or metadata (`message-id-reused`); the message was not processed: send it with a new id", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not have the fields' types, or a field nests deeper than 32 levels (`too-deep`)", body = ErrorBody),
        (status = 429, description = "Too many messages waiting in this conversation (`conversation-busy`, `Retry-After`)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_message(State(state): State<Arc<AppState>>, req: ChannelRequest) -> Result<Response, ApiError> {
    take_message(&state, req).await
}

#[utoipa::path(
    post,
    path = "/v1/channels/{name}/conversations/{id}/messages",
    tag = "conversations",
    description = "A message in a conversation of the channel `name`. Conversations are the channel's own: the same id in another channel is another conversation.",
    params(
        ("name" = String, Path, description = "The channel name"),
        ("id" = String, Path, description = "The conversation id: 1 to 200 characters, no control, invisible or text-direction characters", min_length = 1, max_length = 200),
    ),
    request_body(content = IncomingMessage, content_type = "application/json"),
    security(("channel_token" = []), ("channel_signature" = [])),
    responses(
        (status = 200, description = "The run's answer: replies, status and the failure if any", body = Answer),
        (status = 202, description = "The run takes longer than the reply wait; the answer appears at `answer_url`", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad conversation or message id (`bad-id`), or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid credentials of this channel, or no such channel (`unauthorized`); the same answer whatever the reason", body = ErrorBody),
        (status = 404, description = "No such route (an empty id)", body = ErrorBody),
        (status = 409, description = "The message id was already used in this conversation for a message with another text, contact or metadata (`message-id-reused`); the message was not processed: send it with a new id", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not have the fields' types, or a field nests deeper than 32 levels (`too-deep`)", body = ErrorBody),
        (status = 429, description = "Too many messages waiting in this conversation (`conversation-busy`, `Retry-After`)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_channel_message(
    State(state): State<Arc<AppState>>,
    req: ChannelRequest,
) -> Result<Response, ApiError> {
    take_message(&state, req).await
}

/// Both message routes, once the channel is authenticated.
async fn take_message(state: &AppState, req: ChannelRequest) -> Result<Response, ApiError> {
    let mut msg: IncomingMessage = req.json().await.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "{}; send {{\"text\": \"…\", \"contact\": {{\"id\": \"…\"}}, \"message_id\": \"…\"}} as JSON with content-type application/json",
                super::rejection_text(&e.body_text())
            ),
        )
    })?;
    let conversation = req.conversation()?;
    // A signed message without an id of its own takes its `webhook-id`, the same on the
    // sender's every retry, so that a retry is answered from the first time. One that cannot
    // be a message id is refused, not replaced by a new id (the retry would run again).
    if msg.message_id.is_none()
        && let Credential::Signature { id } = &req.credential
    {
        MessageId::from_channel(id.as_str()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the `webhook-id` stands for the message id when the body has none, and this one cannot ({e}); put a `message_id` in the body"
                ),
            )
            .code("bad-id")
        })?;
        msg.message_id = Some(id.clone());
    }
    let inbound = msg.into_inbound(conversation).map_err(|e| match e {
        IncomingError::Id(e) => ApiError::from(e),
        e @ IncomingError::TooDeep { .. } => ApiError::unprocessable(e.to_string()).code(e.code()),
    })?;
    state.metrics.message();
    let outcome = match state.conversations.submit(inbound, None) {
        Ok(ticket) => answer_or_accept(state, ticket, req.caller.as_ref()).await,
        Err(e) => Err(ApiError::from(e)),
    };
    // Refused for now (overloaded, busy, the store down): the sender's retry of these exact
    // bytes (what a client following `Retry-After` sends) must not meet a replay refusal.
    if let (Err(e), Credential::Signature { id }) = (&outcome, &req.credential)
        && e.is_retry_later()
    {
        let scope = tern_engine::channel::ChannelRef::of(&req.channel).to_string();
        if let Err(e) = state.store.forget_webhook_id(&scope, id).await {
            tracing::warn!(error = %e, "could not forget the webhook-id of a message refused for now; its retry is refused as a replay");
        }
    }
    outcome
}

/// Waits for the answer within the reply wait; past it, makes the message durable and answers
/// 202 with where to fetch the answer. The answer's JSON is the one the service serialized
/// when it committed the message, masked here with what the caller sent.
pub async fn answer_or_accept(
    state: &AppState,
    mut ticket: Ticket,
    caller: Option<&CallerInput>,
) -> Result<Response, ApiError> {
    Ok(match ticket.wait_json_for(state.answer_wait()).await {
        Some(json) => json_bytes(StatusCode::OK, axum::body::Bytes::from_owner(json?), caller),
        None => match state.conversations.accept(&mut ticket).await? {
            Some(answer) => masked_json(StatusCode::OK, &answer, caller),
            None => accepted(&ticket.conversation, &ticket.message_id),
        },
    })
}

#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/messages/{message_id}",
    tag = "conversations",
    description = "The answer to a message of the `default` channel; only its credentials read it.",
    params(
        ("id" = String, Path, description = "The conversation id", min_length = 1, max_length = 200),
        ("message_id" = String, Path, description = "The message id", min_length = 1, max_length = 200),
    ),
    security(("channel_token" = []), ("channel_signature" = [])),
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 202, description = "The run is still going", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad id (`bad-id`)", body = ErrorBody),
        (status = 401, description = "No valid channel credentials (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "No such message (answers are kept for the dedupe window)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_message(State(state): State<Arc<AppState>>, req: ChannelRequest) -> Result<Response, ApiError> {
    read_answer(&state, &req).await
}

#[utoipa::path(
    get,
    path = "/v1/channels/{name}/conversations/{id}/messages/{message_id}",
    tag = "conversations",
    description = "The answer to a message of the channel `name`; only the channel's credentials read it.",
    params(
        ("name" = String, Path, description = "The channel name"),
        ("id" = String, Path, description = "The conversation id", min_length = 1, max_length = 200),
        ("message_id" = String, Path, description = "The message id", min_length = 1, max_length = 200),
    ),
    security(("channel_token" = []), ("channel_signature" = [])),
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 202, description = "The run is still going", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad id (`bad-id`)", body = ErrorBody),
        (status = 401, description = "No valid credentials of this channel, or no such channel (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "No such message (answers are kept for the dedupe window)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_channel_message(
    State(state): State<Arc<AppState>>,
    req: ChannelRequest,
) -> Result<Response, ApiError> {
    read_answer(&state, &req).await
}

/// Both answer routes, once the channel is authenticated.
async fn read_answer(state: &AppState, req: &ChannelRequest) -> Result<Response, ApiError> {
    let conversation = req.conversation()?;
    let message_id = MessageId::new(req.param("message_id"))?;
    Ok(match state.conversations.message(&conversation, &message_id).await? {
        MessageState::Answered(a) => masked_json(StatusCode::OK, &a, req.caller.as_ref()),
        MessageState::Running => accepted(&conversation, &message_id),
        MessageState::Unknown => {
            let (_, id) = conversation.channel_and_id();
            return Err(ApiError::not_found(format!(
                "no message `{message_id}` in conversation `{id}` (answers are kept for the dedupe window, --dedupe-window)"
            )));
        }
    })
}

/// Where the answer to `message_id` in `conversation` is read: the route of the conversation's
/// channel, with the ids as the channel knows them (percent-encoded). Empty for an integration
/// event's conversation, which no channel's route reaches.
pub(super) fn answer_path(conversation: &ConversationId, message_id: &MessageId) -> String {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (channel, id) = conversation.channel_and_id();
    if channel.is_default() && conversation.as_str().starts_with("event:") {
        return String::new();
    }
    let (id, message_id) = (encode(id), encode(message_id.as_str()));
    if channel.is_default() {
        format!("/v1/conversations/{id}/messages/{message_id}")
    } else {
        format!("/v1/channels/{channel}/conversations/{id}/messages/{message_id}")
    }
}

/// `202` with the answer's URL ([`answer_path`]).
fn accepted(conversation: &ConversationId, message_id: &MessageId) -> Response {
    let path = answer_path(conversation, message_id);
    let body = Accepted {
        status: Running::Running,
        message_id: message_id.to_string(),
        answer_url: path.clone(),
        replies: Vec::new(),
    };
    let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&path)
        && !path.is_empty()
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Starts `flow_id` for an integration event in `conversation` and answers like a message.
pub async fn start_with_event(
    state: &AppState,
    conversation: String,
    flow_id: &str,
    event: Value,
) -> Result<Response, ApiError> {
    let mut inbound = Inbound::message(ConversationId::new(conversation)?, None, "");
    inbound.trigger = Trigger::Start { flow_id: flow_id.to_string(), event: Some(event) };
    let ticket = state.conversations.submit(inbound, None)?;
    answer_or_accept(state, ticket, None).await
}
