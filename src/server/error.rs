//! The API's one error type: [`ApiError`], a status and the JSON problem body every error
//! answer carries (`{"error": "…", "code": "…"}`, [`ErrorBody`]). Handlers return
//! `Result<_, ApiError>` and use `?`; extractors reject with it (the admin token,
//! [`super::extract::Admin`]).
//!
//! A failure inside the server (the store, a service) is logged here with its detail, and the
//! caller gets words without paths or driver messages ([`ApiError::internal`]).

use std::fmt::Display;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tern_engine::conversation::ConversationError;

use super::openapi::ErrorBody;

/// What the admin API answers without the right bearer token.
pub const ADMIN_TOKEN_NEEDED: &str = "the admin API needs `Authorization: Bearer <admin token>`";

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// The `Retry-After` to send, in seconds (overload, a busy conversation, the store down).
    retry_after: Option<u32>,
}

/// `Retry-After` of a `store-unavailable` answer, in seconds: long enough for a connection to
/// come back, short next to a channel's patience.
pub const STORE_RETRY_SECS: u32 = 5;

impl ApiError {
    /// Whether the answer says to send the request again later (`Retry-After`): nothing of it
    /// was kept.
    pub fn is_retry_later(&self) -> bool {
        self.retry_after.is_some()
    }

    /// An answer with `status` and `message` (what went wrong and what to do).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody { error: message.into(), code: None, problems: Vec::new() }, retry_after: None }
    }

    /// `400 Bad Request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `422 Unprocessable Entity`: JSON of the wrong shape, or settings that break a rule.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// `401 Unauthorized`: no or a wrong admin token.
    pub fn admin_token_needed() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ADMIN_TOKEN_NEEDED)
    }

    /// `500 store-unavailable` with `Retry-After`: `detail` (the store's error, which may name
    /// files and databases) goes to the log with `what` the server was doing; the caller gets
    /// `public`.
    pub fn internal(what: &str, detail: &dyn Display, public: &'static str) -> Self {
        tracing::error!(error = %detail, "could not {what}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, public)
            .code("store-unavailable")
            .retry_after_secs(STORE_RETRY_SECS)
    }

    /// With a stable, kebab-case code.
    #[must_use]
    pub fn code(mut self, code: &str) -> Self {
        self.body.code = Some(code.to_string());
        self
    }

    /// With the problems of the request's settings, each at its field.
    #[must_use]
    pub fn problems(mut self, problems: Vec<super::openapi::FieldProblem>) -> Self {
        self.body.problems = problems;
        self
    }

    /// With `Retry-After: 1`.
    #[must_use]
    pub fn retry_after(self) -> Self {
        self.retry_after_secs(1)
    }

    /// With `Retry-After: secs`.
    #[must_use]
    pub fn retry_after_secs(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// A conversation service error: a stable code, a message for the channel, never a database
/// path or driver message (those are in the log).
impl From<&ConversationError> for ApiError {
    fn from(e: &ConversationError) -> Self {
        let status = match e {
            ConversationError::BadId { .. } | ConversationError::ReservedId { .. } => StatusCode::BAD_REQUEST,
            ConversationError::MessageIdReused { .. } => StatusCode::CONFLICT,
            ConversationError::ConversationBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ConversationError::Overloaded { .. }
            | ConversationError::ShuttingDown
            | ConversationError::LockLost { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ConversationError::UnknownFlow { .. } => StatusCode::NOT_FOUND,
            ConversationError::Store { .. }
            | ConversationError::Paused { .. }
            | ConversationError::Interrupted { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let error = Self::new(status, e.to_string()).code(e.code());
        match e {
            ConversationError::Store { .. } => error.retry_after_secs(STORE_RETRY_SECS),
            e if e.is_retryable() => error.retry_after(),
            _ => error,
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> Self {
        Self::from(&e)
    }
}
