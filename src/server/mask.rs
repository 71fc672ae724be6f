//! The last layer of every answer: every known secret value (see
//! [`tern_engine::secrets::known`]) is masked in the body and the `Location` header, whatever
//! handler produced them. Bodies of known size up to [`MAX_MASKED_BODY`] are masked; larger or
//! streamed bodies pass as they are (no handler produces one with secrets in it).

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tern_engine::secrets::known;

/// Largest body masked, in bytes.
pub const MAX_MASKED_BODY: u64 = 4 * 1024 * 1024;

/// Masks the answer to `req`.
pub async fn mask_answer(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let (mut parts, body) = response.into_parts();
    if let Some(location) = parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let std::borrow::Cow::Owned(masked) = known::mask(location)
        && let Ok(v) = HeaderValue::from_str(&masked)
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
    let masked = match known::mask_bytes(&bytes) {
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
