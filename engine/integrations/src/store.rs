//! The storage interface the integrations service needs: integrations, tokens, pending
//! authorizations and named secrets, behind one trait ([`Store`]). The implementations (SQLite,
//! the default, and PostgreSQL) are in the `tern-store` crate, whose conformance suite every
//! implementation passes.
//!
//! Implementations encrypt every secret column, with the table, row and column as associated
//! data. Reads that return secrets return [`SecretString`]s, which never print.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::IntegrationConfig;
use tern_engine::IntegrationName;
use tern_engine::TokenOwner;
use tern_engine::clock::Clock;
pub use tern_engine::storage::StoreError;

/// Where an integration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// Added, never authorized.
    Incomplete,
    /// Usable.
    Authorized,
    /// The refresh token was rejected; a person must authorize again.
    NeedsReauthorization,
}

impl IntegrationStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::Authorized => "authorized",
            Self::NeedsReauthorization => "needs_reauthorization",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "incomplete" => Self::Incomplete,
            "authorized" => Self::Authorized,
            "needs_reauthorization" => Self::NeedsReauthorization,
            _ => return None,
        })
    }
}

/// An integration as stored (the client secret is read separately, on purpose).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationRecord {
    /// Its name.
    pub name: IntegrationName,
    /// Its settings.
    pub config: IntegrationConfig,
    /// Whether a client secret is stored (the secret itself is never returned here).
    pub client_secret_set: bool,
    /// Whether the client certificate's private key is stored (never the key itself).
    pub client_key_set: bool,
    /// Where it stands.
    pub status: IntegrationStatus,
    /// Why, when it needs attention.
    pub status_message: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Whether an integration can be used, in a person's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Usable (authorized, or a service account / static key that needs no person).
    Ready(&'static str),
    /// A person must act first (authorize, or authorize again).
    NeedsAction(&'static str),
}

impl IntegrationRecord {
    /// Its status in one word, as `integrations list` and `show` print it: the stored status,
    /// but `ready` for a kind that needs no authorization and was never refused
    /// (service accounts, keys, passwords).
    pub fn status_word(&self) -> &'static str {
        match (self.status, self.config.kind) {
            (IntegrationStatus::Incomplete, k) if !k.needs_authorization() => "ready",
            (s, _) => s.as_str(),
        }
    }

    /// What the console and `tern integrations test` say about the integration: service
    /// accounts and static keys need no authorization, so they are never "incomplete".
    pub fn readiness(&self) -> Readiness {
        use crate::config::Kind;
        match (self.status, self.config.kind) {
            (IntegrationStatus::NeedsReauthorization, _) => Readiness::NeedsAction("Needs re-authorization"),
            (IntegrationStatus::Authorized, Kind::AuthorizationCode) => Readiness::Ready("Authorized"),
            (IntegrationStatus::Incomplete, Kind::AuthorizationCode) => {
                Readiness::NeedsAction("Incomplete (never authorized)")
            }
            (_, Kind::ClientCredentials) => Readiness::Ready("Ready (service account)"),
            (_, Kind::Static) => Readiness::Ready("Ready (static key)"),
            (_, Kind::Basic) => Readiness::Ready("Ready (user name and password)"),
            (_, Kind::ApiKey) => Readiness::Ready("Ready (API key)"),
            (_, Kind::JwtBearer) => Readiness::Ready("Ready (service account key)"),
        }
    }
}

/// A stored token.
#[derive(Clone)]
pub struct TokenRecord {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<SecretString>,
    /// Unix seconds; `None` means the token does not expire (GitHub, Intercom).
    pub expires_at: Option<i64>,
    /// Unix seconds when the provider issued it (with `expires_at`, its lifetime).
    pub obtained_at: i64,
    /// Granted scopes, when the provider said.
    pub scopes: Option<Vec<String>>,
    /// Non-secret token-response fields (Zoho `api_domain`) and callback data.
    pub metadata: Map<String, Value>,
    /// Increases with every write; a refresh compares it to know whether someone else already
    /// refreshed.
    pub version: i64,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .field("scopes", &self.scopes)
            .field("metadata", &self.metadata)
            .field("version", &self.version)
            .finish()
    }
}

/// An authorization in progress: what the callback needs, keyed by the hash of `state`.
#[derive(Clone)]
pub struct PendingAuthorization {
    /// The integration.
    pub integration: IntegrationName,
    /// Whose token this will be.
    pub owner: TokenOwner,
    /// The PKCE verifier.
    pub verifier: SecretString,
    /// The exact redirect URI sent.
    pub redirect_uri: String,
    /// Unix seconds after which the state is rejected.
    pub expires_at: i64,
    /// The conversation to resume when a contact's login completes.
    pub conversation: Option<String>,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("integration", &self.integration)
            .field("owner", &self.owner)
            .field("verifier", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .field("expires_at", &self.expires_at)
            .field("conversation", &self.conversation)
            .finish()
    }
}

/// An exclusive section for one credential, across every process sharing the store. Dropping
/// it without [`commit`](TokenLock::commit) releases the lock and keeps nothing.
#[async_trait]
pub trait TokenLock: Send {
    /// The token as stored now (read inside the lock).
    async fn read(&mut self) -> Result<Option<TokenRecord>, StoreError>;
    /// Replaces the token; returns the new version.
    async fn write(&mut self, token: &TokenRecord) -> Result<i64, StoreError>;
    /// Sets the integration's status.
    async fn set_status(&mut self, status: IntegrationStatus, message: Option<&str>) -> Result<(), StoreError>;
    /// Makes the writes durable and releases the lock.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Lets the credential go without writing anything (a transaction merely dropped would be
    /// rolled back by the pool later, which may take it for a broken connection).
    ///
    /// # Errors
    /// The store failed (the lock is released all the same when its connection goes).
    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.commit().await
    }
}

/// Names and dates of stored secrets (values are never listed).
#[derive(Clone, Debug, Serialize)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// Unix seconds.
    pub updated_at: i64,
    /// Whether the stored value decrypts with the loaded keys. One that does not (a wrong
    /// master key, a modified row) is not usable: [`tern_engine::secrets::unreadable_secret`] says what to do.
    pub decrypts: bool,
}

/// The store.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds or updates an integration; `client_secret` `None` keeps the stored one.
    async fn put_integration(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        self.put_integration_with_key(name, config, client_secret, None).await
    }
    /// [`put_integration`](Self::put_integration) with the client certificate's private key
    /// (`None` keeps the stored one), in one statement.
    async fn put_integration_with_key(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
        client_key: Option<&SecretString>,
    ) -> Result<(), StoreError>;
    /// The client certificate's private key.
    async fn client_key(&self, name: &IntegrationName) -> Result<Option<SecretString>, StoreError>;
    /// One integration.
    async fn get_integration(&self, name: &IntegrationName) -> Result<Option<IntegrationRecord>, StoreError>;
    /// Every integration, by name.
    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError>;
    /// The client secret.
    async fn client_secret(&self, name: &IntegrationName) -> Result<Option<SecretString>, StoreError>;
    /// Removes an integration with its tokens; `false` when there was none.
    async fn remove_integration(&self, name: &IntegrationName) -> Result<bool, StoreError>;
    /// Sets an integration's status.
    async fn set_status(
        &self,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError>;

    /// A token.
    async fn get_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Option<TokenRecord>, StoreError>;
    /// Stores a token (outside any lock: first authorization); returns its version.
    async fn put_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, StoreError>;
    /// Stores a token only if the stored one still has `version` (0: none is stored), and
    /// returns its new version; `None` when another write came first. For a refresh whose lock
    /// was lost before it could commit (the provider may have rotated the refresh token
    /// already, so it must be kept), without overwriting a newer token stored since.
    async fn put_token_if_version(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
        version: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Takes the cross-process lock for one credential.
    async fn lock_token(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Box<dyn TokenLock>, StoreError>;

    /// Records a pending authorization under the hash of its `state`.
    async fn put_pending(&self, state: &str, pending: &PendingAuthorization) -> Result<(), StoreError>;
    /// Takes (and deletes: single use) the pending authorization for `state`.
    async fn take_pending(&self, state: &str) -> Result<Option<PendingAuthorization>, StoreError>;

    /// Stores a named secret.
    async fn put_secret(&self, name: &str, value: &SecretString) -> Result<(), StoreError>;
    /// Every secret that decrypts (for `{{secrets.NAME}}` at run time); one that does not is
    /// left out, so that only the flows using it fail (compare with [`Store::list_secrets`]).
    async fn all_secrets(&self) -> Result<Vec<(String, SecretString)>, StoreError>;
    /// Names of stored secrets, each with whether it decrypts.
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>, StoreError>;
    /// Removes a secret; `false` when there was none.
    async fn remove_secret(&self, name: &str) -> Result<bool, StoreError>;

    /// The clock the store stamps rows with and judges expiry by; services built over the
    /// store use it too unless given another.
    fn clock(&self) -> Arc<dyn Clock>;

    /// Where integrations' rate limits are shared with the other instances of this store, when
    /// several share it (PostgreSQL); `None` (the default) for a store of one process: each
    /// limiter then keeps its own bucket.
    fn shared_bucket(&self) -> Option<Arc<dyn tern_engine::http::limit::SharedBucket>> {
        None
    }
}

impl TokenRecord {
    /// Whether the token should be refreshed at `now_s` (Unix seconds, from a
    /// [`Clock`](tern_engine::clock::Clock)): it expires within `skew` seconds, with the skew capped at
    /// half the token's lifetime (a provider issuing 60-second tokens must not make every use
    /// refresh).
    pub fn expires_within(&self, skew: i64, now_s: i64) -> bool {
        let Some(expires_at) = self.expires_at else { return false };
        let lifetime = (expires_at - self.obtained_at).max(0);
        expires_at.saturating_sub(now_s) <= skew.min(lifetime / 2)
    }

    /// Whether the token is already expired at `now_s` (Unix seconds).
    pub fn is_expired(&self, now_s: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_s)
    }
}

/// The stored form of a token owner.
pub fn owner_key(owner: &TokenOwner) -> String {
    match owner {
        TokenOwner::Workspace => "workspace".into(),
        TokenOwner::Contact(id) => format!("contact:{id}"),
    }
}

/// Parses [`owner_key`]'s output.
pub fn parse_owner(key: &str) -> Option<TokenOwner> {
    match key {
        "workspace" => Some(TokenOwner::Workspace),
        other => other.strip_prefix("contact:").map(|id| TokenOwner::Contact(id.to_string())),
    }
}
