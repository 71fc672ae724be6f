//! [`Conversations`], the service's public face: each method hands its work to the part that
//! does it (the queue and workers, the flows, maintenance) over the shared state in `inner.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::error::ConversationError;
use super::flows::Flows;
use super::inner::Inner;
use super::listing::{RunPage, RunQuery};
use super::maintenance;
use super::options::{ConversationOptions, RunObserver};
use super::paused_index::PausedIndex;
use super::queue::{MessageState, Queue, Ticket};
use super::store::{ConversationStore, Pruned, WriteOp};
use super::types::{Answer, ConversationId, Inbound, MessageId, RunHistory};
use super::workers;
use super::writer::Writer;
use crate::flow_set::{FlowSet, LoadedFlow};
use crate::ids::RunId;
use crate::run::Engine;
use crate::step::ReplySink;
use crate::storage::StoreError;
use crate::sync::lock;

/// The conversation service. Cheap to clone.
#[derive(Clone)]
pub struct Conversations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations").field("store", &self.inner.store).finish_non_exhaustive()
    }
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
        let shared = store.is_shared();
        let (writer, writer_task) = Writer::start(store.clone(), options.write_queue.max(1));
        let inner = Arc::new(Inner {
            queue: Queue::new(options.max_in_flight, options.max_queued_per_conversation),
            engine,
            store,
            options,
            flows: Arc::new(Flows::default()),
            paused: PausedIndex::default(),
            writer,
            observer,
            stop,
            background: Mutex::default(),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            transcripts: crate::web_chat::Watchers::default(),
            shared,
            activity: Arc::default(),
        });
        let mut tasks = vec![writer_task];
        tasks.extend(maintenance::spawn(&inner));
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

    /// Replaces the flows that can start with a [`FlowSet`] of `flows` (ordered by trigger
    /// priority, then id; see [`FlowSet::new`] for the error flow).
    pub fn set_flows(&self, flows: Vec<LoadedFlow>) {
        self.set_flow_set(FlowSet::new(flows));
    }

    /// Replaces the flows that can start and remembers their versions. Paused runs keep the
    /// version they started with; the set's error flow is started when a run fails and nothing
    /// in its flow caught it.
    pub fn set_flow_set(&self, set: FlowSet) {
        self.inner.flows.set(set);
    }

    /// The flows that can start, in the order triggers are tried, and the error flow.
    pub fn flows(&self) -> Arc<FlowSet> {
        self.inner.flows.current()
    }

    /// Queues a message. The run happens in the service whatever the caller does with the
    /// ticket; a message id already queued or running gets that message's ticket.
    ///
    /// # Errors
    /// [`ConversationError::ShuttingDown`], [`ConversationError::Overloaded`] or
    /// [`ConversationError::ConversationBusy`]: nothing was queued; send it again later.
    pub fn submit(&self, inbound: Inbound, sink: Option<ReplySink>) -> Result<Ticket, ConversationError> {
        let channel = inbound.conversation.channel_ref_and_id().0.name;
        let ticket = workers::enqueue(&self.inner, inbound, sink, false)?;
        self.inner.activity.received(channel.as_str(), self.inner.now_ms());
        Ok(ticket)
    }

    /// Adds what a platform said of one of a run's replies to that run's history, at the
    /// service's clock (see [`ConversationStore::record_delivery`](super::ConversationStore::record_delivery));
    /// nothing when the status names no run (a platform that does not echo it) or one that is
    /// not a run id.
    ///
    /// # Errors
    /// [`ConversationError::Store`]: the store failed (the detail is logged).
    pub async fn record_delivery(&self, status: &crate::platforms::Status) -> Result<(), ConversationError> {
        let Some(run_id) = status.run_id.as_deref().and_then(|r| crate::ids::RunId::new(r).ok()) else {
            return Ok(());
        };
        let delivery = super::DeliveryStatus {
            message_id: status.message_id.clone(),
            status: status.status.clone(),
            recipient: status.recipient.clone(),
            error: status.error.clone(),
            at_ms: self.inner.now_ms(),
        };
        self.inner.store.record_delivery(&run_id, &delivery).await.map_err(|e| {
            tracing::warn!(run = %run_id, error = %e, "could not record a reply's delivery status");
            ConversationError::Store { conversation: run_id.to_string() }
        })
    }

    /// What each channel did lately in this process: messages taken, replies delivered,
    /// retried and lost ([`ChannelActivity`](super::ChannelActivity)).
    pub fn activity(&self) -> &super::ChannelActivity {
        &self.inner.activity
    }

    /// The caller stops waiting but was told the message is accepted: make it durable (it is
    /// processed after a crash) and keep its answer for [`message`](Self::message). Returns
    /// the answer instead when it is already there.
    ///
    /// # Errors
    /// The store failed: the message was not made durable (it is still being processed).
    pub async fn accept(&self, ticket: &mut Ticket) -> Result<Option<Answer>, ConversationError> {
        let key = (ticket.conversation.clone(), ticket.message_id.clone());
        let Some(inbound) = self.inner.queue.keep_answer(&key) else {
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
        if self.inner.queue.contains(&(conversation.clone(), message_id.clone())) {
            return Ok(MessageState::Running);
        }
        let store = &self.inner.store;
        if let Some(r) =
            store.answer(conversation, message_id).await.map_err(|e| ConversationError::store(conversation, &e))?
        {
            return Ok(MessageState::Answered(Box::new(r.answer)));
        }
        if store.is_accepted(conversation, message_id).await.map_err(|e| ConversationError::store(conversation, &e))? {
            return Ok(MessageState::Running);
        }
        Ok(MessageState::Unknown)
    }

    /// A web chat conversation's transcript after entry `after`, oldest first, at most
    /// [`MAX_READ`](crate::web_chat::transcript::MAX_READ) entries.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    pub async fn transcript(
        &self,
        conversation: &ConversationId,
        after: i64,
    ) -> Result<Vec<crate::web_chat::Entry>, StoreError> {
        self.inner.store.transcript(conversation, after, crate::web_chat::transcript::MAX_READ).await
    }

    /// What a stream of `conversation`'s transcript waits on: it is woken when this process
    /// commits entries of the conversation (hold it while the stream is open; see
    /// [`Watchers`](crate::web_chat::Watchers)).
    pub fn watch_transcript(&self, conversation: &ConversationId) -> Arc<tokio::sync::Notify> {
        self.inner.transcripts.watch(conversation)
    }

    /// A run's history.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    pub async fn run(&self, run_id: &RunId) -> Result<Option<RunHistory>, StoreError> {
        self.inner.store.run(run_id).await
    }

    /// The error flow's run that `run`'s failure started, if any (see
    /// [`super::error_flow_run_of`]).
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    pub async fn error_flow_run_of(&self, run: &RunHistory) -> Result<Option<RunHistory>, StoreError> {
        super::error_flow_run_of(&*self.inner.store, run).await
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
        maintenance::recover(&self.inner).await
    }

    /// Stops taking messages, lets the queued and running ones finish (at most `grace`),
    /// commits every queued write and stops the background tasks. Webhook deliveries not yet
    /// sent stay in the store for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        if !inner.queue.close(grace).await {
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

    /// Fires the paused runs' timers that are due now (the service does this every
    /// [`TIMER_POLL`](super::TIMER_POLL) on its own; tests call it after moving a manual
    /// clock). Returns the tickets of the timer messages queued.
    ///
    /// # Errors
    /// The store failed.
    pub async fn fire_due_timers(&self) -> Result<Vec<super::Ticket>, StoreError> {
        maintenance::fire_due_timers(&self.inner).await
    }

    /// Runs retention once now.
    ///
    /// # Errors
    /// The store failed.
    pub async fn prune(&self) -> Result<Pruned, StoreError> {
        maintenance::prune(&self.inner).await
    }

    /// Deliveries waiting for the webhook.
    ///
    /// # Errors
    /// The store failed.
    pub async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.store.outbox_len().await
    }

    /// Tells the service that the store refuses writes (a readiness check found it read-only,
    /// full or unreachable): until a commit succeeds again, every message is answered only
    /// after its commit, so that nothing is acknowledged that was not stored.
    pub fn store_refuses_writes(&self) {
        self.inner.writer.mark_failing();
    }

    /// Whether the last commit failed and none succeeded since.
    pub fn writes_failing(&self) -> bool {
        self.inner.writer.failing()
    }

    /// Messages queued or running now.
    pub fn in_flight(&self) -> usize {
        self.inner.queue.len()
    }
}
