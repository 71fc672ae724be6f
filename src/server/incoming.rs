//! The body of `POST /v1/conversations/{id}/messages` and how it becomes the service's
//! [`Inbound`]. It depends on serde and the engine only, so the fuzz target `message_body`
//! (`fuzz/targets.rs`) takes bodies with exactly this code (parsed with `serde_json::from_slice`,
//! as `axum::Json` does).
//!
//! Bounded: besides the server's 64 KiB body limit, `contact`, `metadata` and other fields may
//! nest at most [`MAX_VALUE_DEPTH`] levels. The message is stored (journal, paused runs,
//! history) inside records a few levels deeper, and serde_json reads no document deeper than
//! 128 levels: a body near that limit would be accepted and then be unreadable after a
//! restart.

use serde::Deserialize;
use serde_json::{Map, Value};
use tern_engine::conversation::{ConversationError, ConversationId, Inbound, MessageId};

/// Deepest nesting of arrays and objects in a field's value (`{"a": [1]}` is 2 levels).
pub const MAX_VALUE_DEPTH: usize = 32;

/// Why a parsed message cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    /// A bad message id.
    #[error(transparent)]
    Id(#[from] ConversationError),
    /// A field nests too deep.
    #[error("`{field}` is nested deeper than {MAX_VALUE_DEPTH} levels of arrays and objects; send a flatter value")]
    TooDeep {
        /// The top-level field.
        field: String,
    },
}

impl IncomingError {
    /// A stable, kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Id(e) => e.code(),
            Self::TooDeep { .. } => "too-deep",
        }
    }
}

/// The nesting depth of `value`, counting at most up to `limit + 1`.
fn depth(value: &Value, limit: usize) -> usize {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(m) => Box::new(m.values()),
        _ => return 0,
    };
    if limit == 0 {
        return 1;
    }
    1 + children.map(|c| depth(c, limit - 1)).max().unwrap_or(0)
}

/// A message a channel posts. Unknown top-level fields are accepted and handed to flows as
/// `{{message.metadata.*}}`, together with the fields of the `metadata` object.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"text": "last name", "contact": {"id": "u-7"}, "message_id": "m-1"}))]
pub struct IncomingMessage {
    /// What the contact wrote.
    pub text: String,
    /// The contact: `{"id": …}` plus any attributes.
    #[serde(default)]
    pub contact: Option<Map<String, Value>>,
    /// The channel's id for the message (1 to 200 characters, no control characters); a
    /// repeated id is answered from the first time.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub message_id: Option<String>,
    /// Fields for `{{message.metadata.*}}`.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Any other field the channel sends (also `{{message.metadata.*}}`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl IncomingMessage {
    /// The message as the service takes it.
    ///
    /// # Errors
    /// [`IncomingError::Id`] when the message id is empty, too long or has control characters;
    /// [`IncomingError::TooDeep`] when a field nests deeper than [`MAX_VALUE_DEPTH`].
    pub fn into_inbound(self, conversation: ConversationId) -> Result<Inbound, IncomingError> {
        let contact = self.contact.iter().flat_map(|m| m.values()).map(|v| ("contact", v));
        let metadata = self.metadata.iter().flat_map(|m| m.values()).map(|v| ("metadata", v));
        let extra = self.extra.iter().map(|(k, v)| (k.as_str(), v));
        for (field, value) in contact.chain(metadata).chain(extra) {
            // The field's own object counts as one level.
            let nested = if matches!(field, "contact" | "metadata") { 1 } else { 0 };
            if depth(value, MAX_VALUE_DEPTH) + nested > MAX_VALUE_DEPTH {
                return Err(IncomingError::TooDeep { field: field.to_string() });
            }
        }
        let message_id = self.message_id.map(MessageId::from_channel).transpose()?;
        let mut inbound = Inbound::message(conversation, message_id, self.text);
        inbound.contact = self.contact.unwrap_or_default();
        inbound.metadata.extend(self.metadata.unwrap_or_default());
        inbound.metadata.extend(self.extra);
        Ok(inbound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    fn take(body: &str) -> Result<Inbound, IncomingError> {
        serde_json::from_slice::<IncomingMessage>(body.as_bytes())
            .unwrap()
            .into_inbound(ConversationId::new("c").unwrap())
    }

    #[test]
    fn fields_nest_at_most_the_limit() {
        let at = MAX_VALUE_DEPTH;
        assert!(take(&format!(r#"{{"text": "x", "k": {}}}"#, nested(at))).is_ok());
        let err = take(&format!(r#"{{"text": "x", "k": {}}}"#, nested(at + 1))).unwrap_err();
        assert_eq!(err.code(), "too-deep");
        assert!(err.to_string().contains("`k`"), "{err}");
        // `contact` and `metadata` count their own object.
        assert!(take(&format!(r#"{{"text": "x", "contact": {{"k": {}}}}}"#, nested(at - 1))).is_ok());
        let err = take(&format!(r#"{{"text": "x", "metadata": {{"k": {}}}}}"#, nested(at))).unwrap_err();
        assert!(err.to_string().contains("`metadata`"), "{err}");
    }

    #[test]
    fn metadata_and_other_fields_reach_the_flow() {
        let inbound = take(r#"{"text": "hi", "metadata": {"a": 1, "b": 1}, "b": 2, "message_id": "m-1"}"#).unwrap();
        assert_eq!(inbound.message_id.as_str(), "m-1");
        assert_eq!(serde_json::Value::Object(inbound.metadata), serde_json::json!({"a": 1, "b": 2}));
        assert!(serde_json::from_slice::<IncomingMessage>(br#"{"text": "hi", "metadata": "x"}"#).is_err());
        assert_eq!(take(r#"{"text": "hi", "message_id": ""}"#).unwrap_err().code(), "bad-id");
    }
}
