//! The store, written once for both databases: [`SqlStore`].
//!
//! Every statement is written in the SQL both databases accept: numbered placeholders (`$1`;
//! sqlx's SQLite driver binds `$N` by its number), `INSERT … ON CONFLICT … DO NOTHING / DO
//! UPDATE` and `RETURNING` (SQLite ≥ 3.35). Statements run through sqlx's `Any` driver, so
//! there is one pool, one transaction and one row type, and one copy of the Rust around each
//! statement. What really differs per database is passed in:
//!
//! - as data, the [`Dialect`]: how a writing transaction starts, whether text holds NUL, how
//!   rows are addressed for chunked deletes and re-encryption, the keyset condition of history
//!   pages, how due webhook deliveries are claimed, how a credential is locked for a refresh,
//!   and how re-encryption shuts out other writers;
//! - as code, the [`Flavor`]: what one database keeps and does on its own — SQLite's write
//!   gate, history count and checkpoints (`crate::sqlite`), PostgreSQL's retried batches and
//!   conversation locks (`crate::postgres`).
//!
//! ## Why the `Any` driver
//!
//! Code generic over sqlx's `Database` needs a dozen higher-ranked bounds (executors over
//! `&mut DB::Connection`, `Encode`/`Decode`/`Type` of every bound and read type, column
//! indexes) repeated on every impl block; a query builder would hide the statements. `Any`
//! keeps each statement as plain text, and costs one conversion of the arguments and of each
//! row (a copy of each value), small next to a statement's own work: this crate's
//! `store_writes` bench (the store's share of one message) used as much CPU per message as
//! with the native drivers, within the noise of the machine it was measured on. Its type mapping, checked for what the schema uses: every integer
//! column decodes as `i64` (PostgreSQL's `INT4` too), `BLOB`/`BYTEA` as `Vec<u8>`, `TEXT` as
//! `String`, NULL as `None`, and PostgreSQL's `void` (`pg_advisory_xact_lock`) as NULL.

mod channels;
mod conversations;
mod effects;
mod integrations;
mod rate_buckets;
mod webhook_ids;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use tern_engine::clock::{self, Clock};
use tern_engine::conversation::{ConversationId, ConversationLock, Pruned, Retention, WriteOp};

use crate::crypto::{Aad, Keyring};
use crate::health::{CHECK_QUERY, CHECK_WRITE, Check, Fault, READY_TIMEOUT, Readiness};
use crate::rows::{SECRET_COLUMNS, Sealer};
use crate::{Backend, StoreError};

/// What differs between the databases' SQL, as data (one constant per database).
pub struct Dialect {
    /// [`Backend::kind`]: `sqlite` or `postgresql`.
    pub(crate) kind: &'static str,
    /// The store's type name, for `Debug`.
    pub(crate) name: &'static str,
    /// Whether several processes share the database (see
    /// [`ConversationStore::is_shared`](tern_engine::conversation::ConversationStore::is_shared)):
    /// then the store offers the messages a dead instance left, and has no exact index of
    /// paused runs.
    pub(crate) shared: bool,
    /// The statement that opens a transaction that writes, `None` for `BEGIN`. SQLite's
    /// `BEGIN IMMEDIATE` takes the database's one write lock at once, so that a transaction
    /// never fails to upgrade a read lock half-way.
    pub(crate) begin_write: Option<&'static str>,
    /// Whether `TEXT` holds NUL. PostgreSQL's does not: free text (a provider's message, a
    /// contact id in history) is stored with NUL replaced, a token owner with NUL is refused,
    /// and a filter or id with NUL matches nothing.
    pub(crate) text_holds_nul: bool,
    /// The physical address of a row, for deleting in chunks (`rowid`, `ctid`).
    pub(crate) row_id: &'static str,
    /// `{row_id}` among the addresses a subquery (`{rows}`) returns, in the form the planner
    /// turns into direct row lookups.
    pub(crate) row_in: &'static str,
    /// A row's address as text (for re-encryption), and the condition matching it with `$2`.
    pub(crate) row_ref: (&'static str, &'static str),
    /// History pages' keyset condition: rows before the cursor (`{at}` its `updated_at_ms`,
    /// `{id}` its run id), in the form the database's planner uses an index for.
    pub(crate) runs_before: &'static str,
    /// Claims due webhook deliveries (`$1` now in ms, `$2` how many, `$3` the lease in ms):
    /// moves their `next_attempt_ms` to `$1 + $3`, counts the claim in `lease`, and returns
    /// `id, channel, body, attempts, created_at_ms, lease, binding` of the oldest due ones (in any order; the caller sorts), so that neither
    /// this process nor another sharing the database picks one twice while it is in flight.
    /// Only a conversation's oldest delivery is ever claimed: its replies go out in the order
    /// they were written, a later one waiting while an earlier one is in flight or retried
    /// (written once, [`outbox_due!`], with the database's row lock as the argument).
    pub(crate) outbox_due: &'static str,
    /// Claims paused runs whose timer is due (`$1` now in ms, `$2` how many, `$3` the lease in
    /// ms): sets their `wake_lease_ms` to `$1 + $3` and returns `conversation_id, wake_run_id,
    /// wake_at_ms` of the most overdue unclaimed ones (written once, [`timers_due!`], with the
    /// database's row lock as the argument).
    pub(crate) timers_due: &'static str,
    /// Statements run first in the transaction of a token refresh, without parameters.
    pub(crate) token_lock_setup: &'static [&'static str],
    /// The statement that takes a credential for a refresh (`$1`: its lock key), if the
    /// writing transaction alone does not.
    pub(crate) token_lock: Option<&'static str>,
    /// The statement that keeps other writers out of the tables (`{tables}`) while every
    /// secret is re-encrypted, if the writing transaction alone does not.
    pub(crate) lock_tables: Option<&'static str>,
    /// Where conversation locks can be lost while held: the statement, run first in the
    /// transaction that commits a message's result, that locks the conversation's fence row
    /// if its epoch is still `$2` (`$1` the conversation) and returns a row only then
    /// ([`Completion::fence`](tern_engine::conversation::Completion::fence)).
    pub(crate) fence_check: Option<&'static str>,
}

/// The statement of [`Dialect::outbox_due`], with `$lock` after the candidates' query (`""`,
/// or PostgreSQL's `FOR UPDATE SKIP LOCKED`, so that instances sharing the database skip what
/// another is claiming). A candidate is due and has no older delivery of its conversation
/// (rows written before conversations were recorded have none: they are sent in any order).
macro_rules! outbox_due {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET next_attempt_ms = $1 + $3, lease = lease + 1 WHERE id IN (
               SELECT candidate.id FROM outbox AS candidate
               WHERE candidate.next_attempt_ms <= $1 AND NOT EXISTS (
                 SELECT 1 FROM outbox AS earlier WHERE earlier.conversation = candidate.conversation
                   AND (earlier.created_at_ms < candidate.created_at_ms
                        OR (earlier.created_at_ms = candidate.created_at_ms AND earlier.id < candidate.id)))
               ORDER BY candidate.next_attempt_ms, candidate.created_at_ms LIMIT $2 ",
            $lock,
            ") RETURNING id, channel, body, attempts, created_at_ms, lease, binding, sent"
        )
    };
}
pub(crate) use outbox_due;

/// The statement of [`Dialect::timers_due`], with `$lock` after the candidates' query (`""`,
/// or PostgreSQL's `FOR UPDATE SKIP LOCKED`, so that instances sharing the database skip the
/// rows another is claiming and each timer is claimed by one).
macro_rules! timers_due {
    ($lock:literal) => {
        concat!(
            "UPDATE conversations SET wake_lease_ms = $1 + $3 WHERE conversation_id IN (
               SELECT conversation_id FROM conversations
               WHERE wake_at_ms <= $1 AND (wake_lease_ms IS NULL OR wake_lease_ms <= $1)
               ORDER BY wake_at_ms LIMIT $2 ",
            $lock,
            ") RETURNING conversation_id, wake_run_id, wake_at_ms"
        )
    };
}
pub(crate) use timers_due;

/// What one database keeps and does on its own, next to its [`Dialect`].
#[async_trait]
pub trait Flavor: Send + Sync + Sized + 'static {
    /// The database's SQL differences.
    const DIALECT: Dialect;

    /// A lock that serializes this process's conversation writes, if the database has one
    /// writer at a time (SQLite).
    fn write_gate(&self) -> Option<&tokio::sync::Mutex<()>> {
        None
    }

    /// Applies a batch of conversation writes in one transaction (built on
    /// [`SqlStore::apply_all`]).
    async fn write(store: &SqlStore<Self>, ops: &[WriteOp]) -> Result<(), StoreError>;

    /// One retention pass (built on [`SqlStore::prune_all`]).
    async fn prune(store: &SqlStore<Self>, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        store.prune_all(retention, now_ms).await
    }

    /// Moves committed writes from a write-ahead log into the database.
    async fn checkpoint(store: &SqlStore<Self>) -> Result<(), StoreError> {
        let _ = store;
        Ok(())
    }

    /// Told of every database error the store meets (SQLite: a read-only one makes connections
    /// be checked before they are handed out for a while, see `sqlite::ReadOnlySeen`).
    fn noted(&self, error: &sqlx::Error) {
        let _ = error;
    }

    /// Whether the database's files can be written, where the database is files (SQLite):
    /// the fault and the detail for the log.
    fn writable(&self) -> Result<(), (crate::health::Fault, String)> {
        Ok(())
    }

    /// Takes a conversation across the processes sharing the database.
    async fn lock_conversation(
        &self,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Result<Option<Box<dyn ConversationLock>>, StoreError> {
        let _ = (conversation, wait);
        Ok(None)
    }
}

/// The integration store and conversation store on one SQL database; `F` is the database
/// ([`SqliteStore`](crate::SqliteStore), [`PgStore`](crate::PgStore)). Cheap to clone.
pub struct SqlStore<F: Flavor> {
    pub(crate) pool: AnyPool,
    /// The keyring, with each value's binding.
    pub(crate) sealer: Sealer,
    /// Where the data is (a path, or the URL without its password), for the operator's log.
    pub(crate) location: String,
    /// What rows are stamped with and expiry is judged by.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) flavor: Arc<F>,
    /// The senders the last retention pass found with as many live `webhook-id`s as are kept
    /// per sender (see `webhook_ids.rs`); at most one per channel and integration.
    pub(crate) full_senders: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl<F: Flavor> Clone for SqlStore<F> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sealer: self.sealer.clone(),
            location: self.location.clone(),
            clock: self.clock.clone(),
            flavor: self.flavor.clone(),
            full_senders: self.full_senders.clone(),
        }
    }
}

impl<F: Flavor> std::fmt::Debug for SqlStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(F::DIALECT.name)
            .field("location", &self.location)
            .field("key_id", &self.sealer.0.current_id())
            .finish()
    }
}

impl<F: Flavor> SqlStore<F> {
    pub(crate) fn new(pool: AnyPool, keys: Keyring, location: String, flavor: F) -> Self {
        Self {
            pool,
            sealer: Sealer(Arc::new(keys)),
            location,
            clock: clock::system(),
            flavor: Arc::new(flavor),
            full_senders: Arc::default(),
        }
    }

    /// The same store on another clock (tests pass a
    /// [`ManualClock`](tern_engine::clock::ManualClock) to move time forward without sleeping).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where the database is (a file path, or the URL without its password), for the
    /// operator's log.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Unix seconds on the store's clock.
    pub(crate) fn now_s(&self) -> i64 {
        self.clock.now_s()
    }

    /// Unix milliseconds on the store's clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |source| {
            self.flavor.noted(&source);
            StoreError::Database { location: self.location.clone(), cause: Box::new(source) }
        }
    }

    /// Opens a transaction that writes ([`Dialect::begin_write`]).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        match F::DIALECT.begin_write {
            Some(statement) => self.pool.begin_with(statement).await,
            None => self.pool.begin().await,
        }
        .map_err(self.db())
    }

    /// Waits for this process's turn to write conversation data, where the database has one
    /// writer at a time ([`Flavor::write_gate`]).
    pub(crate) async fn gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.flavor.write_gate() {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// Free text as the database stores it ([`Dialect::text_holds_nul`]): NUL becomes U+FFFD
    /// where `TEXT` cannot hold it; everything else is kept.
    pub(crate) fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if F::DIALECT.text_holds_nul || !s.contains('\0') {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(s.replace('\0', "\u{fffd}"))
        }
    }

    /// Whether an id or filter can match anything stored (one with NUL cannot where `TEXT`
    /// holds none).
    pub(crate) fn storable(&self, s: &str) -> bool {
        F::DIALECT.text_holds_nul || !s.contains('\0')
    }

    /// Applies the embedded migrations.
    pub(crate) async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> Result<(), StoreError> {
        migrator.run(&self.pool).await.map_err(|e| self.migration_error(&e))
    }

    pub(crate) fn migration_error(&self, e: &sqlx::migrate::MigrateError) -> StoreError {
        tracing::error!(store = %self.location, error = %e, "migration failed");
        StoreError::Migration { location: self.location.clone(), reason: migrate_reason(e) }
    }

    /// Stores a check value on first open (the first of several instances wins the race);
    /// then every open must decrypt it (fail closed).
    pub(crate) async fn check_key(&self) -> Result<(), StoreError> {
        let aad = Aad { table: "meta", row: "key_check", column: "value" };
        let keys = &self.sealer.0;
        sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING")
            .bind(keys.encrypt(aad, b"tern key check"))
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        let blob: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_one(&self.pool)
            .await
            .map_err(self.db())?;
        match keys.decrypt(aad, &blob) {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::WrongKey {
                key_id: keys.current_id().to_string(),
                stored_key_id: Keyring::key_id_of(&blob).unwrap_or("unknown").to_string(),
                location: self.location.clone(),
            }),
        }
    }

    /// How many rows `table` holds.
    pub(crate) async fn count(&self, table: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await.map_err(self.db())
    }

    /// Re-encrypts every secret column in one writing transaction, which first keeps other
    /// writers out where the transaction alone does not ([`Dialect::lock_tables`]: on
    /// PostgreSQL other instances keep reading, and their writes wait until the rotation
    /// commits; a row written meanwhile under the old key would otherwise be missed).
    async fn reencrypt(&self) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(lock) = F::DIALECT.lock_tables {
            let mut tables: Vec<&str> = SECRET_COLUMNS.iter().map(|(t, _, _)| *t).collect();
            tables.dedup();
            sqlx::query(&lock.replace("{tables}", &tables.join(", "))).execute(&mut *tx).await.map_err(self.db())?;
        }
        let (row_ref, row_is) = F::DIALECT.row_ref;
        let keys = &self.sealer.0;
        let mut count = 0;
        for (table, row_expr, column) in SECRET_COLUMNS {
            let rows: Vec<AnyRow> = sqlx::query(&format!(
                "SELECT {row_ref} AS tid, {row_expr} AS row_key, {column} AS blob FROM {table} WHERE {column} IS NOT NULL"
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
            for r in rows {
                let tid: String = r.get("tid");
                let row_key: String = r.get("row_key");
                let blob: Vec<u8> = r.get("blob");
                let aad = Aad { table, row: &row_key, column };
                let plain = keys.decrypt(aad, &blob)?;
                let fresh = keys.encrypt(aad, &plain);
                sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE {row_is}"))
                    .bind(fresh)
                    .bind(tid)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db())?;
                count += 1;
            }
        }
        tx.commit().await.map_err(self.db())?;
        Ok(count)
    }
}

impl<F: Flavor> SqlStore<F> {
    /// The readiness checks ([`crate::health`]).
    async fn check_readiness(&self) -> Readiness {
        let query = self
            .bounded(CHECK_QUERY, async {
                sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.pool).await.map(drop)
            })
            .await;
        let write = if let (Some(fault), detail) = (query.fault, &query.detail) {
            Check { name: CHECK_WRITE, fault: Some(fault), detail: detail.clone() }
        } else if let Err((fault, detail)) = self.flavor.writable() {
            Check::failed(CHECK_WRITE, fault, detail)
        } else {
            self.bounded(CHECK_WRITE, self.write_probe()).await
        };
        Readiness { checks: vec![query, write] }
    }

    /// Runs one check within [`READY_TIMEOUT`].
    async fn bounded(
        &self,
        name: &'static str,
        check: impl std::future::Future<Output = Result<(), sqlx::Error>>,
    ) -> Check {
        match tokio::time::timeout(READY_TIMEOUT, check).await {
            Ok(Ok(())) => Check::passed(name),
            Ok(Err(e)) => Check::failed(name, Fault::of(&e), format!("store {}: {e}", self.location)),
            Err(_) => Check::failed(
                name,
                Fault::TimedOut,
                format!("store {}: no answer within {} ms", self.location, READY_TIMEOUT.as_millis()),
            ),
        }
    }

    /// Writes the `ready_probe` row of `meta` in a writing transaction of its own (behind this
    /// process's write gate, as conversation writes are).
    async fn write_probe(&self) -> Result<(), sqlx::Error> {
        let _gate = self.gate().await;
        let mut tx = match F::DIALECT.begin_write {
            Some(statement) => self.pool.begin_with(statement).await?,
            None => self.pool.begin().await?,
        };
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('ready_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(self.now_ms().to_be_bytes().to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

#[async_trait]
impl<F: Flavor> Backend for SqlStore<F> {
    fn location(&self) -> &str {
        &self.location
    }

    fn kind(&self) -> &'static str {
        F::DIALECT.kind
    }

    async fn readiness(&self) -> Readiness {
        self.check_readiness().await
    }

    async fn reencrypt_all(&self) -> Result<usize, StoreError> {
        self.reencrypt().await
    }
}

/// Whether a connection given back goes back into the pool (sqlx's `after_release`): not when
/// it is still inside a transaction. That happens when a commit failed (a disk I/O error, a
/// file made read-only) and the rollback that follows failed too, because the database had
/// already ended the transaction itself: the driver still counts it as open, and every later
/// `BEGIN` on that connection would fail ("non-zero transaction depth"), for whichever write
/// picked it.
///
/// No query is sent: the check reads the driver's count, so a release costs nothing more. A
/// transaction merely dropped (its rollback still queued in SQLite's worker) may be counted
/// as open here and its connection closed too; that happens on error paths only, and the pool
/// opens a new one.
pub(crate) fn still_usable(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    use sqlx::Connection;
    Box::pin(async move {
        let usable = !conn.is_in_transaction();
        if !usable {
            tracing::warn!(
                "a database connection was left inside a transaction (its commit and rollback failed); closing it"
            );
        }
        Ok(usable)
    })
}

/// What the migrator said, in words for the operator.
fn migrate_reason(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::VersionMissing(v) => format!(
            "it was migrated to version {v} by a newer Tern; run that version, or restore a backup made before the upgrade"
        ),
        MigrateError::VersionMismatch(v) => {
            format!("migration {v} applied to it differs from this version's; it was made by another build of Tern")
        }
        MigrateError::Dirty(v) => {
            format!("migration {v} failed part-way earlier; restore a backup, then start again")
        }
        other => format!("{other}"),
    }
}
