//! [`TokenSource`] over the store: fresh tokens for steps, refreshed before they expire or once
//! after a rejection, single-flight inside the process and across processes, rotation-safe.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use oauth2::{RefreshToken, Scope};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::config::Kind;
use super::oauth::{self, TokenEndpointError};
use super::{CredentialKey, Integrations};
use crate::store::{IntegrationRecord, IntegrationStatus, StoreError, TokenRecord};
use tern_engine::IntegrationName;
use tern_engine::tokens::{Credential, Grant, TokenError, TokenOwner, TokenSource};

/// How long a grant is served from memory before the store is consulted again (milliseconds
/// on the service's clock).
const CACHE_TTL_MS: i64 = 5_000;

/// Most credentials (integration × owner) whose grants are kept in memory.
pub(super) const CACHE_CAPACITY: usize = 10_000;

/// One credential's refresh in this process: the async mutex its refreshers take in turn, and
/// the token the last of them obtained (so that those who waited use it without reading the
/// store again).
pub(super) type Flight = Arc<tokio::sync::Mutex<Option<TokenRecord>>>;

pub(super) struct Cached {
    grant: Grant,
    token: TokenRecord,
    skew: i64,
    /// Unix milliseconds on the service's clock.
    fetched_ms: i64,
}

impl Cached {
    fn usable(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.fetched_ms) < CACHE_TTL_MS
            && !self.token.expires_within(self.skew, now_ms.div_euclid(1000))
    }
}

/// A token someone else just refreshed is used unless it is already expired: the skew is for
/// deciding *when* to refresh, and refreshing again would only burn the provider's rate limit.
fn usable_after_refresh(t: &TokenRecord, now_s: i64) -> bool {
    !t.is_expired(now_s)
}

/// A reason that quotes the token endpoint's answer, with every secret this process knows
/// masked, before it is stored (`status_message`), shown or sent as a connection event: a
/// provider may echo the request (the client secret, the refresh token) in its
/// `error_description`, and after a restart those values are no longer known to mask.
fn provider_words(reason: &str) -> String {
    tern_engine::secrets::known::mask(reason).into_owned()
}

/// Lets a credential's lock go after a refresh that stores nothing.
async fn release(lock: Box<dyn crate::store::TokenLock>, name: &IntegrationName) {
    if let Err(e) = lock.release().await {
        tracing::debug!(integration = %name, error = %e, "a token lock's release failed; it goes with its connection");
    }
}

fn for_whom(owner: &TokenOwner) -> String {
    match owner {
        TokenOwner::Workspace => String::new(),
        TokenOwner::Contact(id) => format!(" for contact `{id}`"),
    }
}

/// What a run (and so the channel, and history) is told when the store fails: the driver's
/// message, the database's host and name go to the log only.
fn store_reason(name: &IntegrationName, e: &StoreError) -> String {
    match e {
        StoreError::Database { .. } => {
            tracing::error!(integration = %name, error = %e, "the store failed while getting a token");
            "the token store could not be read or written (the server's log has the detail); try again".into()
        }
        StoreError::Corrupt { what, reason } if what.starts_with("token owner") => reason.clone(),
        other => other.to_string(),
    }
}

impl Integrations {
    fn store_err(name: &IntegrationName) -> impl Fn(StoreError) -> TokenError + '_ {
        move |e| TokenError::Store { integration: name.clone(), reason: store_reason(name, &e) }
    }

    fn flight(&self, key: &CredentialKey) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(key.clone()).or_default().clone()
    }

    /// Forgets a credential's flight when nobody else holds or waits for it (the map holds one
    /// entry per credential being refreshed, not per credential ever refreshed).
    fn land(&self, key: &CredentialKey, flight: Flight) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        drop(flight);
        if flights.get(key).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(key);
        }
    }

    /// Drops every cached grant of an integration, so that the next use reads the store (after
    /// an operator changed or re-authorized it in another process, for example).
    pub fn invalidate(&self, name: &IntegrationName) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.tls_clients.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// The integration's own HTTP client when it has a client certificate or a private CA
    /// (built once per certificate and CA), for [`Grant::client`].
    async fn tls_client(&self, rec: &IntegrationRecord) -> Result<Option<tern_engine::http::HttpClient>, TokenError> {
        let c = &rec.config;
        if c.client_cert.is_none() && c.ca_cert.is_none() {
            return Ok(None);
        }
        // Kept while the certificate and the CA stay the same (a token refresh changes the
        // settings' version, not these).
        let made_from = (c.client_cert.clone(), c.ca_cert.clone());
        if let Some((from, client)) = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner()).get(&rec.name)
            && *from == made_from
        {
            return Ok(Some(client.clone()));
        }
        let name = &rec.name;
        let key = match &c.client_cert {
            Some(_) => Some(self.store.client_key(name).await.map_err(Self::store_err(name))?.ok_or_else(|| {
                TokenError::Provider {
                    integration: name.clone(),
                    reason: "its client certificate's key is not stored; add it again with --client-key".into(),
                }
            })?),
            None => None,
        };
        let bad = |e: tern_engine::http::tls::TlsError| TokenError::Provider {
            integration: name.clone(),
            reason: e.to_string(),
        };
        let tls =
            tern_engine::http::tls::ClientTls::parse(c.client_cert.as_deref(), key.as_ref(), c.ca_cert.as_deref())
                .map_err(bad)?;
        let client = self.http.with_client_tls(&tls).map_err(bad)?;
        let mut clients = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= CACHE_CAPACITY {
            clients.clear();
        }
        clients.insert(name.clone(), (made_from, client.clone()));
        Ok(Some(client))
    }

    /// The integration's rate limit (its configured rate, and what its API says), one per
    /// configured rate.
    fn limiter(&self, rec: &IntegrationRecord) -> Arc<tern_engine::http::limit::RateLimiter> {
        // Kept while the configured rate stays the same (not per version of the settings: a
        // token refresh changes those, and must not reset the bucket or the API's hold).
        let rate = rec.config.rate_limit;
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((configured, limiter)) = limiters.get(&rec.name)
            && *configured == rate
        {
            return limiter.clone();
        }
        if limiters.len() >= CACHE_CAPACITY {
            limiters.clear();
        }
        let limiter = tern_engine::http::limit::RateLimiter::new(rate.map(|r| r.rate()));
        // Shared through the database only when a rate is configured: that costs a short
        // transaction per request, which an integration without a limit must not pay (its
        // API's holds stay with the instance that received them).
        let limiter = Arc::new(match (rate, self.store.shared_bucket()) {
            (Some(_), Some(bucket)) => limiter.shared(bucket, rec.name.as_str()),
            _ => limiter,
        });
        limiters.insert(rec.name.clone(), (rate, limiter.clone()));
        limiter
    }

    /// `grant` with the integration's rate limit, and its own client when it has one.
    async fn with_tls(&self, rec: &IntegrationRecord, mut grant: Grant) -> Result<Grant, TokenError> {
        grant.client = self.tls_client(rec).await?;
        grant.limiter = Some(self.limiter(rec));
        Ok(grant)
    }

    pub(super) fn forget(&self, name: &IntegrationName, owner: &TokenOwner) {
        if let Some(owners) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name) {
            owners.remove(owner);
        }
    }

    fn remember(&self, key: CredentialKey, grant: &Grant, token: &TokenRecord, skew: i64) {
        let now_ms = self.clock.now_ms();
        let cached = Cached { grant: grant.clone(), token: token.clone(), skew, fetched_ms: now_ms };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entries: usize = cache.values().map(HashMap::len).sum();
        if entries >= CACHE_CAPACITY {
            // Bounded: drop what has gone stale; if everything is fresh, start over (the store
            // is the source of truth, the cache only saves reads).
            cache.retain(|_, owners| {
                owners.retain(|_, c| c.usable(now_ms));
                !owners.is_empty()
            });
            if cache.values().map(HashMap::len).sum::<usize>() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.entry(key.0).or_default().insert(key.1, cached);
    }

    /// A usable cached grant, looked up without allocating.
    fn cached<T>(&self, name: &IntegrationName, owner: &TokenOwner, f: impl FnOnce(&Cached) -> T) -> Option<T> {
        let now_ms = self.clock.now_ms();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(name).and_then(|o| o.get(owner)).filter(|c| c.usable(now_ms)).map(f)
    }

    async fn record(&self, name: &IntegrationName) -> Result<IntegrationRecord, TokenError> {
        self.store
            .get_integration(name)
            .await
            .map_err(Self::store_err(name))?
            .ok_or_else(|| TokenError::Unknown { integration: name.clone() })
    }

    fn make_grant(rec: &IntegrationRecord, token: &TokenRecord) -> Result<Grant, TokenError> {
        let credential =
            Credential::bearer(token.access_token.expose_secret()).ok_or_else(|| TokenError::Provider {
                integration: rec.name.clone(),
                reason: "the access token contains characters that cannot go into a header".into(),
            })?;
        let refreshable = token.refresh_token.is_some() || rec.config.kind.fetches_its_own_tokens();
        // The account's own API host, when the profile's token responses name one
        // (Salesforce's `instance_url`).
        let mut origins = rec.config.origins();
        if let Some(own) = rec.config.profile.and_then(|p| p.spec().api_origin_of(&token.metadata))
            && !origins.contains(&own)
        {
            origins.push(own);
        }
        Ok(Grant {
            credential,
            api_origins: origins.into(),
            refresh_on_status: rec.config.refresh_on_status.clone().into(),
            refreshable,
            generation: token.version,
            client: None,
            limiter: None,
        })
    }

    fn static_grant(&self, rec: &IntegrationRecord) -> Result<Grant, TokenError> {
        let secret_name = rec.config.static_secret.clone().unwrap_or_default();
        let value = self.secrets.get(&secret_name).ok_or_else(|| TokenError::NotAuthorized {
            integration: rec.name.clone(),
            for_whom: if self.secrets.undecryptable(&secret_name) {
                format!(" ({})", tern_engine::secrets::unreadable_secret(&secret_name))
            } else {
                format!(" (secret `{secret_name}` is not set; `tern secrets set {secret_name}`)")
            },
        })?;
        let header = rec.config.static_header.as_deref().unwrap_or("Authorization");
        let bad = |reason: &str| TokenError::Provider { integration: rec.name.clone(), reason: reason.to_string() };
        let header =
            HeaderName::from_bytes(header.as_bytes()).map_err(|_| bad("static_header is not a header name"))?;
        let text = if header == reqwest::header::AUTHORIZATION {
            format!("Bearer {}", value.expose_secret())
        } else {
            value.expose_secret().to_string()
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| bad("the secret cannot go into a header"))?;
        value.set_sensitive(true);
        Ok(Self::fixed(rec, Credential::Header { name: header, value }))
    }

    /// The grant of a credential that is sent as it is (a static key, a password, an API
    /// key): to the API origins only, nothing to refresh (a 401 is the API's answer).
    fn fixed(rec: &IntegrationRecord, credential: Credential) -> Grant {
        Grant {
            credential,
            api_origins: rec.config.origins().into(),
            refresh_on_status: Vec::new().into(),
            refreshable: false,
            generation: 0,
            client: None,
            limiter: None,
        }
    }

    /// The grant of a `basic` or `api_key` integration: its stored password or key, sent as
    /// the kind says, to its API origins only. Nothing to refresh: a 401 is the API's answer.
    async fn fixed_grant(&self, rec: &IntegrationRecord) -> Result<Grant, TokenError> {
        let name = &rec.name;
        let secret = self.store.client_secret(name).await.map_err(Self::store_err(name))?.ok_or_else(|| {
            TokenError::NotAuthorized {
                integration: name.clone(),
                for_whom: format!(
                    " (its {} is not set; `tern integrations add {name} --update` with it)",
                    rec.config.kind.secret_name()
                ),
            }
        })?;
        tern_engine::secrets::known::remember_str(secret.expose_secret());
        let bad = |reason: String| TokenError::Provider { integration: name.clone(), reason };
        let credential = match rec.config.kind {
            Kind::Basic => {
                let user = rec.config.username.as_deref().unwrap_or_default();
                Credential::basic(user, secret.expose_secret()).ok_or_else(|| {
                    bad("the user name or password holds a character Basic authentication cannot carry (RFC 7617: no `:` in the user name, no control characters)".into())
                })?
            }
            _ => {
                let key_name = rec.config.key_name.clone().unwrap_or_default();
                match rec.config.key_in.unwrap_or_default() {
                    crate::config::KeyIn::Query => Credential::Query { name: key_name, value: secret },
                    crate::config::KeyIn::Header => {
                        let header = HeaderName::from_bytes(key_name.as_bytes())
                            .map_err(|_| bad(format!("`{key_name}` is not a header name")))?;
                        Credential::header(header, secret.expose_secret())
                            .ok_or_else(|| bad("the API key holds characters that cannot go into a header".into()))?
                    }
                }
            }
        };
        Ok(Self::fixed(rec, credential))
    }

    /// Refreshes (or, for service accounts, fetches) the token unless someone already did since
    /// version `seen`. Single-flight in this process; the store lock covers other processes.
    ///
    /// The refresh runs in its own task: once the request is sent, it finishes and commits the
    /// result (a rotated refresh token above all, SECURITY R5) even when every caller waiting
    /// for it has gone away (a client that disconnected, a timeout).
    async fn refresh_token(
        &self,
        rec: &IntegrationRecord,
        owner: &TokenOwner,
        seen: i64,
    ) -> Result<TokenRecord, TokenError> {
        let this = self.clone();
        let (rec, owner) = (rec.clone(), owner.clone());
        let name = rec.name.clone();
        let task = tokio::spawn(async move {
            let key = (rec.name.clone(), owner.clone());
            let flight = this.flight(&key);
            let result = {
                let mut in_process = flight.lock().await;
                match in_process.as_ref() {
                    // The task that held the flight before us refreshed it: no store read.
                    Some(t) if t.version > seen && usable_after_refresh(t, this.now_s()) => Ok(t.clone()),
                    _ => {
                        let result = this.refresh_locked(&rec, &owner, seen).await;
                        if let Ok(t) = &result {
                            *in_process = Some(t.clone());
                        }
                        result
                    }
                }
            };
            this.land(&key, flight);
            result
        });
        task.await.unwrap_or_else(|join| {
            tracing::error!(integration = %name, error = %join, "the token refresh task failed");
            Err(TokenError::Provider { integration: name, reason: "the token refresh was interrupted".into() })
        })
    }

    /// A refresh succeeded but its locked transaction could not store the new token (its
    /// database connection dropped, and with it the credential's lock): the provider may have
    /// rotated the refresh token already, so the new token is stored outside the lock, unless
    /// another refresh has stored a newer one since (`seen_version` is the version the refresh
    /// started from: compare-and-set, [`Store::put_token_if_version`](crate::store::Store::put_token_if_version)). Returns the version to
    /// use the token with.
    ///
    /// # Errors
    /// The store failed again, or another refresh came first and its token cannot be read.
    async fn keep_rotated(
        &self,
        rec: &IntegrationRecord,
        owner: &TokenOwner,
        fresh: &TokenRecord,
        seen_version: i64,
        first: &StoreError,
    ) -> Result<i64, TokenError> {
        let name = &rec.name;
        tracing::warn!(integration = %name, error = %first, "the refreshed token could not be stored under its lock; storing it unless a newer one was stored meanwhile");
        match self.store.put_token_if_version(name, owner, fresh, seen_version).await {
            Ok(Some(version)) => {
                if *owner == TokenOwner::Workspace {
                    self.store
                        .set_status(name, IntegrationStatus::Authorized, None)
                        .await
                        .map_err(Self::store_err(name))?;
                }
                Ok(version)
            }
            // Another refresh stored a newer token: it is the one to keep; this access token
            // is still good for this use.
            Ok(None) => {
                tracing::info!(integration = %name, "another refresh stored a newer token first; it is kept");
                Ok(seen_version)
            }
            Err(e) => Err(Self::store_err(name)(e)),
        }
    }

    /// [`refresh_token`](Self::refresh_token) with this process's flight lock held. The token
    /// row is read once, inside the store's lock (the caller's own read, from before the lock,
    /// may be stale: another process may have refreshed since).
    async fn refresh_locked(
        &self,
        rec: &IntegrationRecord,
        owner: &TokenOwner,
        seen: i64,
    ) -> Result<TokenRecord, TokenError> {
        let name = &rec.name;
        let mut lock = self.store.lock_token(name, owner).await.map_err(Self::store_err(name))?;
        let current = lock.read().await.map_err(Self::store_err(name))?;
        if let Some(t) = &current
            && t.version > seen
            && usable_after_refresh(t, self.now_s())
        {
            // Another process refreshed while we waited for the lock.
            let t = t.clone();
            lock.commit().await.map_err(Self::store_err(name))?;
            return Ok(t);
        }
        let current_version = current.as_ref().map_or(0, |t| t.version);
        let token_url = rec.config.token_url.clone().ok_or_else(|| TokenError::Provider {
            integration: name.clone(),
            reason: "no token URL is configured".into(),
        })?;
        let secret = self.store.client_secret(name).await.map_err(Self::store_err(name))?;
        let client = oauth::token_client(&rec.config, secret.as_ref(), &token_url);
        let http = self.http.clone();
        let send = move |req| {
            let http = http.clone();
            async move { oauth::send(&http, req).await }
        };
        let previous_refresh = current.as_ref().and_then(|t| t.refresh_token.clone());
        let result = match rec.config.kind {
            Kind::JwtBearer => {
                let key = secret.as_ref().ok_or_else(|| TokenError::Provider {
                    integration: name.clone(),
                    reason: "its private key is not stored; add it again with --key-file".into(),
                })?;
                let body = crate::jwt::token_request_body(&rec.config, key, self.now_s())
                    .map_err(|e| TokenError::Provider { integration: name.clone(), reason: e.to_string() })?;
                oauth::request_token(&self.http, &token_url, body).await
            }
            Kind::ClientCredentials => {
                let mut req = client.exchange_client_credentials();
                if !rec.config.scopes.is_empty() {
                    req = req.add_scope(Scope::new(rec.config.scopes.join(&rec.config.scope_delimiter)));
                }
                req.request_async(&send).await
            }
            _ => {
                let Some(rt) = &previous_refresh else {
                    release(lock, name).await;
                    return Err(TokenError::NeedsReauthorization {
                        integration: name.clone(),
                        reason: "the token expired and the provider issued no refresh token".into(),
                    });
                };
                let rt = RefreshToken::new(rt.expose_secret().to_string());
                client.exchange_refresh_token(&rt).request_async(&send).await
            }
        };
        match result.map_err(oauth::classify) {
            Ok(resp) => {
                let mut fresh = resp.into_record(rec.config.profile, previous_refresh, self.now_s());
                // Keep metadata the provider sends only once (Zoho's api_domain on refresh is
                // repeated, but callback data such as `location` is not).
                if let Some(old) = &current {
                    let mut merged: Map<String, Value> = old.metadata.clone();
                    merged.extend(fresh.metadata);
                    fresh.metadata = merged;
                }
                // Rotation is durable before the new token is used (SECURITY R5).
                let stored = async {
                    let version = lock.write(&fresh).await?;
                    if *owner == TokenOwner::Workspace {
                        lock.set_status(IntegrationStatus::Authorized, None).await?;
                    }
                    lock.commit().await.map(|()| version)
                };
                fresh.version = match stored.await {
                    Ok(version) => version,
                    Err(e) => self.keep_rotated(rec, owner, &fresh, current_version, &e).await?,
                };
                tracing::info!(integration = %name, version = fresh.version, "token refreshed");
                self.observe(name, owner, super::TokenEvent::Refreshed, None);
                Ok(fresh)
            }
            // A service account's own credentials were refused: nothing a person can authorize
            // again, and no refresh token is dead; the operator must correct the key, scopes or
            // subject.
            Err(TokenEndpointError::InvalidGrant { description }) if rec.config.kind.fetches_its_own_tokens() => {
                release(lock, name).await;
                let what = if rec.config.kind == Kind::JwtBearer { "signed assertion" } else { "client credentials" };
                tracing::warn!(integration = %name, "the token endpoint refused the service account's {what}");
                let reason = provider_words(&format!(
                    "the token endpoint refused the service account's {what} (invalid_grant{}); check its key, scopes and subject",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ));
                self.observe(name, owner, super::TokenEvent::Failed, Some(&reason));
                Err(TokenError::Provider { integration: name.clone(), reason })
            }
            Err(TokenEndpointError::InvalidGrant { description }) => {
                release(lock, name).await;
                // Another process may have rotated the refresh token: read the store once more.
                if let Some(t) = self.store.get_token(name, owner).await.map_err(Self::store_err(name))?
                    && t.version > current_version
                {
                    return Ok(t);
                }
                let reason = provider_words(&format!(
                    "the provider rejected the refresh token (invalid_grant{}); run `tern integrations authorize {name}`",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ));
                if *owner == TokenOwner::Workspace {
                    self.store
                        .set_status(name, IntegrationStatus::NeedsReauthorization, Some(&reason))
                        .await
                        .map_err(Self::store_err(name))?;
                }
                self.forget(name, owner);
                tracing::warn!(integration = %name, "refresh token rejected; needs re-authorization");
                self.observe(name, owner, super::TokenEvent::NeedsReauthorization, Some(&reason));
                Err(TokenError::NeedsReauthorization { integration: name.clone(), reason })
            }
            Err(e) => {
                release(lock, name).await;
                tracing::warn!(integration = %name, error = %e, "token refresh failed; the next use tries again");
                let reason = provider_words(&e.to_string());
                self.observe(name, owner, super::TokenEvent::Failed, Some(&reason));
                Err(TokenError::Provider { integration: name.clone(), reason })
            }
        }
    }
}

#[async_trait]
impl TokenSource for Integrations {
    async fn grant(&self, name: &IntegrationName, owner: &TokenOwner) -> Result<Grant, TokenError> {
        if let Some(grant) = self.cached(name, owner, |c| c.grant.clone()) {
            return Ok(grant);
        }
        let key = (name.clone(), owner.clone());
        let rec = self.record(name).await?;
        match rec.config.kind {
            Kind::Static => {
                let grant = self.with_tls(&rec, self.static_grant(&rec)?).await?;
                return Ok(grant);
            }
            Kind::Basic | Kind::ApiKey => {
                let grant = self.fixed_grant(&rec).await?;
                let grant = self.with_tls(&rec, grant).await?;
                // Kept like a token that never expires: the next calls read no store.
                let fixed = TokenRecord {
                    access_token: SecretString::from(String::new()),
                    refresh_token: None,
                    expires_at: None,
                    obtained_at: self.now_s(),
                    scopes: None,
                    metadata: Map::new(),
                    version: 0,
                };
                self.remember(key, &grant, &fixed, 0);
                return Ok(grant);
            }
            _ => {}
        }
        if rec.config.kind == Kind::AuthorizationCode && *owner == TokenOwner::Workspace {
            match rec.status {
                IntegrationStatus::NeedsReauthorization => {
                    return Err(TokenError::NeedsReauthorization {
                        integration: name.clone(),
                        reason: rec.status_message.clone().unwrap_or_else(|| "the refresh token was rejected".into()),
                    });
                }
                IntegrationStatus::Incomplete => {
                    return Err(TokenError::NotAuthorized { integration: name.clone(), for_whom: String::new() });
                }
                IntegrationStatus::Authorized => {}
            }
        }
        let skew = i64::try_from(rec.config.refresh_skew_secs).unwrap_or(300);
        let stored = self.store.get_token(name, owner).await.map_err(Self::store_err(name))?;
        let token = match stored {
            None if rec.config.kind.fetches_its_own_tokens() => self.refresh_token(&rec, owner, 0).await?,
            None => return Err(TokenError::NotAuthorized { integration: name.clone(), for_whom: for_whom(owner) }),
            Some(t)
                if t.expires_within(skew, self.now_s())
                    && (t.refresh_token.is_some() || rec.config.kind.fetches_its_own_tokens()) =>
            {
                self.refresh_token(&rec, owner, t.version).await?
            }
            Some(t) => t,
        };
        let grant = self.with_tls(&rec, Self::make_grant(&rec, &token)?).await?;
        self.remember(key, &grant, &token, skew);
        Ok(grant)
    }

    async fn refresh(&self, name: &IntegrationName, owner: &TokenOwner, rejected: &Grant) -> Result<Grant, TokenError> {
        self.forget(name, owner);
        let rec = self.record(name).await?;
        let token = self.refresh_token(&rec, owner, rejected.generation).await?;
        let grant = self.with_tls(&rec, Self::make_grant(&rec, &token)?).await?;
        let skew = i64::try_from(rec.config.refresh_skew_secs).unwrap_or(300);
        self.remember((name.clone(), owner.clone()), &grant, &token, skew);
        Ok(grant)
    }

    async fn login_url(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        conversation: &str,
    ) -> Result<url::Url, TokenError> {
        match self.begin_for(name, owner.clone(), Some(conversation)).await {
            Ok(start) => Ok(start.url),
            Err(super::AuthError::Unknown(_)) => Err(TokenError::Unknown { integration: name.clone() }),
            Err(super::AuthError::Store(e)) => {
                Err(TokenError::Store { integration: name.clone(), reason: store_reason(name, &e) })
            }
            Err(e) => Err(TokenError::Provider { integration: name.clone(), reason: e.to_string() }),
        }
    }

    async fn metadata(&self, name: &IntegrationName) -> Result<Map<String, Value>, TokenError> {
        if let Some(meta) = self.cached(name, &TokenOwner::Workspace, |c| c.token.metadata.clone()) {
            return Ok(meta);
        }
        let token = self.store.get_token(name, &TokenOwner::Workspace).await.map_err(Self::store_err(name))?;
        Ok(token.map(|t| t.metadata).unwrap_or_default())
    }
}

#[cfg(test)]
mod store_reason_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A run, the channel and history never see where the store is or what its driver said.
    #[test]
    fn a_store_failure_is_told_without_the_database() {
        let name = IntegrationName::new("crm").unwrap();
        let e = StoreError::Database {
            location: "postgres://tern:***@db.internal:5432/tern".into(),
            cause: "relation \"tokens\" does not exist".into(),
        };
        let reason = store_reason(&name, &e);
        assert!(!reason.contains("db.internal") && !reason.contains("relation"), "{reason}");
        assert!(reason.contains("server's log"), "{reason}");
    }
}
