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
//! - **The webhook is an outbox.** Deliveries are committed with the run's result and sent by a
//!   background task with exponential backoff until the channel accepts them or
//!   [`OutboxPolicy::max_attempts`] is reached.

mod listing;
mod outbox;
mod process;
mod store;
mod types;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

pub use listing::{DEFAULT_RUNS_PAGE, MAX_RUNS_PAGE, RunCursor, RunCursorError, RunPage, RunQuery};
pub use outbox::OutboxPolicy;
pub use store::{
    Completion, ConversationLock, ConversationStore, MemoryConversationStore, OutboxItem, PausedChange, Pruned,
    Retention, WriteOp,
};
pub use types::{
    Answer, AnswerStatus, ConversationId, ErrorFlowRun, Inbound, LoadedFlow, MAX_ID_CHARS, MessageId, PAUSED_FORMAT,
    PausedRun, PausedRunError, ReplyText, RunHistory, RunSummary, Segment, Trigger, UnknownStatus, flow_hash,
};

use crate::clock::{self, Clock};
use crate::compile::{LoadOptions, load_flow};
use crate::flow::Trigger as FlowTrigger;
use crate::run::{Engine, RunResult};
use crate::step::{CompiledFlow, ReplySink};
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
    /// A stable code for the channel: `bad-id`, `conversation-busy`, `overloaded`,
    /// `shutting-down`, `unknown-flow`, `store-unavailable`, `paused-run-unreadable`,
    /// `interrupted`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadId { .. } | Self::ReservedId { .. } => "bad-id",
            Self::ConversationBusy { .. } => "conversation-busy",
            Self::Overloaded { .. } => "overloaded",
            Self::ShuttingDown => "shutting-down",
            Self::UnknownFlow { .. } => "unknown-flow",
            Self::Store { .. } => "store-unavailable",
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
                | Self::Interrupted { .. }
        )
    }

    /// Logs the store's detail (paths, driver messages) and returns the error for callers.
    pub(crate) fn store(conversation: &ConversationId, e: &StoreError) -> Self {
        tracing::error!(conversation = %conversation, error = %e, "conversation store failed");
        Self::Store { conversation: conversation.to_string() }
    }
}

/// Settings of the service.
#[derive(Clone, Debug)]
pub struct ConversationOptions {
    /// How long a paused run waits for the contact's next message.
    pub pause_ttl: Duration,
    /// Where every run's replies are also posted.
    pub webhook: Option<url::Url>,
    /// Most messages queued or running at once.
    pub max_in_flight: usize,
    /// Most messages queued for one conversation.
    pub max_queued_per_conversation: usize,
    /// What history and dedupe keep.
    pub retention: Retention,
    /// How often retention runs.
    pub prune_every: Duration,
    /// Webhook delivery.
    pub outbox: OutboxPolicy,
    /// Capacity of the write queue (operations).
    pub write_queue: usize,
    /// The default error reply: sent when a run fails, nothing in its flow caught the failure
    /// and no error flow answered (README "When a step fails"). `None` sends nothing.
    pub error_reply: Option<String>,
    /// On a store shared by several instances: how often this one looks for messages another
    /// accepted but did not answer ([`ADOPT_EVERY`] by default) …
    pub adopt_every: Duration,
    /// … and how old such a message must be before this one takes it over ([`ADOPT_AFTER`]).
    pub adopt_after: Duration,
    /// What paused-run expiry, retention, history times and webhook retries are judged by
    /// (the system clock; tests pass a [`ManualClock`](crate::clock::ManualClock), and give
    /// the store the same one).
    pub clock: Arc<dyn Clock>,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        Self {
            pause_ttl: Duration::from_secs(86_400),
            webhook: None,
            max_in_flight: 4096,
            max_queued_per_conversation: 64,
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
            outbox: OutboxPolicy::default(),
            write_queue: 4096,
            error_reply: None,
            adopt_every: ADOPT_EVERY,
            adopt_after: ADOPT_AFTER,
            clock: clock::system(),
        }
    }
}

/// Called with every run result (the server counts them for `/metrics`).
pub type RunObserver = Arc<dyn Fn(&RunResult) + Send + Sync>;

type Outcome = Arc<Result<Answer, ConversationError>>;

struct Flight {
    tx: watch::Sender<Option<Outcome>>,
    /// The message, to make it durable if the caller stops waiting (shared with the job).
    inbound: Arc<Inbound>,
    /// The caller was given the message id to fetch the answer later: keep the answer.
    remember: bool,
    /// The result is being committed; too late to change what is kept.
    finishing: bool,
}

struct Job {
    inbound: Arc<Inbound>,
    sink: Option<ReplySink>,
    /// Recovered after a restart: it may have been answered before the crash.
    recovered: bool,
    _permit: OwnedSemaphorePermit,
}

/// A submitted message: wait for its answer, or give up waiting (the run goes on).
#[derive(Debug)]
pub struct Ticket {
    /// The conversation.
    pub conversation: ConversationId,
    /// The message (the channel's id, or a generated one).
    pub message_id: MessageId,
    rx: watch::Receiver<Option<Outcome>>,
}

impl Ticket {
    /// Waits for the answer.
    ///
    /// # Errors
    /// What the processing failed with.
    pub async fn wait(&mut self) -> Result<Answer, ConversationError> {
        let conversation = self.conversation.to_string();
        match self.rx.wait_for(Option::is_some).await {
            Ok(v) => v.as_ref().map(|o| (**o).clone()).unwrap_or(Err(ConversationError::Interrupted { conversation })),
            Err(_) => Err(ConversationError::Interrupted { conversation }),
        }
    }

    /// Waits at most `limit`; `None` when the run is still going.
    pub async fn wait_for(&mut self, limit: Duration) -> Option<Result<Answer, ConversationError>> {
        tokio::time::timeout(limit, self.wait()).await.ok()
    }
}

/// Where a message stands, for `GET …/messages/{id}`.
#[derive(Clone, Debug)]
pub enum MessageState {
    /// Queued or running.
    Running,
    /// Answered.
    Answered(Box<Answer>),
    /// Not known (never received, or answered longer ago than the dedupe window).
    Unknown,
}

/// The conversation service. Cheap to clone.
#[derive(Clone)]
pub struct Conversations {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    store: Arc<dyn ConversationStore>,
    options: ConversationOptions,
    flows: RwLock<Arc<Vec<LoadedFlow>>>,
    /// The flow started when a run fails (trigger `{"type": "error"}`), if one is loaded.
    error_flow: RwLock<Option<LoadedFlow>>,
    /// The conversations that may have a paused run, with when it expires (Unix seconds):
    /// see [`ConversationStore::paused_index`]. `None` until loaded, when the store cannot
    /// give one, or past [`PAUSED_INDEX_LIMIT`]: then every message reads the store.
    paused_index: Mutex<Option<HashMap<ConversationId, i64>>>,
    versions: Mutex<HashMap<String, Arc<CompiledFlow>>>,
    queues: Mutex<HashMap<ConversationId, VecDeque<Job>>>,
    in_flight: Mutex<HashMap<(ConversationId, MessageId), Flight>>,
    permits: Arc<Semaphore>,
    writer: writer::Writer,
    observer: Option<RunObserver>,
    closing: AtomicBool,
    stop: watch::Sender<bool>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    outbox_wake: Arc<tokio::sync::Notify>,
    /// The store is shared with other processes ([`ConversationStore::is_shared`]).
    shared: bool,
}

/// Most compiled flow versions kept in memory (others are recompiled from the store).
const MAX_VERSIONS: usize = 256;

/// Most conversations the in-memory paused-run index holds (about 100 bytes each); beyond it
/// the index is dropped and every message reads its conversation's paused run from the store.
pub const PAUSED_INDEX_LIMIT: usize = 100_000;

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations").field("store", &self.inner.store).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conversations {
    /// Starts the service (its writer, pruner and webhook outbox tasks) on the current Tokio
    /// runtime.
    pub fn start(
        engine: Engine,
        store: Arc<dyn ConversationStore>,
        options: ConversationOptions,
        observer: Option<RunObserver>,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let store_shared = store.is_shared();
        let (writer, writer_task) = writer::Writer::start(store.clone(), options.write_queue.max(1));
        let outbox_wake = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            engine,
            store,
            options,
            flows: RwLock::default(),
            error_flow: RwLock::default(),
            paused_index: Mutex::default(),
            versions: Mutex::default(),
            queues: Mutex::default(),
            in_flight: Mutex::default(),
            writer,
            observer,
            closing: AtomicBool::new(false),
            stop,
            background: Mutex::default(),
            outbox_wake,
            shared: store_shared,
        });
        let mut tasks =
            vec![writer_task, tokio::spawn(prune_loop(inner.clone())), tokio::spawn(checkpoint_loop(inner.clone()))];
        if inner.shared {
            tasks.push(tokio::spawn(adopt_loop(inner.clone())));
        }
        if let Some(url) = inner.options.webhook.clone() {
            tasks.push(tokio::spawn(outbox::deliver_loop(
                inner.store.clone(),
                inner.engine.outbound.client.clone(),
                url,
                inner.options.outbox.clone(),
                inner.outbox_wake.clone(),
                inner.stop.subscribe(),
                inner.options.clock.clone(),
            )));
        }
        *lock(&inner.background) = tasks;
        Self { inner }
    }

    /// The engine runs use.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.inner.store
    }

    /// Replaces the flows that can start (sorted here by trigger priority, highest first, then
    /// id) and remembers their versions. Paused runs keep the version they started with.
    ///
    /// A flow whose trigger is `{"type": "error"}` becomes the error flow: it is started, with
    /// the failure in `{{error.*}}`, when a run fails and nothing in its flow caught it (README
    /// "When a step fails"). With several, the first by id is used (`tern serve` refuses a
    /// second one when it loads the directory).
    pub fn set_flows(&self, mut flows: Vec<LoadedFlow>) {
        let error_flow = flows
            .iter()
            .filter(|f| matches!(f.flow.trigger, Some(FlowTrigger::Error)))
            .min_by(|a, b| a.flow.id.cmp(&b.flow.id))
            .cloned();
        *self.inner.error_flow.write().unwrap_or_else(|p| p.into_inner()) = error_flow;
        flows.sort_by(|a, b| {
            let pa = a.flow.trigger.as_ref().map_or(i32::MIN, |t| t.priority());
            let pb = b.flow.trigger.as_ref().map_or(i32::MIN, |t| t.priority());
            pb.cmp(&pa).then_with(|| a.flow.id.cmp(&b.flow.id))
        });
        {
            let mut versions = lock(&self.inner.versions);
            for f in &flows {
                if versions.len() >= MAX_VERSIONS && !versions.contains_key(&f.hash) {
                    versions.clear();
                }
                versions.insert(f.hash.clone(), f.flow.clone());
            }
        }
        *self.inner.flows.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(flows);
    }

    /// The flows that can start, in the order triggers are tried.
    pub fn flows(&self) -> Arc<Vec<LoadedFlow>> {
        self.inner.flows.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues a message. The run happens in the service whatever the caller does with the
    /// ticket; a message id already queued or running gets that message's ticket.
    ///
    /// # Errors
    /// [`ConversationError::ShuttingDown`], [`ConversationError::Overloaded`] or
    /// [`ConversationError::ConversationBusy`]: nothing was queued; send it again later.
    pub fn submit(&self, inbound: Inbound, sink: Option<ReplySink>) -> Result<Ticket, ConversationError> {
        self.enqueue(inbound, sink, false)
    }

    fn enqueue(&self, inbound: Inbound, sink: Option<ReplySink>, recovered: bool) -> Result<Ticket, ConversationError> {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Err(ConversationError::ShuttingDown);
        }
        let conversation = inbound.conversation.clone();
        let message_id = inbound.message_id.clone();
        let key = (conversation.clone(), message_id.clone());
        let mut flights = lock(&inner.in_flight);
        if let Some(f) = flights.get(&key) {
            return Ok(Ticket { conversation, message_id, rx: f.tx.subscribe() });
        }
        let permit = inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConversationError::Overloaded { limit: inner.options.max_in_flight })?;
        let mut queues = lock(&inner.queues);
        let start_worker = !queues.contains_key(&conversation);
        let queue = queues.entry(conversation.clone()).or_default();
        if queue.len() >= inner.options.max_queued_per_conversation.max(1) {
            return Err(ConversationError::ConversationBusy {
                conversation: conversation.to_string(),
                limit: inner.options.max_queued_per_conversation,
            });
        }
        let (tx, rx) = watch::channel(None);
        let inbound = Arc::new(inbound);
        flights.insert(key, Flight { tx, inbound: inbound.clone(), remember: false, finishing: false });
        queue.push_back(Job { inbound, sink, recovered, _permit: permit });
        drop(queues);
        drop(flights);
        if start_worker {
            tokio::spawn(worker(self.inner.clone(), conversation.clone()));
        }
        Ok(Ticket { conversation, message_id, rx })
    }

    /// The caller stops waiting but was told the message is accepted: make it durable (it is
    /// processed after a crash) and keep its answer for [`message`](Self::message). Returns
    /// the answer instead when it is already there.
    ///
    /// # Errors
    /// The store failed: the message was not made durable (it is still being processed).
    pub async fn accept(&self, ticket: &mut Ticket) -> Result<Option<Answer>, ConversationError> {
        let key = (ticket.conversation.clone(), ticket.message_id.clone());
        let inbound = {
            let mut flights = lock(&self.inner.in_flight);
            match flights.get_mut(&key) {
                Some(f) if !f.finishing => {
                    f.remember = true;
                    Some(f.inbound.clone())
                }
                _ => None,
            }
        };
        let Some(inbound) = inbound else {
            // Finished or finishing: the answer is moments away.
            return ticket.wait().await.map(Some);
        };
        self.inner.writer.write(WriteOp::Accept(Box::new(Inbound::clone(&inbound))), true).await.map_err(|e| {
            tracing::error!(conversation = %ticket.conversation, error = %e, "could not accept a message durably");
            ConversationError::Store { conversation: ticket.conversation.to_string() }
        })?;
        Ok(None)
    }

    /// Where a message stands.
    ///
    /// # Errors
    /// The store failed.
    pub async fn message(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<MessageState, ConversationError> {
        if lock(&self.inner.in_flight).contains_key(&(conversation.clone(), message_id.clone())) {
            return Ok(MessageState::Running);
        }
        let store = &self.inner.store;
        if let Some(a) =
            store.answer(conversation, message_id).await.map_err(|e| ConversationError::store(conversation, &e))?
        {
            return Ok(MessageState::Answered(Box::new(a)));
        }
        if store.is_accepted(conversation, message_id).await.map_err(|e| ConversationError::store(conversation, &e))? {
            return Ok(MessageState::Running);
        }
        Ok(MessageState::Unknown)
    }

    /// A run's history.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunHistory>, StoreError> {
        self.inner.store.run(run_id).await
    }

    /// One page of run summaries, newest activity first.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    pub async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.inner.store.runs(query).await
    }

    /// Queues every message that was accepted but not answered before the last stop (a crash
    /// or `kill -9`). Returns how many.
    ///
    /// # Errors
    /// The store failed.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        // Before any message runs: from here on this process keeps the index up to date.
        if let Some(rows) = self.inner.store.paused_index(PAUSED_INDEX_LIMIT).await? {
            *lock(&self.inner.paused_index) = Some(rows.into_iter().collect());
        }
        let accepted = self.inner.store.accepted().await?;
        let n = accepted.len();
        for m in accepted {
            let conversation = m.conversation.clone();
            if let Err(e) = self.enqueue(m, None, true) {
                tracing::warn!(conversation = %conversation, error = %e, "could not queue an accepted message after a restart; it stays accepted for the next start");
            }
        }
        if n > 0 {
            tracing::info!(messages = n, "recovered accepted messages after a restart");
        }
        Ok(n)
    }

    /// Stops taking messages, lets the queued and running ones finish (at most `grace`),
    /// commits every queued write and stops the background tasks. Webhook deliveries not yet
    /// sent stay in the store for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::Release);
        let all = u32::try_from(inner.options.max_in_flight.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, inner.permits.acquire_many(all)).await.is_err() {
            tracing::warn!("shutdown: some runs were still going after the grace period");
        }
        // `send_replace`, not `send`: a background task that has not subscribed yet (a shutdown
        // right after the start) must still see the value when it does.
        inner.stop.send_replace(true);
        inner.writer.close();
        let tasks = std::mem::take(&mut *lock(&inner.background));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Runs retention once now.
    ///
    /// # Errors
    /// The store failed.
    pub async fn prune(&self) -> Result<Pruned, StoreError> {
        self.inner.store.prune(&self.inner.options.retention, self.inner.now_ms()).await
    }

    /// Deliveries waiting for the webhook.
    ///
    /// # Errors
    /// The store failed.
    pub async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.store.outbox_len().await
    }

    /// Messages queued or running now.
    pub fn in_flight(&self) -> usize {
        self.inner.options.max_in_flight.max(1) - self.inner.permits.available_permits()
    }
}

impl Inner {
    /// Unix milliseconds on the service's clock.
    fn now_ms(&self) -> i64 {
        self.options.clock.now_ms()
    }

    /// Whether the conversation may have a paused run (the store must be read).
    fn may_be_paused(&self, conversation: &ConversationId) -> bool {
        lock(&self.paused_index).as_ref().is_none_or(|index| index.contains_key(conversation))
    }

    /// Records a paused run about to be committed (before the commit: the index may hold more
    /// than the store, never less).
    fn index_paused(&self, conversation: &ConversationId, expires_at: i64) {
        let mut index = lock(&self.paused_index);
        if let Some(map) = index.as_mut() {
            if map.len() >= PAUSED_INDEX_LIMIT && !map.contains_key(conversation) {
                tracing::info!(
                    limit = PAUSED_INDEX_LIMIT,
                    "more paused runs than the index holds; reading the store for every message"
                );
                *index = None;
            } else {
                map.insert(conversation.clone(), expires_at);
            }
        }
    }

    /// Forgets a paused run that was cleared (after the commit).
    fn unindex_paused(&self, conversation: &ConversationId) {
        if let Some(map) = lock(&self.paused_index).as_mut() {
            map.remove(conversation);
        }
    }

    /// Forgets expired paused runs (retention deletes their rows).
    fn unindex_expired(&self, now_s: i64) {
        if let Some(map) = lock(&self.paused_index).as_mut() {
            map.retain(|_, expires_at| *expires_at > now_s);
        }
    }

    /// The error flow, if one is loaded.
    fn error_flow(&self) -> Option<LoadedFlow> {
        self.error_flow.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The flow version with this hash: in memory, or recompiled from the stored source.
    async fn version(&self, hash: &str) -> Result<Option<Arc<CompiledFlow>>, StoreError> {
        if let Some(f) = lock(&self.versions).get(hash) {
            return Ok(Some(f.clone()));
        }
        let Some(source) = self.store.flow_version(hash).await? else { return Ok(None) };
        let opts = LoadOptions { registry: &self.engine.registry, integrations: None, limits: Default::default() };
        let Ok(flow) = load_flow(&source, &opts) else { return Ok(None) };
        let flow = Arc::new(flow);
        let mut versions = lock(&self.versions);
        if versions.len() >= MAX_VERSIONS {
            versions.clear();
        }
        versions.insert(hash.to_string(), flow.clone());
        Ok(Some(flow))
    }

    /// Marks a message as finishing and says whether its answer must be kept.
    fn finishing(&self, key: &(ConversationId, MessageId)) -> bool {
        let mut flights = lock(&self.in_flight);
        match flights.get_mut(key) {
            Some(f) => {
                f.finishing = true;
                f.remember
            }
            None => false,
        }
    }
}

async fn worker(inner: Arc<Inner>, conversation: ConversationId) {
    loop {
        let job = {
            let mut queues = lock(&inner.queues);
            match queues.get_mut(&conversation).and_then(VecDeque::pop_front) {
                Some(j) => j,
                None => {
                    queues.remove(&conversation);
                    return;
                }
            }
        };
        let key = (job.inbound.conversation.clone(), job.inbound.message_id.clone());
        // On a shared store, the conversation is this process's until the message is done
        // (other instances wait), so its messages are handled one at a time everywhere.
        let held = match inner.store.lock_conversation(&conversation, CONVERSATION_LOCK_WAIT).await {
            Ok(held) => held,
            Err(e) => {
                let outcome = Err(ConversationError::store(&conversation, &e));
                drop(job);
                if let Some(f) = lock(&inner.in_flight).remove(&key) {
                    let _ = f.tx.send(Some(Arc::new(outcome)));
                }
                continue;
            }
        };
        // Its own task: a panic in a step fails this message, not the conversation's worker.
        let task = tokio::spawn(process::process(inner.clone(), job));
        let outcome = task.await.unwrap_or_else(|e| {
            tracing::error!(conversation = %conversation, error = %e, "the task handling a message failed");
            Err(ConversationError::Interrupted { conversation: conversation.to_string() })
        });
        if let Some(held) = held {
            held.release().await;
        }
        if let Some(f) = lock(&inner.in_flight).remove(&key) {
            let _ = f.tx.send(Some(Arc::new(outcome)));
        }
    }
}

/// Longest a message waits for its conversation while another instance sharing the store
/// handles one of its messages (then it fails with `store-unavailable` and can be sent again).
pub const CONVERSATION_LOCK_WAIT: Duration = Duration::from_secs(300);

/// How often an instance sharing the store looks, by default, for messages another instance
/// accepted but did not answer ([`ConversationStore::stale_accepted`]).
pub const ADOPT_EVERY: Duration = Duration::from_secs(5);

/// How old an accepted message must be, by default, before another instance takes it over.
/// Taking over a
/// message that its instance is still handling is safe (the conversation lock makes one wait,
/// then it finds the answer), only wasted effort.
pub const ADOPT_AFTER: Duration = Duration::from_secs(10);

/// Most messages taken over per look.
const ADOPT_BATCH: usize = 256;

/// On a shared store: every [`ConversationOptions::adopt_every`], queues the messages accepted
/// more than [`ConversationOptions::adopt_after`] ago and still unanswered (an instance died
/// after acknowledging them).
async fn adopt_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let after_ms = i64::try_from(inner.options.adopt_after.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.options.adopt_every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let before = inner.now_ms().saturating_sub(after_ms);
        let stale = match inner.store.stale_accepted(before, ADOPT_BATCH).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for messages left by another instance");
                continue;
            }
        };
        let service = Conversations { inner: inner.clone() };
        let mut taken = 0usize;
        for m in stale {
            let key = (m.conversation.clone(), m.message_id.clone());
            if lock(&inner.in_flight).contains_key(&key) {
                continue;
            }
            match service.enqueue(m, None, true) {
                Ok(_) => taken += 1,
                Err(e) => {
                    tracing::debug!(conversation = %key.0, error = %e, "could not take over an accepted message yet");
                    break;
                }
            }
        }
        if taken > 0 {
            tracing::info!(messages = taken, "took over accepted messages that no instance answered");
        }
    }
}

/// How often the write-ahead log is checkpointed (see [`ConversationStore::checkpoint`]).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the store every [`CHECKPOINT_EVERY`] until the service stops.
async fn checkpoint_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = inner.store.checkpoint().await {
            tracing::warn!(error = %e, "could not checkpoint the store's write-ahead log");
        }
    }
}

async fn prune_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let now_ms = inner.now_ms();
        inner.unindex_expired(now_ms / 1000);
        match inner.store.prune(&inner.options.retention, now_ms).await {
            Ok(p) if p != Pruned::default() => {
                tracing::info!(runs = p.runs, answers = p.answers, paused = p.paused, "retention pruned the store");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention could not prune the store"),
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.options.prune_every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
