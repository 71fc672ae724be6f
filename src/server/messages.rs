//! `POST /v1/conversations/{id}/messages` and `GET /v1/conversations/{id}/messages/{message_id}`:
//! adapters over the conversation service.
//!
//! A message is answered with its run's replies when the run finishes within the reply wait
//! (`--reply-wait`); otherwise with `202 Accepted`, the message id and the URL where the answer
//! appears (the run goes on, and the message is stored so that a crash cannot lose it).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tern_engine::conversation::{
    Answer, ConversationError, ConversationId, Inbound, MessageId, MessageState, ReplyText, Ticket, Trigger,
};

use super::incoming::{IncomingError, IncomingMessage};
use super::openapi::ErrorBody;
use super::{AppState, error};

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
    body: Result<axum::Json<IncomingMessage>, JsonRejection>,
) -> Response {
    let axum::Json(msg) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!(
                    "{}; send {{\"text\": \"…\", \"contact\": {{\"id\": \"…\"}}, \"message_id\": \"…\"}} as JSON with content-type application/json",
                    super::rejection_text(&e.body_text())
                ),
            );
        }
    };
    let conversation = match ConversationId::new(conversation) {
        Ok(c) => c,
        Err(e) => return conversation_error(&e),
    };
    let inbound = match msg.into_inbound(conversation) {
        Ok(i) => i,
        Err(IncomingError::Id(e)) => return conversation_error(&e),
        Err(e @ IncomingError::TooDeep { .. }) => {
            let body = ErrorBody { error: e.to_string(), code: Some(e.code().to_string()) };
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
        }
    };
    state.metrics.message();
    match state.conversations.submit(inbound, None) {
        Ok(ticket) => answer_or_accept(&state, ticket).await,
        Err(e) => conversation_error(&e),
    }
}

/// Waits for the answer within the reply wait; past it, makes the message durable and answers
/// 202 with where to fetch the answer.
pub async fn answer_or_accept(state: &AppState, mut ticket: Ticket) -> Response {
    match ticket.wait_for(state.answer_wait()).await {
        Some(Ok(answer)) => answered(&answer),
        Some(Err(e)) => conversation_error(&e),
        None => match state.conversations.accept(&mut ticket).await {
            Ok(Some(answer)) => answered(&answer),
            Ok(None) => accepted(&ticket.conversation, &ticket.message_id),
            Err(e) => conversation_error(&e),
        },
    }
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
) -> Response {
    let (conversation, message_id) = match (ConversationId::new(conversation), MessageId::new(message_id)) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), _) | (_, Err(e)) => return conversation_error(&e),
    };
    match state.conversations.message(&conversation, &message_id).await {
        Ok(MessageState::Answered(a)) => answered(&a),
        Ok(MessageState::Running) => accepted(&conversation, &message_id),
        Ok(MessageState::Unknown) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no message `{message_id}` in conversation `{conversation}` (answers are kept for the dedupe window, --dedupe-window)"
            ),
        ),
        Err(e) => conversation_error(&e),
    }
}

fn answered(answer: &Answer) -> Response {
    axum::Json(answer).into_response()
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

/// The HTTP answer to a service error: a stable code, a message for the channel, never a
/// database path or driver message (those are in the log).
pub fn conversation_error(e: &ConversationError) -> Response {
    let status = match e {
        ConversationError::BadId { .. } | ConversationError::ReservedId { .. } => StatusCode::BAD_REQUEST,
        ConversationError::ConversationBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
        ConversationError::Overloaded { .. } | ConversationError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ConversationError::UnknownFlow { .. } => StatusCode::NOT_FOUND,
        ConversationError::Store { .. } | ConversationError::Paused { .. } | ConversationError::Interrupted { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let body = ErrorBody { error: e.to_string(), code: Some(e.code().to_string()) };
    let mut r = (status, axum::Json(body)).into_response();
    if e.is_retryable() && status != StatusCode::INTERNAL_SERVER_ERROR {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Starts `flow_id` for an integration event in `conversation` and answers like a message.
pub async fn start_with_event(state: &AppState, conversation: String, flow_id: &str, event: Value) -> Response {
    let conversation = match ConversationId::new(conversation) {
        Ok(c) => c,
        Err(e) => return conversation_error(&e),
    };
    let mut inbound = Inbound::message(conversation, None, "");
    inbound.trigger = Trigger::Start { flow_id: flow_id.to_string(), event: Some(event) };
    match state.conversations.submit(inbound, None) {
        Ok(ticket) => answer_or_accept(state, ticket).await,
        Err(e) => conversation_error(&e),
    }
}
