//! # The conversation service
//!
//! One place turns a conversation message into an answer: message-id dedupe, resume-or-trigger,
//! the run, the paused run, history and the outbound webhook. The HTTP server and `tern run`
//! are thin adapters over [`Conversations`]; the storage is a [`ConversationStore`] (SQLite
//! and PostgreSQL in the `tern-store` crate, in memory for `tern run`).
//!
//! ## Design choices
//!
//! - **Runs outlive the request.** [`Conversations::submit`] queues the message and returns a
//!   [`Ticket`] at once; the run happens in a task of the service, so a caller that disconnects
//!   or times out cancels nothing. A repeated message id while the first is still running gets
//!   the same ticket (it waits for that run's answer); afterwards, the remembered answer.
//! - **One worker per active conversation.** Messages of a conversation are processed one at a
//!   time in the order they were submitted; different conversations run in parallel. The worker
//!   exists only while its queue is not empty, so memory follows load, not the number of
//!   conversations ever seen.
//! - **Everything is bounded.** At most `max_in_flight` messages are queued or running
//!   ([`ConversationError::Overloaded`] beyond: the server answers 503 with `Retry-After`), at
//!   most `max_queued_per_conversation` per conversation, the write queue has a fixed capacity
//!   (callers wait: backpressure, never unbounded memory), and [`Retention`] prunes history,
//!   remembered answers and expired paused runs.
//! - **Group commit.** Every write goes through one writer task that commits whatever is
//!   queued in one transaction. A message whose answer later messages depend on (a paused run,
//!   a remembered answer, a webhook delivery) is answered only after its commit; a run whose
//!   only trace is history is answered at once and its history follows in the next batch.
//! - **Acknowledged means durable.** A caller that gives up waiting calls
//!   [`Conversations::accept`]: the message is stored before the caller is told "accepted", and
//!   after a crash [`Conversations::recover`] processes what was accepted but not answered.
//! - **Most messages skip the paused-run read.** A store with one writer (SQLite) gives the
//!   service the conversations that have a paused run at start-up
//!   ([`ConversationStore::paused_index`]); the service then keeps that index itself (added
//!   before a pause is committed, removed after it is cleared, so it never holds less than the
//!   store). A shared store (several instances) gives none, and every message reads.
//! - **Failures still answer.** A run that fails with nothing in its flow to catch it starts
//!   the error flow (the loaded flow whose trigger is `{"type": "error"}`) and/or sends the
//!   default error reply ([`ConversationOptions::error_reply`]), through
//!   [`crate::ErrorHandling`]; the error flow's run is a run of its own in history and may
//!   pause like any other.
//! - **The webhook is an outbox.** Deliveries are committed with the run's result and its
//!   channel, and sent by a background task to the channel's webhook, signed (Standard
//!   Webhooks, the same `webhook-id` on every attempt), each delivery in a task of its own with
//!   bounded concurrency per URL, with exponential backoff until the receiver accepts them or
//!   [`OutboxPolicy::max_attempts`] is reached.
//! - **One file per job, over one shared state.** `inner.rs` holds what the service's tasks
//!   share and calls nothing; each job is a file of functions over it, and dependencies point
//!   one way: `service.rs` (the public [`Conversations`]) → `workers.rs` and `maintenance.rs` →
//!   `process.rs` (one message, from the queue to the commit) → `inner.rs` → `queue.rs`,
//!   `flows.rs`, `paused_index.rs`, `writer.rs` → `store.rs`, `types.rs`, `error.rs`.
//!
//! | file | job |
//! |---|---|
//! | `error.rs` | [`ConversationError`] |
//! | `options.rs` | [`ConversationOptions`] and its defaults |
//! | `queue.rs`, `workers.rs` | the per-conversation queues, [`Ticket`], the workers |
//! | `process.rs` | one message: dedupe, resume or trigger, the run, failures, the commit |
//! | `maintenance.rs` | retention, checkpoints, recovery, taking over, the outbox task |
//! | `flows.rs` | the current [`FlowSet`](crate::flow_set::FlowSet) and the versions paused runs use |
//! | `paused_index.rs` | which conversations may have a paused run |
//! | `writer.rs`, `outbox.rs` | group commit; webhook delivery |
//! | `store.rs`, `listing.rs`, `types.rs` | the storage interface, run listings, the vocabulary |

mod activity;
mod error;
mod flows;
mod inner;
mod listing;
mod maintenance;
mod options;
mod outbox;
mod paused_index;
mod process;
mod queue;
mod recovery;
mod service;
mod store;
mod types;
mod workers;
mod writer;

pub use activity::{Activity, ChannelActivity, Delivered, MAX_CHANNELS};
pub use error::ConversationError;
pub use listing::{DEFAULT_RUNS_PAGE, MAX_RUNS_PAGE, RunCursor, RunCursorError, RunPage, RunQuery};
pub use maintenance::{CHECKPOINT_EVERY, TIMER_LEASE, TIMER_POLL};
pub use options::{ADOPT_AFTER, ADOPT_EVERY, ConversationOptions, DEFAULT_ERROR_REPLY, RunObserver};
pub use outbox::{DEFER, MAX_ATTEMPT_TIMEOUT, OUTBOX_LEASE, OutboxPolicy, new_delivery_id};
pub use paused_index::PAUSED_INDEX_LIMIT;
pub use queue::{MessageState, Ticket};
pub use recovery::{Recovery, Unanswered, error_flow_run_of};
pub use service::Conversations;
pub use store::{
    Completion, ConversationLock, ConversationStore, DueTimer, MAX_NOTICE_ID, MAX_NOTICES, MemoryConversationStore,
    Notice, OutboxItem, PausedChange, Pruned, Remembered, Retention, WriteOp,
};
pub use types::{
    Answer, AnswerStatus, Answered, ConversationId, DeliveryStatus, ErrorFlowRun, Inbound, MAX_DELIVERY_STATUSES,
    MAX_ID_CHARS, MessageId, PAUSED_FORMAT, PausedRun, PausedRunError, ReplyText, RunHistory, RunSummary, Segment,
    Trigger,
};
pub use workers::{CONVERSATION_LOCK_WAIT, LOCK_LOST_RERUNS};

pub use crate::flow_set::{LoadedFlow, flow_hash};
pub use crate::ids::RunId;
pub use crate::run::{RunStatus, UnknownStatus};
