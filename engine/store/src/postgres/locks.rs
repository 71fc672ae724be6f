//! Conversation locks across instances: a session-level advisory lock per conversation
//! (`pg_try_advisory_lock`), held by this instance while it handles one message of the
//! conversation.
//!
//! - **Few connections, many locks.** A session holds any number of advisory locks, so the
//!   locks of every conversation this instance is handling live on [`SHARDS`] dedicated
//!   connections (a conversation always maps to the same one, so its unlock reaches the session
//!   that locked it). Taking a lock does not tie up a connection while the run goes on, and the
//!   runs' own queries use the main pool: no pool exhaustion, no deadlock between the two.
//! - **Arrival order when instances contend.** The first try is `pg_try_advisory_lock` on the
//!   shard (no waiting: most conversations are free). When another instance holds the
//!   conversation, the message waits in PostgreSQL's own queue instead: a blocking
//!   `pg_advisory_lock` on a connection of a small waiting pool ([`WAITERS`]), which then holds
//!   the lock for the run. PostgreSQL grants a lock to its waiters in the order they asked, and
//!   a holder that wants the conversation again queues behind them (its try fails while they
//!   wait), so an instance cannot starve another one's message.
//! - **Sessions that do not time out.** Lock connections set `idle_session_timeout = 0` and
//!   `statement_timeout = 0` (a server-wide timeout would end the session or the wait, and with
//!   it the lock, in the middle of a run; waits are bounded by `lock_timeout` instead).
//! - **Bound.** Arrival order holds for up to [`WAITERS`] conversations that one instance waits
//!   for at the same moment; more waiting messages queue inside the instance first and can be
//!   overtaken there. A connection that dies anyway (the server restarted) loses its locks: the error is
//!   logged when it is noticed. Connect directly or through a session-pooling proxy;
//!   transaction pooling (e.g. PgBouncer's) breaks session locks.
//! - **A dead instance frees its conversations.** Its sessions end and PostgreSQL releases
//!   their locks (`kill -9` included: the server notices the closed socket).
//! - **Within one process** the conversation service already runs one message per
//!   conversation at a time, so a lock is never taken twice concurrently by one instance.
//!   (Advisory locks are re-entrant per session; two conversations whose keys collide simply
//!   share it inside one instance and exclude each other across instances.)
//! - **A lost lock connection** (the server restarted) loses the locks on it: the error is
//!   logged, the connection is opened again for the next lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tern_engine::conversation::{ConversationId, ConversationLock};
use tokio::sync::Mutex;

use crate::{StoreError, lock_key};

/// Dedicated lock connections per instance.
pub const SHARDS: usize = 4;

/// Connections per instance on which messages wait for a conversation another instance
/// holds (more waiting messages wait for one of these first).
pub const WAITERS: u32 = 32;

/// The lock connections of one instance.
pub(crate) struct ConversationLocks {
    shards: Vec<Arc<Mutex<Option<PgConnection>>>>,
    options: PgConnectOptions,
    waiters: sqlx::PgPool,
    location: String,
}

/// What every lock connection runs first: a session that holds locks for as long as runs take
/// must not be ended by a server-wide idle timeout, and its waits are bounded by
/// `lock_timeout` (set per wait), not by `statement_timeout`.
const SESSION_SETUP: &[&str] = &["SET idle_session_timeout = 0", "SET statement_timeout = 0"];

impl ConversationLocks {
    pub(crate) fn new(options: PgConnectOptions, location: String) -> Self {
        let waiters = sqlx::postgres::PgPoolOptions::new()
            .max_connections(WAITERS)
            .min_connections(0)
            .after_connect(|conn, _| Box::pin(async move { set_up(conn).await }))
            .connect_lazy_with(options.clone());
        Self { shards: (0..SHARDS).map(|_| Arc::default()).collect(), options, waiters, location }
    }

    fn db(&self, source: sqlx::Error) -> StoreError {
        StoreError::Database { location: self.location.clone(), cause: Box::new(source) }
    }

    /// Runs `sql` with `key` on the shard's connection (opened on first use, dropped after an
    /// error so that the next call opens a fresh one).
    async fn on_shard(&self, shard: &Mutex<Option<PgConnection>>, sql: &str, key: i64) -> Result<bool, StoreError> {
        let mut slot = shard.lock().await;
        if slot.is_none() {
            let mut conn = PgConnection::connect_with(&self.options).await.map_err(|e| self.db(e))?;
            set_up(&mut conn).await.map_err(|e| self.db(e))?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else { return Err(self.db(sqlx::Error::PoolClosed)) };
        match sqlx::query_scalar::<_, bool>(sql).bind(key).fetch_one(&mut *conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::error!(store = %self.location, error = %e, "a conversation-lock connection failed; the locks it held are released, opening a new one");
                *slot = None;
                Err(self.db(e))
            }
        }
    }

    /// Takes the conversation's lock, waiting at most `wait` while another instance holds it.
    pub(crate) async fn lock(
        self: &Arc<Self>,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Result<Box<dyn ConversationLock>, StoreError> {
        let key = lock_key("tern-conversation", conversation.as_str());
        let shard = usize::try_from(key.unsigned_abs() % SHARDS as u64).unwrap_or(0);
        // A shard connection the server dropped (a restart, a terminated backend) is opened
        // again once: its locks are gone anyway, and the message should not fail for it.
        let free = match self.on_shard(&self.shards[shard], "SELECT pg_try_advisory_lock($1)", key).await {
            Ok(free) => free,
            Err(_) => self.on_shard(&self.shards[shard], "SELECT pg_try_advisory_lock($1)", key).await?,
        };
        if free {
            return Ok(Box::new(Held { locks: Some(self.clone()), on: On::Shard(shard), key }));
        }
        // Held elsewhere: wait in PostgreSQL's queue, in arrival order.
        let started = Instant::now();
        let too_long = || StoreError::Database {
            location: self.location.clone(),
            cause: format!(
                "conversation `{conversation}` was held by another instance for more than {} s",
                wait.as_secs()
            )
            .into(),
        };
        let mut conn = tokio::time::timeout(wait, self.waiters.acquire())
            .await
            .map_err(|_| too_long())?
            .map_err(|e| self.db(e))?;
        let left = wait.saturating_sub(started.elapsed()).as_millis().max(1);
        sqlx::query(&format!("SET lock_timeout = {left}")).execute(&mut *conn).await.map_err(|e| self.db(e))?;
        match sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut *conn).await {
            Ok(_) => Ok(Box::new(Held { locks: Some(self.clone()), on: On::Waiter(Some(conn)), key })),
            Err(e) if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "55P03") => Err(too_long()),
            Err(e) => {
                conn.close_on_drop();
                Err(self.db(e))
            }
        }
    }

    async fn unlock(&self, shard: usize, key: i64) {
        match self.on_shard(&self.shards[shard], "SELECT pg_advisory_unlock($1)", key).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(store = %self.location, "a conversation lock was not held when released"),
            Err(_) => {} // logged by on_shard; the session (and its locks) is gone
        }
    }
}

/// Prepares a lock session (see [`SESSION_SETUP`]); a setting the server does not have (42704:
/// `idle_session_timeout` before PostgreSQL 14) is skipped.
async fn set_up(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for setting in SESSION_SETUP {
        match sqlx::query(setting).execute(&mut *conn).await {
            Ok(_) => {}
            Err(e) if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42704") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Which session holds a lock.
enum On {
    /// A shard connection (the lock was free).
    Shard(usize),
    /// A waiting-pool connection (the lock was waited for); back to the pool after unlocking.
    Waiter(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>),
}

/// A held conversation.
struct Held {
    locks: Option<Arc<ConversationLocks>>,
    on: On,
    key: i64,
}

impl Held {
    async fn unlock(locks: Arc<ConversationLocks>, on: On, key: i64) {
        match on {
            On::Shard(shard) => locks.unlock(shard, key).await,
            On::Waiter(Some(mut conn)) => {
                let released = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await;
                if !matches!(released, Ok(true)) {
                    tracing::warn!(store = %locks.location, "a conversation lock was lost before it was released");
                    conn.close_on_drop();
                }
            }
            On::Waiter(None) => {}
        }
    }
}

#[async_trait]
impl ConversationLock for Held {
    async fn release(mut self: Box<Self>) {
        if let Some(locks) = self.locks.take() {
            let on = std::mem::replace(&mut self.on, On::Waiter(None));
            Held::unlock(locks, on, self.key).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(locks) = self.locks.take() {
            let on = std::mem::replace(&mut self.on, On::Waiter(None));
            let key = self.key;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(Held::unlock(locks, on, key));
            }
        }
    }
}
