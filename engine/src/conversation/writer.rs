//! The one task that writes conversation state: it takes whatever operations are queued (up to
//! [`MAX_BATCH`]) and commits them in one [`ConversationStore::write`] call (group commit).
//!
//! The queue has a fixed capacity: when the store cannot keep up, callers wait for room
//! (backpressure), so memory stays bounded under any load. Closing the writer commits what is
//! queued, then the task ends. When a batch fails, each of its operations is tried again alone,
//! so that one message whose row the database refuses fails by itself.
//!
//! While commits fail (a full disk, a read-only file, the database down: [`Writer::failing`]
//! until a commit succeeds again), callers that would not wait for their commit (a run whose
//! only trace is history) wait for it too, so that nothing is answered as done that was not
//! stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::store::{ConversationStore, WriteOp};

/// Most operations committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// Why a write failed (the detail, for the log).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{detail}")]
pub struct WriteFailed {
    detail: Arc<str>,
    /// The store refused the write because its conversation lock was lost
    /// ([`StoreError::Fenced`](crate::storage::StoreError::Fenced)): the store itself works.
    pub(super) fenced: bool,
}

impl WriteFailed {
    fn new(detail: &str) -> Self {
        Self { detail: detail.into(), fenced: false }
    }

    /// Whether `result` says the store refuses writes: a failure other than a fenced write (a
    /// lost conversation lock says nothing about the store itself).
    fn store_fault(result: &Result<(), Self>) -> bool {
        result.as_ref().is_err_and(|e| !e.fenced)
    }
}

impl From<crate::storage::StoreError> for WriteFailed {
    fn from(e: crate::storage::StoreError) -> Self {
        let fenced = matches!(e, crate::storage::StoreError::Fenced { .. });
        Self { detail: e.to_string().into(), fenced }
    }
}

struct Request {
    op: WriteOp,
    done: Option<oneshot::Sender<Result<(), WriteFailed>>>,
}

/// The sending side of the writer.
pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// Whether the last commit failed (set by the task, cleared by its next success).
    failing: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer task with a queue of `capacity` operations.
    pub(super) fn start(store: Arc<dyn ConversationStore>, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let failing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(store, rx, failing.clone()));
        (Self { tx: Mutex::new(Some(tx)), failing }, task)
    }

    /// Whether the last commit failed and none succeeded since: the store refuses writes.
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Treats the store as refusing writes until the next commit succeeds.
    pub(super) fn mark_failing(&self) {
        self.failing.store(true, Ordering::Relaxed);
    }

    /// Queues `op` (waiting for room when the queue is full); with `wait`, returns once it is
    /// committed.
    pub(super) async fn write(&self, op: WriteOp, wait: bool) -> Result<(), WriteFailed> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return Err(WriteFailed::new("the writer is closed")) };
        let (done, committed) = if wait {
            let (s, r) = oneshot::channel();
            (Some(s), Some(r))
        } else {
            (None, None)
        };
        tx.send(Request { op, done }).await.map_err(|_| WriteFailed::new("the writer has stopped"))?;
        match committed {
            Some(r) => r.await.unwrap_or_else(|_| Err(WriteFailed::new("the writer stopped before committing"))),
            None => Ok(()),
        }
    }

    /// Stops taking writes; the task commits what is queued and ends.
    pub(super) fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

async fn run(store: Arc<dyn ConversationStore>, mut rx: mpsc::Receiver<Request>, failing: Arc<AtomicBool>) {
    let mut batch: Vec<Request> = Vec::with_capacity(64);
    let mut ops: Vec<WriteOp> = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut acks = Vec::with_capacity(batch.len());
        for r in batch.drain(..) {
            ops.push(r.op);
            acks.push(r.done);
        }
        let result = store.write(&ops).await.map_err(WriteFailed::from);
        failing.store(WriteFailed::store_fault(&result), Ordering::Relaxed);
        if result.is_err() && ops.len() > 1 {
            // One message's bad row must not fail the others committed with it: each
            // operation again, alone, and each caller gets its own result.
            for (op, ack) in ops.drain(..).zip(acks.drain(..)) {
                let one = store.write(std::slice::from_ref(&op)).await.map_err(WriteFailed::from);
                let fault = WriteFailed::store_fault(&one);
                if !fault {
                    failing.store(false, Ordering::Relaxed);
                }
                if let (true, Err(e)) = (fault, &one) {
                    tracing::error!(error = %e, history_lost = ack.is_none(), "could not commit a conversation write");
                }
                if let Some(ack) = ack {
                    let _ = ack.send(one);
                }
            }
            continue;
        }
        if let (true, Err(e)) = (WriteFailed::store_fault(&result), &result) {
            let unacknowledged = acks.iter().filter(|a| a.is_none()).count();
            tracing::error!(error = %e, operations = ops.len(), history_lost = unacknowledged, "could not commit conversation writes");
        }
        ops.clear();
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(result.clone());
        }
    }
}
