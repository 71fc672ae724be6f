//! Background maintenance: retention, checkpoints of the write-ahead log, recovery of messages
//! accepted before a crash, taking over messages another instance accepted and did not answer
//! (on a shared store), paused runs' timers, and the webhook outbox. Every loop ends when the
//! service stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::inner::Inner;
use super::outbox;
use super::paused_index::PAUSED_INDEX_LIMIT;
use super::store::Pruned;
use super::workers;
use crate::storage::StoreError;

/// How often the write-ahead log is checkpointed (see [`ConversationStore::checkpoint`](super::ConversationStore::checkpoint)).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Most messages taken over per look.
const ADOPT_BATCH: usize = 256;

/// How often the store is asked for paused runs whose timer is due: a timer fires at most
/// about this much after it is due (plus the conversation's queue), unless the service was
/// down then (it fires late, at the next start).
pub const TIMER_POLL: Duration = Duration::from_secs(1);

/// How long a claimed timer is left to the instance that claimed it before it may be fired
/// again (by any instance): longer than a run's activation may take. A timer whose instance
/// died fires this much late.
pub const TIMER_LEASE: Duration = Duration::from_secs(120);

/// Most timers fired per look (the rest on the next).
const TIMER_BATCH: usize = 256;

/// Starts the background tasks: retention, checkpoints, taking over on a shared store, and
/// webhook delivery (channels' webhooks are looked up per delivery).
pub(super) fn spawn(inner: &Arc<Inner>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(prune_loop(inner.clone())), tokio::spawn(checkpoint_loop(inner.clone()))];
    if let Some(every) = inner.options.timer_poll {
        tasks.push(tokio::spawn(timer_loop(inner.clone(), every)));
    }
    if inner.shared {
        tasks.push(tokio::spawn(adopt_loop(inner.clone())));
    }
    let outbox = outbox::Outbox::new(
        inner.store.clone(),
        inner.engine.outbound.clone(),
        inner.options.channels.clone(),
        inner.options.outbox.clone(),
        inner.options.clock.clone(),
        inner.activity.clone(),
    );
    tasks.push(tokio::spawn(outbox::deliver_loop(Arc::new(outbox), inner.outbox_wake.clone(), inner.stop.subscribe())));
    tasks
}

/// Queues every message that was accepted but not answered before the last stop (a crash or
/// `kill -9`). Returns how many.
///
/// # Errors
/// The store failed.
pub(super) async fn recover(inner: &Arc<Inner>) -> Result<usize, StoreError> {
    // Before any message runs: from here on this process keeps the index up to date.
    if let Some(rows) = inner.store.paused_index(PAUSED_INDEX_LIMIT).await? {
        inner.paused.load(rows);
    }
    // A timer this process claimed before it stopped fires now rather than when its lease
    // ends (a store shared by several instances keeps the leases: another may be firing it).
    inner.store.release_timer_claims().await?;
    let accepted = inner.store.accepted().await?;
    let n = accepted.len();
    for m in accepted {
        let conversation = m.conversation.clone();
        if let Err(e) = workers::enqueue(inner, m, None, true) {
            tracing::warn!(conversation = %conversation, error = %e, "could not queue an accepted message after a restart; it stays accepted for the next start");
        }
    }
    if n > 0 {
        tracing::info!(messages = n, "recovered accepted messages after a restart");
    }
    Ok(n)
}

/// Runs retention once now.
///
/// # Errors
/// The store failed.
pub(super) async fn prune(inner: &Inner) -> Result<Pruned, StoreError> {
    inner.store.prune(&inner.options.retention, inner.now_ms()).await
}

/// On a shared store: every [`ConversationOptions::adopt_every`](super::ConversationOptions::adopt_every),
/// queues the messages accepted more than
/// [`ConversationOptions::adopt_after`](super::ConversationOptions::adopt_after) ago and still
/// unanswered (an instance died after acknowledging them).
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
        let mut taken = 0usize;
        for m in stale {
            let key = (m.conversation.clone(), m.message_id.clone());
            if inner.queue.contains(&key) {
                continue;
            }
            match workers::enqueue(&inner, m, None, true) {
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

/// Queues a timer message ([`Trigger::Timer`](super::Trigger::Timer)) for every paused run
/// whose timer is due, claimed for [`TIMER_LEASE`]; returns their tickets. A timer that cannot
/// be queued now (the service is overloaded) fires once its lease ends.
///
/// # Errors
/// The store failed.
pub(super) async fn fire_due_timers(inner: &Arc<Inner>) -> Result<Vec<super::Ticket>, StoreError> {
    let lease_ms = i64::try_from(TIMER_LEASE.as_millis()).unwrap_or(i64::MAX);
    let due = inner.store.timers_due(inner.now_ms(), TIMER_BATCH, lease_ms).await?;
    let mut tickets = Vec::with_capacity(due.len());
    for t in due {
        let inbound = super::Inbound::timer(t.conversation, &t.run_id, t.due_at_ms);
        let key = (inbound.conversation.clone(), inbound.message_id.clone());
        if inner.queue.contains(&key) {
            continue;
        }
        match workers::enqueue(inner, inbound, None, false) {
            Ok(ticket) => tickets.push(ticket),
            Err(e) => {
                tracing::warn!(conversation = %key.0, error = %e, "could not queue a due timer; it fires again when its lease ends");
                break;
            }
        }
    }
    Ok(tickets)
}

/// Fires due timers every `every` ([`TIMER_POLL`] by default) until the service stops.
async fn timer_loop(inner: Arc<Inner>, every: Duration) {
    let mut stop = inner.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match fire_due_timers(&inner).await {
            Ok(t) if !t.is_empty() => tracing::debug!(timers = t.len(), "fired due timers"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not look for due timers"),
        }
    }
}

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

/// Runs retention now and every [`ConversationOptions::prune_every`](super::ConversationOptions::prune_every)
/// until the service stops.
async fn prune_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let now_ms = inner.now_ms();
        inner.paused.expire(now_ms / 1000);
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
