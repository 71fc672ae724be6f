//! The service's vocabulary: identifiers, what a caller submits, what it gets back, and what
//! is stored about paused runs and run history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ConversationError;
use crate::ids::RunId;
use crate::run::{RunError, RunSnapshot, RunStatus, TraceEntry};

pub use crate::ids::MAX_ID_CHARS;

/// Most characters in a stored conversation id: a channel's id with its channel's prefix
/// (`channel:` + a 64-character name + `@` + a 16-character incarnation + `:` + 200
/// characters; see [`ConversationId::for_channel`]).
pub const MAX_STORED_CONVERSATION_ID_CHARS: usize = CHANNEL_PREFIX.len() + 64 + 1 + 16 + 1 + MAX_ID_CHARS;

/// The prefix of the stored ids of conversations of a channel other than `default` (and of
/// `default` conversation ids that would otherwise look reserved).
const CHANNEL_PREFIX: &str = "channel:";

/// Prefixes no channel's conversation id is stored under as it is: the channels' own
/// ([`CHANNEL_PREFIX`]) and the integration events' (`event:`).
const RESERVED_CONVERSATION_PREFIXES: [&str; 2] = [CHANNEL_PREFIX, "event:"];

/// The opaque-id rule ([`check_opaque_id`](crate::ids::check_opaque_id)) with the service's
/// error.
fn check_id(what: &'static str, s: &str) -> Result<(), ConversationError> {
    crate::ids::check_opaque_id(what, s).map_err(|_| ConversationError::BadId { what, max: MAX_ID_CHARS })
}

/// The same rule for a stored conversation id, which may carry its channel's prefix.
fn check_stored_id(what: &'static str, s: &str) -> Result<(), ConversationError> {
    crate::ids::check_opaque_id_within(what, s, MAX_STORED_CONVERSATION_ID_CHARS)
        .map_err(|_| ConversationError::BadId { what, max: MAX_STORED_CONVERSATION_ID_CHARS })
}

crate::ids::id_newtype!(
    /// A conversation id as the service stores it: for a channel's conversation, the channel's
    /// id scoped to the channel ([`ConversationId::of_channel`]); for an integration event's,
    /// `event:{integration}:{account}`. At most [`MAX_STORED_CONVERSATION_ID_CHARS`] characters.
    ConversationId,
    "conversation id",
    check_stored_id,
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

impl ConversationId {
    /// The conversation `id` of the channel `channel` without an incarnation (`default` and
    /// the channels of `tern.toml`): [`Self::for_channel`].
    ///
    /// # Errors
    /// [`ConversationError::BadId`] (with the channel's limit, [`MAX_ID_CHARS`]).
    pub fn of_channel(channel: &crate::channel::ChannelName, id: &str) -> Result<Self, ConversationError> {
        Self::for_channel(&crate::channel::ChannelRef::named(channel.clone()), id)
    }

    /// The conversation `id` (as the channel sends it: 1 to [`MAX_ID_CHARS`] characters, none
    /// hidden: [`is_hidden_char`](crate::ids::is_hidden_char)) of `channel`, as stored.
    /// Conversations are isolated per channel and per incarnation: the same `id` in two
    /// channels, or in a channel removed and added again, is two conversations, and no channel
    /// reaches another's, nor the integration events' (`event:…`).
    ///
    /// - `default`: the id as it is (conversations stored before channels existed stay
    ///   valid), unless it starts with `channel:` or `event:`, then `channel:default:{id}`;
    /// - any other channel: `channel:{channel}:{id}`, or `channel:{channel}@{incarnation}:{id}`
    ///   for a stored channel.
    ///
    /// Channel names have no `:` and no `@`, so no two (channel, id) pairs share a stored id.
    ///
    /// # Errors
    /// [`ConversationError::BadId`] (with the channel's limit, [`MAX_ID_CHARS`]).
    pub fn for_channel(channel: &crate::channel::ChannelRef, id: &str) -> Result<Self, ConversationError> {
        check_id("conversation id", id)?;
        let reserved = RESERVED_CONVERSATION_PREFIXES.iter().any(|p| id.starts_with(p));
        if channel.name.is_default() && channel.incarnation.is_none() && !reserved {
            return Self::new(id);
        }
        Self::new(format!("{CHANNEL_PREFIX}{channel}:{id}"))
    }

    /// The stored id of conversation `id` of the channel called `name` as it is now (its
    /// current incarnation, looked up in `channels`), e.g. to find its runs from the id the
    /// channel uses; `Ok(None)` when no channel has that name.
    ///
    /// # Errors
    /// [`ConversationError::BadId`], [`ConversationError::Store`] (the channel could not be
    /// looked up; the detail is logged).
    pub async fn of_current_channel(
        channels: &dyn crate::channel::ChannelDirectory,
        name: &crate::channel::ChannelName,
        id: &str,
    ) -> Result<Option<Self>, ConversationError> {
        let channel = channels.channel(name).await.map_err(|e| {
            tracing::warn!(channel = %name, error = %e, "could not look up a channel");
            ConversationError::Store { conversation: id.to_string() }
        })?;
        channel.map(|c| Self::for_channel(&crate::channel::ChannelRef::of(&c), id)).transpose()
    }

    /// The channel this conversation belongs to (`default` for unscoped ids and integration
    /// events), with its incarnation, and its id as that channel knows it: the inverse of
    /// [`Self::for_channel`].
    pub fn channel_ref_and_id(&self) -> (crate::channel::ChannelRef, &str) {
        if let Some((scope, id)) = self.0.strip_prefix(CHANNEL_PREFIX).and_then(|rest| rest.split_once(':'))
            && let Some(channel) = crate::channel::ChannelRef::parse(scope)
        {
            return (channel, id);
        }
        (crate::channel::ChannelRef::named(crate::channel::ChannelName::default_channel()), &self.0)
    }

    /// The channel's name and the id as the channel knows it ([`Self::channel_ref_and_id`]
    /// without the incarnation).
    pub fn channel_and_id(&self) -> (crate::channel::ChannelName, &str) {
        let (channel, id) = self.channel_ref_and_id();
        (channel.name, id)
    }
}

impl MessageId {
    /// A fresh id for a message the channel sent without one.
    pub fn generated() -> Self {
        Self(format!("{GENERATED_PREFIX}{}", uuid::Builder::from_random_bytes(rand::random()).into_uuid()).into())
    }

    /// Whether Tern made this id up for a message without one (a channel cannot send such an
    /// id: [`MessageId::from_channel`]). Such an id never comes back, so it is not deduplicated.
    /// A timer's id ([`MessageId::timer`]) is Tern's too, but is not one of these: it comes
    /// back the same when the timer fires again after a crash.
    pub fn is_generated(&self) -> bool {
        self.0.starts_with(GENERATED_PREFIX) && !self.is_timer()
    }

    /// The id of a paused run's timer firing: `tern-timer-<run id>-<due ms>`, the same every
    /// time that timer fires, so that a firing repeated after a crash (or by another instance)
    /// is deduplicated like a channel's message and its calls are journaled.
    pub fn timer(run_id: &crate::ids::RunId, due_at_ms: i64) -> Self {
        Self(format!("{TIMER_PREFIX}{run_id}-{due_at_ms}").into())
    }

    /// Whether this is a timer's id ([`MessageId::timer`]).
    pub fn is_timer(&self) -> bool {
        self.0.starts_with(TIMER_PREFIX)
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
        // Every id Tern makes up, a timer's included: a channel that sent a timer's id would
        // answer the timer's firing in advance (and so cancel it).
        if id.0.starts_with(GENERATED_PREFIX) {
            return Err(ConversationError::ReservedId { prefix: GENERATED_PREFIX });
        }
        Ok(id)
    }
}

/// The prefix of the message ids Tern makes up.
const GENERATED_PREFIX: &str = "tern-";

/// The prefix of timers' message ids (within [`GENERATED_PREFIX`], so no channel can send one).
const TIMER_PREFIX: &str = "tern-timer-";

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
    /// The paused run's timer is due ([`RunSnapshot::wake_at_ms`](crate::RunSnapshot::wake_at_ms)):
    /// resumes it without a message (a reminder, a timeout, the end of a wait), when the
    /// conversation's paused run still waits for this timer; otherwise nothing happens (the
    /// contact answered first).
    Timer {
        /// When the timer was due, Unix milliseconds.
        due_at_ms: i64,
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
    /// A contact's message. Its channel is the conversation's ([`ConversationId::channel_and_id`]).
    pub fn message(conversation: ConversationId, message_id: Option<MessageId>, text: impl Into<String>) -> Self {
        Self {
            channel: conversation.channel_and_id().0,
            conversation,
            message_id: message_id.unwrap_or_else(MessageId::generated),
            text: text.into(),
            contact: Map::new(),
            metadata: Map::new(),
            trigger: Trigger::Message,
            variables: Map::new(),
        }
    }

    /// A paused run's timer firing ([`Trigger::Timer`]), under its own id ([`MessageId::timer`]).
    pub fn timer(conversation: ConversationId, run_id: &crate::ids::RunId, due_at_ms: i64) -> Self {
        Self {
            trigger: Trigger::Timer { due_at_ms },
            ..Self::message(conversation, Some(MessageId::timer(run_id, due_at_ms)), "")
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
    /// The choices offered with it (`send_message` and `ask` with `choices`): show them as
    /// buttons or a list; the contact's answer is a choice's payload (or its number, or its
    /// title). Absent for a plain text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<crate::step::Choice>,
}

impl From<&crate::step::Reply> for ReplyText {
    fn from(r: &crate::step::Reply) -> Self {
        Self { text: r.text.clone(), choices: r.choices.clone() }
    }
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
    /// Milliseconds spent working: the activations, without the waits for the contact between
    /// them. Absent for runs recorded before Tern kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ms: Option<i64>,
    /// Whether a step failed and the run went on through `on_error`. Absent as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Whether the last activation sent the contact a reply. Absent as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_last: Option<bool>,
}

impl RunSummary {
    /// This summary with the facts of one more activation (`segment`) added to those of the
    /// earlier ones (`earlier`, the run's summary so far; `None` for a new run): work time
    /// summed, `recovered` once any activation recovered, `answered_last` from this one.
    pub fn with_segment(mut self, earlier: Option<&RunSummary>, segment: &Segment) -> Self {
        let work = (segment.finished_at_ms - segment.started_at_ms).max(0);
        let recovered = segment.trace.iter().any(|t| t.status == crate::StepStatus::ErrorHandled);
        match earlier {
            None => {
                self.work_ms = Some(work);
                self.recovered = Some(recovered);
            }
            Some(e) => {
                self.work_ms = e.work_ms.map(|w| w + work);
                self.recovered = if recovered { Some(true) } else { e.recovered };
            }
        }
        self.answered_last = Some(!segment.replies.is_empty());
        self
    }
}

/// A run's history: the summary and every segment, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunHistory {
    /// The summary.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Every activation.
    pub segments: Vec<Segment>,
    /// What the platform said of the run's replies (WhatsApp's statuses), in the order they
    /// came; at most [`MAX_DELIVERY_STATUSES`]. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<DeliveryStatus>,
}

/// Most delivery statuses kept per run (more are not recorded).
pub const MAX_DELIVERY_STATUSES: usize = 50;

/// What a platform said of a reply it took (WhatsApp's `statuses[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryStatus {
    /// The platform's id of the sent message.
    pub message_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Who it was sent to.
    pub recipient: String,
    /// For a failure: the platform's code and words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When Tern heard of it (Unix ms).
    pub at_ms: i64,
}

#[cfg(test)]
mod channel_scope_tests {
    use super::*;
    use crate::channel::ChannelName;

    #[test]
    fn conversations_are_scoped_per_channel_and_the_default_ones_keep_their_ids() {
        let default = ChannelName::default_channel();
        let support = ChannelName::new("support").unwrap();
        let sales = ChannelName::new("sales").unwrap();
        let of = |c: &ChannelName, id: &str| ConversationId::of_channel(c, id).unwrap();
        assert_eq!(of(&default, "c-1").as_str(), "c-1");
        assert_eq!(of(&support, "c-1").as_str(), "channel:support:c-1");
        assert_ne!(of(&support, "c-1"), of(&sales, "c-1"));
        // Nobody reaches an integration event's conversation or another channel's.
        assert_eq!(of(&default, "event:crm:42").as_str(), "channel:default:event:crm:42");
        assert_eq!(of(&default, "channel:support:c-1").as_str(), "channel:default:channel:support:c-1");
        assert_eq!(of(&support, "event:crm:42").as_str(), "channel:support:event:crm:42");
        for (c, id) in [(&default, "c-1"), (&support, "c-1"), (&default, "event:crm:42"), (&sales, "a:b")] {
            let stored = of(c, id);
            assert_eq!(stored.channel_and_id(), (c.clone(), id), "{stored}");
            assert_eq!(Inbound::message(stored, None, "").channel, *c);
        }
        let events = ConversationId::new("event:crm:42").unwrap();
        assert_eq!(events.channel_and_id(), (default.clone(), "event:crm:42"));
        // The channel's limit is the channel's id, whatever the prefix adds.
        let longest = "x".repeat(MAX_ID_CHARS);
        assert!(ConversationId::of_channel(&ChannelName::new("a".repeat(64)).unwrap(), &longest).is_ok());
        let err = ConversationId::of_channel(&support, &format!("{longest}x")).unwrap_err();
        assert!(err.to_string().contains("1 to 200 characters"), "{err}");
        assert!(ConversationId::of_channel(&support, "").is_err());
        assert!(ConversationId::of_channel(&support, "a\nb").is_err());
        assert!(ConversationId::of_channel(&support, "a\u{200B}b").is_err());
    }

    /// A stored channel's conversations are its incarnation's: the same name removed and added
    /// again reaches none of them.
    #[test]
    fn conversations_are_scoped_per_incarnation() {
        use crate::channel::{ChannelRef, Incarnation};
        let support = ChannelName::new("support").unwrap();
        let first = ChannelRef { name: support.clone(), incarnation: Some(Incarnation::generate()) };
        let second = ChannelRef { name: support.clone(), incarnation: Some(Incarnation::generate()) };
        let a = ConversationId::for_channel(&first, "c-1").unwrap();
        let b = ConversationId::for_channel(&second, "c-1").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, ConversationId::of_channel(&support, "c-1").unwrap());
        assert_eq!(a.channel_ref_and_id(), (first.clone(), "c-1"));
        assert_eq!(b.channel_and_id(), (support.clone(), "c-1"));
        assert!(a.as_str().starts_with(&format!("channel:support@{}:", first.incarnation.as_ref().unwrap().as_str())));
        // The longest id of the longest name still fits.
        let long = ChannelRef { name: ChannelName::new("a".repeat(64)).unwrap(), incarnation: first.incarnation };
        assert!(ConversationId::for_channel(&long, &"x".repeat(MAX_ID_CHARS)).is_ok());
        assert_eq!(ChannelRef::parse(&second.to_string()), Some(second));
        assert_eq!(ChannelRef::parse("support@nothex"), None);
    }
}
