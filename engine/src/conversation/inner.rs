//! What the service's tasks share: the engine, the store, the settings, the flows, the queue,
//! the paused-run index, the writer and the background tasks. Every other part of the service
//! is a function over it; it calls none of them.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::flows::Flows;
use super::options::{ConversationOptions, RunObserver};
use super::paused_index::PausedIndex;
use super::queue::Queue;
use super::store::ConversationStore;
use super::writer::Writer;
use crate::run::Engine;

/// The service's shared state.
pub(super) struct Inner {
    pub(super) engine: Engine,
    pub(super) store: Arc<dyn ConversationStore>,
    pub(super) options: ConversationOptions,
    pub(super) flows: Arc<Flows>,
    /// See [`PausedIndex`].
    pub(super) paused: PausedIndex,
    pub(super) queue: Queue,
    pub(super) writer: Writer,
    pub(super) observer: Option<RunObserver>,
    /// Set once, at shutdown: the background tasks end.
    pub(super) stop: watch::Sender<bool>,
    pub(super) background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Wakes the webhook outbox when a delivery was committed.
    pub(super) outbox_wake: Arc<Notify>,
    /// The store is shared with other processes ([`ConversationStore::is_shared`]).
    pub(super) shared: bool,
    /// What each channel did lately in this process.
    pub(super) activity: Arc<super::ChannelActivity>,
    /// The web chat streams open in this process, woken when their transcript grows.
    pub(super) transcripts: crate::web_chat::Watchers,
}

impl Inner {
    /// Unix milliseconds on the service's clock.
    pub(super) fn now_ms(&self) -> i64 {
        self.options.clock.now_ms()
    }
}
