//! The store test suite: every `Store` implementation must pass it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, json};

use super::*;
use crate::crypto::{Keyring, MasterKey};
use crate::integrations::config::{IntegrationConfig, Profile};

/// Unix seconds now (the store under test runs on the system clock).
fn now() -> i64 {
    crate::clock::Clock::now_s(&crate::clock::SystemClock)
}

fn name(s: &str) -> IntegrationName {
    IntegrationName::new(s).unwrap()
}

fn token(access: &str, refresh: Option<&str>) -> TokenRecord {
    let mut metadata = Map::new();
    metadata.insert("api_domain".into(), json!("https://www.zohoapis.eu"));
    TokenRecord {
        access_token: SecretString::from(access.to_string()),
        refresh_token: refresh.map(|r| SecretString::from(r.to_string())),
        expires_at: Some(now() + 3600),
        obtained_at: now(),
        scopes: Some(vec!["contacts".into()]),
        metadata,
        version: 0,
    }
}

/// Runs every check against `store`.
pub async fn run_suite(store: &dyn Store) {
    integrations(store).await;
    tokens(store).await;
    locks_serialize(store).await;
    pending(store).await;
    secrets(store).await;
}

async fn integrations(store: &dyn Store) {
    let mut config =
        IntegrationConfig { profile: Some(Profile::Teamleader), client_id: Some("cid".into()), ..Default::default() };
    config.apply_profile().unwrap();
    let tl = name("teamleader");
    store.put_integration(&tl, &config, Some(&SecretString::from("client-secret-1".to_string()))).await.unwrap();
    let rec = store.get_integration(&tl).await.unwrap().unwrap();
    assert_eq!(rec.config, config);
    assert!(rec.client_secret_set);
    assert_eq!(rec.status, IntegrationStatus::Incomplete);
    // Updating without a secret keeps the stored one.
    config.scopes = vec!["contacts".into()];
    store.put_integration(&tl, &config, None).await.unwrap();
    assert_eq!(store.client_secret(&tl).await.unwrap().unwrap().expose_secret(), "client-secret-1");
    assert_eq!(store.get_integration(&tl).await.unwrap().unwrap().config.scopes, vec!["contacts"]);
    store.set_status(&tl, IntegrationStatus::NeedsReauthorization, Some("invalid_grant")).await.unwrap();
    let rec = store.get_integration(&tl).await.unwrap().unwrap();
    assert_eq!(rec.status, IntegrationStatus::NeedsReauthorization);
    assert_eq!(rec.status_message.as_deref(), Some("invalid_grant"));
    assert_eq!(store.list_integrations().await.unwrap().len(), 1);
    // Removing cascades to tokens.
    store.put_token(&tl, &TokenOwner::Workspace, &token("a", None)).await.unwrap();
    assert!(store.remove_integration(&tl).await.unwrap());
    assert!(!store.remove_integration(&tl).await.unwrap());
    assert!(store.get_token(&tl, &TokenOwner::Workspace).await.unwrap().is_none());
}

async fn tokens(store: &dyn Store) {
    let z = name("zoho");
    store.put_integration(&z, &IntegrationConfig::default(), None).await.unwrap();
    let owner = TokenOwner::Workspace;
    let contact = TokenOwner::Contact("c-42".into());
    assert_eq!(store.put_token(&z, &owner, &token("at-1", Some("rt-1"))).await.unwrap(), 1);
    assert_eq!(store.put_token(&z, &owner, &token("at-2", Some("rt-2"))).await.unwrap(), 2);
    store.put_token(&z, &contact, &token("at-contact", None)).await.unwrap();
    let t = store.get_token(&z, &owner).await.unwrap().unwrap();
    assert_eq!(t.access_token.expose_secret(), "at-2");
    assert_eq!(t.refresh_token.unwrap().expose_secret(), "rt-2");
    assert_eq!(t.version, 2);
    assert_eq!(t.metadata.get("api_domain"), Some(&json!("https://www.zohoapis.eu")));
    let c = store.get_token(&z, &contact).await.unwrap().unwrap();
    assert_eq!(c.access_token.expose_secret(), "at-contact");
    assert!(c.refresh_token.is_none());
    assert!(!format!("{c:?}").contains("at-contact"));
    // The refresh skew is capped at half the lifetime.
    let short = TokenRecord { expires_at: Some(now() + 50), obtained_at: now() - 10, ..c.clone() };
    assert!(!short.expires_within(300, now()), "a fresh 60-second token is not refreshed at once");
    let old = TokenRecord { expires_at: Some(now() + 20), obtained_at: now() - 40, ..short.clone() };
    assert!(old.expires_within(300, now()));
    assert!(!old.is_expired(now()));
}

async fn locks_serialize(store: &dyn Store) {
    let z = name("zoho");
    let owner = TokenOwner::Workspace;
    let mut first = store.lock_token(&z, &owner).await.unwrap();
    let before = first.read().await.unwrap().unwrap().version;
    let second = store.lock_token(&z, &owner);
    tokio::pin!(second);
    // The second lock waits while the first is held.
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut second).await.is_err());
    first.write(&token("at-3", Some("rt-3"))).await.unwrap();
    first.commit().await.unwrap();
    let mut second = second.await.unwrap();
    let seen = second.read().await.unwrap().unwrap();
    assert_eq!(seen.version, before + 1, "the second holder sees the first one's write");
    assert_eq!(seen.access_token.expose_secret(), "at-3");
    drop(second); // released without commit: nothing written
    assert_eq!(store.get_token(&z, &owner).await.unwrap().unwrap().version, before + 1);
}

async fn pending(store: &dyn Store) {
    let p = PendingAuthorization {
        integration: name("zoho"),
        owner: TokenOwner::Contact("c-1".into()),
        verifier: SecretString::from("verifier-abc".to_string()),
        redirect_uri: "http://127.0.0.1:8080/oauth/callback".into(),
        expires_at: now() + 600,
        conversation: Some("conv-9".into()),
    };
    store.put_pending("state-xyz", &p).await.unwrap();
    assert!(store.take_pending("other").await.unwrap().is_none());
    let got = store.take_pending("state-xyz").await.unwrap().unwrap();
    assert_eq!(got.verifier.expose_secret(), "verifier-abc");
    assert_eq!(got.owner, TokenOwner::Contact("c-1".into()));
    assert_eq!(got.conversation.as_deref(), Some("conv-9"));
    assert!(store.take_pending("state-xyz").await.unwrap().is_none(), "single use");
}

async fn secrets(store: &dyn Store) {
    store.put_secret("API_KEY", &SecretString::from("k-1".to_string())).await.unwrap();
    store.put_secret("API_KEY", &SecretString::from("k-2".to_string())).await.unwrap();
    store.put_secret("OTHER", &SecretString::from("o".to_string())).await.unwrap();
    let all = store.all_secrets().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].1.expose_secret(), "k-2");
    assert_eq!(
        store.list_secrets().await.unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["API_KEY", "OTHER"]
    );
    assert!(store.remove_secret("OTHER").await.unwrap());
    assert!(!store.remove_secret("OTHER").await.unwrap());
}

fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        out.extend(std::fs::read(e.unwrap().path()).unwrap_or_default());
    }
    out
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, Keyring::new(key)).await.unwrap();
    run_suite(&store).await;
    // Nothing secret is stored in plaintext, in the database or its WAL.
    let bytes = all_bytes(dir.path());
    for needle in ["client-secret-1", "at-2", "rt-3", "at-contact", "verifier-abc", "k-2"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in plaintext");
    }
}

#[tokio::test]
async fn sqlite_fails_closed_on_a_wrong_key_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let (key, key_text) = MasterKey::generate();
    {
        let store = SqliteStore::open(&path, Keyring::new(key)).await.unwrap();
        store.put_secret("S", &SecretString::from("v".to_string())).await.unwrap();
    }
    let (other, _) = MasterKey::generate();
    let err = SqliteStore::open(&path, Keyring::new(other)).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("TERN_MASTER_KEY"));
    // Rotate: new key current, old key readable; everything re-encrypted under the new key.
    let (new, new_text) = MasterKey::generate();
    let ring = Keyring::new(new).with_older(MasterKey::from_base64(&key_text, "old").unwrap());
    let store = SqliteStore::open(&path, ring).await.unwrap();
    assert!(store.reencrypt_all().await.unwrap() >= 2);
    drop(store);
    let only_new = Keyring::new(MasterKey::from_base64(&new_text, "new").unwrap());
    let store = SqliteStore::open(&path, only_new).await.unwrap();
    assert_eq!(store.all_secrets().await.unwrap()[0].1.expose_secret(), "v");
}
