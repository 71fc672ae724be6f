//! Every error answer is JSON `{"error": "…"}`. Handlers answer errors with
//! [`super::error`]; this layer converts what axum itself answers before a handler runs (a path
//! that is not UTF-8, a body over the 64 KiB limit, a malformed form) from `text/plain` to the
//! same JSON, so that a client (and the OpenAPI document) sees one error format. A 503 without
//! `Retry-After` gets `Retry-After: 1` here.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Largest plain-text error body converted, in bytes (axum's messages are far shorter); a
/// longer one is cut there.
pub const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Converts a plain-text or empty error answer to `req` into the JSON error body.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let status = response.status();
    // Every 503 says when to come back, whoever answered it.
    if status == axum::http::StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !content_type.is_none_or(|t| t.starts_with("text/plain")) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let body = serde_json::to_vec(&super::openapi::ErrorBody { error: message, code: None, problems: Vec::new() })
        .unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
