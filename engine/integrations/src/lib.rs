//! # tern-integrations
//!
//! OAuth integrations: settings and provider profiles, the authorization flow (PKCE, state,
//! callback), the token endpoint client, the token source that steps use, and the storage
//! interface all of that needs ([`store::Store`]).
//!
//! ## Where this crate sits
//!
//! `tern-engine` (flows, executor, templates, HTTP policy, the step API) knows nothing of
//! OAuth: it asks a [`TokenSource`](tern_engine::TokenSource) for a credential. This crate
//! implements that source over a [`store::Store`] and depends on the engine only. The
//! implementations of the store (SQLite, PostgreSQL, encryption at rest, migrations) are in
//! `tern-store`, which depends on this crate: dependencies point one way, engine ←
//! integrations ← store.
//!
//! [`Integrations`] is the service: it saves and removes integrations under the rules of
//! [`rules`] (every front end goes through [`Integrations::save`], and words the typed
//! [`Problem`]s for itself), starts and completes authorizations and implements
//! [`TokenSource`](tern_engine::TokenSource) over the store, with single-flight refresh inside the
//! process (one async mutex per credential) and across processes (the store's token lock,
//! then a re-read of the stored token).

pub mod alerts;
mod authorize;
pub mod config;
mod events;
pub mod jwt;
pub mod oauth;
mod probe;
pub mod problems;
pub mod profiles;
pub mod rules;
mod save;
mod source;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use authorize::{ACCOUNT_ID, AuthError, AuthorizationStart, CallbackParams, Completed};
pub use events::EventError;
pub use probe::{ApiCall, LiveCall, ProbeError, TestReport, TokenFacts};
pub use problems::{Field, Problem};
pub use rules::Draft;
pub use save::{Reachability, SaveError, SaveOptions, Saved};

use crate::store::Store;
use tern_engine::IntegrationName;
use tern_engine::clock::Clock;
use tern_engine::http::HttpClient;
use tern_engine::secrets::SecretSource;
use tern_engine::tokens::TokenOwner;

/// How long a `state` stays valid.
pub const STATE_TTL_SECS: i64 = 600;

type CredentialKey = (IntegrationName, TokenOwner);

/// The integrations service. Cheap to clone (every field is shared): work that must finish
/// whoever waits for it — a token refresh, a code exchange — runs on a clone in its own task.
#[derive(Clone)]
pub struct Integrations {
    store: Arc<dyn Store>,
    http: HttpClient,
    public_url: url::Url,
    secrets: Arc<dyn SecretSource>,
    /// One entry per credential being refreshed; removed when nobody holds or waits for it.
    flights: Arc<Mutex<HashMap<CredentialKey, source::Flight>>>,
    /// Usable grants, bounded by [`source::CACHE_CAPACITY`] credentials.
    cache: Arc<Mutex<HashMap<IntegrationName, HashMap<TokenOwner, source::Cached>>>>,
    observer: Option<TokenObserver>,
    /// The last failed token request of each workspace credential, until one succeeds: when
    /// (Unix seconds) and why; at most [`source::CACHE_CAPACITY`] integrations.
    failures: Arc<Mutex<HashMap<IntegrationName, (i64, String)>>>,
    /// The HTTP clients of integrations with a client certificate or a private CA, with the
    /// certificate and CA they were built from; at most [`source::CACHE_CAPACITY`].
    tls_clients: PerIntegration<(Option<String>, Option<String>), HttpClient>,
    /// Each integration's rate limit, with the configured rate it was made for; at most
    /// [`source::CACHE_CAPACITY`].
    limiters: PerIntegration<Option<config::RateLimit>, Arc<tern_engine::http::limit::RateLimiter>>,
    /// What token and authorization-state expiry are judged by.
    clock: Arc<dyn Clock>,
}

/// Something built from part of an integration's settings (`K`), kept with that part: settings
/// whose part differs build it again.
type PerIntegration<K, T> = Arc<Mutex<HashMap<IntegrationName, (K, T)>>>;

/// What happened to a token request, for metrics and connection events ([`alerts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEvent {
    /// An operator completed the authorization (the code was exchanged for the workspace's
    /// tokens).
    Authorized,
    /// A new access token was obtained (refresh or client credentials).
    Refreshed,
    /// The token endpoint failed (network, 5xx, a malformed answer); a later try may work.
    Failed,
    /// The provider rejected the grant; someone must authorize again.
    NeedsReauthorization,
}

impl TokenEvent {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEvent::Authorized => "authorized",
            TokenEvent::Refreshed => "refreshed",
            TokenEvent::Failed => "failed",
            TokenEvent::NeedsReauthorization => "needs_reauthorization",
        }
    }
}

/// One token request's outcome, as a [`TokenObserver`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct TokenOutcome<'a> {
    /// The integration.
    pub integration: &'a IntegrationName,
    /// What happened.
    pub event: TokenEvent,
    /// Whether the credential is the workspace's (not a contact's own login).
    pub workspace: bool,
    /// Why, for [`TokenEvent::Failed`] and [`TokenEvent::NeedsReauthorization`] (no secret in
    /// it).
    pub why: Option<&'a str>,
}

/// Called after every token request (the server counts them for `/metrics` and raises
/// connection events from the workspace's, [`alerts`]). Called on the task that made the
/// request: it must not block.
pub type TokenObserver = Arc<dyn Fn(&TokenOutcome<'_>) + Send + Sync>;

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations")
            .field("store", &self.store)
            .field("public_url", &self.public_url.as_str())
            .finish()
    }
}

impl Integrations {
    /// The service over a store. `public_url` is where Tern is reachable; the callback URL is
    /// `{public_url}/oauth/callback`. `http` is used for token requests. Time is the store's
    /// [`clock`](Store::clock).
    pub fn new(store: Arc<dyn Store>, http: HttpClient, public_url: url::Url, secrets: Arc<dyn SecretSource>) -> Self {
        let clock = store.clock();
        Self {
            store,
            http,
            public_url,
            secrets,
            flights: Arc::default(),
            cache: Arc::default(),
            observer: None,
            failures: Arc::default(),
            tls_clients: Arc::default(),
            limiters: Arc::default(),
            clock,
        }
    }

    /// Judges token and authorization-state expiry by `clock` instead of the store's (tests
    /// move a [`ManualClock`](tern_engine::clock::ManualClock) forward instead of sleeping).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds on the service's clock.
    fn now_s(&self) -> i64 {
        self.clock.now_s()
    }

    /// Reports every token request's outcome to `observer`.
    pub fn with_observer(mut self, observer: TokenObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, name: &IntegrationName, owner: &TokenOwner, event: TokenEvent, why: Option<&str>) {
        let workspace = *owner == TokenOwner::Workspace;
        if workspace {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            match (event, why) {
                (TokenEvent::Failed, Some(why)) => {
                    if failures.len() >= source::CACHE_CAPACITY && !failures.contains_key(name) {
                        failures.clear();
                    }
                    failures.insert(name.clone(), (self.now_s(), why.to_string()));
                }
                (TokenEvent::Failed, None) => {}
                _ => {
                    failures.remove(name);
                }
            }
        }
        if let Some(o) = &self.observer {
            o(&TokenOutcome { integration: name, event, workspace, why });
        }
    }

    /// When the last token request of `name`'s workspace credential failed (Unix seconds) and
    /// why, if no request has succeeded since, as this process saw it (each instance of a
    /// shared database keeps its own). The console shows it as a banner.
    pub fn last_refresh_failure(&self, name: &IntegrationName) -> Option<(i64, String)> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The callback URL to register at the provider.
    pub fn callback_url(&self) -> url::Url {
        callback_url(&self.public_url)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// `{public_url}/oauth/callback`.
pub fn callback_url(public_url: &url::Url) -> url::Url {
    let mut u = public_url.clone();
    let path = format!("{}/oauth/callback", public_url.path().trim_end_matches('/'));
    u.set_path(&path);
    u.set_query(None);
    u.set_fragment(None);
    u
}
