//! Who is waiting, in this process, for a web conversation's transcript to grow: the open event
//! streams. The conversation service calls [`Watchers::written`] after it committed entries;
//! a stream waits on its conversation's [`Notify`]. Entries written by another instance are
//! not seen here: streams also read the store every
//! [`STREAM_POLL_MS`](super::STREAM_POLL_MS).
//!
//! Bounded by the streams that are open: the map holds weak references, and those of streams
//! that ended are dropped whenever it has grown past twice the number of live ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::conversation::ConversationId;
use crate::sync::lock;

/// The conversations watched in this process.
#[derive(Debug, Default)]
pub struct Watchers {
    map: Mutex<HashMap<ConversationId, Weak<Notify>>>,
}

impl Watchers {
    /// What a stream of `conversation` waits on (shared by the streams of one conversation);
    /// held for as long as the stream is open.
    pub fn watch(&self, conversation: &ConversationId) -> Arc<Notify> {
        let mut map = lock(&self.map);
        if let Some(live) = map.get(conversation).and_then(Weak::upgrade) {
            return live;
        }
        if map.len() >= 64 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        map.insert(conversation.clone(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes the streams of `conversation`: its transcript has new entries.
    pub fn written(&self, conversation: &ConversationId) {
        let live = lock(&self.map).get(conversation).and_then(Weak::upgrade);
        if let Some(n) = live {
            n.notify_waiters();
        }
    }

    /// How many conversations are in the map (live or not yet dropped).
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` is still pending after a (paused-clock) moment.
    async fn pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(10), f).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_woken_for_its_conversation_only_and_ended_streams_are_forgotten() {
        let w = Watchers::default();
        let a = ConversationId::new("a").unwrap();
        let b = ConversationId::new("b").unwrap();
        let notify = w.watch(&a);
        {
            let waiting = notify.notified();
            tokio::pin!(waiting);
            waiting.as_mut().enable();
            w.written(&b);
            assert!(pending(waiting.as_mut()).await, "another conversation's entries");
            w.written(&a);
            assert!(!pending(waiting.as_mut()).await);
        }
        drop(notify);
        for i in 0..200 {
            drop(w.watch(&ConversationId::new(format!("c{i}")).unwrap()));
        }
        assert!(w.len() <= 65, "the map is bounded by the live streams: {}", w.len());
    }
}
