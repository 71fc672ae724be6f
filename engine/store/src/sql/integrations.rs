//! [`Store`] on SQL: integrations, tokens (and their refresh lock), pending authorizations and
//! named secrets.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row, Transaction};
use tern_engine::clock::Clock;
use tern_engine::{IntegrationName, TokenOwner};
use tern_integrations::config::IntegrationConfig;

use super::{Flavor, SqlStore};
use crate::rows::{IntegrationRow, TokenRow, token_columns, token_key};
use crate::{
    IntegrationRecord, IntegrationStatus, PendingAuthorization, SecretInfo, Store, StoreError, TokenLock, TokenRecord,
    lock_key, owner_key, parse_owner, state_hash,
};

fn integration_of(r: &AnyRow) -> Result<IntegrationRecord, StoreError> {
    IntegrationRow {
        name: r.get("name"),
        config: r.get("config"),
        client_secret_set: r.get::<Option<Vec<u8>>, _>("client_secret").is_some(),
        client_key_set: r.get::<Option<Vec<u8>>, _>("client_key").is_some(),
        status: r.get("status"),
        status_message: r.get("status_message"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
    .into_record()
}

impl<F: Flavor> SqlStore<F> {
    /// A token owner the database can store: where `TEXT` cannot hold NUL, replacing it would
    /// give two contacts one credential, so such an owner is refused.
    fn check_owner(&self, owner: &TokenOwner) -> Result<(), StoreError> {
        match owner {
            TokenOwner::Contact(id) if !self.storable(id) => Err(StoreError::Corrupt {
                what: "token owner".into(),
                reason: "a contact id with a NUL character cannot own a login on a PostgreSQL store; the channel must send contact ids without control characters".into(),
            }),
            _ => Ok(()),
        }
    }

    async fn read_token<'e, E: Executor<'e, Database = Any>>(
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

    async fn write_token<'e, E: Executor<'e, Database = Any>>(
        &self,
        exec: E,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
        expected: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        self.check_owner(owner)?;
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
             WHERE $10 < 0 OR tokens.version = $10
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
        .bind(expected.unwrap_or(-1))
        .fetch_optional(exec)
        .await
        .map_err(self.db())
    }

    /// [`write_token`](Self::write_token) without a condition: always stored.
    async fn write_token_always<'e, E: Executor<'e, Database = Any>>(
        &self,
        exec: E,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, StoreError> {
        self.write_token(exec, name, owner, token, None).await?.ok_or_else(|| StoreError::Corrupt {
            what: format!("token of integration `{name}`"),
            reason: "the database stored it without giving its version".into(),
        })
    }

    async fn write_status<'e, E: Executor<'e, Database = Any>>(
        &self,
        exec: E,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE integrations SET status = $1, status_message = $2, updated_at = $3 WHERE name = $4")
            .bind(status.as_str())
            .bind(message.map(|m| self.text(m).into_owned()))
            .bind(self.now_s())
            .bind(name.as_str())
            .execute(exec)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}

/// A credential taken for a refresh: a writing transaction that holds the credential's lock
/// ([`Dialect::token_lock`](super::Dialect::token_lock)) until it commits or is dropped.
struct SqlTokenLock<F: Flavor> {
    store: SqlStore<F>,
    tx: Transaction<'static, Any>,
    name: IntegrationName,
    owner: TokenOwner,
}

#[async_trait]
impl<F: Flavor> TokenLock for SqlTokenLock<F> {
    async fn read(&mut self) -> Result<Option<TokenRecord>, StoreError> {
        self.store.read_token(&mut *self.tx, &self.name, &self.owner).await
    }

    async fn write(&mut self, token: &TokenRecord) -> Result<i64, StoreError> {
        self.store.write_token_always(&mut *self.tx, &self.name, &self.owner, token).await
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
impl<F: Flavor> Store for SqlStore<F> {
    async fn put_integration_with_key(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
        client_key: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        let config_json = serde_json::to_string(config)
            .map_err(|e| StoreError::Corrupt { what: format!("integration `{name}`"), reason: e.to_string() })?;
        let secret =
            client_secret.map(|s| self.sealer.encrypt_secret("integrations", name.as_str(), "client_secret", s));
        let key = client_key.map(|s| self.sealer.encrypt_secret("integrations", name.as_str(), "client_key", s));
        // A certificate removed from the settings takes its key with it.
        let keep_key = config.client_cert.is_some();
        sqlx::query(
            "INSERT INTO integrations (name, config, client_secret, client_key, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'incomplete', $5, $5)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config,
               client_secret = COALESCE(excluded.client_secret, integrations.client_secret),
               client_key = CASE WHEN $6 THEN COALESCE(excluded.client_key, integrations.client_key) END,
               updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(config_json)
        .bind(secret)
        .bind(key)
        .bind(self.now_s())
        .bind(keep_key)
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
        row.as_ref().map(integration_of).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM integrations ORDER BY name").fetch_all(&self.pool).await.map_err(self.db())?;
        rows.iter().map(integration_of).collect()
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

    async fn client_key(&self, name: &IntegrationName) -> Result<Option<SecretString>, StoreError> {
        let blob: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT client_key FROM integrations WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?;
        blob.flatten().map(|b| self.sealer.decrypt_secret("integrations", name.as_str(), "client_key", &b)).transpose()
    }

    async fn remove_integration(&self, name: &IntegrationName) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
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
        self.write_token_always(&self.pool, name, owner, token).await
    }

    async fn put_token_if_version(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
        version: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.write_token(&self.pool, name, owner, token, Some(version)).await
    }

    async fn lock_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Box<dyn TokenLock>, StoreError> {
        let mut tx = self.begin_write().await?;
        for setup in F::DIALECT.token_lock_setup {
            sqlx::query(setup).execute(&mut *tx).await.map_err(self.db())?;
        }
        if let Some(lock) = F::DIALECT.token_lock {
            sqlx::query(lock)
                .bind(lock_key("tern-token", &token_key(name, owner)))
                .execute(&mut *tx)
                .await
                .map_err(self.db())?;
        }
        Ok(Box::new(SqlTokenLock { store: self.clone(), tx, name: name.clone(), owner: owner.clone() }))
    }

    async fn put_pending(&self, state: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        self.check_owner(&p.owner)?;
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
            integration: IntegrationName::new(r.get::<String, _>("integration")).map_err(|e| corrupt(e.to_string()))?,
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
        let rows = sqlx::query("SELECT name, value, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(rows
            .iter()
            .map(|r| {
                let name: String = r.get("name");
                let blob: Vec<u8> = r.get("value");
                let decrypts = self.sealer.decrypt_secret("secrets", &name, "value", &blob).is_ok();
                SecretInfo { name, updated_at: r.get("updated_at"), decrypts }
            })
            .collect())
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

    fn shared_bucket(&self) -> Option<Arc<dyn tern_engine::http::limit::SharedBucket>> {
        F::DIALECT.shared.then(|| Arc::new(self.clone()) as Arc<dyn tern_engine::http::limit::SharedBucket>)
    }
}
