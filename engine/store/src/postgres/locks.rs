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
//! - **A lost lock connection** (the server restarted, `pg_terminate_backend`, a proxy or
//!   failover that cuts sessions) loses the locks on it, and another instance can take the
//!   conversation while this one still runs a message of it. So each hold has a **fencing
//!   token**: right after taking the lock, on the lock's own session, the instance makes the
//!   conversation's epoch (`conversation_fences`) its own ([`FENCE`]: a new epoch when the row
//!   names another lock session as holder, none otherwise, so that an instance that keeps its
//!   sessions writes nothing). The message's commit locks that row and checks the epoch
//!   ([`Dialect::fence_check`](crate::sql::Dialect::fence_check)); a new holder's move of the
//!   epoch waits for such a commit, and such a commit after the move fails
//!   ([`StoreError::Fenced`]): the run commits nothing and is handled again. Every session has
//!   its own holder number (random, per connection of a shard; per hold on a waiting
//!   connection), so a session opened again after a loss always moves the epoch. Fence rows
//!   are kept [`FENCE_RETENTION`] after their epoch last moved; a removed row only costs the
//!   next holder a new epoch (a run under an older one is then refused, never let through).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tern_engine::conversation::{ConversationId, ConversationLock};
use tokio::sync::Mutex;

use crate::{StoreError, lock_key};

/// Makes a conversation's fencing epoch this lock session's (`$1` conversation, `$2` the
/// session's holder number) and returns it: the current epoch when the row already names this
/// holder (no write), else a new one from `conversation_epochs`.
const FENCE: &str = "WITH mine AS (
        SELECT epoch FROM conversation_fences WHERE conversation_id = $1 AND holder = $2
    ), moved AS (
        INSERT INTO conversation_fences AS f (conversation_id, epoch, holder, fenced_at_ms)
        SELECT $1, nextval('conversation_epochs'), $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
        WHERE NOT EXISTS (SELECT 1 FROM mine)
        ON CONFLICT (conversation_id) DO UPDATE
            SET epoch = excluded.epoch, holder = excluded.holder, fenced_at_ms = excluded.fenced_at_ms
        RETURNING epoch
    )
    SELECT epoch FROM mine UNION ALL SELECT epoch FROM moved";

/// How long a fence row is kept after its epoch last moved (then retention removes it).
pub const FENCE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes fence rows whose epoch has not moved for [`FENCE_RETENTION`] (`$1`, in ms).
pub(crate) const PRUNE_FENCES: &str = "DELETE FROM conversation_fences
    WHERE fenced_at_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1";

/// Dedicated lock connections per instance.
pub const SHARDS: usize = 4;

/// Connections per instance on which messages wait for a conversation another instance
/// holds (more waiting messages wait for one of these first).
pub const WAITERS: u32 = 32;

/// The lock connections of one instance.
pub(crate) struct ConversationLocks {
    shards: Vec<Arc<Mutex<Option<Session>>>>,
    options: PgConnectOptions,
    waiters: sqlx::PgPool,
    location: String,
}

/// What every lock connection runs first: a session that holds locks for as long as runs take
/// must not be ended by a server-wide idle timeout, and its waits are bounded by
/// `lock_timeout` (set per wait), not by `statement_timeout`.
///
/// The fencing epoch's moves ([`FENCE`]) commit without waiting for the disk
/// (`synchronous_commit = off`): a move lost in a crash of the server had no commit of the new
/// holder after it (the new holder's commit is flushed with the move before it, in WAL order),
/// so the older epoch that comes back protects the same state. No waiting for a flush per
/// conversation taken is what keeps fencing cheap.
const SESSION_SETUP: &[&str] =
    &["SET idle_session_timeout = 0", "SET statement_timeout = 0", "SET synchronous_commit = off"];

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
    /// error so that the next call opens a fresh one); with `fence`, when `sql` answered
    /// `true`, also makes the conversation's epoch this session's ([`FENCE`]). Returns the
    /// answer and the epoch.
    async fn on_shard(
        &self,
        shard: &Mutex<Option<Session>>,
        sql: &str,
        key: i64,
        fence: Option<&ConversationId>,
    ) -> Result<(bool, Option<i64>), StoreError> {
        let mut slot = shard.lock().await;
        if slot.is_none() {
            let mut conn = PgConnection::connect_with(&self.options).await.map_err(|e| self.db(e))?;
            set_up(&mut conn).await.map_err(|e| self.db(e))?;
            *slot = Some(Session { conn, holder: rand::random() });
        }
        let Some(session) = slot.as_mut() else { return Err(self.db(sqlx::Error::PoolClosed)) };
        let answer = match sqlx::query_scalar::<_, bool>(sql).bind(key).fetch_one(&mut session.conn).await {
            Ok(true) => match fence {
                Some(conversation) => {
                    fence_epoch(&mut session.conn, conversation, session.holder).await.map(|e| (true, Some(e)))
                }
                None => Ok((true, None)),
            },
            other => other.map(|v| (v, None)),
        };
        answer.map_err(|e| {
            tracing::error!(store = %self.location, error = %e, "a conversation-lock connection failed; the locks it held are released, opening a new one");
            *slot = None;
            self.db(e)
        })
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
        let take = || self.on_shard(&self.shards[shard], "SELECT pg_try_advisory_lock($1)", key, Some(conversation));
        let (free, epoch) = match take().await {
            Ok(taken) => taken,
            Err(_) => take().await?,
        };
        if let (true, Some(epoch)) = (free, epoch) {
            return Ok(Box::new(Held { locks: Some(self.clone()), on: On::Shard(shard), key, epoch }));
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
            // A waiting connection serves many holds: each one is a new holder.
            Ok(_) => match fence_epoch(&mut conn, conversation, rand::random()).await {
                Ok(epoch) => Ok(Box::new(Held { locks: Some(self.clone()), on: On::Waiter(Some(conn)), key, epoch })),
                Err(e) => {
                    conn.close_on_drop();
                    Err(self.db(e))
                }
            },
            Err(e) if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "55P03") => Err(too_long()),
            Err(e) => {
                conn.close_on_drop();
                Err(self.db(e))
            }
        }
    }

    async fn unlock(&self, shard: usize, key: i64) {
        match self.on_shard(&self.shards[shard], "SELECT pg_advisory_unlock($1)", key, None).await {
            Ok((true, _)) => {}
            Ok((false, _)) => tracing::warn!(store = %self.location, "a conversation lock was not held when released"),
            Err(_) => {} // logged by on_shard; the session (and its locks) is gone
        }
    }
}

/// A shard's lock session and its holder number ([`FENCE`]).
struct Session {
    conn: PgConnection,
    holder: i64,
}

/// Makes the conversation's fencing epoch `holder`'s ([`FENCE`]), on the session that holds
/// the conversation's lock.
async fn fence_epoch(conn: &mut PgConnection, conversation: &ConversationId, holder: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(FENCE).bind(conversation.as_str()).bind(holder).fetch_one(&mut *conn).await
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
    /// The fencing token of this hold.
    epoch: i64,
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

    fn fence(&self) -> Option<i64> {
        Some(self.epoch)
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
