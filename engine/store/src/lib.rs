//! # tern-store
//!
//! Where Tern keeps what must survive a restart: integrations, tokens, pending authorizations
//! and named secrets ([`Store`]), and the conversation service's paused runs, flow versions,
//! remembered answers, accepted messages, run history, webhook outbox and effect journal
//! ([`ConversationStore`](tern_engine::conversation::ConversationStore)). One implementation,
//! [`SqlStore`], writes every statement once; it runs on two databases, behind one [`Backend`]
//! trait opened by [`open`], so that neither the server nor the CLI names a database:
//!
//! - [`SqliteStore`]: one file in the data directory, the default with nothing to configure.
//!   One `tern serve` owns it; `tern` CLI commands may open it at the same time.
//! - [`PgStore`]: a PostgreSQL database that several `tern serve` instances share
//!   (`--database-url`).
//!
//! What differs between them is passed to [`SqlStore`] as data (a `Dialect`) and as the little
//! code only one of them has (a `Flavor`: SQLite's write gate, history count and checkpoints;
//! PostgreSQL's conversation locks and retried batches); see the `sql` module.
//!
//! ## Design choices
//!
//! - **Dependencies point one way**: `tern-engine` (flows, executor, the conversation service
//!   and its storage interface) ← `tern-integrations` (OAuth and the integration store
//!   interface) ← this crate (implementations, encryption at rest, migrations).
//! - **Encrypted alike on both backends** (SECURITY R7): every secret column is an AES-256-GCM
//!   ciphertext whose associated data is the table, the row's key and the column
//!   ([`crypto::Aad`]); the same keyring opens both, and `tern keys rotate` re-encrypts both
//!   ([`Backend::reencrypt_all`]).
//! - **Migrations are `sqlx::migrate!`**, one directory per backend (`migrations/sqlite`,
//!   `migrations/postgres`). SQLite files made before the migrator (which counted versions in
//!   `PRAGMA user_version`) are adopted: their applied versions are recorded in
//!   `_sqlx_migrations` once, then the migrator carries on.
//! - **Cross-instance exclusion lives in the database**, so that locks held by a process killed
//!   with `kill -9` go with its sessions: a token refresh takes a transaction-scoped advisory
//!   lock per credential (one refresh per expiry across instances, also for a credential that
//!   has no row yet), and the conversation service holds a session advisory lock per
//!   conversation while it handles one of its messages (see [`PgStore`]).
//! - **Conformance**: [`testing`] (feature `testing`) holds the suite every backend passes;
//!   this crate's tests run it on SQLite and on a throw-away PostgreSQL database.

pub mod crypto;
mod database_url;
pub mod health;
mod postgres;
mod rows;
mod sql;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tern_engine::channel::ChannelStore;
use tern_engine::conversation::ConversationStore;

pub use database_url::{DatabaseUrl, DatabaseUrlError};
pub use sql::SqlStore;
pub use tern_integrations::store::*;

use crate::crypto::{CryptoError, Keyring};

impl From<CryptoError> for StoreError {
    fn from(e: CryptoError) -> Self {
        StoreError::Crypto { source: Box::new(e) }
    }
}

/// Everything Tern keeps, on one database: the integration store, the conversation store (and
/// its effect journal), the channels, the `webhook-id`s of signed channel requests, and what
/// operators run on the whole database.
#[async_trait]
pub trait Backend: Store + ConversationStore + ChannelStore + tern_engine::channel_auth::SeenWebhookIds {
    /// Where the data is, for the operator's log: a file path, or the URL without its password.
    fn location(&self) -> &str;

    /// `sqlite` or `postgresql`.
    fn kind(&self) -> &'static str;

    /// Whether the store can serve now: a query answers and a write commits, each within
    /// [`health::READY_TIMEOUT`] (see [`health`]). Never fails: a failure is a check's fault.
    async fn readiness(&self) -> health::Readiness;

    /// Re-encrypts every secret column under the keyring's current key, in one transaction (a
    /// crash leaves the old ciphertexts, still readable with the old key). Returns how many
    /// values were rewritten.
    ///
    /// # Errors
    /// The database failed, or a value does not decrypt with any loaded key.
    async fn reencrypt_all(&self) -> Result<usize, StoreError>;
}

/// Which database to open.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    /// A SQLite file (created on first open).
    Sqlite(PathBuf),
    /// A PostgreSQL database (the schema is created on first open).
    Postgres(DatabaseUrl),
}

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<sqlite::Sqlite>;

/// The store on a PostgreSQL database, shared by instances.
pub type PgStore = SqlStore<postgres::Postgres>;

impl StoreLocation {
    /// Whether several processes may share the database (each instance then needs the same
    /// master key from the environment: a key file would tie the database to one machine's
    /// data directory).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Where the data is, for messages: the file path, or the URL without its password.
    #[must_use]
    pub fn shown(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => url.redacted().to_string(),
        }
    }

    /// Whether the database holds Tern's key check (it was opened with a key before). A
    /// missing SQLite file is not initialized.
    ///
    /// # Errors
    /// [`StoreError::Database`]: cannot connect or query.
    pub async fn is_initialized(&self) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(path) => SqliteStore::is_initialized(path).await,
            Self::Postgres(url) => PgStore::is_initialized(url).await,
        }
    }
}

/// Opens the database, applies pending migrations and checks `keys` against the data.
///
/// # Errors
/// [`StoreError::Database`] (cannot connect or query), [`StoreError::Migration`],
/// [`StoreError::WrongKey`].
pub async fn open(location: &StoreLocation, keys: Keyring) -> Result<Arc<dyn Backend>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Arc::new(SqliteStore::open(path, keys).await?),
        StoreLocation::Postgres(url) => Arc::new(PgStore::open(url, keys).await?),
    })
}

/// A stable 64-bit key for an advisory lock on `subject` within `namespace` (SHA-256, first 8
/// bytes): two subjects that collide only wait for each other, never share data.
pub(crate) fn lock_key(namespace: &str, subject: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::new()
        .chain_update(namespace.as_bytes())
        .chain_update(b"\0")
        .chain_update(subject.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// SHA-256 of an authorization `state`, in hex: what both backends key pending authorizations
/// by (the state itself is a bearer secret and is never stored).
pub(crate) fn state_hash(state: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(state.as_bytes()))
}
