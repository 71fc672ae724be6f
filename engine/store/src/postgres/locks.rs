//! Conversation locks across instances: a session-level advisory lock per conversation
//! (`pg_try_advisory_lock`), held by this instance while it handles one message of the
//! conversation.
//!
//! - **Few connections, many locks.** A session holds any number of advisory locks, so the
//!   locks of every conversation this instance is handling live on [`SHARDS`] dedicated
//!   connections (a conversation always maps to the same one, so its unlock reaches the session
//!   that locked it). Taking a lock does not tie up a connection while the run goes on, and the
//!   runs' own queries use the main pool: no pool exhaustion, no deadlock between the two.
//! - **Trying, not blocking.** A blocking `pg_advisory_lock` would stall every other lock on its
//!   shard; `pg_try_advisory_lock` is retried with a backoff from 2 ms to 50 ms instead. Only
//!   messages of a conversation that another instance is handling right now wait.
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

/// First wait between two tries of a lock another instance holds.
const BACKOFF_START: Duration = Duration::from_millis(2);
/// Longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_millis(50);

/// The lock connections of one instance.
pub(crate) struct ConversationLocks {
    shards: Vec<Arc<Mutex<Option<PgConnection>>>>,
    options: PgConnectOptions,
    location: String,
}

impl ConversationLocks {
    pub(crate) fn new(options: PgConnectOptions, location: String) -> Self {
        Self { shards: (0..SHARDS).map(|_| Arc::default()).collect(), options, location }
    }

    fn db(&self, source: sqlx::Error) -> StoreError {
        StoreError::Database { location: self.location.clone(), cause: Box::new(source) }
    }

    /// Runs `sql` with `key` on the shard's connection (opened on first use, dropped after an
    /// error so that the next call opens a fresh one).
    async fn on_shard(&self, shard: &Mutex<Option<PgConnection>>, sql: &str, key: i64) -> Result<bool, StoreError> {
        let mut slot = shard.lock().await;
        if slot.is_none() {
            *slot = Some(PgConnection::connect_with(&self.options).await.map_err(|e| self.db(e))?);
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
        let started = Instant::now();
        let mut backoff = BACKOFF_START;
        loop {
            if self.on_shard(&self.shards[shard], "SELECT pg_try_advisory_lock($1)", key).await? {
                return Ok(Box::new(Held { locks: Some(self.clone()), shard, key }));
            }
            if started.elapsed() >= wait {
                return Err(StoreError::Database {
                    location: self.location.clone(),
                    cause: format!(
                        "conversation `{conversation}` was held by another instance for more than {} s",
                        wait.as_secs()
                    )
                    .into(),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
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

/// A held conversation.
struct Held {
    locks: Option<Arc<ConversationLocks>>,
    shard: usize,
    key: i64,
}

#[async_trait]
impl ConversationLock for Held {
    async fn release(mut self: Box<Self>) {
        if let Some(locks) = self.locks.take() {
            locks.unlock(self.shard, self.key).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(locks) = self.locks.take() {
            let (shard, key) = (self.shard, self.key);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { locks.unlock(shard, key).await });
            }
        }
    }
}
