//! The SQLite store: one file in the data directory, WAL journal, created on first run, with
//! its migrations embedded. Cross-process token locks are `BEGIN IMMEDIATE` transactions.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use tern_engine::clock::{self, Clock};
use tern_engine::{IntegrationName, TokenOwner};
use tern_integrations::config::IntegrationConfig;

use crate::crypto::{Aad, Keyring};
use crate::rows::{IntegrationRow, SECRET_COLUMNS, Sealer, TokenRow, token_columns, token_key};
use crate::{
    Backend, IntegrationRecord, IntegrationStatus, PendingAuthorization, SecretInfo, Store, StoreError, TokenLock,
    TokenRecord, owner_key, parse_owner, state_hash,
};

mod conversations;

/// The SQLite schema (`migrations/sqlite`), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The keyring, with each value's binding (`sealer.0` is the keyring).
    pub(super) sealer: Sealer,
    pub(super) location: String,
    /// Serializes this process's conversation writes: SQLite has one writer at a time, and
    /// letting pool connections contend for it means its busy handler's sleeps.
    pub(super) write_gate: Arc<tokio::sync::Mutex<()>>,
    /// What rows are stamped with and expiry is judged by.
    pub(super) clock: Arc<dyn Clock>,
    /// Run-history bookkeeping shared by the writer and the pruning pass.
    pub(super) history: Arc<conversations::HistoryCount>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .field("key_id", &self.sealer.0.current_id())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and checks the keyring against it.
    pub async fn open(path: &Path, keys: Keyring) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
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
            sealer: Sealer(Arc::new(keys)),
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
        move |source| StoreError::Database { location: self.location.clone(), cause: Box::new(source) }
    }

    /// Applies pending migrations. A file made before the migrator counted its versions in
    /// `PRAGMA user_version` (1 to 4, the same statements as `migrations/sqlite` 0001–0004):
    /// those versions are recorded as applied in `_sqlx_migrations` once, in one `BEGIN
    /// IMMEDIATE` transaction, so that the migrator carries on from there.
    async fn migrate(&self) -> Result<(), StoreError> {
        use sqlx::migrate::Migrate;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        let legacy: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(self.db())?;
        let adopted: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.db())?;
        if legacy > 0 && adopted.is_none() {
            tx.ensure_migrations_table().await.map_err(|e| self.migration_error(&e))?;
            for m in MIGRATOR.iter().filter(|m| m.version <= legacy) {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, TRUE, ?, 0)",
                )
                .bind(m.version)
                .bind(&*m.description)
                .bind(&*m.checksum)
                .execute(&mut *tx)
                .await
                .map_err(self.db())?;
            }
        }
        tx.commit().await.map_err(self.db())?;
        MIGRATOR.run(&self.pool).await.map_err(|e| self.migration_error(&e))
    }

    fn migration_error(&self, e: &sqlx::migrate::MigrateError) -> StoreError {
        tracing::error!(store = %self.location, error = %e, "migration failed");
        StoreError::Migration { location: self.location.clone(), reason: migrate_reason(e) }
    }

    /// The first open stores a check value; later opens must decrypt it (fail closed).
    async fn check_key(&self) -> Result<(), StoreError> {
        let aad = Aad { table: "meta", row: "key_check", column: "value" };
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        match row {
            Some(blob) => match self.sealer.0.decrypt(aad, &blob) {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::WrongKey {
                    key_id: self.sealer.0.current_id().to_string(),
                    stored_key_id: Keyring::key_id_of(&blob).unwrap_or("unknown").to_string(),
                    location: self.location.clone(),
                }),
            },
            None => {
                let blob = self.sealer.0.encrypt(aad, b"tern key check");
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

    /// Where the database is (a file path), for the operator's log; never sent to callers.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn reencrypt(&self) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        let mut count = 0;
        for (table, row_expr, column) in SECRET_COLUMNS {
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
                let plain = self.sealer.0.decrypt(aad, &blob)?;
                let fresh = self.sealer.0.encrypt(aad, &plain);
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
        self.sealer.encrypt_secret(table, row, column, value)
    }

    fn decrypt_secret(&self, table: &str, row: &str, column: &str, blob: &[u8]) -> Result<SecretString, StoreError> {
        self.sealer.decrypt_secret(table, row, column, blob)
    }

    fn integration_row(&self, r: &sqlx::sqlite::SqliteRow) -> Result<IntegrationRecord, StoreError> {
        IntegrationRow {
            name: r.get("name"),
            config: r.get("config"),
            client_secret_set: r.get::<Option<Vec<u8>>, _>("client_secret").is_some(),
            status: r.get("status"),
            status_message: r.get("status_message"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
        .into_record()
    }

    fn token_row(&self, row_key: &str, r: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
        TokenRow {
            access_token: r.get("access_token"),
            refresh_token: r.get("refresh_token"),
            expires_at: r.get("expires_at"),
            obtained_at: r.get("obtained_at"),
            scopes: r.get("scopes"),
            metadata: r.get("metadata"),
            version: r.get("version"),
        }
        .into_record(&self.sealer, row_key)
    }
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
    let (scopes, metadata) = token_columns(token);
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
        let db = |source| StoreError::Database { location: self.store.location.clone(), cause: Box::new(source) };
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
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT name, value FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(self.sealer.open_secrets(rows))
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

#[async_trait]
impl Backend for SqliteStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn reencrypt_all(&self) -> Result<usize, StoreError> {
        self.reencrypt().await
    }
}

/// What the migrator said, in words for the operator (both backends).
pub(crate) fn migrate_reason(e: &sqlx::migrate::MigrateError) -> String {
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
