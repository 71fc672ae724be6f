//! What only SQLite has: one file in the data directory (WAL journal, created on first run,
//! with its migrations embedded), one writer at a time, and a write-ahead log to checkpoint.
//!
//! - **Write gate.** This process's conversation writes take turns on a mutex before they ask
//!   SQLite for its one write lock: letting pool connections contend for it means its busy
//!   handler's sleeps.
//! - **History count.** The writer keeps `run_history` at `--history-max-runs` itself
//!   ([`HistoryCount`]).
//! - **Checkpoints** run in the background ([`Flavor::checkpoint`]), never in a commit.
//! - Writing transactions are `BEGIN IMMEDIATE`; a token refresh holds one, which is what
//!   keeps other processes (CLI commands) from refreshing the same credential meanwhile.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tern_engine::conversation::{Pruned, Retention, WriteOp};

use crate::StoreError;
use crate::crypto::Keyring;
use crate::sql::{Dialect, Flavor, SqlStore};

/// The SQLite schema (`migrations/sqlite`), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Connections in the pool.
const POOL_SIZE: u32 = 8;

/// What every connection runs first. Commits never checkpoint (which stalls the committing
/// writer for as long as the copy takes): the conversation service checkpoints in the
/// background every second ([`Flavor::checkpoint`]), and the last connection to close
/// checkpoints what is left. After a checkpoint the log file is cut back to 64 MiB.
const CONNECTION_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
    PRAGMA busy_timeout = 30000; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

/// Write-ahead log frames (pages, 4 KiB each) past which a checkpoint restarts the log.
const WAL_RESTART_FRAMES: i64 = 4096;

/// SQLite as a [`Flavor`]: the write gate and the history count.
#[derive(Debug, Default)]
pub struct Sqlite {
    write_gate: tokio::sync::Mutex<()>,
    /// When a write last failed because the database was read-only.
    read_only_seen: ReadOnlySeen,
    history: HistoryCount,
    /// The database file (its write-ahead log is next to it, `-wal`).
    file: std::path::PathBuf,
}

/// When (Unix ms) an error last said the database is read-only (SQLite `SQLITE_READONLY`),
/// shared with the pool's check before a connection is handed out. SQLite opens a file it
/// cannot write read-only, silently, and a connection that met the file while it was
/// unwritable may stay read-only after the file is writable again; so for
/// [`READ_ONLY_RECHECK_MS`] after such an error, every idle connection is probed with a write
/// (rolled back) before use, and one that cannot write is closed instead of handed out. Outside
/// that window nothing is probed (the probe takes the write lock).
#[derive(Clone, Debug, Default)]
struct ReadOnlySeen(std::sync::Arc<AtomicI64>);

/// How long after a read-only error connections are probed before use, in ms.
const READ_ONLY_RECHECK_MS: i64 = 60_000;

impl ReadOnlySeen {
    fn now_ms() -> i64 {
        i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
        )
        .unwrap_or(i64::MAX)
    }

    fn note(&self) {
        self.0.store(Self::now_ms(), Relaxed);
    }

    fn recent(&self) -> bool {
        let at = self.0.load(Relaxed);
        at > 0 && Self::now_ms().saturating_sub(at) < READ_ONLY_RECHECK_MS
    }
}

/// How many runs history holds, as the writer and the pruning pass see it, so that the writer
/// can keep the count at `--history-max-runs` itself: under sustained load a separate pass
/// competes with the writer for the one write lock and falls behind (the store would grow), so
/// each batch that adds runs also deletes as many of the oldest beyond the limit (at most twice
/// as many as it added, plus 64). The pruning pass sets the limit and the exact count.
#[derive(Debug)]
struct HistoryCount {
    /// Runs in `run_history`; negative until the pruning pass has counted them.
    rows: AtomicI64,
    /// `--history-max-runs`; `i64::MAX` until the pruning pass has said.
    limit: AtomicI64,
}

impl Default for HistoryCount {
    fn default() -> Self {
        Self { rows: AtomicI64::new(-1), limit: AtomicI64::new(i64::MAX) }
    }
}

/// Creates the database file readable and writable by its owner alone (0600) when it does not
/// exist yet, whatever the umask and the directory's mode: it holds conversation ids and
/// metadata in the clear beside the encrypted values. SQLite gives its `-wal` and `-shm` files
/// the database file's mode. An existing file is left as it is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        file = %path.display(),
                        mode = format!("{mode:o}"),
                        "the database file is readable by other users (its -wal and -shm files get the same mode); run `chmod 600` on it"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl SqlStore<Sqlite> {
    /// Opens (creating if needed, owner-only) the database file, applies pending migrations and checks the
    /// keyring against it.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Migration`], [`StoreError::WrongKey`].
    pub async fn open(path: &Path, keys: Keyring) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let location = path.display().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
        create_private_file(path).map_err(|e| db_err(sqlx::Error::Io(e)))?;
        let opts = AnyConnectOptions::from_str(&format!("sqlite:{}?mode=rwc", url_path(path))).map_err(db_err)?;
        let read_only_seen = ReadOnlySeen::default();
        let seen = read_only_seen.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(POOL_SIZE)
            .after_connect(set_up)
            .before_acquire(move |conn, _| {
                let recheck = seen.recent();
                Box::pin(async move { if recheck { can_write(conn).await } else { Ok(true) } })
            })
            .after_release(crate::sql::still_usable)
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        let flavor = Sqlite { file: path.to_path_buf(), read_only_seen, ..Sqlite::default() };
        let store = Self::new(pool, keys, location, flavor);
        store.adopt_legacy_versions().await?;
        store.migrate(&MIGRATOR).await?;
        store.check_key().await?;
        Ok(store)
    }

    /// A file made before the migrator counted its versions in `PRAGMA user_version` (1 to 4,
    /// the same statements as `migrations/sqlite` 0001–0004): those versions are recorded as
    /// applied in `_sqlx_migrations` once, in one `BEGIN IMMEDIATE` transaction, so that the
    /// migrator carries on from there.
    async fn adopt_legacy_versions(&self) -> Result<(), StoreError> {
        use sqlx::migrate::Migrate;
        let mut tx = self.begin_write().await?;
        let legacy: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(self.db())?;
        let adopted = sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db())?;
        if legacy > 0 && adopted.is_none() {
            tx.ensure_migrations_table().await.map_err(|e| self.migration_error(&e))?;
            for m in MIGRATOR.iter().filter(|m| m.version <= legacy) {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)",
                )
                .bind(m.version)
                .bind(&*m.description)
                .bind(&*m.checksum)
                .execute(&mut *tx)
                .await
                .map_err(self.db())?;
            }
        }
        tx.commit().await.map_err(self.db())
    }

    /// Whether the store has a key check, i.e. was opened with a key before.
    ///
    /// # Errors
    /// [`StoreError::Database`]: the file cannot be read.
    pub async fn is_initialized(path: &Path) -> Result<bool, StoreError> {
        if !path.exists() {
            return Ok(false);
        }
        let location = path.display().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
        let opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).map_err(db_err)?.read_only(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.map_err(db_err)?;
        let has: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'")
            .fetch_optional(&pool)
            .await
            .map_err(db_err)?;
        if has.is_none() {
            return Ok(false);
        }
        let check: Option<i64> = sqlx::query_scalar("SELECT 1 FROM meta WHERE key='key_check'")
            .fetch_optional(&pool)
            .await
            .map_err(db_err)?;
        pool.close().await;
        Ok(check.is_some())
    }
}

/// Prepares a new connection ([`CONNECTION_SETUP`]).
///
/// First the connection must be able to write ([`WRITE_PROBE`]): SQLite opens a database file
/// it cannot open for writing (made read-only or immutable) read-only, silently, and such a
/// connection would stay read-only in the pool after the file is writable again, failing every
/// write that happens to use it. The probe takes no lock wait (`busy_timeout = 0`): when
/// another connection is writing, the file is writable and the connection is kept.
fn set_up(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + '_>> {
    use sqlx::Executor;
    Box::pin(async move {
        let probe = conn.execute(WRITE_PROBE).await;
        let _ = conn.execute("ROLLBACK").await;
        if let Err(e) = probe
            && crate::health::Fault::of(&e) != crate::health::Fault::Locked
        {
            return Err(e);
        }
        conn.execute(CONNECTION_SETUP).await.map(drop)
    })
}

/// Whether an idle connection still writes ([`ReadOnlySeen`]): the write probe, rolled back;
/// `false` (the pool closes it) when SQLite says it is read-only.
async fn can_write(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Executor;
    let probe = conn.execute(WRITE_PROBE).await;
    let _ = conn.execute("ROLLBACK").await;
    match probe {
        Err(e) if crate::health::Fault::of(&e) == crate::health::Fault::ReadOnly => {
            tracing::warn!("a database connection stayed read-only after the file was; closing it");
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// A write that is always rolled back (the caller ends the transaction): it fails on a
/// connection that SQLite opened read-only ([`set_up`]).
const WRITE_PROBE: &str =
    "PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS tern_write_probe (x INTEGER);";

/// A file path as the path of a `sqlite:` URL: percent-encoded except for unreserved
/// characters and `/`, so that the driver decodes exactly the path back (`?`, `#`, `%` and
/// spaces included).
fn url_path(path: &Path) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    utf8_percent_encode(&path.to_string_lossy(), KEEP).to_string()
}

#[async_trait]
impl Flavor for Sqlite {
    const DIALECT: Dialect = Dialect {
        kind: "sqlite",
        name: "SqliteStore",
        shared: false,
        begin_write: Some("BEGIN IMMEDIATE"),
        text_holds_nul: true,
        row_id: "rowid",
        row_in: "rowid IN ({rows})",
        row_ref: ("CAST(rowid AS TEXT)", "rowid = CAST($2 AS INTEGER)"),
        runs_before: "(updated_at_ms < {at} OR (updated_at_ms = {at} AND run_id < {id}))",
        outbox_due: crate::sql::outbox_due!(""),
        timers_due: crate::sql::timers_due!(""),
        token_lock_setup: &[],
        token_lock: None,
        lock_tables: None,
        // One process: its conversation locks are in memory and cannot be lost.
        fence_check: None,
    };

    fn write_gate(&self) -> Option<&tokio::sync::Mutex<()>> {
        Some(&self.write_gate)
    }

    fn noted(&self, error: &sqlx::Error) {
        if crate::health::Fault::of(error) == crate::health::Fault::ReadOnly {
            self.read_only_seen.note();
        }
    }

    /// The database file and its write-ahead log can be written: a file made read-only while
    /// the server runs is refused by the next connection the pool opens and at every restart,
    /// though the connections already open keep writing.
    fn writable(&self) -> Result<(), (crate::health::Fault, String)> {
        crate::health::file_writable(&self.file, false)?;
        let mut wal = self.file.clone().into_os_string();
        wal.push("-wal");
        crate::health::file_writable(std::path::Path::new(&wal), true)
    }

    /// One `BEGIN IMMEDIATE` transaction behind the write gate, which also keeps history at
    /// its limit (see [`HistoryCount`]).
    async fn write(store: &SqlStore<Self>, ops: &[WriteOp]) -> Result<(), StoreError> {
        let history = &store.flavor.history;
        let _gate = store.gate().await;
        let mut tx = store.begin_write().await?;
        let added = store.apply_all(&mut tx, ops).await?;
        let rows = history.rows.load(Relaxed);
        let limit = history.limit.load(Relaxed);
        let mut deleted = 0i64;
        if added > 0 && rows >= 0 && rows + added > limit {
            let take = (rows + added - limit).min(2 * added + 64);
            let n = sqlx::query(
                "DELETE FROM run_history WHERE rowid IN (SELECT rowid FROM run_history ORDER BY updated_at_ms LIMIT $1)",
            )
            .bind(take)
            .execute(&mut *tx)
            .await
            .map_err(store.db())?
            .rows_affected();
            deleted = i64::try_from(n).unwrap_or(0);
        }
        tx.commit().await.map_err(store.db())?;
        if rows >= 0 {
            history.rows.fetch_add(added - deleted, Relaxed);
        }
        Ok(())
    }

    /// The shared pass, after telling the writer the limit; then the exact count, taken
    /// between two of the writer's batches.
    async fn prune(store: &SqlStore<Self>, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let history = &store.flavor.history;
        history.limit.store(i64::try_from(retention.history_max_runs).unwrap_or(i64::MAX), Relaxed);
        let pruned = store.prune_all(retention, now_ms).await?;
        let _gate = store.gate().await;
        history.rows.store(store.count("run_history").await?, Relaxed);
        Ok(pruned)
    }

    async fn checkpoint(store: &SqlStore<Self>) -> Result<(), StoreError> {
        // Passive first: copies what it can without waiting for readers or the writer.
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&store.pool).await.map_err(store.db())?;
        let log_frames: i64 = row.get(1);
        // Under steady writes the log never empties on its own, so it would grow without end.
        // Past WAL_RESTART_FRAMES, a restart checkpoint between two batches of this process's
        // writer (little is left to copy after the passive one) lets the next write start the
        // log over; `journal_size_limit` then cuts the file back.
        if log_frames > WAL_RESTART_FRAMES {
            let _gate = store.gate().await;
            sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&store.pool).await.map_err(store.db())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::str::FromStr;

    use sqlx::any::AnyConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    #[test]
    fn a_path_reaches_the_driver_as_written() {
        for path in ["/tmp/data dir/tern.db", "relative/tern.db", "/tmp/a#b?c%41/tern.db", "/tmp/ünï/tern.db"] {
            let any =
                AnyConnectOptions::from_str(&format!("sqlite:{}?mode=rwc", super::url_path(Path::new(path)))).unwrap();
            let opts = SqliteConnectOptions::try_from(&any).unwrap();
            assert_eq!(opts.get_filename(), Path::new(path), "{path}");
        }
    }
}
