//! The PostgreSQL store: a database that several `tern serve` instances share.
//!
//! - **Schema**: `migrations/postgres`, applied by `sqlx::migrate!` on open; the migrator holds
//!   an advisory lock, so instances starting together migrate once.
//! - **Token refresh across instances**: [`Store::lock_token`] opens a transaction and takes
//!   `pg_advisory_xact_lock` on the credential, then the caller re-reads the token inside it.
//!   A row lock (`SELECT … FOR UPDATE`) would not cover a credential with no row yet (a
//!   service account's first token); the advisory lock does. It is released by commit,
//!   rollback, or the death of the session.
//! - **Conversations across instances**: see [`locks`]: a session advisory lock per
//!   conversation, held while an instance handles one of its messages.
//! - **Pool**: [`POOL_SIZE`] connections per instance for queries, plus [`locks::SHARDS`]
//!   dedicated connections for conversation locks. Size PostgreSQL's `max_connections` for
//!   `instances × (POOL_SIZE + SHARDS)` plus what else uses the server.

mod conversations;
mod locks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tern_engine::clock::{self, Clock};
use tern_engine::{IntegrationName, TokenOwner};
use tern_integrations::config::IntegrationConfig;

use crate::crypto::{Aad, Keyring};
use crate::rows::{IntegrationRow, SECRET_COLUMNS, Sealer, TokenRow, token_columns, token_key};
use crate::{
    Backend, DatabaseUrl, IntegrationRecord, IntegrationStatus, PendingAuthorization, SecretInfo, Store, StoreError,
    TokenLock, TokenRecord, lock_key, owner_key, parse_owner, state_hash,
};

/// The PostgreSQL schema (`migrations/postgres`), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per instance for queries.
pub const POOL_SIZE: u32 = 16;

/// Longest wait for a pooled connection before a query fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    sealer: Sealer,
    location: String,
    clock: Arc<dyn Clock>,
    locks: Arc<locks::ConversationLocks>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("key_id", &self.sealer.0.current_id())
            .finish()
    }
}

impl PgStore {
    /// Connects, applies pending migrations and checks the keyring against the data (the first
    /// instance to open an empty database stores the key check; every other must match it).
    ///
    /// # Errors
    /// [`StoreError::Database`] (cannot connect: the message names the host, never the
    /// password), [`StoreError::Migration`], [`StoreError::WrongKey`].
    pub async fn open(url: &DatabaseUrl, keys: Keyring) -> Result<Self, StoreError> {
        let location = url.redacted().to_string();
        let db_err = |source: sqlx::Error| StoreError::Database { location: location.clone(), cause: Box::new(source) };
        let opts = PgConnectOptions::from_str(url.expose()).map_err(db_err)?.application_name("tern");
        // One connection first: a refused connection, an unknown database or a wrong password
        // is reported at once, in the server's words, instead of as a pool timeout 30 s later.
        {
            use sqlx::Connection;
            let first = sqlx::PgConnection::connect_with(&opts).await.map_err(db_err)?;
            let _ = first.close().await;
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.clone())
            .await
            .map_err(db_err)?;
        let store = Self {
            pool,
            sealer: Sealer(Arc::new(keys)),
            location: location.clone(),
            clock: clock::system(),
            locks: Arc::new(locks::ConversationLocks::new(opts, location)),
        };
        MIGRATOR.run(&store.pool).await.map_err(|e| {
            tracing::error!(store = %store.location, error = %e, "migration failed");
            StoreError::Migration { location: store.location.clone(), reason: crate::sqlite::migrate_reason(&e) }
        })?;
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
        let opts = PgConnectOptions::from_str(url.expose()).map_err(db_err)?.application_name("tern");
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

    /// The same store on another clock (tests pass a
    /// [`ManualClock`](tern_engine::clock::ManualClock)).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now_s(&self) -> i64 {
        self.clock.now_s()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Database { location: self.location.clone(), cause: Box::new(source) }
    }

    /// Stores a check value on first open (the first of several instances wins the race);
    /// then every open must decrypt it (fail closed).
    async fn check_key(&self) -> Result<(), StoreError> {
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

    fn integration_row(r: &PgRow) -> Result<IntegrationRecord, StoreError> {
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

    async fn read_token<'e, E: sqlx::Executor<'e, Database = Postgres>>(
        &self,
        exec: E,
        name: &IntegrationName,
        owner: &TokenOwner,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at, obtained_at, scopes, metadata, version
             FROM tokens WHERE integration = $1 AND owner = $2",
        )
        .bind(name.as_str())
        .bind(owner_key(owner))
        .fetch_optional(exec)
        .await
        .map_err(self.db())?;
        row.map(|r| {
            TokenRow {
                access_token: r.get("access_token"),
                refresh_token: r.get("refresh_token"),
                expires_at: r.get("expires_at"),
                obtained_at: r.get("obtained_at"),
                scopes: r.get("scopes"),
                metadata: r.get("metadata"),
                version: r.get("version"),
            }
            .into_record(&self.sealer, &token_key(name, owner))
        })
        .transpose()
    }

    async fn write_token<'e, E: sqlx::Executor<'e, Database = Postgres>>(
        &self,
        exec: E,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, StoreError> {
        owner_text(owner)?;
        let key = token_key(name, owner);
        let access = self.sealer.encrypt_secret("tokens", &key, "access_token", &token.access_token);
        let refresh =
            token.refresh_token.as_ref().map(|r| self.sealer.encrypt_secret("tokens", &key, "refresh_token", r));
        let (scopes, metadata) = token_columns(token);
        sqlx::query_scalar(
            "INSERT INTO tokens (integration, owner, access_token, refresh_token, expires_at, obtained_at, scopes, metadata, version, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)
             ON CONFLICT (integration, owner) DO UPDATE SET
               access_token = excluded.access_token, refresh_token = excluded.refresh_token,
               expires_at = excluded.expires_at, obtained_at = excluded.obtained_at, scopes = excluded.scopes,
               metadata = excluded.metadata, version = tokens.version + 1, updated_at = excluded.updated_at
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
        .bind(self.now_s())
        .fetch_one(exec)
        .await
        .map_err(self.db())
    }

    async fn write_status<'e, E: sqlx::Executor<'e, Database = Postgres>>(
        &self,
        exec: E,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE integrations SET status = $1, status_message = $2, updated_at = $3 WHERE name = $4")
            .bind(status.as_str())
            .bind(message.map(conversations::pg_text))
            .bind(self.now_s())
            .bind(name.as_str())
            .execute(exec)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}

/// A token owner as PostgreSQL text: a contact id with NUL cannot be stored in a `TEXT` column,
/// and replacing the NUL would give two contacts one credential, so such an owner is refused.
fn owner_text(owner: &TokenOwner) -> Result<(), StoreError> {
    match owner {
        TokenOwner::Contact(id) if id.contains('\0') => Err(StoreError::Corrupt {
            what: "token owner".into(),
            reason: "a contact id with a NUL character cannot own a login on a PostgreSQL store; the channel must send contact ids without control characters".into(),
        }),
        _ => Ok(()),
    }
}

struct PgTokenLock {
    store: PgStore,
    tx: Transaction<'static, Postgres>,
    name: IntegrationName,
    owner: TokenOwner,
}

#[async_trait]
impl TokenLock for PgTokenLock {
    async fn read(&mut self) -> Result<Option<TokenRecord>, StoreError> {
        self.store.read_token(&mut *self.tx, &self.name, &self.owner).await
    }

    async fn write(&mut self, token: &TokenRecord) -> Result<i64, StoreError> {
        self.store.write_token(&mut *self.tx, &self.name, &self.owner, token).await
    }

    async fn set_status(&mut self, status: IntegrationStatus, message: Option<&str>) -> Result<(), StoreError> {
        self.store.write_status(&mut *self.tx, &self.name, status, message).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let location = self.store.location.clone();
        self.tx.commit().await.map_err(|source| StoreError::Database { location, cause: Box::new(source) })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn put_integration(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        let config_json = serde_json::to_string(config)
            .map_err(|e| StoreError::Corrupt { what: format!("integration `{name}`"), reason: e.to_string() })?;
        let secret =
            client_secret.map(|s| self.sealer.encrypt_secret("integrations", name.as_str(), "client_secret", s));
        let t = self.now_s();
        sqlx::query(
            "INSERT INTO integrations (name, config, client_secret, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'incomplete', $4, $4)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config,
               client_secret = COALESCE(excluded.client_secret, integrations.client_secret),
               updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(config_json)
        .bind(secret)
        .bind(t)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn get_integration(&self, name: &IntegrationName) -> Result<Option<IntegrationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        row.map(|r| Self::integration_row(&r)).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM integrations ORDER BY name").fetch_all(&self.pool).await.map_err(self.db())?;
        rows.iter().map(Self::integration_row).collect()
    }

    async fn client_secret(&self, name: &IntegrationName) -> Result<Option<SecretString>, StoreError> {
        let blob: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT client_secret FROM integrations WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        blob.flatten()
            .map(|b| self.sealer.decrypt_secret("integrations", name.as_str(), "client_secret", &b))
            .transpose()
    }

    async fn remove_integration(&self, name: &IntegrationName) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let r = sqlx::query("DELETE FROM integrations WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        sqlx::query("DELETE FROM pending_authorizations WHERE integration = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_status(
        &self,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write_status(&self.pool, name, status, message).await
    }

    async fn get_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Option<TokenRecord>, StoreError> {
        self.read_token(&self.pool, name, owner).await
    }

    async fn put_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, StoreError> {
        self.write_token(&self.pool, name, owner, token).await
    }

    async fn lock_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Box<dyn TokenLock>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        // The lock is held across the token request (an HTTP call): server-wide timeouts must
        // not end the transaction, and with it the lock, in the middle (both settings exist
        // since PostgreSQL 9.6).
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *tx).await.map_err(self.db())?;
        sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await.map_err(self.db())?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key("tern-token", &token_key(name, owner)))
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        Ok(Box::new(PgTokenLock { store: self.clone(), tx, name: name.clone(), owner: owner.clone() }))
    }

    async fn put_pending(&self, state: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        owner_text(&p.owner)?;
        let hash = state_hash(state);
        let verifier = self.sealer.encrypt_secret("pending_authorizations", &hash, "verifier", &p.verifier);
        sqlx::query("DELETE FROM pending_authorizations WHERE expires_at < $1")
            .bind(self.now_s())
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        sqlx::query(
            "INSERT INTO pending_authorizations (state_hash, integration, owner, verifier, redirect_uri, expires_at, conversation)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
            "DELETE FROM pending_authorizations WHERE state_hash = $1
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
            verifier: self.sealer.decrypt_secret(
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
        let blob = self.sealer.encrypt_secret("secrets", name, "value", value);
        sqlx::query(
            "INSERT INTO secrets (name, value, updated_at) VALUES ($1, $2, $3)
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

    async fn remove_secret(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(r.rows_affected() > 0)
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
}

#[async_trait]
impl Backend for PgStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }

    /// One transaction that first takes every table with a secret column in `EXCLUSIVE` mode:
    /// other instances keep reading, and their writes wait until the rotation commits (a row
    /// written meanwhile under the old key would otherwise be missed).
    async fn reencrypt_all(&self) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let mut tables: Vec<&str> = SECRET_COLUMNS.iter().map(|(t, _, _)| *t).collect();
        tables.dedup();
        sqlx::query(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", tables.join(", ")))
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        let keys = &self.sealer.0;
        let mut count = 0;
        for (table, row_expr, column) in SECRET_COLUMNS {
            let rows = sqlx::query(&format!(
                "SELECT ctid::text AS tid, {row_expr} AS row_key, {column} AS blob FROM {table} WHERE {column} IS NOT NULL"
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
                sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE ctid = $2::tid"))
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
