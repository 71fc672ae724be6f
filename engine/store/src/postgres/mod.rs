//! What only PostgreSQL has: a database that several `tern serve` instances share.
//!
//! - **Schema**: `migrations/postgres`, applied by `sqlx::migrate!` on open; the migrator holds
//!   an advisory lock, so instances starting together migrate once.
//! - **Token refresh across instances**: [`Store::lock_token`](crate::Store::lock_token) opens
//!   a transaction and takes `pg_advisory_xact_lock` on the credential, then the caller
//!   re-reads the token inside it. A row lock (`SELECT … FOR UPDATE`) would not cover a
//!   credential with no row yet (a service account's first token); the advisory lock does. It
//!   is released by commit, rollback, or the death of the session. The lock is held across the
//!   token request (an HTTP call): server-wide timeouts must not end the transaction, and with
//!   it the lock, in the middle (both settings exist since PostgreSQL 9.6).
//! - **Conversations across instances**: see [`locks`]: a session advisory lock per
//!   conversation, held while an instance handles one of its messages, with a fencing token
//!   that the message's commit checks (a run whose lock was lost commits nothing); messages a dead
//!   instance accepted are taken over by the others
//!   ([`ConversationStore::stale_accepted`](tern_engine::conversation::ConversationStore::stale_accepted)).
//! - **Races between instances**: a batch of writes that loses a deadlock or serialization race
//!   against another instance's batch is tried again ([`WRITE_ATTEMPTS`]); webhook deliveries
//!   are claimed (`FOR UPDATE SKIP LOCKED`, then leased for
//!   [`OUTBOX_LEASE`](tern_engine::conversation::OUTBOX_LEASE)) so that two
//!   instances never post the same one at once; retention deletes in chunks by `ctid`, and
//!   every instance may run it.
//! - **Pool**: [`POOL_SIZE`] connections per instance for queries, plus [`locks::SHARDS`]
//!   dedicated connections for conversation locks. Size PostgreSQL's `max_connections` for
//!   `instances × (POOL_SIZE + SHARDS)` plus what else uses the server.

mod locks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;
use tern_engine::conversation::{ConversationId, ConversationLock, Pruned, Retention, WriteOp};

use crate::crypto::Keyring;
use crate::sql::{Dialect, Flavor, SqlStore};
use crate::{DatabaseUrl, StoreError};

/// The PostgreSQL schema (`migrations/postgres`), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per instance for queries.
pub const POOL_SIZE: u32 = 16;

/// Longest wait for a pooled connection before a query fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries of one batch of writes when PostgreSQL aborts it for a deadlock or a serialization
/// failure (SQLSTATE 40P01, 40001).
pub const WRITE_ATTEMPTS: u32 = 3;

/// The name the sessions show in `pg_stat_activity`.
const APPLICATION_NAME: &str = "tern";

/// PostgreSQL as a [`Flavor`]: the conversation-lock sessions.
pub struct Postgres {
    locks: Arc<locks::ConversationLocks>,
}

impl SqlStore<Postgres> {
    /// Connects, applies pending migrations and checks the keyring against the data (the first
    /// instance to open an empty database stores the key check; every other must match it).
    ///
    /// # Errors
    /// [`StoreError::Database`] (cannot connect: the message names the host, never the
    /// password), [`StoreError::Migration`], [`StoreError::WrongKey`].
    pub async fn open(url: &DatabaseUrl, keys: Keyring) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let location = url.redacted().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
        let native = PgConnectOptions::from_str(url.expose()).map_err(db_err)?.application_name(APPLICATION_NAME);
        // One connection first: a refused connection, an unknown database or a wrong password
        // is reported at once, in the server's words, instead of as a pool timeout 30 s later.
        {
            use sqlx::Connection;
            let first = sqlx::PgConnection::connect_with(&native).await.map_err(db_err)?;
            let _ = first.close().await;
        }
        let mut any_url = url::Url::parse(url.expose()).map_err(|e| db_err(sqlx::Error::Configuration(e.into())))?;
        let others: Vec<(String, String)> = any_url
            .query_pairs()
            .filter(|(k, _)| k != "application_name")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        any_url.query_pairs_mut().clear().extend_pairs(others).append_pair("application_name", APPLICATION_NAME);
        let pool = AnyPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(crate::sql::still_usable)
            .connect_with(AnyConnectOptions::from_str(any_url.as_str()).map_err(db_err)?)
            .await
            .map_err(db_err)?;
        let flavor = Postgres { locks: Arc::new(locks::ConversationLocks::new(native, location.clone())) };
        let store = Self::new(pool, keys, location, flavor);
        store.migrate(&MIGRATOR).await?;
        store.check_key().await?;
        Ok(store)
    }

    /// Whether the database already holds Tern's key check (it was opened with a key before).
    ///
    /// # Errors
    /// [`StoreError::Database`]: cannot connect or query.
    pub async fn is_initialized(url: &DatabaseUrl) -> Result<bool, StoreError> {
        use sqlx::Connection;
        let location = url.redacted().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
        let opts = PgConnectOptions::from_str(url.expose()).map_err(db_err)?.application_name(APPLICATION_NAME);
        let mut conn = sqlx::PgConnection::connect_with(&opts).await.map_err(db_err)?;
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('meta') IS NOT NULL").fetch_one(&mut conn).await.map_err(db_err)?;
        let found = has_table
            && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'key_check')")
                .fetch_one(&mut conn)
                .await
                .map_err(db_err)?;
        let _ = conn.close().await;
        Ok(found)
    }

    async fn write_once(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.apply_all(&mut tx, ops).await?;
        tx.commit().await.map_err(self.db())
    }
}

/// Whether PostgreSQL aborted the transaction for a race another try can win.
fn is_retryable(e: &StoreError) -> bool {
    let StoreError::Database { cause, .. } = e else { return false };
    cause
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

#[async_trait]
impl Flavor for Postgres {
    const DIALECT: Dialect = Dialect {
        kind: "postgresql",
        name: "PgStore",
        shared: true,
        begin_write: None,
        text_holds_nul: false,
        row_id: "ctid",
        row_in: "ctid = ANY (ARRAY ({rows}))",
        row_ref: ("ctid::text", "ctid = $2::tid"),
        runs_before: "(updated_at_ms, run_id) < ({at}, {id})",
        // Claimed for this instance: leased (another instance skips them), then removed or
        // rescheduled by the delivery loop.
        outbox_due: crate::sql::outbox_due!("FOR UPDATE SKIP LOCKED"),
        timers_due: crate::sql::timers_due!("FOR UPDATE SKIP LOCKED"),
        token_lock_setup: &["SET LOCAL idle_in_transaction_session_timeout = 0", "SET LOCAL statement_timeout = 0"],
        token_lock: Some("SELECT pg_advisory_xact_lock($1)"),
        lock_tables: Some("LOCK TABLE {tables} IN EXCLUSIVE MODE"),
        // The row lock waits for (and then fails) a new holder's move of the epoch, and a new
        // holder's move waits for this transaction: see `locks`.
        fence_check: Some("SELECT 1 FROM conversation_fences WHERE conversation_id = $1 AND epoch = $2 FOR UPDATE"),
    };

    async fn write(store: &SqlStore<Self>, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match store.write_once(ops).await {
                Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                    tracing::info!(attempt, error = %e, "a batch of conversation writes lost a race with another instance; trying again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn lock_conversation(
        &self,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Result<Option<Box<dyn ConversationLock>>, StoreError> {
        self.locks.lock(conversation, wait).await.map(Some)
    }

    /// Retention, and the conversation fences whose epoch has not moved for
    /// [`locks::FENCE_RETENTION`].
    async fn prune(store: &SqlStore<Self>, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let pruned = store.prune_all(retention, now_ms).await?;
        let keep_ms = i64::try_from(locks::FENCE_RETENTION.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(locks::PRUNE_FENCES).bind(keep_ms).execute(&store.pool).await.map_err(store.db())?;
        Ok(pruned)
    }
}
