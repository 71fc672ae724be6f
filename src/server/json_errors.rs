//! Every error answer is JSON `{"error": "…"}`. Handlers answer errors with
//! [`super::error`]; this layer converts what axum itself answers before a handler runs (a path
//! that is not UTF-8, a body over the 64 KiB limit, a malformed form) from `text/plain` to the
//! same JSON, so that a client (and the OpenAPI document) sees one error format. A 503 without
//! `Retry-After` gets `Retry-After: 1` here.
//!
//! Every rejection's text goes through [`rejection_text`], which also takes out the values the
//! parser quotes (`invalid type: string "…"`): a secret sent in a field of the wrong type, or
//! in the wrong field, is never echoed back.

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
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { rejection_text(&text) };
    let body = serde_json::to_vec(&super::openapi::ErrorBody { error: message, code: None, problems: Vec::new() })
        .unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// A JSON request body parsed as JSON (400 when it is not).
///
/// # Errors
/// 400 with where the JSON breaks (line and column), never quoting the body.
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Value, super::error::ApiError> {
    tern_engine::json::from_slice(body).map_err(|e| {
        super::error::ApiError::bad_request(format!(
            "the body is not JSON: {} (send `Content-Type: application/json`)",
            without_values(&e.to_string())
        ))
    })
}

/// A JSON value of the wrong shape for what it was read as: where and what, in words that
/// quote none of its values ([`without_values`]).
#[derive(Debug)]
pub(crate) struct ShapeError {
    /// The JSON pointer of the value (`/tokens/0`; empty for the whole body).
    pub pointer: String,
    /// The top-level field it is in (`tokens`; empty for the whole body).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// `value` read as a `T`, or where and why not ([`ShapeError`]).
///
/// # Errors
/// The first value of the wrong type, or a missing or unknown field.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ShapeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut pointer = if path == "." { String::new() } else { format!("/{}", path.replace('.', "/")) };
        let message = without_values(&e.inner().to_string());
        // A missing field is reported at its parent: point at the field itself.
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            pointer = format!("{pointer}/{missing}");
        }
        let field = pointer.trim_start_matches('/').split(['/', '[']).next().unwrap_or_default().to_string();
        ShapeError { pointer, field, message }
    })
}

impl std::fmt::Display for ShapeError {
    /// `at /kind: missing field `kind``, or `the body: …` for the whole body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "the body: {}", self.message)
        } else {
            write!(f, "at {}: {}", self.pointer, self.message)
        }
    }
}

/// An axum rejection's text in the caller's words: without the library's own phrasing
/// ("Failed to deserialize the JSON body into the target type: …") and without the values the
/// parser quotes ([`without_values`]).
pub(crate) fn rejection_text(text: &str) -> String {
    const PREFIXES: &[(&str, &str)] = &[
        ("Failed to deserialize the JSON body into the target type: ", "the body does not fit: "),
        ("Failed to parse the request body as JSON: ", "the body is not valid JSON: "),
        ("Failed to deserialize query string: ", ""),
        ("Failed to deserialize form body: ", ""),
        ("Failed to deserialize form: ", ""),
        ("Failed to buffer the request body: ", "the body could not be read: "),
    ];
    if text.starts_with("Expected request with `Content-Type: application/json`") {
        return "the content type must be application/json".into();
    }
    for (prefix, instead) in PREFIXES {
        if let Some(rest) = text.strip_prefix(prefix) {
            return format!("{instead}{}", without_values(rest));
        }
    }
    without_values(text)
}

/// `text` (a serde error) with every value it quotes replaced by the value's kind:
/// `invalid type: string "whsec_…", expected a sequence` becomes `invalid type: a string,
/// expected a sequence`; `integer `5``, `floating point `1.5``, `boolean `true``, `character
/// `x`` and `unknown variant `…`` likewise. Field names (`unknown field `tokens``, `missing
/// field `kind``) stay: they are the caller's schema, not its data.
pub(crate) fn without_values(text: &str) -> String {
    const QUOTED: &[(&str, &str)] = &[
        ("string \"", "a string"),
        ("integer `", "an integer"),
        ("floating point `", "a number"),
        ("boolean `", "a boolean"),
        ("character `", "a character"),
        ("unknown variant `", "an unknown variant"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (opening, kind) in QUOTED {
            if let Some(after) = rest.strip_prefix(opening) {
                let close = if opening.ends_with('"') { '"' } else { '`' };
                if let Some(end) = closing_quote(after, close) {
                    out.push_str(kind);
                    rest = &after[end + close.len_utf8()..];
                    continue 'scan;
                }
                // An unclosed quote (the text was cut): nothing after it is shown.
                out.push_str(kind);
                break 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The byte offset of the first `close` in `text` that is not escaped with a backslash (serde
/// writes a string's value with Rust's escapes).
fn closing_quote(text: &str, close: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == close && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of the wrong type (a secret given as a string where a list was expected, or in a
    /// field of another kind) is never quoted back; field names and positions stay.
    #[test]
    fn quoted_values_are_taken_out_of_rejections() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Settings {
            tokens: Vec<String>,
            kind: Option<Kind>,
            count: Option<u8>,
            flag: Option<bool>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            Generic,
        }
        for body in [
            format!(r#"{{"tokens": "{secret}"}}"#),
            format!(r#"{{"tokens": ["a"], "kind": "{secret}"}}"#),
            format!(r#"{{"tokens": ["a"], "count": "{secret}"}}"#),
            format!(r#"{{"tokens": ["a"], "flag": "{secret}"}}"#),
            format!(r#"{{"tokens": ["a"], "count": "a \" quoted {secret}"}}"#),
            r#"{"tokens": 1234567890123}"#.to_string(),
            r#"{"tokens": ["a"], "count": 12345678901.5}"#.to_string(),
        ] {
            let err = serde_json::from_str::<Settings>(&body).unwrap_err().to_string();
            let text = rejection_text(&format!("Failed to deserialize the JSON body into the target type: {err}"));
            assert!(
                !text.contains(secret) && !text.contains("1234567890123") && !text.contains("12345678901.5"),
                "{text}"
            );
            assert!(text.starts_with("the body does not fit: "), "{text}");
            assert!(text.contains("line 1 column"), "{text}");
        }
        let err = serde_json::from_str::<Settings>(&format!(r#"{{"tokens": "{secret}"}}"#)).unwrap_err().to_string();
        assert!(
            without_values(&err).starts_with("invalid type: a string, expected a sequence at line 1 column "),
            "{err}"
        );
        assert_eq!(
            without_values("unknown field `tokenz`, expected `tokens`"),
            "unknown field `tokenz`, expected `tokens`"
        );
        assert_eq!(without_values("invalid type: string \"cut"), "invalid type: a string");
    }
}
