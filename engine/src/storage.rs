//! The error every storage interface returns ([`ConversationStore`](crate::conversation::ConversationStore)
//! here, the integrations store in `tern-integrations`), so that the engine names no database
//! and the implementations (`tern-store`: SQLite, PostgreSQL) can be swapped.
//!
//! A driver's message can hold a path or a server's wording: it stays in `source`, which goes
//! to the operator's log. Callers of the HTTP API and flow designers see the service's own
//! words (see [`ConversationError::Store`](crate::conversation::ConversationError::Store)).

/// A driver or decryption error, kept for the log.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the store failed. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or queried. The driver's message is part of the
    /// message (for the operator's log and the CLI), not a separate source, so that printing
    /// the error with its causes does not repeat it.
    #[error("store {location}: {cause}")]
    Database {
        /// The database file, or the URL without its password.
        location: String,
        /// The driver's error.
        cause: Source,
    },
    /// A stored value could not be decrypted (wrong key, or the row was altered).
    #[error(transparent)]
    Crypto {
        /// The decryption error.
        source: Source,
    },
    /// The master key does not match the data already stored.
    #[error(
        "the master key (id {key_id}) does not match the store at {location}, whose values are encrypted with key {stored_key_id}; set TERN_MASTER_KEY to that key (for a store in a data directory, it is the master.key file there), or, during a rotation, put the other key in TERN_MASTER_KEY_PREVIOUS"
    )]
    WrongKey {
        /// The loaded key's id.
        key_id: String,
        /// The key id the store was created with.
        stored_key_id: String,
        /// The store.
        location: String,
    },
    /// The store holds data but no key was found.
    #[error(
        "the store at {location} holds encrypted data but no master key was found; set TERN_MASTER_KEY or restore master.key in the data directory"
    )]
    MissingKey {
        /// The store.
        location: String,
    },
    /// A stored row is not what this version of Tern expects.
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which row.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database was migrated by a newer version of Tern, or its migration history does
    /// not match this version's.
    #[error("the store at {location} cannot be migrated: {reason}")]
    Migration {
        /// The store.
        location: String,
        /// What the migrator said.
        reason: String,
    },
    /// A conversation's write was refused because this process no longer holds the
    /// conversation: its lock was lost (the lock's database session ended) and another process
    /// may have taken it since (see
    /// [`ConversationLock::fence`](crate::conversation::ConversationLock::fence)). Nothing of
    /// the write was committed; the message can be handled again from the start.
    #[error(
        "conversation `{conversation}` was taken over by another instance while this one handled a message (its lock was lost); nothing was committed"
    )]
    Fenced {
        /// The conversation.
        conversation: String,
    },
}
