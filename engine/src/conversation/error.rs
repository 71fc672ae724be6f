//! Why a message could not be handled, in the words of the channel or the person at the
//! command line, with a stable code and whether sending it again can help.

use std::fmt;

use crate::storage::StoreError;

/// Why a message could not be handled. Messages are for the channel or the person at the
/// command line; [`code`](ConversationError::code) is stable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConversationError {
    /// A conversation or message id is malformed.
    #[error("the {what} must be 1 to {max} characters without control characters")]
    BadId {
        /// Which id.
        what: &'static str,
        /// The most characters.
        max: usize,
    },
    /// A channel's message id uses the prefix of the ids Tern makes up.
    #[error(
        "message ids starting with `{prefix}` are reserved for the ids Tern makes up; send the message with another id"
    )]
    ReservedId {
        /// The reserved prefix.
        prefix: &'static str,
    },
    /// A message id of the conversation was already used for a message with other content
    /// (text, contact or metadata). The new message was not processed.
    #[error(
        "message id `{message_id}` was already used in this conversation for a message with another text, contact or metadata; this message was not processed: send it with a new message id"
    )]
    MessageIdReused {
        /// The message id.
        message_id: String,
    },
    /// Too many messages of one conversation are waiting.
    #[error("conversation `{conversation}` already has {limit} messages waiting; send this one again shortly")]
    ConversationBusy {
        /// The conversation.
        conversation: String,
        /// The limit.
        limit: usize,
    },
    /// Too many messages are being processed.
    #[error("{limit} messages are already being processed; send this one again shortly")]
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The service is shutting down.
    #[error("Tern is shutting down; send the message again in a moment")]
    ShuttingDown,
    /// `Trigger::Start` named a flow that is not loaded.
    #[error("no flow `{flow_id}` is loaded")]
    UnknownFlow {
        /// The flow id.
        flow_id: String,
    },
    /// The store failed. The detail went to the log, not here.
    #[error(
        "the store failed while handling conversation `{conversation}`; the message was not answered, send it again"
    )]
    Store {
        /// The conversation.
        conversation: String,
    },
    /// The conversation's lock was lost while the message was handled (another instance took
    /// the conversation), [`LOCK_LOST_RERUNS`](super::LOCK_LOST_RERUNS) times in a row: nothing
    /// of it was committed, and it can be sent again.
    #[error(
        "conversation `{conversation}` was taken over by another instance while this message was handled; nothing of it was kept, send it again"
    )]
    LockLost {
        /// The conversation.
        conversation: String,
    },
    /// The paused run cannot be resumed.
    #[error("the paused run of conversation `{conversation}` cannot be resumed: {reason}")]
    Paused {
        /// The conversation.
        conversation: String,
        /// Why.
        reason: String,
    },
    /// The task running the message ended abnormally (a bug; the log has the detail).
    #[error(
        "handling the message of conversation `{conversation}` was interrupted by an internal error; send it again"
    )]
    Interrupted {
        /// The conversation.
        conversation: String,
    },
}

impl ConversationError {
    /// A stable code for the channel: `bad-id`, `message-id-reused`, `conversation-busy`, `overloaded`,
    /// `shutting-down`, `unknown-flow`, `store-unavailable`, `lock-lost`,
    /// `paused-run-unreadable`, `interrupted`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadId { .. } | Self::ReservedId { .. } => "bad-id",
            Self::MessageIdReused { .. } => "message-id-reused",
            Self::ConversationBusy { .. } => "conversation-busy",
            Self::Overloaded { .. } => "overloaded",
            Self::ShuttingDown => "shutting-down",
            Self::UnknownFlow { .. } => "unknown-flow",
            Self::Store { .. } => "store-unavailable",
            Self::LockLost { .. } => "lock-lost",
            Self::Paused { .. } => "paused-run-unreadable",
            Self::Interrupted { .. } => "interrupted",
        }
    }

    /// Whether sending the same message again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ConversationBusy { .. }
                | Self::Overloaded { .. }
                | Self::ShuttingDown
                | Self::Store { .. }
                | Self::LockLost { .. }
                | Self::Interrupted { .. }
        )
    }

    /// Logs the store's detail (paths, driver messages) and returns the error for callers.
    pub(crate) fn store(conversation: &impl fmt::Display, e: &StoreError) -> Self {
        if let StoreError::Fenced { .. } = e {
            tracing::warn!(conversation = %conversation, error = %e, "conversation lock lost");
            return Self::LockLost { conversation: conversation.to_string() };
        }
        tracing::error!(conversation = %conversation, error = %e, "conversation store failed");
        Self::Store { conversation: conversation.to_string() }
    }
}
