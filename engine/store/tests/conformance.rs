#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message
//! The conformance suite on both backends: SQLite in a temporary directory, PostgreSQL in a
//! throw-away database on the local server (`.ci/run` starts it; see
//! `tern_store::testing::admin_url`). Plus what only several processes sharing PostgreSQL can
//! show: a token lock and a conversation lock held by one store handle (one instance) make
//! another handle (another instance) wait, and a lock is released when its holder's
//! connections die.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tern_engine::TokenOwner;
use tern_engine::conversation::{ConversationId, ConversationStore};
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::testing::{self, PgTestDb};
use tern_store::{Backend, PgStore, SqliteStore, Store, StoreLocation};

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
    let store = Arc::new(SqliteStore::open(&path, Keyring::new(key)).await.unwrap());
    testing::run_suite(&*store).await;
    testing::run_conversation_suite(store.clone()).await;
    testing::run_channel_suite(&*store).await;
    testing::run_transcript_suite(&*store).await;
    testing::run_notice_suite(&*store).await;
    testing::run_timer_suite(&*store).await;
    testing::run_rate_bucket_suite(store.clone()).await;
    // Nothing secret is stored in plaintext, in the database or its WAL.
    let bytes = all_bytes(dir.path());
    for needle in [
        "client-secret-1",
        "client-key-1",
        "at-2",
        "rt-3",
        "at-contact",
        "verifier-abc",
        "k-2",
        "secret-text-1",
        "channel-token-1",
        "hook-password-1",
        "transcript-secret-words",
        "notice-secret-words",
        testing::CHANNEL_SIGNING_SECRET,
        testing::CHANNEL_WEBHOOK_SECRET,
        &testing::CHANNEL_SIGNING_SECRET[6..],
    ] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in plaintext");
    }
}

/// The memory store keeps notices by the same rules as the SQL stores.
#[tokio::test]
async fn the_memory_store_passes_the_notice_suite() {
    testing::run_notice_suite(&tern_engine::conversation::MemoryConversationStore::default()).await;
    testing::run_timer_suite(&tern_engine::conversation::MemoryConversationStore::default()).await;
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    let db = PgTestDb::create().await;
    let (key, _) = MasterKey::generate();
    let store = Arc::new(PgStore::open(&db.url, Keyring::new(key)).await.unwrap());
    testing::run_suite(&*store).await;
    testing::run_conversation_suite(store.clone()).await;
    testing::run_channel_suite(&*store).await;
    testing::run_transcript_suite(&*store).await;
    testing::run_notice_suite(&*store).await;
    testing::run_timer_suite(&*store).await;
    testing::run_rate_bucket_suite(store.clone()).await;
    // Nothing secret is stored in plaintext: every column of every row, as text.
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM (SELECT row_to_json(x)::text AS t FROM (SELECT * FROM integrations) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM tokens) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM secrets) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM answers) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM channels) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM web_transcript) x
           UNION ALL SELECT row_to_json(x)::text FROM (SELECT * FROM outbox) x) rows",
    )
    .fetch_all(&sqlx::PgPool::connect(&db.raw_url()).await.unwrap())
    .await
    .unwrap();
    let dump = dump.join("\n");
    for needle in [
        "client-secret-1",
        "client-key-1",
        "at-2",
        "rt-3",
        "at-contact",
        "k-2",
        "secret-text-1",
        "channel-token-1",
        "hook-password-1",
        "transcript-secret-words",
        "notice-secret-words",
        testing::CHANNEL_SIGNING_SECRET,
        testing::CHANNEL_WEBHOOK_SECRET,
    ] {
        assert!(!dump.contains(needle), "{needle} found in plaintext");
        let hexed = hex::encode(needle);
        assert!(!dump.contains(&hexed), "{needle} found in plaintext (bytea)");
    }
    drop(store);
    db.drop_db().await;
}

/// The database file (and the `-wal` file SQLite makes beside it) is its owner's alone, even
/// in a directory anyone can read and with a permissive umask.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_readable_by_their_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("tern.db");
    let store = SqliteStore::open(&path, Keyring::new(MasterKey::generate().0)).await.unwrap();
    store.put_secret("probe", &SecretString::from("v".to_string())).await.unwrap();
    for file in [path.clone(), dir.path().join("tern.db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
}

#[tokio::test]
async fn sqlite_fails_closed_on_a_wrong_key_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let open = move |keys: Keyring| -> testing::BoxFuture<_> {
        let location = StoreLocation::Sqlite(path.clone());
        Box::pin(async move { tern_store::open(&location, keys).await })
    };
    testing::fails_closed_and_rotates(&open).await;
}

#[tokio::test]
async fn postgres_fails_closed_on_a_wrong_key_and_rotates() {
    let db = PgTestDb::create().await;
    let url = db.url.clone();
    let open = move |keys: Keyring| -> testing::BoxFuture<_> {
        let location = StoreLocation::Postgres(url.clone());
        Box::pin(async move { tern_store::open(&location, keys).await })
    };
    testing::fails_closed_and_rotates(&open).await;
    db.drop_db().await;
}

/// Two handles on one database are two instances: each has its own pool and lock sessions.
/// A conversation lock's session ends (`pg_terminate_backend`) while its holder still runs:
/// another instance takes the conversation with a newer fencing token, and the first
/// holder's commit is refused ([`StoreError::Fenced`]) while the new holder's goes through. A
/// holder that keeps its session keeps its token (no write per message).
#[tokio::test]
async fn postgres_a_commit_under_a_lost_lock_is_refused() {
    let db = PgTestDb::create().await;
    let (a, b) = two_instances(&db).await;
    let c = ConversationId::new("conv-fenced").unwrap();
    let first = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    let epoch = first.fence().expect("a PostgreSQL lock has a fencing token");
    first.release().await;
    let again = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!(again.fence(), Some(epoch), "the same lock session keeps the epoch");
    a.write(&[testing::fenced_completion(&c, "m-0", again.fence())]).await.unwrap();

    // The lock's session ends; b takes the conversation.
    let admin = sqlx::PgPool::connect(&testing::admin_url()).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
    )
    .bind(db.url.to_string().rsplit('/').next().unwrap())
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(ended, [true], "one lock session held the conversation");
    let taken = b.lock_conversation(&c, Duration::from_secs(5)).await.unwrap().unwrap();
    let newer = taken.fence().unwrap();
    assert!(newer > epoch, "{newer} > {epoch}");

    // a's run, under the lost lock, commits nothing; b's does.
    let err = a.write(&[testing::fenced_completion(&c, "m-1", again.fence())]).await.unwrap_err();
    assert!(matches!(err, tern_store::StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("taken over by another instance"), "{err}");
    let m = |id: &str| tern_engine::conversation::MessageId::new(id).unwrap();
    assert!(a.answer(&c, &m("m-1")).await.unwrap().is_none(), "nothing of the fenced commit");
    // In a batch with other conversations' writes, only the fenced one fails (each alone).
    b.write(&[testing::fenced_completion(&c, "m-1", Some(newer))]).await.unwrap();
    assert!(b.answer(&c, &m("m-1")).await.unwrap().is_some());
    drop(again);
    taken.release().await;

    // a takes it again on a new session: a newer epoch still.
    let mut back = None;
    for _ in 0..3 {
        if let Ok(Some(l)) = a.lock_conversation(&c, Duration::from_secs(5)).await {
            back = Some(l);
            break;
        }
    }
    let back = back.expect("a takes the conversation again");
    assert!(back.fence().unwrap() > newer);
    back.release().await;
    drop((a, b));
    admin.close().await;
    db.drop_db().await;
}

/// SQLite opens a file it cannot write read-only, silently: a connection the pool opened
/// while the file was immutable must not stay in the pool, read-only, after the file is
/// writable again (every write that happened to use it would fail).
#[tokio::test]
async fn sqlite_connections_opened_while_the_file_is_unwritable_do_not_stay_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, Keyring::new(key)).await.unwrap();
    store.put_secret("before", &SecretString::from("v".to_string())).await.unwrap();
    let files = [path.clone(), dir.path().join("tern.db-wal")];
    let chattr = |flag: &str| {
        files.iter().all(|f| std::process::Command::new("chattr").arg(flag).arg(f).status().is_ok_and(|s| s.success()))
    };
    if !chattr("+i") {
        chattr("-i");
        assert!(std::env::var_os("TERN_TEST_REQUIRE_TOOLS").is_none(), "chattr +i is not possible here");
        eprintln!("SKIPPED sqlite_connections_opened_while_the_file_is_unwritable…: chattr +i is not possible here");
        return;
    }
    // Many reads at once: the pool opens every connection it may while the file is immutable.
    let reads: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.all_secrets().await.map(drop) })
        })
        .collect();
    for r in reads {
        let _ = r.await.unwrap();
    }
    assert!(store.put_secret("during", &SecretString::from("v".to_string())).await.is_err());
    // A transaction whose commit fails (and whose rollback then fails too: SQLite ended it
    // already) must not leave its connection in the pool, counted as inside a transaction.
    let c = ConversationId::new("conv-unwritable").unwrap();
    for i in 0..4 {
        assert!(store.write(&[testing::fenced_completion(&c, &format!("d-{i}"), None)]).await.is_err());
    }
    assert!(chattr("-i"));
    // Every connection the pool holds now writes, in and out of transactions.
    for i in 0..64 {
        store.put_secret(&format!("after-{i}"), &SecretString::from("v".to_string())).await.unwrap();
        store.write(&[testing::fenced_completion(&c, &format!("a-{i}"), None)]).await.unwrap();
    }
}

/// A webhook delivery's body is sealed with its channel: a row moved to another channel (by
/// someone who can write the database but has no key) does not decrypt and is dropped, never
/// posted to the other channel's webhook; setting its binding back to the one before channels
/// were bound does not open it either.
#[tokio::test]
async fn a_delivery_moved_to_another_channel_is_dropped() {
    use tern_engine::conversation::{Completion, WriteOp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, Keyring::new(key)).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let c = ConversationId::new("conv-moved").unwrap();
    for (n, tamper) in [
        "UPDATE outbox SET channel = 'default'",
        "UPDATE outbox SET binding = 1",
        "UPDATE outbox SET binding = 1, channel = 'default'",
    ]
    .into_iter()
    .enumerate()
    {
        let done = Completion {
            channel: tern_engine::channel::ChannelRef {
                name: tern_engine::channel::ChannelName::new("sms").unwrap(),
                incarnation: Some(tern_engine::channel::Incarnation::generate()),
            },
            outbox: Some(b"{\"n\":1}".to_vec()),
            ..testing::no_run_completion(&c, &format!("m-{n}"))
        };
        store.write(&[WriteOp::Complete(Box::new(done))]).await.unwrap();
        assert_eq!(store.outbox_len().await.unwrap(), 1);
        sqlx::query(tamper).execute(&raw).await.unwrap();
        let due = store.outbox_due(i64::MAX / 2, 10).await.unwrap();
        assert!(due.is_empty(), "{tamper}: {due:?}");
        assert_eq!(store.outbox_len().await.unwrap(), 0, "{tamper}: dropped");
    }
    raw.close().await;
}

async fn two_instances(db: &PgTestDb) -> (Arc<PgStore>, Arc<PgStore>) {
    let (key, text) = MasterKey::generate();
    let a = PgStore::open(&db.url, Keyring::new(key)).await.unwrap();
    let b = PgStore::open(&db.url, Keyring::new(MasterKey::from_base64(&text, "key").unwrap())).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

#[tokio::test]
async fn postgres_locks_exclude_other_instances_and_die_with_them() {
    let db = PgTestDb::create().await;
    let (a, b) = two_instances(&db).await;
    let name = tern_engine::IntegrationName::new("crm").unwrap();
    a.put_integration(&name, &Default::default(), None).await.unwrap();

    // A token lock (no token row yet: a service account's first token) makes the other wait.
    {
        let held = a.lock_token(&name, &TokenOwner::Workspace).await.unwrap();
        let waiting = b.lock_token(&name, &TokenOwner::Workspace);
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(Duration::from_millis(300), &mut waiting).await.is_err(), "b must wait for a");
        held.commit().await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
        drop(second);
    }

    // A conversation lock: b waits while a holds it, and gets it once a releases it.
    let c = ConversationId::new("conv-locked").unwrap();
    let held = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    let err = b.lock_conversation(&c, Duration::from_millis(200)).await.err().expect("b must not get it");
    assert!(err.to_string().contains("held by another instance"), "{err}");
    // Another conversation is free meanwhile.
    let other = b.lock_conversation(&ConversationId::new("conv-free").unwrap(), Duration::ZERO).await.unwrap();
    other.unwrap().release().await;
    held.release().await;
    let got = b.lock_conversation(&c, Duration::from_secs(5)).await.unwrap().unwrap();
    got.release().await;

    // An instance that dies (its sessions end) releases what it held.
    let _held = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    let admin = sqlx::PgPool::connect(&testing::admin_url()).await.unwrap();
    let dbname = db.url.to_string().rsplit('/').next().unwrap().to_string();
    // Ends every session of `a`: pool and lock connections (b's lock sessions are idle and
    // reconnect on demand; b's pool reconnects too).
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&dbname)
    .execute(&admin)
    .await
    .unwrap();
    let mut got = None;
    for _ in 0..3 {
        // The first try may meet a connection the termination closed: it reconnects.
        if let Ok(Some(l)) = b.lock_conversation(&c, Duration::from_secs(5)).await {
            got = Some(l);
            break;
        }
    }
    got.expect("the dead holder's lock is released").release().await;
    drop((a, b));
    admin.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn postgres_a_secret_set_by_one_instance_is_read_by_another() {
    let db = PgTestDb::create().await;
    let (a, b) = two_instances(&db).await;
    a.put_secret("SHARED", &SecretString::from("shared-value-1".to_string())).await.unwrap();
    let all = b.all_secrets().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(b.kind(), "postgresql");
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test]
async fn a_sqlite_file_from_before_the_migrator_is_adopted_and_migrated() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    {
        // What the hand-rolled runner left: versions 1-3 applied, counted in user_version.
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        for sql in [
            include_str!("../migrations/sqlite/0001_integrations.sql"),
            include_str!("../migrations/sqlite/0002_conversations.sql"),
            include_str!("../migrations/sqlite/0003_conversation_service.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        sqlx::raw_sql("PRAGMA user_version = 3").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let (key, _) = MasterKey::generate();
    let store = SqliteStore::open(&path, Keyring::new(key)).await.unwrap();
    drop(store);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&mut conn).await.unwrap();
    // Every migration file, counted from the directory, so that a new one cannot be forgotten.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    let expected: Vec<i64> = (1..=i64::try_from(files).unwrap()).collect();
    assert_eq!(versions, expected, "1-3 adopted, the later ones applied by the migrator");
    let table: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'webhook_ids'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    assert!(table.is_some(), "the webhook_ids migration ran");
    let column: Option<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('run_history') WHERE name = 'first_segment'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    assert!(column.is_some(), "migration 4 ran");
    let column: Option<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('outbox') WHERE name = 'channel'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    assert!(column.is_some(), "migration 5 ran");
}

#[tokio::test]
async fn a_database_from_a_newer_tern_is_refused_with_words() {
    let db = PgTestDb::create().await;
    let (key, text) = MasterKey::generate();
    drop(PgStore::open(&db.url, Keyring::new(key)).await.unwrap());
    let admin = sqlx::PgPool::connect(&db.raw_url()).await.unwrap();
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', TRUE, '\\x00', 0)")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let err = PgStore::open(&db.url, Keyring::new(MasterKey::from_base64(&text, "k").unwrap())).await.unwrap_err();
    assert!(err.to_string().contains("newer Tern"), "{err}");
    db.drop_db().await;
}

/// A message waiting for a conversation another instance holds gets it before the holder's
/// next message: PostgreSQL's queue keeps arrival order, so no instance starves another.
#[tokio::test]
async fn postgres_a_waiting_instance_gets_the_conversation_before_the_holder_again() {
    let db = PgTestDb::create().await;
    let (a, b) = two_instances(&db).await;
    let c = ConversationId::new("fair").unwrap();
    let held = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (b2, c2, tx2) = (b.clone(), c.clone(), tx.clone());
    let waiting = tokio::spawn(async move {
        let l = b2.lock_conversation(&c2, Duration::from_secs(10)).await.unwrap().unwrap();
        tx2.send("b").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        l.release().await;
    });
    // Until b waits in PostgreSQL's queue (no sleep: a loaded machine may be slow).
    let pool = sqlx::PgPool::connect(&db.raw_url()).await.unwrap();
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close().await;
    held.release().await;
    let again = a.lock_conversation(&c, Duration::from_secs(10)).await.unwrap().unwrap();
    tx.send("a").unwrap();
    again.release().await;
    waiting.await.unwrap();
    assert_eq!((rx.recv().await, rx.recv().await), (Some("b"), Some("a")), "b asked first");
    drop((a, b));
    db.drop_db().await;
}

/// A server-wide idle session timeout does not end a lock's session during a long run.
#[tokio::test]
async fn postgres_an_idle_session_timeout_does_not_release_a_held_conversation() {
    let db = PgTestDb::create().await;
    let name = db.raw_url().rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&testing::admin_url()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} SET idle_session_timeout = '1s'")).execute(&admin).await.unwrap();
    let (a, b) = two_instances(&db).await;
    let c = ConversationId::new("long-run").unwrap();
    let held = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await; // the lock session sits idle
    assert!(b.lock_conversation(&c, Duration::from_millis(300)).await.is_err(), "still held by a");
    held.release().await;
    drop((a, b));
    admin.close().await;
    db.drop_db().await;
}

/// Server-wide timeouts do not break the locks: `statement_timeout` does not cut a wait for a
/// conversation short, `idle_in_transaction_session_timeout` does not end a token refresh's
/// transaction (its lock) while the token request is out. Text PostgreSQL cannot hold (NUL)
/// is refused for a token owner, in words, and matches nothing in history filters.
#[tokio::test]
async fn postgres_server_timeouts_and_nul_text() {
    use tern_engine::conversation::RunQuery;
    let db = PgTestDb::create().await;
    let name = db.raw_url().rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&testing::admin_url()).await.unwrap();
    for setting in ["statement_timeout = '500ms'", "idle_in_transaction_session_timeout = '500ms'"] {
        sqlx::query(&format!("ALTER DATABASE {name} SET {setting}")).execute(&admin).await.unwrap();
    }
    let (a, b) = two_instances(&db).await;
    let c = ConversationId::new("timeouts").unwrap();
    let held = a.lock_conversation(&c, Duration::from_secs(1)).await.unwrap().unwrap();
    let (b2, c2) = (b.clone(), c.clone());
    let waiting = tokio::spawn(async move { b2.lock_conversation(&c2, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    held.release().await;
    let got = waiting.await.unwrap().expect("the wait outlives statement_timeout").unwrap();
    got.release().await;

    let crm = tern_engine::IntegrationName::new("crm").unwrap();
    a.put_integration(&crm, &Default::default(), None).await.unwrap();
    let mut lock = a.lock_token(&crm, &TokenOwner::Workspace).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the token request is out
    let token = tern_store::TokenRecord {
        access_token: SecretString::from("at-after-a-slow-refresh".to_string()),
        refresh_token: None,
        expires_at: None,
        obtained_at: 0,
        scopes: None,
        metadata: Default::default(),
        version: 0,
    };
    lock.write(&token).await.expect("the transaction is still there");
    lock.commit().await.unwrap();

    let odd = TokenOwner::Contact("a\0b".into());
    let err = a.put_token(&crm, &odd, &token).await.unwrap_err().to_string();
    assert!(err.contains("NUL"), "{err}");
    let page = b.runs(&RunQuery { conversation_id: Some("a\0b".into()), ..RunQuery::default() }).await.unwrap();
    assert!(page.runs.is_empty());
    // A run id with NUL is refused where it is parsed (API, CLI), before any store sees it.
    assert!(tern_engine::RunId::new("a\0b").is_err());
    assert!(b.run(&tern_engine::RunId::new("a-b").unwrap()).await.unwrap().is_none());
    drop((a, b));
    admin.close().await;
    db.drop_db().await;
}
