//! One worker per conversation with queued messages: it takes the conversation's messages one
//! at a time, in the order they were queued, and ends when the queue is empty (so memory follows
//! load, not the number of conversations ever seen). Each message runs in a task of its own: a
//! panic in a step fails that message, not the conversation's worker.
//!
//! On a shared store a conversation lock can be lost while a message runs (its database
//! session ended, and another instance may have taken the conversation since). The store then
//! refuses the message's commit ([`StoreError::Fenced`](crate::storage::StoreError::Fenced)),
//! and the worker takes the conversation again and handles the message again from the start,
//! on the state the other instance left, up to [`LOCK_LOST_RERUNS`] times.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::error::ConversationError;
use super::inner::Inner;
use super::process;
use super::queue::{Job, Ticket};
use super::types::{Answered, ConversationId, Inbound};
use crate::step::ReplySink;

/// Longest a message waits for its conversation while another instance sharing the store
/// handles one of its messages (then it fails with `store-unavailable` and can be sent again).
pub const CONVERSATION_LOCK_WAIT: Duration = Duration::from_secs(300);

/// How many times a message whose conversation lock was lost while it ran is handled again
/// before it fails with `lock-lost` (503, it can be sent again).
pub const LOCK_LOST_RERUNS: u32 = 3;

/// Queues a message and starts its conversation's worker when it has none.
///
/// # Errors
/// As [`Queue::push`](super::queue::Queue::push): nothing was queued.
pub(super) fn enqueue(
    inner: &Arc<Inner>,
    inbound: Inbound,
    sink: Option<ReplySink>,
    recovered: bool,
) -> Result<Ticket, ConversationError> {
    let (ticket, start_worker) = inner.queue.push(inbound, sink, recovered)?;
    if start_worker {
        tokio::spawn(worker(inner.clone(), ticket.conversation.clone()));
    }
    Ok(ticket)
}

async fn worker(inner: Arc<Inner>, conversation: ConversationId) {
    while let Some(job) = inner.queue.pop(&conversation) {
        let key = (job.inbound.conversation.clone(), job.inbound.message_id.clone());
        let job = Arc::new(job);
        let mut reruns = 0;
        let outcome = loop {
            let outcome = handle(&inner, &conversation, &job).await;
            match outcome {
                Err(ConversationError::LockLost { .. }) if reruns < LOCK_LOST_RERUNS => {
                    reruns += 1;
                    tracing::warn!(conversation = %conversation, rerun = reruns, "the conversation lock was lost while a message ran; nothing of it was committed, handling it again");
                }
                other => break other,
            }
        };
        drop(job);
        inner.queue.answer(&key, outcome);
    }
}

/// Handles one message under the conversation's lock.
async fn handle(
    inner: &Arc<Inner>,
    conversation: &ConversationId,
    job: &Arc<Job>,
) -> Result<Answered, ConversationError> {
    // On a shared store, the conversation is this process's until the message is done
    // (other instances wait), so its messages are handled one at a time everywhere.
    let held = inner
        .store
        .lock_conversation(conversation, CONVERSATION_LOCK_WAIT)
        .await
        .map_err(|e| ConversationError::store(conversation, &e))?;
    let fence = held.as_ref().and_then(|h| h.fence());
    // A panic in a step fails this message, not the conversation's worker: caught here, in
    // the worker's own task (no task of its own per message, which would cost a spawn and a
    // wake-up for every message).
    let run = std::panic::AssertUnwindSafe(process::process(inner.clone(), job.clone(), fence));
    let outcome = run.catch_unwind().await.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(conversation = %conversation, panic = %what, "the task handling a message failed");
        Err(ConversationError::Interrupted { conversation: conversation.to_string() })
    });
    if let Some(held) = held {
        held.release().await;
    }
    outcome
}
