//! One worker per conversation with queued messages: it takes the conversation's messages one
//! at a time, in the order they were queued, and ends when the queue is empty (so memory follows
//! load, not the number of conversations ever seen). Each message runs in a task of its own: a
//! panic in a step fails that message, not the conversation's worker.

use std::sync::Arc;
use std::time::Duration;

use super::error::ConversationError;
use super::inner::Inner;
use super::process;
use super::queue::Ticket;
use super::types::{ConversationId, Inbound};
use crate::step::ReplySink;

/// Longest a message waits for its conversation while another instance sharing the store
/// handles one of its messages (then it fails with `store-unavailable` and can be sent again).
pub const CONVERSATION_LOCK_WAIT: Duration = Duration::from_secs(300);

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
        // On a shared store, the conversation is this process's until the message is done
        // (other instances wait), so its messages are handled one at a time everywhere.
        let held = match inner.store.lock_conversation(&conversation, CONVERSATION_LOCK_WAIT).await {
            Ok(held) => held,
            Err(e) => {
                let outcome = Err(ConversationError::store(&conversation, &e));
                drop(job);
                inner.queue.answer(&key, outcome);
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
        inner.queue.answer(&key, outcome);
    }
}
