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
//!
//! One pass per request: the layer keeps the request's target and the body as the handler
//! reads it ([`CallerInput`], a request extension: the body is recorded on its way through,
//! never read ahead, so that a handler can refuse a request on its headers without waiting for
//! its body) and decodes them into the set of values to leave as they are only when
//! an answer contains a known secret at all — most answers contain none, and then the body is
//! parsed once, by the handler. A handler that serializes its answer itself masks it with the
//! same [`CallerInput`] ([`masked_json`]) and marks it [`Masked`]; the layer passes such a body
//! as it is instead of reading it back. Every other answer is masked here.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
    if let Ok(value) = tern_engine::json::from_slice::<serde_json::Value>(body) {
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

/// What the caller sent, kept by [`mask_answer`] for masking the answer: the request target
/// and body as received. Cheap to clone (shared).
#[derive(Clone)]
pub struct CallerInput(Arc<Sent>);

impl std::fmt::Debug for CallerInput {
    /// Never the caller's input (it may hold secrets the caller sent).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerInput(..)")
    }
}

struct Sent {
    uri: axum::http::Uri,
    /// The body as far as the handler read it (at most [`MAX_REQUEST_BODY`] bytes).
    body: Arc<Mutex<Vec<u8>>>,
    /// The known secret values the caller sent ([`known::present_in`] of [`caller_input`]),
    /// computed the first time an answer contains a known secret.
    keep: OnceLock<Vec<Vec<u8>>>,
}

impl CallerInput {
    fn new(uri: &axum::http::Uri, body: Arc<Mutex<Vec<u8>>>) -> Self {
        Self(Arc::new(Sent { uri: uri.clone(), body, keep: OnceLock::new() }))
    }

    /// The known secret values the caller sent itself (decoded the ways a handler may decode
    /// them).
    fn keep(&self) -> &[Vec<u8>] {
        self.0.keep.get_or_init(|| {
            let body = self.0.body.lock().unwrap_or_else(|p| p.into_inner());
            known::present_in(&caller_input(&self.0.uri, &body))
        })
    }

    /// `bytes` with every known secret value masked except those the caller sent; borrowed
    /// (and the request never decoded) when no known secret occurs in `bytes`.
    pub fn mask<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if !known::occurs_in(bytes) {
            return Cow::Borrowed(bytes);
        }
        known::mask_bytes_except(bytes, self.keep())
    }
}

/// Marks an answer whose body was masked already with the request's [`CallerInput`]
/// ([`masked_json`]): [`mask_answer`] passes its body as it is.
#[derive(Clone, Copy, Debug)]
pub struct Masked;

/// `value` as a JSON answer with `status`: serialized once, masked with `caller` and marked
/// [`Masked`]. Without a `caller` (a handler reached without the layer) the answer is left for
/// the layer to mask.
pub fn masked_json<T: serde::Serialize>(status: StatusCode, value: &T, caller: Option<&CallerInput>) -> Response {
    match serde_json::to_vec(value) {
        Ok(json) => json_bytes(status, json.into(), caller),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize an answer");
            super::error(StatusCode::INTERNAL_SERVER_ERROR, "the answer could not be written; try again")
        }
    }
}

/// `json` (a serialized JSON value) as an answer with `status`, masked with `caller` and
/// marked [`Masked`] (see [`masked_json`]).
pub fn json_bytes(status: StatusCode, json: axum::body::Bytes, caller: Option<&CallerInput>) -> Response {
    let (body, masked) = match caller {
        Some(c) => match c.mask(&json) {
            Cow::Borrowed(_) => (json, true),
            Cow::Owned(m) => (m.into(), true),
        },
        None => (json, false),
    };
    let mut r = (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if masked {
        r.extensions_mut().insert(Masked);
    }
    r
}

/// A request body that records what passes through it (up to [`MAX_REQUEST_BODY`] bytes) for
/// the request's [`CallerInput`], as the handler reads it.
struct Recording {
    inner: Body,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl http_body::Body for Recording {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut seen = this.seen.lock().unwrap_or_else(|p| p.into_inner());
            let room = MAX_REQUEST_BODY.saturating_sub(seen.len());
            seen.extend_from_slice(&data[..data.len().min(room)]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Masks the answer to `req`.
pub async fn mask_answer(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let caller = CallerInput::new(&parts.uri, seen.clone());
    parts.extensions.insert(caller.clone());
    let body = Body::new(Recording { inner: body, seen });
    let response = next.run(Request::from_parts(parts, body)).await;
    let (mut parts, body) = response.into_parts();
    if let Some(location) = parts.headers.get(header::LOCATION)
        && let Cow::Owned(masked) = caller.mask(location.as_bytes())
        && let Ok(v) = HeaderValue::from_bytes(&masked)
    {
        parts.headers.insert(header::LOCATION, v);
    }
    if parts.extensions.remove::<Masked>().is_some() {
        return Response::from_parts(parts, body);
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
    match caller.mask(&bytes) {
        Cow::Borrowed(_) => Response::from_parts(parts, Body::from(bytes)),
        Cow::Owned(m) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caller's input is decoded (its JSON parsed) only for an answer that holds a known
    /// secret; then what the caller sent stays and the rest is masked.
    #[test]
    fn the_caller_s_input_is_decoded_only_when_an_answer_holds_a_known_secret() {
        known::remember_str("lazy-sent-secret-0001");
        known::remember_str("lazy-other-secret-0002");
        let uri: axum::http::Uri = "/v1/conversations/c/messages".parse().unwrap();
        let caller = CallerInput::new(&uri, Arc::new(Mutex::new(br#"{"text": "lazy-sent-secret-0001"}"#.to_vec())));
        assert!(matches!(caller.mask(b"{\"replies\": []}"), Cow::Borrowed(_)));
        assert!(caller.0.keep.get().is_none(), "nothing to mask: the request was not decoded");
        let masked = caller.mask(b"sent lazy-sent-secret-0001, not lazy-other-secret-0002");
        assert_eq!(&*masked, b"sent lazy-sent-secret-0001, not [redacted]".as_slice());
        assert_eq!(caller.0.keep.get().map(Vec::len), Some(1));
    }
}
