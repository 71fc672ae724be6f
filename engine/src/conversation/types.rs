//! The service's vocabulary: identifiers, what a caller submits, what it gets back, and what
//! is stored about paused runs and run history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ConversationError;
use crate::ids::RunId;
use crate::run::{RunError, RunSnapshot, RunStatus, TraceEntry};

pub use crate::ids::MAX_ID_CHARS;

/// The opaque-id rule ([`check_opaque_id`](crate::ids::check_opaque_id)) with the service's
/// error.
fn check_id(what: &'static str, s: &str) -> Result<(), ConversationError> {
    crate::ids::check_opaque_id(what, s).map_err(|_| ConversationError::BadId { what, max: MAX_ID_CHARS })
}

crate::ids::id_newtype!(
    /// A conversation id as the channel sends it.
    ConversationId,
    "conversation id",
    check_id,
    ConversationError,
    None
);

crate::ids::id_newtype!(
    /// A message id: the channel's, or one Tern made up (`tern-<uuid>`) for a message that came
    /// without one, so that its answer can be fetched later.
    MessageId,
    "message id",
    check_id,
    ConversationError,
    None
);

impl MessageId {
    /// A fresh id for a message the channel sent without one.
    pub fn generated() -> Self {
        Self(format!("{GENERATED_PREFIX}{}", uuid::Builder::from_random_bytes(rand::random()).into_uuid()).into())
    }

    /// Whether Tern made this id up (a channel cannot send such an id: [`MessageId::from_channel`]).
    pub fn is_generated(&self) -> bool {
        self.0.starts_with(GENERATED_PREFIX)
    }

    /// A channel's message id: validated like [`MessageId::new`], and refused when it starts
    /// with the prefix of generated ids, which are never deduplicated (a channel id that
    /// looked generated would silently lose its dedupe).
    ///
    /// # Errors
    /// [`ConversationError::BadId`] or
    /// [`ConversationError::ReservedId`].
    pub fn from_channel(s: impl Into<String>) -> Result<Self, ConversationError> {
        let id = Self::new(s)?;
        if id.is_generated() {
            return Err(ConversationError::ReservedId { prefix: GENERATED_PREFIX });
        }
        Ok(id)
    }
}

/// The prefix of the message ids Tern makes up.
const GENERATED_PREFIX: &str = "tern-";

/// What starts or continues a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A contact's message: resumes the paused run, or starts the first flow whose trigger
    /// matches.
    Message,
    /// Resumes the paused run with an event (a contact's login finishing); never starts a flow.
    Resume {
        /// What the paused step receives.
        event: Value,
    },
    /// Starts the flow with this id (an integration event, `tern run`), replacing any paused
    /// run; `event` becomes `{{event.*}}`.
    Start {
        /// The flow's id.
        flow_id: String,
        /// The event, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<Value>,
    },
}

/// One inbound message or event, as the service receives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inbound {
    /// The channel it came through (`default` for records written before channels existed).
    #[serde(default)]
    pub channel: crate::channel::ChannelName,
    /// The conversation.
    pub conversation: ConversationId,
    /// The channel's message id, or a generated one.
    pub message_id: MessageId,
    /// What the contact wrote (empty for events).
    pub text: String,
    /// The contact: `{"id": …}` plus any attributes.
    #[serde(default)]
    pub contact: Map<String, Value>,
    /// Fields the channel sent that Tern does not know, for `{{message.metadata.*}}`.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// What to do with it.
    pub trigger: Trigger,
    /// Variables set before a started run (`tern run --var`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
}

impl Inbound {
    /// A contact's message.
    pub fn message(conversation: ConversationId, message_id: Option<MessageId>, text: impl Into<String>) -> Self {
        Self {
            channel: crate::channel::ChannelName::default_channel(),
            conversation,
            message_id: message_id.unwrap_or_else(MessageId::generated),
            text: text.into(),
            contact: Map::new(),
            metadata: Map::new(),
            trigger: Trigger::Message,
            variables: Map::new(),
        }
    }

    /// What tells a re-sent message from another message under the same id: SHA-256 (hex) of
    /// the canonical JSON (object keys sorted, no whitespace) of `{"channel", "contact",
    /// "metadata", "text"}`. A message id comes back with the first answer only when its
    /// digest is the same ([`ConversationError::MessageIdReused`] otherwise).
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let content = serde_json::json!({
            "channel": self.channel.as_str(),
            "contact": self.contact,
            "metadata": self.metadata,
            "text": self.text,
        });
        let mut canonical = String::new();
        write_canonical(&content, &mut canonical);
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// The contact's id, when the channel sent one (a string, or a number as its text: see
    /// [`contact_id`](crate::step::contact_id)).
    pub fn contact_id(&self) -> Option<String> {
        crate::step::contact_id(&self.contact).map(std::borrow::Cow::into_owned)
    }
}

/// `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings
/// and numbers as `serde_json` writes them.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// How a message was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// The run reached its end.
    Completed,
    /// The run waits for the contact's next message.
    Paused,
    /// The run failed; `error` says why.
    Failed,
    /// No paused run and no flow whose trigger matches.
    NoFlow,
    /// An event for a conversation that has no paused run.
    NoPausedRun,
}

impl AnswerStatus {
    /// The name used in JSON (`completed`, `paused`, `failed`, `no_flow`, `no_paused_run`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Paused => "paused",
            Self::Failed => "failed",
            Self::NoFlow => "no_flow",
            Self::NoPausedRun => "no_paused_run",
        }
    }
}

impl From<RunStatus> for AnswerStatus {
    /// A message that started or resumed a run is answered with how the run's activation ended.
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Completed => Self::Completed,
            RunStatus::Paused => Self::Paused,
            RunStatus::Failed => Self::Failed,
        }
    }
}

impl std::fmt::Display for AnswerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reply, as the channel receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplyText {
    /// The text.
    pub text: String,
}

/// The answer to one message: what the channel gets back, and what a repeated message id gets
/// again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    /// The run, when one started or resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// Its flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// How it went.
    pub status: AnswerStatus,
    /// The replies, in order.
    pub replies: Vec<ReplyText>,
    /// The failure, when `status` is `failed` (secrets masked).
    #[serde(default)]
    pub error: Option<RunError>,
    /// The message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The error flow's run, when the run failed and the error flow was started (its replies
    /// are in `replies`, after the failed run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_flow: Option<ErrorFlowRun>,
}

/// An answer with its JSON, serialized once when the message is committed: the same bytes are
/// kept for a repeated message id, make up the webhook delivery and answer the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    /// The answer.
    pub answer: Answer,
    /// `answer` as JSON (an object).
    pub json: Arc<[u8]>,
}

impl Answered {
    /// `answer` with its JSON.
    pub fn new(answer: Answer) -> Self {
        // An answer is strings, numbers and enums: it always serializes.
        let json = serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec());
        Self { answer, json: json.into() }
    }
}

/// The error flow's run started for a failed run (README "When a step fails"). It is a run of
/// its own in history; when it pauses, the conversation's next message resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorFlowRun {
    /// Its run id.
    pub run_id: RunId,
    /// The error flow's id.
    pub flow_id: String,
    /// How it went.
    pub status: AnswerStatus,
    /// Its own failure (it is not handled again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

impl Answer {
    /// The answer to a message that started no run (no flow matched, nothing to resume).
    pub fn without_run(status: AnswerStatus, message_id: &MessageId) -> Self {
        Self {
            run_id: None,
            flow_id: None,
            status,
            replies: Vec::new(),
            error: None,
            message_id: Some(message_id.to_string()),
            error_flow: None,
        }
    }
}

/// Current stored format of a paused run.
pub const PAUSED_FORMAT: u32 = 2;

/// A paused run as stored (encrypted). Format 2 (this one) wraps the snapshot with when the run
/// started; format 1 was the bare [`RunSnapshot`] and is still read (see
/// [`PausedRun::decode`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PausedRun {
    /// The stored format, [`PAUSED_FORMAT`].
    pub format: u32,
    /// The flow version (content hash) the run started with.
    pub flow_hash: String,
    /// Where the run stands.
    pub snapshot: RunSnapshot,
    /// Unix milliseconds when the run started.
    pub started_at_ms: i64,
    /// Unix seconds after which the paused run is discarded.
    pub expires_at: i64,
}

impl PausedRun {
    /// Reads a stored paused run of any known format. `flow_hash` and `expires_at` come from
    /// the row for format 1, which did not carry them in the blob.
    ///
    /// # Errors
    /// [`PausedRunError`] naming the format when the blob is of a newer format or unreadable.
    pub fn decode(blob: &[u8], flow_hash: &str, expires_at: i64, updated_at: i64) -> Result<Self, PausedRunError> {
        let value: Value = serde_json::from_slice(blob)
            .map_err(|e| PausedRunError::Unreadable { format: 0, reason: e.to_string() })?;
        match value.get("format").and_then(Value::as_u64) {
            Some(2) => serde_json::from_value(value)
                .map_err(|e| PausedRunError::Unreadable { format: 2, reason: e.to_string() }),
            Some(n) => Err(PausedRunError::Newer { format: n }),
            None => {
                let snapshot: RunSnapshot = serde_json::from_value(value)
                    .map_err(|e| PausedRunError::Unreadable { format: 1, reason: e.to_string() })?;
                Ok(Self {
                    format: 1,
                    flow_hash: flow_hash.to_string(),
                    snapshot,
                    started_at_ms: updated_at.saturating_mul(1000),
                    expires_at,
                })
            }
        }
    }
}

/// Why a stored paused run cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PausedRunError {
    /// Written by a newer Tern.
    #[error(
        "it was written by a newer Tern (paused-run format {format}; this version reads formats 1 and {PAUSED_FORMAT}); run that version, or let the paused run expire"
    )]
    Newer {
        /// The stored format.
        format: u64,
    },
    /// The blob does not parse as its format (0: not JSON).
    #[error("format {format}: {reason}")]
    Unreadable {
        /// The format it claimed (0 when not JSON).
        format: u64,
        /// The parser's message.
        reason: String,
    },
}

/// One activation of a run (from a message until the run paused or ended), as kept in history.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    /// The message that started or resumed the run.
    pub message_id: String,
    /// What the contact wrote (masked like everything else).
    pub message: String,
    /// The event that resumed the run, when it was not a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds.
    pub finished_at_ms: i64,
    /// How the activation ended.
    pub status: RunStatus,
    /// What Tern replied.
    pub replies: Vec<ReplyText>,
    /// Every executed step, with redacted request/response summaries.
    pub trace: Vec<TraceEntry>,
    /// Variables at the end of the activation (secrets masked).
    pub variables: Map<String, Value>,
    /// The failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

/// What history keeps about a run, whatever the number of activations.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// The conversation.
    pub conversation_id: String,
    /// The contact, when the channel sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// The flow.
    pub flow_id: String,
    /// Its version (SHA-256 of the source).
    pub flow_version: String,
    /// Where the run stands now.
    pub status: RunStatus,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds of the last activation's end.
    pub updated_at_ms: i64,
    /// Unix milliseconds, once the run completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Milliseconds from start to finish (or to the last activation, while paused).
    pub duration_ms: i64,
}

/// A run's history: the summary and every segment, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunHistory {
    /// The summary.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Every activation.
    pub segments: Vec<Segment>,
}
