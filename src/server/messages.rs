//! `POST /v1/conversations/{id}/messages` and `GET /v1/conversations/{id}/messages/{message_id}`:
//! adapters over the conversation service.
//!
//! A message is answered with its run's replies when the run finishes within the reply wait
//! (`--reply-wait`); otherwise with `202 Accepted`, the message id and the URL where the answer
//! appears (the run goes on, and the message is stored so that a crash cannot lose it).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tern_engine::conversation::{Answer, ConversationId, Inbound, MessageId, MessageState, ReplyText, Ticket, Trigger};

use super::AppState;
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
    params(("id" = String, Path, description = "The conversation id: 1 to 200 characters, no control characters", min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")),
    request_body(content = IncomingMessage, content_type = "application/json"),
    responses(
        (status = 200, description = "The run's answer: replies, status and the failure if any", body = Answer),
        (status = 202, description = "The run takes longer than the reply wait; the answer appears at `answer_url`", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad conversation or message id (`bad-id`), or a body that is not JSON", body = ErrorBody),
        (status = 404, description = "No such route (an empty id)", body = ErrorBody),
        (status = 409, description = "The message id was already used in this conversation for a message with another text, contact or metadata (`message-id-reused`); the message was not processed: send it with a new id", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not have the fields' types, or a field nests deeper than 32 levels (`too-deep`)", body = ErrorBody),
        (status = 429, description = "Too many messages waiting in this conversation (`conversation-busy`, `Retry-After`)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_message(
    State(state): State<Arc<AppState>>,
    Path(conversation): Path<String>,
    caller: Option<Extension<CallerInput>>,
    body: Result<axum::Json<IncomingMessage>, JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(msg) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "{}; send {{\"text\": \"…\", \"contact\": {{\"id\": \"…\"}}, \"message_id\": \"…\"}} as JSON with content-type application/json",
                super::rejection_text(&e.body_text())
            ),
        )
    })?;
    let conversation = ConversationId::new(conversation)?;
    let inbound = msg.into_inbound(conversation).map_err(|e| match e {
        IncomingError::Id(e) => ApiError::from(e),
        e @ IncomingError::TooDeep { .. } => ApiError::unprocessable(e.to_string()).code(e.code()),
    })?;
    state.metrics.message();
    let ticket = state.conversations.submit(inbound, None)?;
    answer_or_accept(&state, ticket, caller.as_deref()).await
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
    params(
        ("id" = String, Path, description = "The conversation id", min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"),
        ("message_id" = String, Path, description = "The message id", min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"),
    ),
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 202, description = "The run is still going", body = Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "A bad id (`bad-id`)", body = ErrorBody),
        (status = 404, description = "No such message (answers are kept for the dedupe window)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    Path((conversation, message_id)): Path<(String, String)>,
    caller: Option<Extension<CallerInput>>,
) -> Result<Response, ApiError> {
    let (conversation, message_id) = (ConversationId::new(conversation)?, MessageId::new(message_id)?);
    Ok(match state.conversations.message(&conversation, &message_id).await? {
        MessageState::Answered(a) => masked_json(StatusCode::OK, &a, caller.as_deref()),
        MessageState::Running => accepted(&conversation, &message_id),
        MessageState::Unknown => {
            return Err(ApiError::not_found(format!(
                "no message `{message_id}` in conversation `{conversation}` (answers are kept for the dedupe window, --dedupe-window)"
            )));
        }
    })
}

fn accepted(conversation: &ConversationId, message_id: &MessageId) -> Response {
    let path = format!(
        "/v1/conversations/{}/messages/{}",
        url::form_urlencoded::byte_serialize(conversation.as_str().as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(message_id.as_str().as_bytes()).collect::<String>()
    );
    let body = Accepted {
        status: Running::Running,
        message_id: message_id.to_string(),
        answer_url: path.clone(),
        replies: Vec::new(),
    };
    let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&path) {
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
