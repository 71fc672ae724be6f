#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message
//! The channels service ([`Channels`]) on the real stores: SQLite in a temporary directory and a
//! throw-away PostgreSQL database shared by two instances (two store handles, two services).
//! Lookups go through the bounded cache; time is a [`ManualClock`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tern_engine::channel::{Channel, ChannelDirectory, ChannelKind, ChannelName, ChannelStore, Delivery, InboundAuth};
use tern_engine::channels::{CACHE_TTL_MS, ChannelDraft, ChannelError, ChannelSource, Channels, Field};
use tern_engine::clock::ManualClock;
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::testing::PgTestDb;
use tern_store::{PgStore, SqliteStore};

fn name(s: &str) -> ChannelName {
    ChannelName::new(s).unwrap()
}

fn token_draft(token: &str) -> ChannelDraft {
    ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![SecretString::from(token.to_string())],
        webhook_url: Some("https://bot:hook-pass-42@chat.example.com/replies?key=k".into()),
        webhook_secret: Some(SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string())),
        ..Default::default()
    }
}

fn default_channel() -> Channel {
    Channel {
        name: ChannelName::default_channel(),
        incarnation: None,
        kind: ChannelKind::Generic,
        inbound: InboundAuth {
            tokens: vec![SecretString::from("default-token-0123456789".to_string())],
            ..Default::default()
        },
        delivery: Delivery::default(),
        platform: None,
        web: None,
    }
}

fn service(store: Arc<dyn ChannelStore>, clock: &Arc<ManualClock>, open: &[&str]) -> Channels {
    Channels::new(
        store,
        [(default_channel(), ChannelSource::Flags)],
        open.iter().map(|n| name(n)).collect::<BTreeSet<_>>(),
        clock.clone(),
    )
}

/// What every backend must do: save, get, list, remove, the rules, the `default` channel.
async fn lifecycle(store: Arc<dyn ChannelStore>) {
    let clock = Arc::new(ManualClock::at_system_time());
    let channels = service(store, &clock, &["kiosk"]);
    // Only the built-in `console` and `default` at first.
    let list = channels.list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].name.as_str(), list[0].source, list[0].tokens), ("console", ChannelSource::Builtin, 0));
    assert_eq!((list[1].name.as_str(), list[1].source, list[1].tokens), ("default", ChannelSource::Flags, 1));

    let saved = channels.save("support", token_draft("support-token-0123456789"), false).await.unwrap();
    assert_eq!((saved.source, saved.tokens, saved.signing_secrets), (ChannelSource::Stored, 1, 0));
    // The URL is shown as `display_url` shows URLs (without its query; credentials in it are
    // masked there), and its password is a known secret, masked wherever text leaves Tern.
    let url = url::Url::parse("https://bot:hook-pass-42@chat.example.com/replies?key=k").unwrap();
    let shown = saved.webhook_url.clone().unwrap();
    assert_eq!(shown, tern_engine::http::display_url(&url));
    assert!(!shown.contains("key=k"), "{shown}");
    assert_eq!(tern_engine::secrets::known::mask("<hook-pass-42>"), "<[redacted]>");
    assert!(saved.created_at.is_some());

    let again = channels.save("support", token_draft("other-token-0123456789"), false).await.unwrap_err();
    assert!(again.to_string().contains("exists already; pass --update"), "{again}");

    let found = channels.channel(&name("support")).await.unwrap().unwrap();
    assert_eq!(found.inbound.tokens[0].expose_secret(), "support-token-0123456789");
    assert!(!found.inbound.open);
    assert!(channels.channel(&name("nobody")).await.unwrap().is_none());

    // Rules: every problem at its field; nothing saved.
    let err =
        channels.save("bare", ChannelDraft { kind: Some(ChannelKind::Generic), ..Default::default() }, false).await;
    match err {
        Err(ChannelError::Invalid { problems, .. }) => assert_eq!(problems[0].field, Field::Tokens),
        other => panic!("{other:?}"),
    }
    assert!(matches!(channels.get(&name("bare")).await, Err(ChannelError::NotFound { .. })));
    // An insecurely open channel may have no credentials; the flag is applied on lookup.
    let kiosk =
        channels.save("kiosk", ChannelDraft { kind: Some(ChannelKind::Generic), ..Default::default() }, false).await;
    assert!(kiosk.unwrap().open);
    assert!(channels.channel(&name("kiosk")).await.unwrap().unwrap().inbound.open);

    // `default` is configured by flags: it can be neither saved over nor removed.
    let err = channels.save("default", token_draft("other-token-0123456789"), true).await.unwrap_err();
    assert!(matches!(err, ChannelError::Configured { defined_by: ChannelSource::Flags, .. }), "{err}");
    let err = channels.remove(&ChannelName::default_channel()).await.unwrap_err();
    assert!(err.to_string().contains("--channel-token"), "{err}");
    assert_eq!(
        channels.channel(&ChannelName::default_channel()).await.unwrap().unwrap().inbound.tokens[0].expose_secret(),
        "default-token-0123456789"
    );

    let names: Vec<String> = channels.list().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["console", "default", "kiosk", "support"]);

    // A removal is seen by this instance's lookups at once.
    channels.remove(&name("support")).await.unwrap();
    assert!(channels.channel(&name("support")).await.unwrap().is_none());
    let err = channels.remove(&name("support")).await.unwrap_err();
    assert!(err.to_string().contains("there is no channel `support`"), "{err}");
}

#[tokio::test]
async fn sqlite_channels_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap();
    lifecycle(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_channels_lifecycle() {
    let db = PgTestDb::create().await;
    let (key, _) = MasterKey::generate();
    let store = PgStore::open(&db.url, Keyring::new(key)).await.unwrap();
    lifecycle(Arc::new(store)).await;
    db.drop_db().await;
}

/// Two instances on one PostgreSQL database: a change made by one is seen by the other once its
/// cache entry expires (the documented bound, [`CACHE_TTL_MS`]), and not before.
#[tokio::test]
async fn postgres_another_instance_sees_a_change_when_its_cache_entry_expires() {
    let db = PgTestDb::create().await;
    let (key, text) = MasterKey::generate();
    let a = PgStore::open(&db.url, Keyring::new(key)).await.unwrap();
    let b = PgStore::open(&db.url, Keyring::new(MasterKey::from_base64(&text, "key").unwrap())).await.unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    let first = service(Arc::new(a), &clock, &[]);
    let second = service(Arc::new(b), &clock, &[]);

    assert!(second.channel(&name("support")).await.unwrap().is_none());
    first.save("support", token_draft("support-token-0123456789"), false).await.unwrap();
    // The second instance cached "no such channel" a moment ago.
    assert!(second.channel(&name("support")).await.unwrap().is_none());
    clock.advance(Duration::from_millis(u64::try_from(CACHE_TTL_MS).unwrap()));
    let seen = second.channel(&name("support")).await.unwrap().unwrap();
    assert_eq!(seen.inbound.tokens[0].expose_secret(), "support-token-0123456789");

    // A rotation by the first instance reaches the second within the same bound.
    first.save("support", token_draft("rotated-token-0123456789"), true).await.unwrap();
    assert_eq!(
        first.channel(&name("support")).await.unwrap().unwrap().inbound.tokens[0].expose_secret(),
        "rotated-token-0123456789"
    );
    assert_eq!(
        second.channel(&name("support")).await.unwrap().unwrap().inbound.tokens[0].expose_secret(),
        "support-token-0123456789"
    );
    clock.advance(Duration::from_millis(u64::try_from(CACHE_TTL_MS).unwrap()));
    assert_eq!(
        second.channel(&name("support")).await.unwrap().unwrap().inbound.tokens[0].expose_secret(),
        "rotated-token-0123456789"
    );

    first.remove(&name("support")).await.unwrap();
    clock.advance(Duration::from_millis(u64::try_from(CACHE_TTL_MS).unwrap()));
    assert!(second.channel(&name("support")).await.unwrap().is_none());
    drop((first, second));
    db.drop_db().await;
}

/// The cache is bounded: looking up more names than it holds keeps working and keeps answering
/// from the store.
#[tokio::test]
async fn the_lookup_cache_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap());
    let clock = Arc::new(ManualClock::at_system_time());
    let channels = service(store, &clock, &[]);
    channels.save("support", token_draft("support-token-0123456789"), false).await.unwrap();
    for i in 0..(tern_engine::channels::CACHE_MAX + 10) {
        assert!(channels.channel(&name(&format!("probe{i}"))).await.unwrap().is_none());
        assert!(channels.cached() <= tern_engine::channels::CACHE_MAX);
    }
    assert!(channels.channel(&name("support")).await.unwrap().is_some());
}

/// The admin token is reserved: no saved channel may take it as its bearer token (whoever holds
/// a channel's token must not hold the admin API too), and a configured channel that has it is
/// found so that `tern serve` refuses to start.
#[tokio::test]
async fn the_admin_token_is_no_channel_s_token() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(MasterKey::generate().0)).await.unwrap());
    let clock = Arc::new(ManualClock::at_system_time());
    const ADMIN: &str = "admin-token-for-this-test-0123456789";
    let channels = service(store.clone(), &clock, &[]).reserving([SecretString::from(ADMIN.to_string())]);
    assert!(channels.configured_problem().await.is_none());
    let err = channels.save("support", token_draft(ADMIN), false).await.unwrap_err();
    let ChannelError::Invalid { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(problems[0].field, Field::Tokens, "{err}");
    assert!(problems[0].message.contains("is the admin token"), "{err}");
    assert!(!err.to_string().contains(ADMIN), "{err}");
    assert!(channels.save("support", token_draft("support-token-0123456789"), false).await.is_ok());
    // A configured channel with it is found.
    let mut with_admin = default_channel();
    with_admin.inbound.tokens = vec![SecretString::from(ADMIN.to_string())];
    let configured = Channels::new(store, [(with_admin, ChannelSource::Flags)], BTreeSet::new(), clock.clone())
        .reserving([SecretString::from(ADMIN.to_string())]);
    assert_eq!(configured.configured_problem().await.map(|(n, _)| n), Some(ChannelName::default_channel()));
}

/// A credential names one channel: a second channel may not take another's bearer token or
/// signing secret (stored or configured), so that a request or a signature made for one
/// channel is never accepted by the other; replacing a channel keeps its own.
#[tokio::test]
async fn two_channels_never_share_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(MasterKey::generate().0)).await.unwrap());
    let clock = Arc::new(ManualClock::at_system_time());
    let channels = service(store.clone(), &clock, &[]);
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let signed = |secret: &str| ChannelDraft {
        kind: Some(ChannelKind::Generic),
        signing_secrets: vec![SecretString::from(secret.to_string())],
        ..Default::default()
    };
    channels.save("support", token_draft("support-token-0123456789"), false).await.unwrap();
    channels.save("shop", signed(SECRET), false).await.unwrap();
    // Replacing a channel with its own credentials is no conflict.
    channels.save("support", token_draft("support-token-0123456789"), true).await.unwrap();
    channels.save("shop", signed(SECRET), true).await.unwrap();
    for (draft, field, other) in [
        (token_draft("support-token-0123456789"), Field::Tokens, "support"),
        (token_draft("default-token-0123456789"), Field::Tokens, "default"),
        // The same key written without the prefix is the same secret.
        (signed("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), Field::SigningSecrets, "shop"),
    ] {
        let err = channels.save("sales", draft, false).await.unwrap_err();
        let ChannelError::Invalid { problems, .. } = &err else { panic!("{err}") };
        assert_eq!(problems.len(), 1, "{err}");
        assert_eq!(problems[0].field, field, "{err}");
        assert!(problems[0].message.contains(&format!("also channel `{other}`'s")), "{err}");
        assert!(!err.to_string().contains("0123456789") && !err.to_string().contains("C2FVsBQ"), "{err}");
    }
    assert!(channels.get(&name("sales")).await.is_err(), "nothing was saved");
    // Two configured channels with one token: found, so that `tern serve` refuses to start.
    let mut twin = default_channel();
    twin.name = name("twin");
    let configured = Channels::new(
        store,
        [(default_channel(), ChannelSource::Flags), (twin, ChannelSource::ConfigFile)],
        BTreeSet::new(),
        clock.clone(),
    );
    let (found, problem) = configured.configured_problem().await.unwrap();
    assert_eq!(found, ChannelName::default_channel());
    assert!(problem.message.contains("also channel `twin`'s"), "{}", problem.message);
}

/// A webhook URL the outbound guard would refuse (a loopback or private address without
/// `--allow-private-network`; an unspecified or multicast one always) is refused when the
/// channel is saved, with the reason, instead of failing every delivery later.
#[tokio::test]
async fn a_webhook_url_tern_would_never_call_is_refused_when_saved() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(MasterKey::generate().0)).await.unwrap());
    let clock = Arc::new(ManualClock::at_system_time());
    let draft =
        |url: &str| ChannelDraft { webhook_url: Some(url.to_string()), ..token_draft("support-token-0123456789") };
    let guarded = service(store.clone(), &clock, &[]);
    for url in [
        "http://127.0.0.1:9/replies",
        "http://[::1]/r",
        "http://10.1.2.3/r",
        "http://localhost:8080/r",
        "http://0.0.0.0/r",
    ] {
        let err = guarded.save("support", draft(url), false).await.unwrap_err();
        let ChannelError::Invalid { problems, .. } = &err else { panic!("{err}") };
        assert_eq!(problems[0].field, Field::WebhookUrl, "{url}: {err}");
        assert!(problems[0].message.contains("Tern would refuse to deliver replies"), "{url}: {err}");
    }
    let local = service(store, &clock, &[]).allowing_private_network(true);
    local.save("support", draft("http://127.0.0.1:9/replies"), false).await.unwrap();
    for url in ["http://0.0.0.0/r", "http://224.0.0.1/r"] {
        let err = local.save("support", draft(url), true).await.unwrap_err();
        assert!(err.to_string().contains("Tern would refuse to deliver replies"), "{url}: {err}");
    }
}

/// Two saves at once cannot both pass the check that no other channel has their token; what
/// another process stored anyway (or before the rule) is found for `tern serve`'s warning, and
/// the admin token never authenticates a stored channel. A value is no other channel's in any
/// role (a token that is another channel's signing secret), and no channel lists one twice.
#[tokio::test]
async fn concurrent_saves_and_stored_conflicts_keep_one_credential_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(MasterKey::generate().0)).await.unwrap());
    let clock = Arc::new(ManualClock::at_system_time());
    let channels = Arc::new(service(store.clone(), &clock, &[]));
    let saves = (0..10).map(|i| {
        let channels = channels.clone();
        tokio::spawn(
            async move { channels.save(&format!("race{i}"), token_draft("race-token-0123456789ab"), false).await },
        )
    });
    let mut saved = 0;
    for handle in saves.collect::<Vec<_>>() {
        saved += usize::from(handle.await.unwrap().is_ok());
    }
    assert_eq!(saved, 1, "one of ten concurrent saves of one token");

    // What another process stored without the check: found, with both channels named.
    const ADMIN: &str = "admin-token-for-this-test-0123456789";
    let mut twin = default_channel();
    twin.name = name("twin");
    twin.inbound.tokens = vec![SecretString::from("race-token-0123456789ab".to_string())];
    store.put_channel(&twin).await.unwrap();
    let mut admin = default_channel();
    admin.name = name("adm");
    admin.inbound.tokens =
        vec![SecretString::from(ADMIN.to_string()), SecretString::from("adm-own-token-0123456789".to_string())];
    store.put_channel(&admin).await.unwrap();
    // Saved by a command with --allow-private-network, served without it.
    let mut local = default_channel();
    local.name = name("local");
    local.inbound.tokens = vec![SecretString::from("local-own-token-0123456789".to_string())];
    local.delivery.webhook_url = Some(url::Url::parse("http://127.0.0.1:9/replies").unwrap());
    store.put_channel(&local).await.unwrap();
    let reserving = service(store.clone(), &clock, &[]).reserving([SecretString::from(ADMIN.to_string())]);
    let conflicts = reserving.stored_conflicts().await.unwrap();
    assert!(
        conflicts.iter().any(|(n, p)| n.as_str() == "local" && p.message.contains("every reply would be refused")),
        "{conflicts:?}"
    );
    let named: Vec<String> = conflicts.iter().map(|(n, _)| n.to_string()).collect();
    assert!(named.contains(&"twin".to_string()) && named.iter().any(|n| n.starts_with("race")), "{conflicts:?}");
    assert!(conflicts.iter().any(|(n, p)| n.as_str() == "adm" && p.message.contains("admin token")), "{conflicts:?}");
    // The admin token is left out of the stored channel's tokens; its own token stays.
    let adm = reserving.channel(&name("adm")).await.unwrap().unwrap();
    assert_eq!(adm.inbound.tokens.len(), 1);
    assert_eq!(adm.inbound.tokens[0].expose_secret(), "adm-own-token-0123456789");

    // A token that is another channel's signing secret; a token given twice.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    channels
        .save(
            "signed",
            ChannelDraft {
                signing_secrets: vec![SecretString::from(SECRET.to_string())],
                ..token_draft("signed-token-0123456789")
            },
            false,
        )
        .await
        .unwrap();
    let err = channels.save("copycat", token_draft(SECRET), false).await.unwrap_err();
    assert!(err.to_string().contains("also channel `signed`'s signing secret"), "{err}");
    let twice = ChannelDraft {
        tokens: vec![SecretString::from("twice-token-0123456789".to_string()); 2],
        ..token_draft("unused-token-0123456789")
    };
    let err = channels.save("twice", twice, false).await.unwrap_err();
    assert!(err.to_string().contains("the same bearer token is given twice"), "{err}");
}
