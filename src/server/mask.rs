//! The layer around every handler: every known secret value (see
//! [`tern_engine::secrets::known`]) is masked in the body and the `Location` header, whatever
//! handler produced them. Only the limits (503, timeouts) and the JSON error rewriting sit
//! outside it; neither adds anything but the caller's own input and fixed text. Bodies of known size up to [`MAX_MASKED_BODY`] are masked; larger or
//! streamed bodies pass as they are (no handler produces one with secrets in it).
//!
//! Values the request itself carries (in its path, query or body, decoded) are left as they
//! are: an answer that echoes the caller's input — an error naming a field's value, a message
//! id — would otherwise show `[redacted]` exactly when the caller guessed a secret, a free
//! oracle for every secret the process knows. The caller learns nothing from its own input.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tern_engine::secrets::known;

/// Largest body masked, in bytes.
pub const MAX_MASKED_BODY: u64 = 4 * 1024 * 1024;

/// Largest request body read here (the routes refuse more than 64 KiB).
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Everything the caller sent, decoded the ways a handler may decode it: the path and query
/// raw and percent-decoded, the body raw, and every string and key of a JSON body and every
/// name and value of a form body.
fn caller_input(uri: &axum::http::Uri, body: &[u8]) -> Vec<u8> {
    let mut seen = Vec::with_capacity(body.len() * 2 + 256);
    let target = uri.path_and_query().map_or("", |p| p.as_str());
    seen.extend_from_slice(target.as_bytes());
    seen.push(b'\n');
    seen.extend(percent_encoding::percent_decode_str(target));
    seen.push(b'\n');
    seen.extend_from_slice(body);
    seen.push(b'\n');
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        fn walk(v: &serde_json::Value, out: &mut Vec<u8>) {
            match v {
                serde_json::Value::String(s) => {
                    out.extend_from_slice(s.as_bytes());
                    out.push(b'\n');
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'\n');
                    walk(x, out);
                }),
                _ => {}
            }
        }
        walk(&value, &mut seen);
    }
    for (k, v) in url::form_urlencoded::parse(body) {
        seen.extend_from_slice(k.as_bytes());
        seen.push(b'\n');
        seen.extend_from_slice(v.as_bytes());
        seen.push(b'\n');
    }
    seen
}

/// Masks the answer to `req`.
pub async fn mask_answer(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // Inside the concurrency limit and the request timeout (see `app`): bounded like any handler.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BODY).await else {
        return super::error(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "the request body is over 64 KiB");
    };
    let keep = known::present_in(&caller_input(&parts.uri, &bytes));
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (mut parts, body) = response.into_parts();
    if let Some(location) = parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let std::borrow::Cow::Owned(masked) = known::mask_bytes_except(location.as_bytes(), &keep)
        && let Ok(v) = HeaderValue::from_bytes(&masked)
    {
        parts.headers.insert(header::LOCATION, v);
    }
    let size = body.size_hint().exact();
    if !size.is_some_and(|n| n > 0 && n <= MAX_MASKED_BODY) {
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, usize::try_from(MAX_MASKED_BODY).unwrap_or(usize::MAX)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "could not read an answer to mask it");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let masked = match known::mask_bytes_except(&bytes, &keep) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(m) => Some(m),
    };
    match masked {
        Some(m) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(m))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}
