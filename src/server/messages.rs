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
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tern_engine::conversation::{
    Answer, ConversationError, ConversationId, Inbound, MessageId, MessageState, Ticket, Trigger,
};

use super::{AppState, error};

/// The request body. Unknown top-level fields are accepted and handed to flows as
/// `{{message.metadata.*}}`, together with the fields of a `metadata` object.
#[derive(Debug, Deserialize)]
pub struct IncomingMessage {
    /// What the contact wrote.
    pub text: String,
    /// The contact: `{"id": …}` plus any attributes.
    #[serde(default)]
    pub contact: Option<Map<String, Value>>,
    /// The channel's id for the message; a repeated id is answered from the first time.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Anything else the channel sends.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IncomingMessage {
    /// The message as the service takes it.
    fn into_inbound(self, conversation: ConversationId) -> Result<Inbound, ConversationError> {
        let message_id = self.message_id.map(MessageId::new).transpose()?;
        let mut inbound = Inbound::message(conversation, message_id, self.text);
        inbound.contact = self.contact.unwrap_or_default();
        let mut extra = self.extra;
        if let Some(Value::Object(m)) = extra.remove("metadata") {
            inbound.metadata.extend(m);
        }
        inbound.metadata.extend(extra);
        Ok(inbound)
    }
}

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
                    e.body_text()
                ),
            );
        }
    };
    let inbound = match ConversationId::new(conversation).and_then(|c| msg.into_inbound(c)) {
        Ok(i) => i,
        Err(e) => return conversation_error(&e),
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
    let mut r = (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "status": "running",
            "message_id": message_id.as_str(),
            "answer_url": path,
            "replies": [],
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&path) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The HTTP answer to a service error: a stable code, a message for the channel, never a
/// database path or driver message (those are in the log).
pub fn conversation_error(e: &ConversationError) -> Response {
    let status = match e {
        ConversationError::BadId { .. } => StatusCode::BAD_REQUEST,
        ConversationError::ConversationBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
        ConversationError::Overloaded { .. } | ConversationError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ConversationError::UnknownFlow { .. } => StatusCode::NOT_FOUND,
        ConversationError::Store { .. } | ConversationError::Paused { .. } | ConversationError::Interrupted { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut r = (status, axum::Json(json!({"error": e.to_string(), "code": e.code()}))).into_response();
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
