//! Crash-safe external calls (SECURITY R12): before a step sends a request that is not
//! idempotent (POST, PATCH), an *intent* is recorded in the store; the response is recorded
//! after it. When a message is processed again after a crash (`kill -9` between the request
//! and the commit of the run's result), the same steps run again from the same paused state,
//! so the same call comes up with the same key:
//!
//! - a call whose response was recorded is **replayed** from the record, not sent again;
//! - a call with an intent but no response (it may or may not have reached the API) is **not
//!   re-sent blindly**: it fails with the code `outcome_unknown` (which `on_error` can catch),
//!   unless the request carries an `Idempotency-Key` header — then it is re-sent with the same
//!   key, which the API uses to recognise the repeat.
//!
//! The key of a call is (conversation, message id, the step's position in the run, the attempt,
//! step id): deterministic for a re-processed message, unique otherwise. The attempt tells the
//! tries of a step that retries apart (`http_request`'s `retry`), and the calls of a step that
//! makes several (a plugin's `http-fetch` calls, numbered in the order it makes them; see
//! [`CallJournal`](crate::step::CallJournal)).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Identifies one external call of one message's processing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EffectKey {
    /// The conversation.
    pub conversation: String,
    /// The message being processed.
    pub message_id: String,
    /// How many steps the run had executed before this one (its position; deterministic when
    /// the same message is processed again from the same paused state).
    pub seq: u32,
    /// The try of a step that retries, or the call of a step that makes several (0 for the
    /// first).
    pub attempt: u32,
    /// The step.
    pub step: String,
}

/// A recorded response, enough to replay it to the step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// The status.
    pub status: u16,
    /// The final URL.
    pub url: String,
    /// The response headers (name, value), sensitive ones left out.
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(with = "body_base64")]
    pub body: Vec<u8>,
}

mod body_base64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// What an earlier processing of the same message left for a call.
#[derive(Clone, Debug)]
pub enum PriorEffect {
    /// Nothing: this is the first time (the intent is recorded now).
    None,
    /// The call was sent but its outcome was never recorded.
    Unknown,
    /// The call completed with this response.
    Done(RecordedResponse),
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
#[error("the effect journal failed for step `{step}`: {reason}")]
pub struct JournalError {
    /// The step.
    pub step: String,
    /// Why (for the log).
    pub reason: String,
}

/// Where intents and results are recorded (the conversation store).
#[async_trait]
pub trait EffectJournal: Send + Sync {
    /// Records the intent of `key` unless one exists; returns what was there before.
    async fn begin_effect(&self, key: &EffectKey) -> Result<PriorEffect, JournalError>;
    /// Records the response of `key`.
    async fn finish_effect(&self, key: &EffectKey, response: &RecordedResponse) -> Result<(), JournalError>;
}

/// The journal and the message a run is processing, given to the executor.
#[derive(Clone)]
pub struct JournalScope {
    /// The journal.
    pub journal: Arc<dyn EffectJournal>,
    /// The conversation.
    pub conversation: String,
    /// The message.
    pub message_id: String,
}

impl std::fmt::Debug for JournalScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalScope")
            .field("conversation", &self.conversation)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

impl RecordedResponse {
    /// What is kept of a response (headers that carry credentials or cookies are left out).
    pub fn of(resp: &crate::http::HttpResponse) -> Self {
        let headers = resp
            .headers
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "set-cookie" | "authorization" | "proxy-authorization"))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Self { status: resp.status.as_u16(), url: resp.url.to_string(), headers, body: resp.body.to_vec() }
    }

    /// The response again; `None` when the record is not a valid response.
    pub fn into_response(self) -> Option<crate::http::HttpResponse> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in self.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).ok()?;
            headers.append(name, reqwest::header::HeaderValue::from_str(&v).ok()?);
        }
        Some(crate::http::HttpResponse {
            status: reqwest::StatusCode::from_u16(self.status).ok()?,
            url: url::Url::parse(&self.url).ok()?,
            headers,
            body: self.body,
            token_refreshed: false,
            rate_limit_wait: None,
            retried_after_429: false,
        })
    }
}
