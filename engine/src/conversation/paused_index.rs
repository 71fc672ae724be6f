//! Which conversations may have a paused run, so that most messages skip reading it.
//!
//! A store with one writer (SQLite) gives the conversations with a paused run at start-up
//! ([`ConversationStore::paused_index`](super::ConversationStore::paused_index)); from then on
//! the service keeps the index itself: an entry is added before a pause is committed and
//! removed after it is cleared, so the index never holds less than the store. Without an index
//! (a shared store, or past [`PAUSED_INDEX_LIMIT`]) every message reads the store.

use std::collections::HashMap;
use std::sync::Mutex;

use super::types::ConversationId;
use crate::sync::lock;

/// Most conversations the in-memory paused-run index holds (about 100 bytes each); beyond it
/// the index is dropped and every message reads its conversation's paused run from the store.
pub const PAUSED_INDEX_LIMIT: usize = 100_000;

/// The conversations that may have a paused run, with when it expires (Unix seconds). `None`
/// until loaded, when the store cannot give one, or past [`PAUSED_INDEX_LIMIT`].
#[derive(Debug, Default)]
pub(super) struct PausedIndex(Mutex<Option<HashMap<ConversationId, i64>>>);

impl PausedIndex {
    /// Starts keeping the index from the store's rows (before any message runs).
    pub(super) fn load(&self, rows: impl IntoIterator<Item = (ConversationId, i64)>) {
        *lock(&self.0) = Some(rows.into_iter().collect());
    }

    /// Whether the conversation may have a paused run (the store must be read).
    pub(super) fn may_be_paused(&self, conversation: &ConversationId) -> bool {
        lock(&self.0).as_ref().is_none_or(|index| index.contains_key(conversation))
    }

    /// Records a paused run about to be committed (before the commit: the index may hold more
    /// than the store, never less).
    pub(super) fn add(&self, conversation: &ConversationId, expires_at: i64) {
        let mut index = lock(&self.0);
        if let Some(map) = index.as_mut() {
            if map.len() >= PAUSED_INDEX_LIMIT && !map.contains_key(conversation) {
                tracing::info!(
                    limit = PAUSED_INDEX_LIMIT,
                    "more paused runs than the index holds; reading the store for every message"
                );
                *index = None;
            } else {
                map.insert(conversation.clone(), expires_at);
            }
        }
    }

    /// Forgets a paused run that was cleared (after the commit).
    pub(super) fn remove(&self, conversation: &ConversationId) {
        if let Some(map) = lock(&self.0).as_mut() {
            map.remove(conversation);
        }
    }

    /// Forgets expired paused runs (retention deletes their rows).
    pub(super) fn expire(&self, now_s: i64) {
        if let Some(map) = lock(&self.0).as_mut() {
            map.retain(|_, expires_at| *expires_at > now_s);
        }
    }
}
