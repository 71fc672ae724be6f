//! Who holds the open event streams ([`StreamSlots`]): at most
//! [`MAX_STREAMS_PER_SESSION`] per visitor session (a newer stream ends the oldest: a
//! reconnecting widget, or a visitor's few tabs, never lock themselves out) and at most
//! [`MAX_STREAMS_PER_ADDRESS`] per address (then refused), so that one client cannot hold the
//! process's [`MAX_STREAMS`](super::MAX_STREAMS). Bounded by the streams that are open: an
//! entry goes with its last stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::lock;

/// Most streams one session keeps open; a newer one ends the oldest.
pub const MAX_STREAMS_PER_SESSION: usize = 3;
/// Most streams one address keeps open; more are refused.
pub const MAX_STREAMS_PER_ADDRESS: usize = 20;

/// The open streams by session and by address.
#[derive(Debug, Default)]
pub struct StreamSlots {
    inner: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next: u64,
    by_session: HashMap<String, VecDeque<(u64, Arc<Notify>)>>,
    by_address: HashMap<String, usize>,
}

/// An address holds [`MAX_STREAMS_PER_ADDRESS`] streams already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this address has {MAX_STREAMS_PER_ADDRESS} chat streams open already")]
pub struct TooManyStreams;

/// One open stream's place; given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    session: String,
    address: String,
    id: u64,
    /// Notified when a newer stream of the session took this one's place: the stream ends.
    pub ended: Arc<Notify>,
}

impl StreamSlots {
    /// A place for a new stream of `session` from `address`; the session's oldest stream is
    /// told to end when it has [`MAX_STREAMS_PER_SESSION`] already.
    ///
    /// # Errors
    /// [`TooManyStreams`]: the address has [`MAX_STREAMS_PER_ADDRESS`] open.
    pub fn take(self: &Arc<Self>, session: &str, address: &str) -> Result<StreamSlot, TooManyStreams> {
        let mut s = lock(&self.inner);
        // A session at its own bound replaces its oldest stream: that adds none to the
        // address's, so it is never refused for the address's bound.
        let replaces = s.by_session.get(session).is_some_and(|v| v.len() >= MAX_STREAMS_PER_SESSION);
        if !replaces && s.by_address.get(address).copied().unwrap_or(0) >= MAX_STREAMS_PER_ADDRESS {
            return Err(TooManyStreams);
        }
        s.next += 1;
        let id = s.next;
        let ended = Arc::new(Notify::new());
        let streams = s.by_session.entry(session.to_string()).or_default();
        while streams.len() >= MAX_STREAMS_PER_SESSION {
            if let Some((_, oldest)) = streams.pop_front() {
                oldest.notify_one();
            }
        }
        streams.push_back((id, ended.clone()));
        *s.by_address.entry(address.to_string()).or_default() += 1;
        Ok(StreamSlot { slots: self.clone(), session: session.to_string(), address: address.to_string(), id, ended })
    }

    /// Streams open from `address`.
    pub fn of_address(&self, address: &str) -> usize {
        lock(&self.inner).by_address.get(address).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut s = lock(&self.slots.inner);
        if let Some(streams) = s.by_session.get_mut(&self.session) {
            streams.retain(|(id, _)| *id != self.id);
            if streams.is_empty() {
                s.by_session.remove(&self.session);
            }
        }
        if let Some(n) = s.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_newer_stream_ends_the_session_s_oldest_and_an_address_has_a_cap() {
        let slots = Arc::new(StreamSlots::default());
        let first = slots.take("s", "a").unwrap();
        let more: Vec<StreamSlot> = (1..MAX_STREAMS_PER_SESSION).map(|_| slots.take("s", "a").unwrap()).collect();
        let newest = slots.take("s", "a").unwrap();
        let told = tokio::time::timeout(std::time::Duration::from_millis(10), first.ended.notified()).await;
        assert!(told.is_ok(), "the oldest is told to end");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), newest.ended.notified()).await.is_err(),
            "the newest goes on"
        );
        drop(first);
        assert_eq!(slots.of_address("a"), MAX_STREAMS_PER_SESSION);
        let mut held = Vec::new();
        for i in 0.. {
            match slots.take(&format!("other-{i}"), "a") {
                Ok(slot) => held.push(slot),
                Err(TooManyStreams) => break,
            }
        }
        assert_eq!(slots.of_address("a"), MAX_STREAMS_PER_ADDRESS);
        assert!(slots.take("x", "b").is_ok(), "another address is not affected");
        let reconnect = slots.take("s", "a");
        assert!(reconnect.is_ok(), "a session at its own bound replaces its oldest, at the address's bound too");
        drop(reconnect);
        drop(held);
        drop(more);
        drop(newest);
        assert_eq!(slots.of_address("a"), 0);
        assert!(lock(&slots.inner).by_session.is_empty(), "nothing is kept for ended streams");
    }
}
