//! The refresh logic of the token source, in process: `Integrations` over the SQLite store in a
//! temporary directory, against a token endpoint on 127.0.0.1 that counts what it receives.
//! Single-flight inside a process and across two stores on one database file, the rotated
//! refresh token stored before the new access token is handed out, and the `invalid_grant`
//! latch that stops a retry storm.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Map;
use tern_engine::http::{HttpClient, HttpPolicy};
use tern_engine::secrets::NoSecrets;
use tern_engine::{Grant, IntegrationName, TokenError, TokenOwner, TokenSource};
use tern_integrations::Integrations;
use tern_integrations::config::IntegrationConfig;
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::{IntegrationStatus, SqliteStore, Store, TokenRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How the endpoint answers its `n`th request (from 1): status and JSON body.
type Answer = fn(usize) -> (u16, String);

/// A token endpoint on 127.0.0.1 that records the form body of every request.
struct TokenEndpoint {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let body = read_request(&mut socket).await;
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body);
                        seen.len()
                    };
                    let (status, json) = answer(n);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                        json.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, bodies }
    }

    fn requests(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request; returns its body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            }
        }
    }
    String::new()
}

/// A fresh token each time, with a rotated refresh token.
fn rotating(n: usize) -> (u16, String) {
    (200, format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-{n}"}}"#))
}

fn invalid_grant(_: usize) -> (u16, String) {
    (400, r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#.to_string())
}

fn name() -> IntegrationName {
    IntegrationName::new("crm").unwrap()
}

/// An authorized integration whose stored token expires at `expires_at`.
async fn store_with_token(path: &Path, token_url: &str, expires_at: i64) -> Arc<dyn Store> {
    let store = open(path).await;
    let config = IntegrationConfig {
        client_id: Some("cid".into()),
        token_url: Some(token_url.parse().unwrap()),
        api_origins: vec!["https://api.example.com".into()],
        ..IntegrationConfig::default()
    };
    store.put_integration(&name(), &config, Some(&SecretString::from("client-secret".to_string()))).await.unwrap();
    store.set_status(&name(), IntegrationStatus::Authorized, None).await.unwrap();
    let token = TokenRecord {
        access_token: SecretString::from("at-0".to_string()),
        refresh_token: Some(SecretString::from("rt-0".to_string())),
        expires_at: Some(expires_at),
        obtained_at: unix_now() - 3600,
        scopes: None,
        metadata: Map::new(),
        version: 0,
    };
    store.put_token(&name(), &TokenOwner::Workspace, &token).await.unwrap();
    store
}

/// The store in `path`, under a fixed test key (so two opens of one file share it).
async fn open(path: &Path) -> Arc<dyn Store> {
    let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
    Arc::new(SqliteStore::open(path, Keyring::new(key)).await.unwrap())
}

fn integrations(store: Arc<dyn Store>) -> Arc<Integrations> {
    let http = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).unwrap();
    Arc::new(Integrations::new(store, http, "http://127.0.0.1:9".parse().unwrap(), Arc::new(NoSecrets)))
}

fn bearer(grant: &Grant) -> String {
    match &grant.credential {
        tern_engine::Credential::Header { value, .. } => value.to_str().unwrap().to_string(),
        other => panic!("not a header credential: {other:?}"),
    }
}

async fn stored(store: &Arc<dyn Store>) -> TokenRecord {
    store.get_token(&name(), &TokenOwner::Workspace).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_token_far_from_expiry_is_used_without_a_request() {
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() + 3600).await;
    let grant = integrations(store).grant(&name(), &TokenOwner::Workspace).await.unwrap();
    assert_eq!(bearer(&grant), "Bearer at-0");
    assert!(endpoint.requests().is_empty());
}

#[tokio::test]
async fn a_token_expiring_within_the_skew_is_refreshed_and_the_rotation_stored_first() {
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    // Expires in 60 s: inside the default 300 s skew.
    let store = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() + 60).await;
    let source = integrations(store.clone());
    let grant = source.grant(&name(), &TokenOwner::Workspace).await.unwrap();
    assert_eq!(bearer(&grant), "Bearer at-1");
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].contains("grant_type=refresh_token") && requests[0].contains("refresh_token=rt-0"),
        "{requests:?}"
    );

    // What was handed out is what the store holds: the rotated refresh token was written
    // (with a new version) before the access token was used.
    let token = stored(&store).await;
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(token.refresh_token.as_ref().map(|t| t.expose_secret().to_string()).as_deref(), Some("rt-1"));
    assert_eq!(grant.generation, token.version);
    assert!(token.version > 0);

    // After a rejection (a 401) the next refresh sends the rotated token.
    let again = source.refresh(&name(), &TokenOwner::Workspace, &grant).await.unwrap();
    assert_eq!(bearer(&again), "Bearer at-2");
    let requests = endpoint.requests();
    assert!(requests[1].contains("refresh_token=rt-1"), "the rotated refresh token is used: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_cause_one_refresh() {
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() - 10).await;
    let source = integrations(store);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.grant(&name(), &TokenOwner::Workspace).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(bearer(&task.await.unwrap().unwrap()), "Bearer at-1");
    }
    assert_eq!(endpoint.requests().len(), 1, "single-flight inside the process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_refresh_once() {
    // Two `Integrations` over two connections to one file: what two processes share.
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let first = integrations(store_with_token(&path, &endpoint.url, unix_now() - 10).await);
    let second = integrations(open(&path).await);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let source = if i % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move { source.grant(&name(), &TokenOwner::Workspace).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(bearer(&task.await.unwrap().unwrap()), "Bearer at-1");
    }
    assert_eq!(endpoint.requests().len(), 1, "the store lock serializes refreshes across processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_rejected_with_the_same_token_refresh_once() {
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() + 3600).await;
    let source = integrations(store);
    let rejected = source.grant(&name(), &TokenOwner::Workspace).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (source, rejected) = (source.clone(), rejected.clone());
            tokio::spawn(async move { source.refresh(&name(), &TokenOwner::Workspace, &rejected).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(bearer(&task.await.unwrap().unwrap()), "Bearer at-1");
    }
    assert_eq!(endpoint.requests().len(), 1);
}

#[tokio::test]
async fn invalid_grant_latches_until_authorized_again() {
    let endpoint = TokenEndpoint::start(invalid_grant).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() - 10).await;
    let source = integrations(store.clone());
    let e = source.grant(&name(), &TokenOwner::Workspace).await.unwrap_err();
    assert!(matches!(e, TokenError::NeedsReauthorization { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("tern integrations authorize crm"), "{message}");
    assert!(message.contains("refresh token revoked"), "the provider's reason is kept: {message}");
    assert!(!message.contains("rt-0") && !message.contains("client-secret"), "no secret in the error: {message}");
    let rec = store.get_integration(&name()).await.unwrap().unwrap();
    assert_eq!(rec.status, IntegrationStatus::NeedsReauthorization);

    // Every later use fails at once: no request reaches the provider again.
    for _ in 0..5 {
        let e = source.grant(&name(), &TokenOwner::Workspace).await.unwrap_err();
        assert!(matches!(e, TokenError::NeedsReauthorization { .. }), "{e:?}");
    }
    let fresh = integrations(store.clone());
    assert!(fresh.grant(&name(), &TokenOwner::Workspace).await.is_err(), "the latch is in the store, not in memory");
    assert_eq!(endpoint.requests().len(), 1, "no retry storm");
}

/// The SQLite store, counting the token reads of the token source: `get_token` (outside any
/// lock) and reads inside the token lock.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    unlocked: Arc<std::sync::atomic::AtomicUsize>,
    locked: Arc<std::sync::atomic::AtomicUsize>,
}

struct CountingLock {
    inner: Box<dyn tern_store::TokenLock>,
    locked: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl tern_store::TokenLock for CountingLock {
    async fn read(&mut self) -> Result<Option<TokenRecord>, tern_store::StoreError> {
        self.locked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read().await
    }
    async fn write(&mut self, token: &TokenRecord) -> Result<i64, tern_store::StoreError> {
        self.inner.write(token).await
    }
    async fn set_status(
        &mut self,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), tern_store::StoreError> {
        self.inner.set_status(status, message).await
    }
    async fn commit(self: Box<Self>) -> Result<(), tern_store::StoreError> {
        self.inner.commit().await
    }
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn put_integration_with_key(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        client_secret: Option<&SecretString>,
        client_key: Option<&SecretString>,
    ) -> Result<(), tern_store::StoreError> {
        self.inner.put_integration_with_key(name, config, client_secret, client_key).await
    }
    async fn client_key(&self, name: &IntegrationName) -> Result<Option<SecretString>, tern_store::StoreError> {
        self.inner.client_key(name).await
    }
    async fn get_integration(
        &self,
        name: &IntegrationName,
    ) -> Result<Option<tern_store::IntegrationRecord>, tern_store::StoreError> {
        self.inner.get_integration(name).await
    }
    async fn list_integrations(&self) -> Result<Vec<tern_store::IntegrationRecord>, tern_store::StoreError> {
        self.inner.list_integrations().await
    }
    async fn client_secret(&self, name: &IntegrationName) -> Result<Option<SecretString>, tern_store::StoreError> {
        self.inner.client_secret(name).await
    }
    async fn remove_integration(&self, name: &IntegrationName) -> Result<bool, tern_store::StoreError> {
        self.inner.remove_integration(name).await
    }
    async fn set_status(
        &self,
        name: &IntegrationName,
        status: IntegrationStatus,
        message: Option<&str>,
    ) -> Result<(), tern_store::StoreError> {
        self.inner.set_status(name, status, message).await
    }
    async fn get_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
    ) -> Result<Option<TokenRecord>, tern_store::StoreError> {
        self.unlocked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_token(name, owner).await
    }
    async fn put_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
    ) -> Result<i64, tern_store::StoreError> {
        self.inner.put_token(name, owner, token).await
    }
    async fn put_token_if_version(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
        token: &TokenRecord,
        version: i64,
    ) -> Result<Option<i64>, tern_store::StoreError> {
        self.inner.put_token_if_version(name, owner, token, version).await
    }
    async fn lock_token(
        &self,
        name: &IntegrationName,
        owner: &TokenOwner,
    ) -> Result<Box<dyn tern_store::TokenLock>, tern_store::StoreError> {
        let inner = self.inner.lock_token(name, owner).await?;
        Ok(Box::new(CountingLock { inner, locked: self.locked.clone() }))
    }
    async fn put_pending(
        &self,
        state: &str,
        pending: &tern_store::PendingAuthorization,
    ) -> Result<(), tern_store::StoreError> {
        self.inner.put_pending(state, pending).await
    }
    async fn take_pending(
        &self,
        state: &str,
    ) -> Result<Option<tern_store::PendingAuthorization>, tern_store::StoreError> {
        self.inner.take_pending(state).await
    }
    async fn put_secret(&self, name: &str, value: &SecretString) -> Result<(), tern_store::StoreError> {
        self.inner.put_secret(name, value).await
    }
    async fn all_secrets(&self) -> Result<Vec<(String, SecretString)>, tern_store::StoreError> {
        self.inner.all_secrets().await
    }
    async fn list_secrets(&self) -> Result<Vec<tern_store::SecretInfo>, tern_store::StoreError> {
        self.inner.list_secrets().await
    }
    async fn remove_secret(&self, name: &str) -> Result<bool, tern_store::StoreError> {
        self.inner.remove_secret(name).await
    }
    fn clock(&self) -> Arc<dyn tern_engine::clock::Clock> {
        self.inner.clock()
    }
}

/// A refresh reads the token row once to decide (the caller's read) and once inside the
/// store's lock; callers that waited for another task's refresh take its token without reading
/// the store again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_reads_the_token_once_outside_the_lock_and_once_inside() {
    use std::sync::atomic::Ordering::SeqCst;
    let endpoint = TokenEndpoint::start(rotating).await;
    let dir = tempfile::tempdir().unwrap();
    let real = store_with_token(&dir.path().join("tern.db"), &endpoint.url, unix_now() - 10).await;
    let counting = CountingStore { inner: real.clone(), unlocked: Arc::default(), locked: Arc::default() };
    let (unlocked, locked) = (counting.unlocked.clone(), counting.locked.clone());
    let source = integrations(Arc::new(counting));
    let grant = source.grant(&name(), &TokenOwner::Workspace).await.unwrap();
    assert_eq!(bearer(&grant), "Bearer at-1");
    assert_eq!((unlocked.load(SeqCst), locked.load(SeqCst)), (1, 1), "one read to decide, one inside the lock");

    // A 401 with the token just handed out: the refresh reads inside the lock only.
    let again = source.refresh(&name(), &TokenOwner::Workspace, &grant).await.unwrap();
    assert_eq!(bearer(&again), "Bearer at-2");
    assert_eq!((unlocked.load(SeqCst), locked.load(SeqCst)), (1, 2));

    // Many callers rejected with the same token: one refresh, and no read outside the lock
    // (those who waited for the refreshing task take its token; one that came after it
    // finished reads inside the lock and finds the token newer than the one it was refused).
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (source, rejected) = (source.clone(), again.clone());
            tokio::spawn(async move { source.refresh(&name(), &TokenOwner::Workspace, &rejected).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(bearer(&task.await.unwrap().unwrap()), "Bearer at-3");
    }
    assert_eq!(endpoint.requests().len(), 3);
    assert_eq!(unlocked.load(SeqCst), 1);
    assert!((3..=22).contains(&locked.load(SeqCst)), "{}", locked.load(SeqCst));
}
