//! The queue: one FIFO of jobs per conversation that has work, the messages queued or running
//! (so that a repeated message id gets the same [`Ticket`]), and the bounds on both.
//!
//! Admission is all-or-nothing under the locks (in-flight map, then queues): a message is
//! either queued with its permit and its flight, or refused with nothing changed. The worker
//! that drains a conversation's queue is in `workers.rs`; this file holds no task.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::error::ConversationError;
use super::types::{Answer, Answered, ConversationId, Inbound, MessageId};
use crate::step::ReplySink;
use crate::sync::lock;

/// A message's outcome, shared by every ticket waiting for it.
type Outcome = Arc<Result<Answered, ConversationError>>;

/// A conversation and a message in it.
pub(super) type Key = (ConversationId, MessageId);

/// A message queued or running.
struct Flight {
    tx: watch::Sender<Option<Outcome>>,
    /// The message, to make it durable if the caller stops waiting (shared with the job).
    inbound: Arc<Inbound>,
    /// The caller was given the message id to fetch the answer later: keep the answer.
    remember: bool,
    /// The result is being committed; too late to change what is kept.
    finishing: bool,
}

/// A queued message, with what its processing needs.
pub(super) struct Job {
    /// The message.
    pub(super) inbound: Arc<Inbound>,
    /// Where its replies go as soon as they are sent.
    pub(super) sink: Option<ReplySink>,
    /// Recovered after a restart: it may have been answered before the crash.
    pub(super) recovered: bool,
    /// Its place among the messages in flight (released when the job is dropped).
    pub(super) _permit: OwnedSemaphorePermit,
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
        self.outcome(|a| a.answer.clone()).await
    }

    /// Waits at most `limit`; `None` when the run is still going.
    pub async fn wait_for(&mut self, limit: Duration) -> Option<Result<Answer, ConversationError>> {
        tokio::time::timeout(limit, self.wait()).await.ok()
    }

    /// Waits at most `limit` for the answer as JSON (serialized once, when the message was
    /// committed: see [`Answered`]); `None` when the run is still going.
    pub async fn wait_json_for(&mut self, limit: Duration) -> Option<Result<Arc<[u8]>, ConversationError>> {
        tokio::time::timeout(limit, self.outcome(|a| a.json.clone())).await.ok()
    }

    async fn outcome<T>(&mut self, f: impl FnOnce(&Answered) -> T) -> Result<T, ConversationError> {
        let interrupted = || ConversationError::Interrupted { conversation: self.conversation.to_string() };
        match self.rx.wait_for(Option::is_some).await {
            Ok(v) => match v.as_deref() {
                Some(Ok(answered)) => Ok(f(answered)),
                Some(Err(e)) => Err(e.clone()),
                None => Err(interrupted()),
            },
            Err(_) => Err(interrupted()),
        }
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

/// The messages queued or running, by conversation.
pub(super) struct Queue {
    queues: Mutex<HashMap<ConversationId, VecDeque<Job>>>,
    in_flight: Mutex<HashMap<Key, Flight>>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    max_queued_per_conversation: usize,
    closing: AtomicBool,
}

impl Queue {
    /// An empty queue holding at most `max_in_flight` messages, `max_queued_per_conversation`
    /// of them for one conversation (each at least 1).
    pub(super) fn new(max_in_flight: usize, max_queued_per_conversation: usize) -> Self {
        Self {
            queues: Mutex::default(),
            in_flight: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight,
            max_queued_per_conversation,
            closing: AtomicBool::new(false),
        }
    }

    /// Queues a message; a message id already queued or running gets that message's ticket when
    /// it is the same message ([`Inbound::digest`]).
    /// Returns the ticket and whether the conversation needs a worker (its queue was empty).
    ///
    /// # Errors
    /// [`ConversationError::MessageIdReused`] (the id is queued or running with other content),
    /// [`ConversationError::ShuttingDown`], [`ConversationError::Overloaded`] or
    /// [`ConversationError::ConversationBusy`]: nothing was queued.
    pub(super) fn push(
        &self,
        inbound: Inbound,
        sink: Option<ReplySink>,
        recovered: bool,
    ) -> Result<(Ticket, bool), ConversationError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ConversationError::ShuttingDown);
        }
        let conversation = inbound.conversation.clone();
        let message_id = inbound.message_id.clone();
        let key = (conversation.clone(), message_id.clone());
        let mut flights = lock(&self.in_flight);
        if let Some(f) = flights.get(&key) {
            // The same message sent again waits for the first; another under its id is refused.
            if !recovered && f.inbound.digest() != inbound.digest() {
                return Err(ConversationError::MessageIdReused { message_id: message_id.to_string() });
            }
            return Ok((Ticket { conversation, message_id, rx: f.tx.subscribe() }, false));
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConversationError::Overloaded { limit: self.max_in_flight })?;
        let mut queues = lock(&self.queues);
        let start_worker = !queues.contains_key(&conversation);
        let queue = queues.entry(conversation.clone()).or_default();
        if queue.len() >= self.max_queued_per_conversation.max(1) {
            return Err(ConversationError::ConversationBusy {
                conversation: conversation.to_string(),
                limit: self.max_queued_per_conversation,
            });
        }
        let (tx, rx) = watch::channel(None);
        let inbound = Arc::new(inbound);
        flights.insert(key, Flight { tx, inbound: inbound.clone(), remember: false, finishing: false });
        queue.push_back(Job { inbound, sink, recovered, _permit: permit });
        Ok((Ticket { conversation, message_id, rx }, start_worker))
    }

    /// The conversation's next job; `None` (and the conversation's queue is gone) when it has
    /// none: its worker ends.
    pub(super) fn pop(&self, conversation: &ConversationId) -> Option<Job> {
        let mut queues = lock(&self.queues);
        let job = queues.get_mut(conversation).and_then(VecDeque::pop_front);
        if job.is_none() {
            queues.remove(conversation);
        }
        job
    }

    /// Gives a message's outcome to every ticket waiting for it; the message is no longer in
    /// flight.
    pub(super) fn answer(&self, key: &Key, outcome: Result<Answered, ConversationError>) {
        if let Some(f) = lock(&self.in_flight).remove(key) {
            let _ = f.tx.send(Some(Arc::new(outcome)));
        }
    }

    /// The caller stops waiting: keeps the message's answer for later. Returns the message to
    /// make durable, or `None` when its result is already being committed.
    pub(super) fn keep_answer(&self, key: &Key) -> Option<Arc<Inbound>> {
        let mut flights = lock(&self.in_flight);
        match flights.get_mut(key) {
            Some(f) if !f.finishing => {
                f.remember = true;
                Some(f.inbound.clone())
            }
            _ => None,
        }
    }

    /// Marks a message as finishing and says whether its answer must be kept.
    pub(super) fn finishing(&self, key: &Key) -> bool {
        let mut flights = lock(&self.in_flight);
        match flights.get_mut(key) {
            Some(f) => {
                f.finishing = true;
                f.remember
            }
            None => false,
        }
    }

    /// The message's commit was refused (its conversation lock was lost) and it runs again: a
    /// caller may still stop waiting and have it accepted.
    pub(super) fn unfinished(&self, key: &Key) {
        if let Some(f) = lock(&self.in_flight).get_mut(key) {
            f.finishing = false;
        }
    }

    /// Whether the message is queued or running.
    pub(super) fn contains(&self, key: &Key) -> bool {
        lock(&self.in_flight).contains_key(key)
    }

    /// Messages queued or running now.
    pub(super) fn len(&self) -> usize {
        self.max_in_flight.max(1) - self.permits.available_permits()
    }

    /// Takes no more messages and waits at most `grace` for the queued and running ones to
    /// finish; `false` when some were still going.
    pub(super) async fn close(&self, grace: Duration) -> bool {
        self.closing.store(true, Ordering::Release);
        let all = u32::try_from(self.max_in_flight.max(1)).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.permits.acquire_many(all)).await.is_ok()
    }
}
