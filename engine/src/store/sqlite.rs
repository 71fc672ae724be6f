//! The SQLite store: one file in the data directory, WAL journal, created on first run, with
//! its migrations embedded. Cross-process token locks are `BEGIN IMMEDIATE` transactions.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{
    IntegrationRecord, IntegrationStatus, PendingAuthorization, SecretInfo, Store, StoreError, TokenLock, TokenRecord,
    owner_key, parse_owner,
};
use crate::clock::{self, Clock};
use crate::crypto::{Aad, Keyring};
use crate::ids::IntegrationName;
use crate::integrations::config::IntegrationConfig;
use crate::tokens::TokenOwner;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE integrations (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    client_secret BLOB,
    status TEXT NOT NULL,
    status_message TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE tokens (
    integration TEXT NOT NULL REFERENCES integrations(name) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    access_token BLOB NOT NULL,
    refresh_token BLOB,
    expires_at INTEGER,
    obtained_at INTEGER NOT NULL DEFAULT 0,
    scopes TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (integration, owner)
);
CREATE TABLE pending_authorizations (
    state_hash TEXT PRIMARY KEY,
    integration TEXT NOT NULL,
    owner TEXT NOT NULL,
    verifier BLOB NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    conversation TEXT
);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at INTEGER NOT NULL);
"#,
    r#"
CREATE TABLE flow_versions (hash TEXT PRIMARY KEY, flow_id TEXT NOT NULL, source TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    flow_hash TEXT NOT NULL,
    snapshot BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE processed_messages (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    // The conversation service: encrypted answers, accepted messages, run history in segments,
    // the webhook outbox. The plaintext `runs` and `processed_messages` of version 2 are
    // dropped (they could hold tokens an API echoed; dedupe only spans minutes).
    r#"
DROP TABLE runs;
DROP TABLE processed_messages;
CREATE TABLE answers (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    answer BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX answers_created ON answers (created_at_ms);
CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    accepted_at_ms INTEGER NOT NULL,
    UNIQUE (conversation_id, message_id)
);
CREATE TABLE run_history (
    run_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    contact_id TEXT,
    flow_id TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    segments INTEGER NOT NULL
);
CREATE INDEX run_history_updated ON run_history (updated_at_ms);
CREATE INDEX run_history_conversation ON run_history (conversation_id, updated_at_ms);
CREATE INDEX run_history_flow ON run_history (flow_id, updated_at_ms);
CREATE TABLE run_segments (
    run_id TEXT NOT NULL REFERENCES run_history (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_ms);
CREATE TABLE effects (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    response BLOB,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id, seq, attempt)
);
CREATE INDEX effects_created ON effects (created_at_ms);
CREATE INDEX conversations_expires ON conversations (expires_at);
CREATE INDEX pending_expires ON pending_authorizations (expires_at);
"#,
    // A run's first segment is stored in its summary row, so a run that never pauses (most of
    // them) costs one statement; later segments still go to `run_segments` (seq 1, 2, …).
    // Rows written by version 3 keep their segment 0 in `run_segments`.
    r#"
ALTER TABLE run_history ADD COLUMN first_segment BLOB;
"#,
];

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    pub(super) keys: Arc<Keyring>,
    pub(super) location: String,
    /// Serializes this process's conversation writes: SQLite has one writer at a time, and
    /// letting pool connections contend for it means its busy handler's sleeps.
    pub(super) write_gate: Arc<tokio::sync::Mutex<()>>,
    /// What rows are stamped with and expiry is judged by.
    pub(super) clock: Arc<dyn Clock>,
    /// Run-history bookkeeping shared by the writer and the pruning pass.
    pub(super) history: Arc<super::conversations::HistoryCount>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .field("key_id", &self.keys.current_id())
            .finish()
    }
}

fn state_hash(state: &str) -> String {
    Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and checks the keyring against it.
    pub async fn open(path: &Path, keys: Keyring) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let db_err = |source| StoreError::Database { location: location.clone(), source };
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // Commits never checkpoint (which stalls the committing writer for as long as the
            // copy takes): the conversation service checkpoints in the background every second
            // (`ConversationStore::checkpoint`), and the last connection to close checkpoints
            // what is left. After a checkpoint the log file is cut back to 64 MiB.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(db_err)?;
        let store = Self {
            pool,
            keys: Arc::new(keys),
            location,
            write_gate: Arc::default(),
            clock: clock::system(),
            history: Arc::default(),
        };
        store.migrate().await?;
        store.check_key().await?;
        Ok(store)
    }

    /// The same store on another clock (tests pass a [`ManualClock`](crate::clock::ManualClock)
    /// to move time forward without sleeping).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds on the store's clock.
    pub(super) fn now_s(&self) -> i64 {
        self.clock.now_s()
    }

    /// Unix milliseconds on the store's clock.
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(super) fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Database { location: self.location.clone(), source }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(self.db())?;
        let version = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(self.db())?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1)).execute(&mut *tx).await.map_err(self.db())?;
        }
        tx.commit().await.map_err(self.db())
    }

    /// The first open stores a check value; later opens must decrypt it (fail closed).
    async fn check_key(&self) -> Result<(), StoreError> {
        let aad = Aad { table: "meta", row: "key_check", column: "value" };
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        match row {
            Some(blob) => match self.keys.decrypt(aad, &blob) {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::WrongKey {
                    key_id: self.keys.current_id().to_string(),
                    stored_key_id: Keyring::key_id_of(&blob).unwrap_or("unknown").to_string(),
                    location: self.location.clone(),
                }),
            },
            None => {
                let blob = self.keys.encrypt(aad, b"tern key check");
                sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)")
                    .bind(blob)
                    .execute(&self.pool)
                    .await
                    .map_err(self.db())?;
                Ok(())
            }
        }
    }

    /// Whether the store has a key check, i.e. was opened with a key before.
    pub async fn is_initialized(path: &Path) -> Result<bool, StoreError> {
        if !path.exists() {
            return Ok(false);
        }
        let location = path.display().to_string();
        let db_err = |source| StoreError::Database { location: location.clone(), source };
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

    /// Where the database is (a file path), for the operator's log; never sent to callers.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Re-encrypts every secret column under the keyring's current key, in one transaction (a
    /// crash leaves the old ciphertexts, still readable with the old key). Returns how many
    /// values were rewritten.
    pub async fn reencrypt_all(&self) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        let mut count = 0;
        let columns: &[(&str, &str, &str)] = &[
            ("integrations", "name", "client_secret"),
            ("tokens", "integration || '/' || owner", "access_token"),
            ("tokens", "integration || '/' || owner", "refresh_token"),
            ("pending_authorizations", "state_hash", "verifier"),
            ("secrets", "name", "value"),
            ("conversations", "conversation_id", "snapshot"),
            ("answers", super::conversations::ANSWER_ROW_SQL, "answer"),
            ("inbox", super::conversations::ANSWER_ROW_SQL, "body"),
            ("run_segments", "run_id || '/' || seq", "body"),
            ("run_history", "run_id", "first_segment"),
            ("outbox", "id", "body"),
            ("effects", super::conversations::EFFECT_ROW_SQL, "response"),
            ("meta", "key", "value"),
        ];
        for (table, row_expr, column) in columns {
            let rows = sqlx::query(&format!(
                "SELECT rowid, {row_expr} AS row_key, {column} AS blob FROM {table} WHERE {column} IS NOT NULL"
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
            for r in rows {
                let rowid: i64 = r.get("rowid");
                let row_key: String = r.get("row_key");
                let blob: Vec<u8> = r.get("blob");
                let aad = Aad { table, row: &row_key, column };
                let plain = self.keys.decrypt(aad, &blob)?;
                let fresh = self.keys.encrypt(aad, &plain);
                sqlx::query(&format!("UPDATE {table} SET {column} = ? WHERE rowid = ?"))
                    .bind(fresh)
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db())?;
                count += 1;
            }
        }
        tx.commit().await.map_err(self.db())?;
        Ok(count)
    }

    fn encrypt_secret(&self, table: &str, row: &str, column: &str, value: &SecretString) -> Vec<u8> {
        // Every secret the store holds is masked wherever text leaves the process.
        crate::secrets::known::remember(value);
        self.keys.encrypt(Aad { table, row, column }, value.expose_secret().as_bytes())
    }

    fn decrypt_secret(&self, table: &str, row: &str, column: &str, blob: &[u8]) -> Result<SecretString, StoreError> {
        let plain = self.keys.decrypt(Aad { table, row, column }, blob)?;
        let text = std::str::from_utf8(&plain).map_err(|_| StoreError::Corrupt {
            what: format!("{table}.{column} of {row}"),
            reason: "not UTF-8".into(),
        })?;
        let value = SecretString::from(text.to_string());
        crate::secrets::known::remember(&value);
        Ok(value)
    }

    fn integration_row(&self, r: &sqlx::sqlite::SqliteRow) -> Result<IntegrationRecord, StoreError> {
        let name: String = r.get("name");
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("integration `{name}`"), reason };
        let config: IntegrationConfig =
            serde_json::from_str(r.get::<&str, _>("config")).map_err(|e| corrupt(e.to_string()))?;
        let status: String = r.get("status");
        Ok(IntegrationRecord {
            name: IntegrationName::new(name.clone()).map_err(corrupt)?,
            config,
            client_secret_set: r.get::<Option<Vec<u8>>, _>("client_secret").is_some(),
            status: IntegrationStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
            status_message: r.get("status_message"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        })
    }

    fn token_row(&self, row_key: &str, r: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("token {row_key}"), reason };
        let access: Vec<u8> = r.get("access_token");
        let refresh: Option<Vec<u8>> = r.get("refresh_token");
        let scopes: Option<String> = r.get("scopes");
        Ok(TokenRecord {
            access_token: self.decrypt_secret("tokens", row_key, "access_token", &access)?,
            refresh_token: refresh.map(|b| self.decrypt_secret("tokens", row_key, "refresh_token", &b)).transpose()?,
            expires_at: r.get("expires_at"),
            obtained_at: r.get("obtained_at"),
            scopes: scopes.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt(e.to_string()))?,
            metadata: serde_json::from_str(r.get::<&str, _>("metadata")).map_err(|e| corrupt(e.to_string()))?,
            version: r.get("version"),
        })
    }
}

fn token_key(name: &IntegrationName, owner: &TokenOwner) -> String {
    format!("{name}/{}", owner_key(owner))
}

const TOKEN_COLUMNS: &str = "access_token, refresh_token, expires_at, obtained_at, scopes, metadata, version";

async fn read_token<'e, E: sqlx::Executor<'e, Database = Sqlite>>(
    store: &SqliteStore,
    exec: E,
    name: &IntegrationName,
    owner: &TokenOwner,
) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE integration = ? AND owner = ?"))
        .bind(name.as_str())
        .bind(owner_key(owner))
        .fetch_optional(exec)
        .await
        .map_err(store.db())?;
    row.map(|r| store.token_row(&token_key(name, owner), &r)).transpose()
}

async fn write_token<'e, E: sqlx::Executor<'e, Database = Sqlite>>(
    store: &SqliteStore,
    exec: E,
    name: &IntegrationName,
    owner: &TokenOwner,
    token: &TokenRecord,
) -> Result<i64, StoreError> {
    let key = token_key(name, owner);
    let access = store.encrypt_secret("tokens", &key, "access_token", &token.access_token);
    let refresh = token.refresh_token.as_ref().map(|r| store.encrypt_secret("tokens", &key, "refresh_token", r));
    let scopes = token.scopes.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
    let metadata = serde_json::to_string(&token.metadata).unwrap_or_else(|_| "{}".into());
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO tokens (integration, owner, access_token, refresh_token, expires_at, obtained_at, scopes, metadata, version, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
         ON CONFLICT (integration, owner) DO UPDATE SET
           access_token = excluded.access_token, refresh_token = excluded.refresh_token,
           expires_at = excluded.expires_at, obtained_at = excluded.obtained_at, scopes = excluded.scopes, metadata = excluded.metadata,
           version = tokens.version + 1, updated_at = excluded.updated_at
         RETURNING version",
    )
    .bind(name.as_str())
    .bind(owner_key(owner))
    .bind(access)
    .bind(refresh)
    .bind(token.expires_at)
    .bind(token.obtained_at)
    .bind(scopes)
    .bind(metadata)
    .bind(store.now_s())
    .fetch_one(exec)
    .await
    .map_err(store.db())?;
    Ok(version)
}

async fn write_status<'e, E: sqlx::Executor<'e, Database = Sqlite>>(
    store: &SqliteStore,
    exec: E,
    name: &IntegrationName,
    status: IntegrationStatus,
    message: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE integrations SET status = ?, status_message = ?, updated_at = ? WHERE name = ?")
        .bind(status.as_str())
        .bind(message)
        .bind(store.now_s())
        .bind(name.as_str())
        .execute(exec)
        .await
        .map_err(store.db())?;
    Ok(())
}

struct SqliteTokenLock {
    store: SqliteStore,
    tx: Transaction<'static, Sqlite>,
    name: IntegrationName,
    owner: TokenOwner,
}

#[async_trait]
impl TokenLock for SqliteTokenLock {
    async fn read(&mut self) -> Result<Option<TokenRecord>, StoreError> {
        read_token(&self.store, &mut *self.tx, &self.name, &self.owner).await
    }

    async fn write(&mut self, token: &TokenRecord) -> Result<i64, StoreError> {
        write_token(&self.store, &mut *self.tx, &self.name, &self.owner, token).await
    }

    async fn set_status(&mut self, status: IntegrationStatus, message: Option<&str>) -> Result<(), StoreError> {
        write_status(&self.store, &mut *self.tx, &self.name, status, message).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let db = |source| StoreError::Database { location: self.store.location.clone(), source };
        self.tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_integration(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        let config_json = serde_json::to_string(config)
            .map_err(|e| StoreError::Corrupt { what: format!("integration `{name}`"), reason: e.to_string() })?;
        let secret = client_secret.map(|s| self.encrypt_secret("integrations", name.as_str(), "client_secret", s));
        let t = self.now_s();
        sqlx::query(
            "INSERT INTO integrations (name, config, client_secret, status, created_at, updated_at)
             VALUES (?, ?, ?, 'incomplete', ?, ?)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config,
               client_secret = COALESCE(excluded.client_secret, integrations.client_secret),
               updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(config_json)
        .bind(secret)
        .bind(t)
        .bind(t)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn get_integration(&self, name: &IntegrationName) -> Result<Option<IntegrationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        row.map(|r| self.integration_row(&r)).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM integrations ORDER BY name").fetch_all(&self.pool).await.map_err(self.db())?;
        rows.iter().map(|r| self.integration_row(r)).collect()
    }

    async fn client_secret(&self, name: &IntegrationName) -> Result<Option<SecretString>, StoreError> {
        let blob: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT client_secret FROM integrations WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        blob.flatten().map(|b| self.decrypt_secret("integrations", name.as_str(), "client_secret", &b)).transpose()
    }

    async fn remove_integration(&self, name: &IntegrationName) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM integrations WHERE name = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        sqlx::query("DELETE FROM pending_authorizations WHERE integration = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_status(
        &self,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        write_status(self, &self.pool, name, status, message).await
    }

    async fn get_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Option<TokenRecord>, StoreError> {
        read_token(self, &self.pool, name, owner).await
    }

    async fn put_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, StoreError> {
        write_token(self, &self.pool, name, owner, token).await
    }

    async fn lock_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Box<dyn TokenLock>, StoreError> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        Ok(Box::new(SqliteTokenLock { store: self.clone(), tx, name: name.clone(), owner: owner.clone() }))
    }

    async fn put_pending(&self, state: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        let hash = state_hash(state);
        let verifier = self.encrypt_secret("pending_authorizations", &hash, "verifier", &p.verifier);
        sqlx::query("DELETE FROM pending_authorizations WHERE expires_at < ?")
            .bind(self.now_s())
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        sqlx::query(
            "INSERT INTO pending_authorizations (state_hash, integration, owner, verifier, redirect_uri, expires_at, conversation)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&hash)
        .bind(p.integration.as_str())
        .bind(owner_key(&p.owner))
        .bind(verifier)
        .bind(&p.redirect_uri)
        .bind(p.expires_at)
        .bind(&p.conversation)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn take_pending(&self, state: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        let hash = state_hash(state);
        let row = sqlx::query(
            "DELETE FROM pending_authorizations WHERE state_hash = ?
             RETURNING integration, owner, verifier, redirect_uri, expires_at, conversation",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        let Some(r) = row else { return Ok(None) };
        let corrupt = |reason: String| StoreError::Corrupt { what: "pending authorization".into(), reason };
        let owner: String = r.get("owner");
        Ok(Some(PendingAuthorization {
            integration: IntegrationName::new(r.get::<String, _>("integration")).map_err(corrupt)?,
            owner: parse_owner(&owner).ok_or_else(|| corrupt(format!("bad owner `{owner}`")))?,
            verifier: self.decrypt_secret(
                "pending_authorizations",
                &hash,
                "verifier",
                &r.get::<Vec<u8>, _>("verifier"),
            )?,
            redirect_uri: r.get("redirect_uri"),
            expires_at: r.get("expires_at"),
            conversation: r.get("conversation"),
        }))
    }

    async fn put_secret(&self, name: &str, value: &SecretString) -> Result<(), StoreError> {
        let blob = self.encrypt_secret("secrets", name, "value", value);
        sqlx::query(
            "INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(blob)
        .bind(self.now_s())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn all_secrets(&self) -> Result<Vec<(String, SecretString)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        // One secret that no longer decrypts must not stop every flow: it is left out (the
        // caller compares with `list_secrets` to name it) and only its users fail.
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name: String = r.get("name");
                match self.decrypt_secret("secrets", &name, "value", &r.get::<Vec<u8>, _>("value")) {
                    Ok(value) => Some((name, value)),
                    Err(e) => {
                        tracing::warn!(secret = %name, error = %e, "a stored secret cannot be decrypted; left out");
                        None
                    }
                }
            })
            .collect())
    }

    async fn list_secrets(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let rows = sqlx::query("SELECT name, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(rows.iter().map(|r| SecretInfo { name: r.get("name"), updated_at: r.get("updated_at") }).collect())
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    async fn remove_secret(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(r.rows_affected() > 0)
    }
}
