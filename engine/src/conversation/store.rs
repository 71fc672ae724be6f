//! The storage interface of the conversation service, and an in-memory implementation for
//! `tern run` and tests. The SQLite and PostgreSQL implementations are in the `tern-store` crate.
//!
//! Writes go through one batched [`ConversationStore::write`] call per group of operations, so
//! that a database can commit many conversations' results in one transaction (group commit).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::listing::{RunPage, RunQuery};
use super::types::{Answer, Answered, ConversationId, Inbound, MessageId, PausedRun, RunHistory, RunSummary, Segment};
use crate::clock::{self, Clock};
use crate::effects::{EffectJournal, EffectKey, JournalError, PriorEffect, RecordedResponse};
use crate::ids::RunId;
use crate::storage::StoreError;

/// What happens to a conversation's paused run when a message is done.
#[derive(Clone, Debug)]
pub enum PausedChange {
    /// Nothing was paused before or after.
    Keep,
    /// The run ended (or an expired one is discarded).
    Clear,
    /// The run paused (again).
    Set(Box<PausedRun>),
}

/// Everything one finished message changes, committed together.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The channel the message came through, with its incarnation (where its delivery goes).
    pub channel: crate::channel::ChannelRef,
    /// The conversation.
    pub conversation: ConversationId,
    /// The message.
    pub message_id: MessageId,
    /// Whether to keep the answer for a repeated message id (always for the channel's ids;
    /// for generated ids only once the caller was given the id to fetch it later).
    pub remember_answer: bool,
    /// Whether the message may be among the accepted ones (a caller stopped waiting for it, or
    /// it was recovered after a restart); when not, there is nothing to remove.
    pub accepted: bool,
    /// The answer, with the JSON to store (serialized once for the store, the webhook and the
    /// caller).
    pub answer: Answered,
    /// The message's [`Inbound::digest`], kept with the remembered answer so that a message id
    /// re-sent with other content is refused instead of answered.
    pub digest: Option<String>,
    /// The paused run.
    pub paused: PausedChange,
    /// The run's summary and this activation, when a run started or resumed; a second entry
    /// for the error flow's run when the run failed and the error flow ran.
    pub history: Vec<(RunSummary, Segment)>,
    /// A delivery to the channel's webhook, when the channel has one: its JSON body (the
    /// answer's JSON with `conversation_id`), stored with [`Completion::channel`], whose
    /// [`Delivery`](crate::channel::Delivery) is looked up when it is sent.
    pub outbox: Option<Vec<u8>>,
    /// The fencing token of the conversation lock the message was handled under
    /// ([`ConversationLock::fence`]): the store commits nothing of this completion unless the
    /// token is still the conversation's current one ([`StoreError::Fenced`]).
    pub fence: Option<i64>,
    /// For a web chat's conversation, what the transcript gains
    /// ([`entries_of`](crate::web_chat::transcript::entries_of)); the store numbers them after
    /// the conversation's last entry and keeps at most
    /// [`MAX_ENTRIES`](crate::web_chat::transcript::MAX_ENTRIES). Empty for other channels.
    pub transcript: Vec<crate::web_chat::Entry>,
}

/// One write.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Keeps an acknowledged message until it is answered (so that a crash cannot lose it);
    /// skipped when the message is answered already.
    Accept(Box<Inbound>),
    /// Commits a finished message and removes it from the accepted ones.
    Complete(Box<Completion>),
    /// Removes an accepted message that turned out to be answered already.
    Forget(ConversationId, MessageId),
    /// Queues a [`Notice`] for delivery, unless a notice with its id was queued within
    /// [`Retention::notices_max_age_ms`].
    Notify(Box<Notice>),
}

/// A signed delivery that belongs to no conversation: an operator's notice, such as a
/// connection event of an integration (`tern_integrations::alerts`). It goes out through the
/// webhook outbox like a reply (signed, retried, kept across restarts), but its id is chosen by
/// whoever raises it and is remembered: the same id queued again (by another instance, or by
/// the same condition found again after a restart) within [`Retention::notices_max_age_ms`] is
/// not sent again. The id is also the delivery's `webhook-id`, so a receiver can dedupe too.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Its id: at most [`MAX_NOTICE_ID`] characters of `A-Za-z0-9_-`.
    pub id: String,
    /// The channel whose webhook it goes to.
    pub channel: crate::channel::ChannelRef,
    /// The JSON body to post.
    pub body: Value,
}

/// The longest [`Notice::id`], in characters.
pub const MAX_NOTICE_ID: usize = 64;

/// Most notice ids remembered: a retention pass forgets the oldest beyond this.
pub const MAX_NOTICES: u64 = 100_000;

/// A paused run whose timer is due ([`ConversationStore::timers_due`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimer {
    /// The conversation.
    pub conversation: ConversationId,
    /// The paused run.
    pub run_id: RunId,
    /// When its timer was due, Unix milliseconds.
    pub due_at_ms: i64,
}

/// A remembered answer and the digest of the message it answered ([`Inbound::digest`];
/// `None` for answers remembered before digests were kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Remembered {
    /// The answer.
    pub answer: Answer,
    /// The message's digest.
    pub digest: Option<String>,
}

/// A webhook delivery waiting to be sent.
#[derive(Clone, Debug)]
pub struct OutboxItem {
    /// Its id: the `webhook-id` of every attempt (the same on every retry, so that a receiver
    /// can dedupe).
    pub id: String,
    /// The channel whose webhook it goes to, with its incarnation: the delivery is dropped when
    /// the channel was removed (and perhaps added again) since.
    pub channel: crate::channel::ChannelRef,
    /// The JSON body to post.
    pub body: Value,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix milliseconds when it was queued.
    pub created_at_ms: i64,
    /// The number of this claim ([`ConversationStore::outbox_due`] counts them per
    /// delivery): a retry scheduled under an older claim, whose lease ended while its attempt
    /// was still running, changes nothing ([`ConversationStore::outbox_retry`]).
    pub lease: i64,
    /// How many parts of it a platform has already taken (a platform channel sends each reply
    /// as its own API call: a retry goes on from here, so that no part is sent twice;
    /// [`ConversationStore::outbox_progress`]). Always 0 for a webhook delivery (one call).
    pub sent: u32,
}

/// What to keep (README "Retention").
#[derive(Clone, Debug)]
pub struct Retention {
    /// Runs whose last activation is older than this many milliseconds are deleted.
    pub history_max_age_ms: i64,
    /// At most this many runs are kept (the oldest go first).
    pub history_max_runs: u64,
    /// A message id is remembered (and a repeat answered from memory) for this long.
    pub dedupe_window_ms: i64,
    /// At most this many answered message ids are remembered.
    pub max_answers: u64,
    /// At most this many signed requests' `webhook-id`s are remembered per sender (a channel,
    /// an integration's events) while their signatures are in the replay window: a sender with
    /// this many live ids at a retention pass has its new signed requests refused like replays
    /// until a pass finds fewer, and no other sender is affected.
    pub max_webhook_ids_per_sender: u64,
    /// A [`Notice`]'s id is remembered (and the same notice not queued again) for this long.
    pub notices_max_age_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            history_max_age_ms: 30 * 86_400_000,
            history_max_runs: 100_000,
            dedupe_window_ms: 86_400_000,
            max_answers: 1_000_000,
            max_webhook_ids_per_sender: crate::channel_auth::MAX_SEEN_WEBHOOK_IDS_PER_SENDER,
            notices_max_age_ms: 7 * 86_400_000,
        }
    }
}

/// How much one pruning pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Runs (with their segments).
    pub runs: u64,
    /// Remembered answers.
    pub answers: u64,
    /// Expired paused runs.
    pub paused: u64,
}

/// Storage for conversations: flow versions, paused runs, answers, accepted messages, run
/// history and the webhook outbox.
///
/// It is also the [`EffectJournal`] of the messages it holds (SECURITY R12).
#[async_trait]
pub trait ConversationStore: EffectJournal + Send + Sync + std::fmt::Debug {
    /// Records a flow version (idempotent).
    async fn put_flow_version(&self, hash: &str, flow_id: &str, source: &str) -> Result<(), StoreError>;
    /// The source of a flow version.
    async fn flow_version(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// The conversation's paused run, expired or not.
    async fn paused(&self, conversation: &ConversationId) -> Result<Option<PausedRun>, StoreError>;
    /// The remembered answer to a message, with the message's digest.
    async fn answer(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<Remembered>, StoreError>;
    /// Whether a message was accepted and is not answered yet.
    async fn is_accepted(&self, conversation: &ConversationId, message_id: &MessageId) -> Result<bool, StoreError>;
    /// Accepted messages not answered yet, in the order they were accepted (for recovery after
    /// a crash).
    async fn accepted(&self) -> Result<Vec<Inbound>, StoreError>;
    /// Applies the operations in order, all or nothing.
    async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError>;
    /// A run's history.
    async fn run(&self, run_id: &RunId) -> Result<Option<RunHistory>, StoreError>;
    /// Adds what a platform said of one of the run's replies to its history
    /// ([`RunHistory::deliveries`]); nothing when the run is not in history (pruned, or never
    /// stored) or has [`MAX_DELIVERY_STATUSES`](super::MAX_DELIVERY_STATUSES) already. Removed
    /// with the run.
    async fn record_delivery(&self, run_id: &RunId, status: &super::DeliveryStatus) -> Result<(), StoreError>;
    /// One page of run summaries, newest activity first (see [`RunQuery`]).
    async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError>;
    /// Claims up to `limit` webhook deliveries due at `now_ms`, oldest first: each one
    /// returned is not due again (for this process or another sharing the store) for
    /// [`OUTBOX_LEASE`](super::OUTBOX_LEASE), so that a delivery in flight is not picked
    /// twice; the delivery loop removes or reschedules it well before that (its per-attempt
    /// timeout is shorter), and a process that dies leaves it to be sent again, with the same
    /// id, once the lease ends. Only a conversation's oldest delivery is claimed (the first
    /// written): its replies arrive in order, a later one waiting while an earlier one is in
    /// flight or waiting for a retry.
    async fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// Removes a delivery (delivered, or given up).
    async fn outbox_remove(&self, id: &str) -> Result<(), StoreError>;
    /// Schedules another attempt of the delivery claimed as `lease` ([`OutboxItem::lease`]);
    /// nothing when it was claimed again since (its lease had ended: the newer claim's
    /// attempt decides).
    async fn outbox_retry(&self, id: &str, lease: i64, attempts: u32, next_at_ms: i64) -> Result<(), StoreError>;
    /// Records that the platform has taken the first `sent` parts of the delivery claimed as
    /// `lease`, before the next part is sent; nothing when it was claimed again since.
    async fn outbox_progress(&self, id: &str, lease: i64, sent: u32) -> Result<(), StoreError>;
    /// Deliveries waiting, for metrics and bounds.
    async fn outbox_len(&self) -> Result<u64, StoreError>;
    /// Claims up to `limit` paused runs whose timer ([`RunSnapshot::wake_at_ms`](crate::RunSnapshot::wake_at_ms))
    /// is due at `now_ms`, most overdue first: each one returned is not returned again (to
    /// this process or another sharing the store) for `lease_ms`, unless the paused run is
    /// written again meanwhile (which sets or clears its timer anew). A process that dies after
    /// claiming one leaves it to fire again, late, once the lease ends; firing twice does no
    /// harm, as the firing's message id is the same ([`MessageId::timer`](super::MessageId::timer)).
    async fn timers_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<DueTimer>, StoreError>;
    /// At start-up, before any timer fires: forgets the claims of [`timers_due`](Self::timers_due),
    /// where this process is the store's only user (the claims are its own, left by a stop or a
    /// crash); nothing on a store shared by several processes (another may be firing them).
    ///
    /// # Errors
    /// The store failed.
    async fn release_timer_claims(&self) -> Result<(), StoreError>;
    /// Deletes what the retention policy no longer keeps (and web chat transcripts older than
    /// a session lasts, [`SESSION_TTL_S`](crate::web_chat::session::SESSION_TTL_S)).
    async fn prune(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError>;
    /// A web chat conversation's transcript after entry `after` (0: from the start), oldest
    /// first, at most `limit` entries.
    async fn transcript(
        &self,
        conversation: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::web_chat::Entry>, StoreError>;
    /// Every conversation with a paused run (expired or not) and when it expires (Unix
    /// seconds), when this process is the store's only writer and there are at most `limit`;
    /// `None` otherwise. With it the service skips the paused-run read for the other
    /// conversations (most messages). A store shared by several processes returns `None`
    /// (the default): another process may pause a run at any time.
    ///
    /// # Errors
    /// The store failed.
    async fn paused_index(&self, limit: usize) -> Result<Option<Vec<(ConversationId, i64)>>, StoreError> {
        let _ = limit;
        Ok(None)
    }

    /// Whether other processes share this store (several `tern serve` on one PostgreSQL
    /// database). Then the service holds [`lock_conversation`](Self::lock_conversation) while
    /// it handles a message, always looks for a remembered answer first (another instance may
    /// have answered the same message id), and periodically takes over messages that another
    /// instance accepted but did not answer ([`stale_accepted`](Self::stale_accepted)).
    /// Default: `false`.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes the conversation for this process, across every process sharing the store, until
    /// the returned lock is released (or this process dies: the database then releases it).
    /// Waits while another process holds it, at most `wait`. `None` when the store has a
    /// single process (the default): the service's own per-conversation worker suffices.
    ///
    /// # Errors
    /// The store failed, or another process held the conversation longer than `wait`.
    async fn lock_conversation(
        &self,
        conversation: &ConversationId,
        wait: std::time::Duration,
    ) -> Result<Option<Box<dyn ConversationLock>>, StoreError> {
        let _ = (conversation, wait);
        Ok(None)
    }

    /// Up to `limit` messages accepted before `before_ms` (Unix milliseconds) and not answered
    /// yet, oldest first: on a shared store, those an instance that died (or is very slow)
    /// left behind. Default: none.
    ///
    /// # Errors
    /// The store failed.
    async fn stale_accepted(&self, before_ms: i64, limit: usize) -> Result<Vec<Inbound>, StoreError> {
        let _ = (before_ms, limit);
        Ok(Vec::new())
    }

    /// Moves committed writes from the write-ahead log into the database without blocking
    /// writers (SQLite: a passive checkpoint). The conversation service calls it every
    /// [`CHECKPOINT_EVERY`](super::CHECKPOINT_EVERY), so that commits never pay for it.
    /// Default: nothing to do.
    ///
    /// # Errors
    /// The store failed.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A conversation held by this process ([`ConversationStore::lock_conversation`]).
#[async_trait]
pub trait ConversationLock: Send {
    /// Releases the conversation. Dropping the lock without it releases it too, a moment later
    /// (from a task of its own).
    async fn release(self: Box<Self>);

    /// The fencing token of this hold, where the lock can be lost while it is held (a
    /// database session lock whose connection drops): a number that grows every time another
    /// holder (another process, or another session of this one) takes the conversation. A
    /// commit for the conversation carries it ([`Completion::fence`]) and the store refuses
    /// the commit with [`StoreError::Fenced`] when the number is no longer current, so that
    /// work done under a lost lock never overwrites the work of the next holder. `None`: the
    /// lock cannot be lost while held.
    fn fence(&self) -> Option<i64> {
        None
    }
}

/// An in-memory [`ConversationStore`] (for `tern run` and tests). Bounded by the same
/// retention as a database.
#[derive(Debug)]
pub struct MemoryConversationStore {
    inner: Mutex<Memory>,
    /// What answers, deliveries and effects are stamped with.
    clock: Arc<dyn Clock>,
}

impl Default for MemoryConversationStore {
    fn default() -> Self {
        Self::with_clock(clock::system())
    }
}

#[derive(Debug, Default)]
struct Memory {
    versions: HashMap<String, String>,
    paused: HashMap<ConversationId, PausedRun>,
    /// Until when each conversation's due timer is claimed (removed when its paused run is
    /// written).
    timer_leases: HashMap<ConversationId, i64>,
    answers: HashMap<(ConversationId, MessageId), (Remembered, i64)>,
    accepted: BTreeMap<u64, Inbound>,
    seq: u64,
    runs: HashMap<RunId, RunHistory>,
    /// Deliveries in the order written, each with when it is due and its conversation.
    outbox: VecDeque<(OutboxItem, i64, Option<ConversationId>)>,
    /// Queued notices' ids, with when.
    notices: HashMap<String, i64>,
    /// Web chat transcripts, oldest entry first.
    transcripts: HashMap<ConversationId, VecDeque<crate::web_chat::Entry>>,
    effects: HashMap<EffectKey, (Option<RecordedResponse>, i64)>,
}

impl MemoryConversationStore {
    /// An empty store on `clock` (tests pass a [`ManualClock`](crate::clock::ManualClock)).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::default(), clock }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ConversationStore for MemoryConversationStore {
    async fn put_flow_version(&self, hash: &str, _flow_id: &str, source: &str) -> Result<(), StoreError> {
        self.lock().versions.entry(hash.to_string()).or_insert_with(|| source.to_string());
        Ok(())
    }

    async fn flow_version(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().versions.get(hash).cloned())
    }

    async fn paused(&self, conversation: &ConversationId) -> Result<Option<PausedRun>, StoreError> {
        Ok(self.lock().paused.get(conversation).cloned())
    }

    async fn answer(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<Remembered>, StoreError> {
        Ok(self.lock().answers.get(&(conversation.clone(), message_id.clone())).map(|(a, _)| a.clone()))
    }

    async fn is_accepted(&self, conversation: &ConversationId, message_id: &MessageId) -> Result<bool, StoreError> {
        Ok(self.lock().accepted.values().any(|m| &m.conversation == conversation && &m.message_id == message_id))
    }

    async fn accepted(&self) -> Result<Vec<Inbound>, StoreError> {
        Ok(self.lock().accepted.values().cloned().collect())
    }

    async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut m = self.lock();
        let now = self.clock.now_ms();
        for op in ops {
            match op {
                WriteOp::Accept(msg) => {
                    let key = (msg.conversation.clone(), msg.message_id.clone());
                    if !m.answers.contains_key(&key) {
                        m.seq += 1;
                        let seq = m.seq;
                        m.accepted.insert(seq, (**msg).clone());
                    }
                }
                WriteOp::Forget(c, id) => m.accepted.retain(|_, a| !(&a.conversation == c && &a.message_id == id)),
                WriteOp::Notify(notice) => {
                    if m.notices.insert(notice.id.clone(), now).is_none() {
                        let item = OutboxItem {
                            id: notice.id.clone(),
                            channel: notice.channel.clone(),
                            body: notice.body.clone(),
                            attempts: 0,
                            created_at_ms: now,
                            lease: 0,
                            sent: 0,
                        };
                        m.outbox.push_back((item, now, None));
                    }
                }
                WriteOp::Complete(done) => {
                    let c = &done.conversation;
                    match &done.paused {
                        PausedChange::Keep => {}
                        PausedChange::Clear => {
                            m.paused.remove(c);
                            m.timer_leases.remove(c);
                        }
                        PausedChange::Set(p) => {
                            m.paused.insert(c.clone(), (**p).clone());
                            m.timer_leases.remove(c);
                        }
                    }
                    if done.remember_answer {
                        let remembered = Remembered { answer: done.answer.answer.clone(), digest: done.digest.clone() };
                        m.answers.insert((c.clone(), done.message_id.clone()), (remembered, now));
                    }
                    if done.accepted {
                        m.accepted.retain(|_, a| !(&a.conversation == c && a.message_id == done.message_id));
                    }
                    for (summary, segment) in &done.history {
                        let earlier = m.runs.get(&summary.run_id).map(|r| r.summary.clone());
                        let run = m.runs.entry(summary.run_id.clone()).or_insert_with(|| RunHistory {
                            summary: summary.clone(),
                            segments: Vec::new(),
                            deliveries: Vec::new(),
                        });
                        run.summary = summary.clone().with_segment(earlier.as_ref(), segment);
                        run.segments.push(segment.clone());
                    }
                    if let Some(body) = &done.outbox {
                        let body = serde_json::from_slice(body).map_err(|e| StoreError::Corrupt {
                            what: "a webhook delivery".into(),
                            reason: e.to_string(),
                        })?;
                        let item = OutboxItem {
                            id: super::outbox::new_delivery_id(),
                            channel: done.channel.clone(),
                            body,
                            attempts: 0,
                            created_at_ms: now,
                            lease: 0,
                            sent: 0,
                        };
                        m.outbox.push_back((item, now, Some(done.conversation.clone())));
                    }
                    if !done.transcript.is_empty() {
                        let t = m.transcripts.entry(c.clone()).or_default();
                        let last = t.back().map_or(0, |e| e.seq);
                        for (seq, entry) in (last + 1..).zip(&done.transcript) {
                            t.push_back(crate::web_chat::Entry { seq, at_ms: now, ..entry.clone() });
                        }
                        let max = usize::try_from(crate::web_chat::transcript::MAX_ENTRIES).unwrap_or(usize::MAX);
                        while t.len() > max {
                            t.pop_front();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn run(&self, run_id: &RunId) -> Result<Option<RunHistory>, StoreError> {
        Ok(self.lock().runs.get(run_id).cloned())
    }

    async fn record_delivery(&self, run_id: &RunId, status: &super::DeliveryStatus) -> Result<(), StoreError> {
        if let Some(run) = self.lock().runs.get_mut(run_id)
            && run.deliveries.len() < super::MAX_DELIVERY_STATUSES
        {
            run.deliveries.push(status.clone());
        }
        Ok(())
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let mut runs: Vec<RunSummary> =
            self.lock().runs.values().map(|r| &r.summary).filter(|r| query.matches(r)).cloned().collect();
        runs.sort_by(|a, b| (b.updated_at_ms, &b.run_id).cmp(&(a.updated_at_ms, &a.run_id)));
        let size = query.page_size();
        runs.truncate(size + 1);
        Ok(RunPage::from_overfetch(runs, size))
    }

    async fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let lease = i64::try_from(super::OUTBOX_LEASE.as_millis()).unwrap_or(i64::MAX);
        let mut m = self.lock();
        // Only a conversation's oldest delivery (the first written) may be claimed.
        let mut seen = std::collections::HashSet::new();
        let mut due: Vec<&mut (OutboxItem, i64, Option<ConversationId>)> = m
            .outbox
            .iter_mut()
            .filter(|(_, at, c)| c.as_ref().is_none_or(|c| seen.insert(c.clone())) && *at <= now_ms)
            .collect();
        due.sort_by_key(|(i, at, _)| (*at, i.created_at_ms));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(i, at, _)| {
                *at = now_ms.saturating_add(lease);
                i.lease += 1;
                i.clone()
            })
            .collect())
    }

    async fn outbox_remove(&self, id: &str) -> Result<(), StoreError> {
        self.lock().outbox.retain(|(i, _, _)| i.id != id);
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, lease: i64, attempts: u32, next_at_ms: i64) -> Result<(), StoreError> {
        for (item, at, _) in &mut self.lock().outbox {
            if item.id == id && item.lease == lease {
                item.attempts = attempts;
                *at = next_at_ms;
            }
        }
        Ok(())
    }

    async fn outbox_progress(&self, id: &str, lease: i64, sent: u32) -> Result<(), StoreError> {
        for (item, _, _) in &mut self.lock().outbox {
            if item.id == id && item.lease == lease {
                item.sent = sent;
            }
        }
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox.len() as u64)
    }

    async fn release_timer_claims(&self) -> Result<(), StoreError> {
        self.lock().timer_leases.clear();
        Ok(())
    }

    async fn timers_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<DueTimer>, StoreError> {
        let mut guard = self.lock();
        let m = &mut *guard;
        let mut due: Vec<DueTimer> = m
            .paused
            .iter()
            .filter_map(|(c, p)| {
                let at = p.snapshot.wake_at_ms.filter(|at| *at <= now_ms)?;
                let free = m.timer_leases.get(c).is_none_or(|until| *until <= now_ms);
                free.then(|| DueTimer { conversation: c.clone(), run_id: p.snapshot.run_id.clone(), due_at_ms: at })
            })
            .collect();
        due.sort_by_key(|t| t.due_at_ms);
        due.truncate(limit);
        for t in &due {
            m.timer_leases.insert(t.conversation.clone(), now_ms.saturating_add(lease_ms));
        }
        Ok(due)
    }

    async fn paused_index(&self, limit: usize) -> Result<Option<Vec<(ConversationId, i64)>>, StoreError> {
        let m = self.lock();
        Ok((m.paused.len() <= limit).then(|| m.paused.iter().map(|(c, p)| (c.clone(), p.expires_at)).collect()))
    }

    async fn prune(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut m = self.lock();
        let mut pruned = Pruned::default();
        let before = m.runs.len();
        m.runs.retain(|_, r| now_ms - r.summary.updated_at_ms <= retention.history_max_age_ms);
        let max_runs = usize::try_from(retention.history_max_runs).unwrap_or(usize::MAX);
        if m.runs.len() > max_runs {
            let mut ages: Vec<(i64, RunId)> =
                m.runs.values().map(|r| (r.summary.updated_at_ms, r.summary.run_id.clone())).collect();
            ages.sort();
            let excess = m.runs.len() - max_runs;
            for (_, id) in ages.into_iter().take(excess) {
                m.runs.remove(&id);
            }
        }
        pruned.runs = (before - m.runs.len()) as u64;
        let before = m.answers.len();
        m.answers.retain(|_, (_, at)| now_ms - *at <= retention.dedupe_window_ms);
        let max_answers = usize::try_from(retention.max_answers).unwrap_or(usize::MAX);
        if m.answers.len() > max_answers {
            let mut ages: Vec<(i64, (ConversationId, MessageId))> =
                m.answers.iter().map(|(k, (_, at))| (*at, k.clone())).collect();
            ages.sort_by_key(|(at, _)| *at);
            let excess = m.answers.len() - max_answers;
            for (_, k) in ages.into_iter().take(excess) {
                m.answers.remove(&k);
            }
        }
        pruned.answers = (before - m.answers.len()) as u64;
        m.effects.retain(|_, (_, at)| now_ms - *at <= retention.dedupe_window_ms);
        m.notices.retain(|_, at| now_ms - *at <= retention.notices_max_age_ms);
        let max_notices = usize::try_from(MAX_NOTICES).unwrap_or(usize::MAX);
        if m.notices.len() > max_notices {
            let mut ages: Vec<(i64, String)> = m.notices.iter().map(|(k, at)| (*at, k.clone())).collect();
            ages.sort();
            let excess = m.notices.len() - max_notices;
            for (_, k) in ages.into_iter().take(excess) {
                m.notices.remove(&k);
            }
        }
        let before = m.paused.len();
        let now_s = now_ms / 1000;
        m.paused.retain(|_, p| p.expires_at > now_s);
        let Memory { paused, timer_leases, .. } = &mut *m;
        timer_leases.retain(|c, _| paused.contains_key(c));
        pruned.paused = (before - m.paused.len()) as u64;
        let transcripts_before = now_ms.saturating_sub(crate::web_chat::session::SESSION_TTL_S * 1000);
        m.transcripts.retain(|_, t| {
            t.retain(|e| e.at_ms >= transcripts_before);
            !t.is_empty()
        });
        Ok(pruned)
    }

    async fn transcript(
        &self,
        conversation: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::web_chat::Entry>, StoreError> {
        Ok(self
            .lock()
            .transcripts
            .get(conversation)
            .map(|t| t.iter().filter(|e| e.seq > after).take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

#[async_trait]
impl EffectJournal for MemoryConversationStore {
    async fn begin_effect(&self, key: &EffectKey) -> Result<PriorEffect, JournalError> {
        let mut m = self.lock();
        Ok(match m.effects.get(key) {
            None => {
                m.effects.insert(key.clone(), (None, self.clock.now_ms()));
                PriorEffect::None
            }
            Some((None, _)) => PriorEffect::Unknown,
            Some((Some(r), _)) => PriorEffect::Done(r.clone()),
        })
    }

    async fn finish_effect(&self, key: &EffectKey, response: &RecordedResponse) -> Result<(), JournalError> {
        if let Some(e) = self.lock().effects.get_mut(key) {
            e.0 = Some(response.clone());
        }
        Ok(())
    }
}
