#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message
//! The conversation service with the built-in steps (dev-dependencies of the engine), in process: ordering, dedupe of a message
//! still running, bounds, history across a pause, retention with an injected clock, and a
//! paused run stored in the previous format (1) still resuming. No HTTP server: the seams are
//! the service and its stores (in memory and SQLite).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tern_engine::conversation::{
    AnswerStatus, ConversationError, ConversationId, ConversationOptions, ConversationStore, Conversations, Inbound,
    LoadedFlow, MemoryConversationStore, MessageId, Retention, RunQuery, flow_hash,
};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{Engine, LoadOptions, RunLimits, RunStatus, load_flow};

#[path = "conversations/timers.rs"]
mod timers;

fn engine() -> Engine {
    Engine {
        registry: Arc::new(tern_steps::registry()),
        outbound: Outbound::new(HttpClient::new(HttpPolicy::default()).unwrap(), None),
        secrets: Arc::new(NoSecrets),
        limits: RunLimits::default(),
    }
}

const ECHO: &str = r#"{"version": 1, "id": "echo", "trigger": {"type": "message", "match": {"regex": "^start$"}},
  "steps": [
    {"id": "wait", "type": "ask", "text": "ready", "save_as": "m"},
    {"id": "say", "type": "send_message", "text": "got {{m}}", "next": "wait"}
  ]}"#;

fn flow(engine: &Engine, source: &str) -> LoadedFlow {
    let opts = LoadOptions::new(&engine.registry);
    LoadedFlow { hash: flow_hash(source), flow: Arc::new(load_flow(source, &opts).unwrap()) }
}

fn service(store: Arc<dyn ConversationStore>, options: ConversationOptions) -> Conversations {
    let engine = engine();
    let echo = flow(&engine, ECHO);
    let s = Conversations::start(engine, store, options, None);
    s.set_flows(vec![echo]);
    s
}

fn msg(conversation: &str, id: Option<&str>, text: &str) -> Inbound {
    Inbound::message(ConversationId::new(conversation).unwrap(), id.map(|i| MessageId::new(i).unwrap()), text)
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<tern_store::SqliteStore> {
    use tern_store::crypto::{Keyring, MasterKey};
    let (key, _) = MasterKey::generate();
    Arc::new(tern_store::SqliteStore::open(&dir.path().join("t.db"), Keyring::new(key)).await.unwrap())
}

/// A throw-away PostgreSQL database and the store on it (the local server, see
/// `tern_store::testing::admin_url`).
async fn postgres() -> (tern_store::testing::PgTestDb, Arc<tern_store::PgStore>) {
    use tern_store::crypto::{Keyring, MasterKey};
    let db = tern_store::testing::PgTestDb::create().await;
    let (key, _) = MasterKey::generate();
    let store = Arc::new(tern_store::PgStore::open(&db.url, Keyring::new(key)).await.unwrap());
    (db, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_a_conversation_are_answered_in_order_and_history_keeps_every_segment() {
    in_order_with_every_segment(Arc::new(MemoryConversationStore::default())).await;
    let dir = tempfile::tempdir().unwrap();
    in_order_with_every_segment(sqlite(&dir).await).await;
    let (db, store) = postgres().await;
    in_order_with_every_segment(store).await;
    db.drop_db().await;
}

/// A contact id with a NUL (which PostgreSQL's text cannot hold) is stored, and messages
/// committed in the same batch are not failed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_id_with_nul_fails_no_message() {
    let (db, store) = postgres().await;
    let s = service(store.clone(), ConversationOptions::default());
    let mut tickets = Vec::new();
    for i in 0..20 {
        let mut odd = msg(&format!("nul-{i}"), Some("m"), "start");
        odd.contact.insert("id".into(), json!("a\u{0}b"));
        tickets.push(s.submit(odd, None).unwrap());
        tickets.push(s.submit(msg(&format!("plain-{i}"), Some("m"), "start"), None).unwrap());
    }
    for mut t in tickets {
        assert_eq!(t.wait().await.unwrap().replies[0].text, "ready");
    }
    s.shutdown(Duration::from_secs(5)).await;
    db.drop_db().await;
}

/// A message an instance accepted (the caller was told `202`) and never answered, because it
/// died, is taken over and answered by another instance sharing the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_what_a_dead_one_accepted() {
    use tern_engine::conversation::WriteOp;
    let (db, store) = postgres().await;
    let start = msg("orphan", Some("0"), "start");
    // What the dead instance left: the message accepted, nothing else.
    store.write(&[WriteOp::Accept(Box::new(start))]).await.unwrap();
    let options = ConversationOptions {
        adopt_every: Duration::from_millis(50),
        adopt_after: Duration::ZERO,
        ..ConversationOptions::default()
    };
    let b = service(store.clone(), options);
    let c = ConversationId::new("orphan").unwrap();
    let id = MessageId::new("0").unwrap();
    let mut answer = None;
    for _ in 0..200 {
        if let Some(r) = store.answer(&c, &id).await.unwrap() {
            answer = Some(r.answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = answer.expect("the accepted message is answered by the other instance");
    assert_eq!(answer.replies[0].text, "ready");
    assert!(store.accepted().await.unwrap().is_empty(), "and no longer waiting");
    b.shutdown(Duration::from_secs(5)).await;
    db.drop_db().await;
}

/// Two services on one PostgreSQL database are two instances: a message id answered by one
/// is answered from memory by the other, and the conversation goes on where the first left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_postgres_database_share_answers_and_paused_runs() {
    let (db, store) = postgres().await;
    let a = service(store.clone(), ConversationOptions::default());
    let b = service(store.clone(), ConversationOptions::default());
    let first = a.submit(msg("c", Some("0"), "start"), None).unwrap().wait().await.unwrap();
    assert_eq!(first.replies[0].text, "ready");
    let again = b.submit(msg("c", Some("0"), "start"), None).unwrap().wait().await.unwrap();
    assert_eq!(again, first, "the remembered answer, not a second run");
    let next = b.submit(msg("c", Some("1"), "m1"), None).unwrap().wait().await.unwrap();
    assert_eq!(next.replies[0].text, "got m1", "b resumed the run a paused");
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    db.drop_db().await;
}

async fn in_order_with_every_segment(store: Arc<dyn ConversationStore>) {
    let s = service(store.clone(), ConversationOptions::default());
    let first = s.submit(msg("c", Some("0"), "start"), None).unwrap().wait().await.unwrap();
    assert_eq!(first.status, AnswerStatus::Paused);
    // Submitted back to back without waiting: processed one at a time, in order.
    let tickets: Vec<_> =
        (1..=20).map(|i| s.submit(msg("c", Some(&i.to_string()), &format!("m{i}")), None).unwrap()).collect();
    for (i, mut t) in tickets.into_iter().enumerate() {
        let a = t.wait().await.unwrap();
        assert_eq!(a.replies[0].text, format!("got m{}", i + 1));
        assert_eq!(a.replies[1].text, "ready");
    }
    s.shutdown(Duration::from_secs(5)).await;
    let run = s.run(first.run_id.as_ref().unwrap()).await.unwrap().unwrap();
    assert_eq!(run.segments.len(), 21, "the first activation and every resume");
    assert_eq!(run.segments[0].replies[0].text, "ready");
    assert_eq!(run.segments[3].message, "m3");
    assert_eq!(run.summary.status, RunStatus::Paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_written_before_the_inline_first_segment_keeps_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let s = service(store.clone(), ConversationOptions::default());
    let first = s.submit(msg("c", Some("0"), "start"), None).unwrap().wait().await.unwrap();
    let run_id = first.run_id.clone().unwrap();
    s.shutdown(Duration::from_secs(5)).await;
    // Schema version 3 kept segment 0 in run_segments.
    store.write_legacy_first_segment(run_id.as_str()).await.unwrap();
    let s = service(store.clone(), ConversationOptions::default());
    for i in 1..=2 {
        let a = s.submit(msg("c", Some(&i.to_string()), &format!("m{i}")), None).unwrap().wait().await.unwrap();
        assert_eq!(a.replies[0].text, format!("got m{i}"));
    }
    s.shutdown(Duration::from_secs(5)).await;
    let run = s.run(&run_id).await.unwrap().unwrap();
    let said: Vec<_> = run.segments.iter().map(|g| g.replies[0].text.as_str()).collect();
    assert_eq!(said, ["ready", "got m1", "got m2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_gets_the_running_message_s_answer() {
    let s = service(Arc::new(MemoryConversationStore::default()), ConversationOptions::default());
    let mut a = s.submit(msg("c", Some("m-1"), "start"), None).unwrap();
    let mut b = s.submit(msg("c", Some("m-1"), "start"), None).unwrap();
    let (a, b) = (a.wait().await.unwrap(), b.wait().await.unwrap());
    assert_eq!(a, b);
    // Later: the remembered answer, and the conversation did not advance.
    let c = s.submit(msg("c", Some("m-1"), "start"), None).unwrap().wait().await.unwrap();
    assert_eq!(c, a);
    let d = s.submit(msg("c", Some("m-2"), "x"), None).unwrap().wait().await.unwrap();
    assert_eq!(d.replies[0].text, "got x", "m-1 was processed once");
}

// One thread: nothing is processed until the test awaits, so the bounds are seen exactly.
#[tokio::test(flavor = "current_thread")]
async fn the_service_is_bounded() {
    let options = ConversationOptions { max_in_flight: 3, max_queued_per_conversation: 2, ..Default::default() };
    let s = service(Arc::new(MemoryConversationStore::default()), options);
    let mut held = Vec::new();
    let mut errors = Vec::new();
    for conversation in ["a", "b"] {
        for i in 0..5 {
            match s.submit(msg(conversation, Some(&i.to_string()), "start"), None) {
                Ok(t) => held.push(t),
                Err(e) => errors.push(e),
            }
        }
    }
    assert_eq!(held.len(), 3, "two queued in `a` (its limit), one in `b` (the service's limit)");
    assert!(errors.iter().any(|e| matches!(e, ConversationError::ConversationBusy { .. })), "{errors:?}");
    assert!(errors.iter().any(|e| matches!(e, ConversationError::Overloaded { .. })), "{errors:?}");
    assert!(errors.iter().all(ConversationError::is_retryable));
    for mut t in held {
        t.wait().await.unwrap();
    }
    assert_eq!(s.in_flight(), 0, "every permit is back");
    s.shutdown(Duration::from_secs(5)).await;
    let late = s.submit(msg("a", None, "start"), None);
    assert!(matches!(late, Err(ConversationError::ShuttingDown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_runs_answers_and_expired_pauses() {
    let store = Arc::new(MemoryConversationStore::default());
    let options = ConversationOptions { pause_ttl: Duration::from_secs(60), ..Default::default() };
    let s = service(store.clone(), options);
    for i in 0..5 {
        s.submit(msg(&format!("c{i}"), Some("m"), "start"), None).unwrap().wait().await.unwrap();
    }
    s.shutdown(Duration::from_secs(5)).await;
    let now = tern_engine::clock::Clock::now_ms(&tern_engine::clock::SystemClock);
    let keep_all = Retention { history_max_runs: 10, ..Retention::default() };
    assert_eq!(store.prune(&keep_all, now).await.unwrap(), Default::default());
    let three = Retention { history_max_runs: 3, max_answers: 2, ..Retention::default() };
    let p = store.prune(&three, now).await.unwrap();
    assert_eq!((p.runs, p.answers, p.paused), (2, 3, 0));
    // Two minutes later (the clock is a parameter): the paused runs expired, the answers are
    // outside a one-minute dedupe window.
    let later = Retention { dedupe_window_ms: 60_000, ..three };
    let p = store.prune(&later, now + 120_000).await.unwrap();
    assert_eq!((p.answers, p.paused), (2, 5));
}

/// A paused run waits `pause_ttl` on the service's clock, not the wall clock: a manual clock
/// moved past it makes the next message start afresh, in memory and on SQLite alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_expires_on_the_service_clock() {
    use tern_engine::clock::{Clock, ManualClock};
    use tern_store::SqliteStore;
    use tern_store::crypto::{Keyring, MasterKey};
    let dir = tempfile::tempdir().unwrap();
    for on_sqlite in [false, true] {
        let clock = Arc::new(ManualClock::at_system_time());
        let store: Arc<dyn ConversationStore> = if on_sqlite {
            let (key, _) = MasterKey::generate();
            let db = SqliteStore::open(&dir.path().join("t.db"), Keyring::new(key)).await.unwrap();
            Arc::new(db.with_clock(clock.clone()))
        } else {
            Arc::new(MemoryConversationStore::with_clock(clock.clone()))
        };
        let options =
            ConversationOptions { pause_ttl: Duration::from_secs(60), clock: clock.clone(), ..Default::default() };
        let s = service(store.clone(), options);
        let first = s.submit(msg("c", Some("1"), "start"), None).unwrap().wait().await.unwrap();
        assert_eq!(first.status, AnswerStatus::Paused);
        clock.advance(Duration::from_secs(59));
        let a = s.submit(msg("c", Some("2"), "in time"), None).unwrap().wait().await.unwrap();
        assert_eq!(a.replies[0].text, "got in time", "resumed within the minute (sqlite: {on_sqlite})");
        assert_eq!(a.run_id, first.run_id);
        // The resume paused again, for another minute from now.
        clock.advance(Duration::from_secs(61));
        let late = s.submit(msg("c", Some("3"), "too late"), None).unwrap().wait().await.unwrap();
        assert_eq!(late.status, AnswerStatus::NoFlow, "expired: not resumed (sqlite: {on_sqlite})");
        let again = s.submit(msg("c", Some("4"), "start"), None).unwrap().wait().await.unwrap();
        assert_eq!(again.status, AnswerStatus::Paused);
        assert_ne!(again.run_id, first.run_id, "a new run");
        s.shutdown(Duration::from_secs(5)).await;
        let run = s.run(first.run_id.as_ref().unwrap()).await.unwrap().unwrap();
        assert_eq!(run.summary.started_at_ms, clock.now_ms() - 120_000, "history is stamped by the same clock");
        // Retention on the same clock: the expired pause is gone, the new one is kept.
        let pruned = s.prune().await.unwrap();
        assert_eq!(pruned.paused, 0, "the expired pause was replaced, the new one is live");
        clock.advance(Duration::from_secs(61));
        assert_eq!(s.prune().await.unwrap().paused, 1, "a minute later the new pause expired too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_resumes_a_paused_run_of_the_previous_format() {
    use tern_store::SqliteStore;
    use tern_store::crypto::{Keyring, MasterKey};
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), Keyring::new(key)).await.unwrap());
    let engine = engine();
    let echo = flow(&engine, ECHO);
    store.put_flow_version(&echo.hash, "echo", ECHO).await.unwrap();
    // What Tern stored before paused runs had a format number: the bare snapshot.
    let v1 = json!({"run_id": "r-old", "flow_id": "echo", "step": "wait", "variables": {},
                    "executed_steps": 1, "paused_with": null});
    store.write_legacy_paused_run("c-old", &echo.hash, &v1, i64::MAX / 2).await.unwrap();
    let paused = store.paused(&ConversationId::new("c-old").unwrap()).await.unwrap().unwrap();
    assert_eq!(paused.format, 1);
    let s = Conversations::start(engine, store.clone(), ConversationOptions::default(), None);
    s.set_flows(vec![echo]);
    let a = s.submit(msg("c-old", Some("m"), "hello"), None).unwrap().wait().await.unwrap();
    assert_eq!(a.run_id.as_ref().map(|r| r.as_str()), Some("r-old"));
    assert_eq!(a.replies[0].text, "got hello");
    // It is stored again in the current format.
    let again = store.paused(&ConversationId::new("c-old").unwrap()).await.unwrap().unwrap();
    assert_eq!(again.format, tern_engine::conversation::PAUSED_FORMAT);
    // A format from the future is refused with a clear error.
    let v9 = json!({"format": 9});
    store.write_legacy_paused_run("c-new", &"x".repeat(64), &v9, i64::MAX / 2).await.unwrap();
    let err = store.paused(&ConversationId::new("c-new").unwrap()).await.unwrap_err().to_string();
    assert!(err.contains("newer Tern (paused-run format 9"), "{err}");
    s.shutdown(Duration::from_secs(5)).await;
}

/// A flow whose only step fails (the address is refused by the outbound guard: no network).
const FAILING: &str = r#"{"version": 1, "id": "crm", "trigger": {"type": "message", "match": {"regex": "^lookup$"}},
  "steps": [{"id": "lookup", "type": "http_request", "request": {"method": "GET", "url": "http://127.0.0.1:9/x"}}]}"#;

const HANDLER: &str = r#"{"version": 1, "id": "on-error", "trigger": {"type": "error"}, "steps": [
    {"id": "ask", "type": "ask", "text": "{{error.flow}}/{{error.step}} failed. Call you back?", "save_as": "yes"},
    {"id": "ok", "type": "send_message", "text": "Noted: {{yes}}"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_failure_starts_the_error_flow_which_the_next_message_resumes() {
    let engine = engine();
    let (failing, handler) = (flow(&engine, FAILING), flow(&engine, HANDLER));
    let options = ConversationOptions { error_reply: Some("unused".into()), ..ConversationOptions::default() };
    let s = Conversations::start(engine, Arc::new(MemoryConversationStore::default()), options, None);
    s.set_flows(vec![failing, handler]);
    let first = s.submit(msg("c", Some("1"), "lookup"), None).unwrap().wait().await.unwrap();
    assert_eq!(first.status, AnswerStatus::Failed);
    assert_eq!(first.error.as_ref().unwrap().step.as_ref().unwrap().as_str(), "lookup");
    assert_eq!(first.replies.len(), 1, "the error flow answered, so no default reply: {first:?}");
    assert_eq!(first.replies[0].text, "crm/lookup failed. Call you back?");
    let error_flow = first.error_flow.clone().unwrap();
    assert_eq!((error_flow.flow_id.as_str(), error_flow.status), ("on-error", AnswerStatus::Paused));
    let second = s.submit(msg("c", Some("2"), "yes"), None).unwrap().wait().await.unwrap();
    assert_eq!(second.run_id.as_ref().map(|r| r.as_str()), Some(error_flow.run_id.as_str()));
    assert_eq!(second.replies[0].text, "Noted: yes");
    assert_eq!(second.status, AnswerStatus::Completed);
    assert!(second.error_flow.is_none());
    s.shutdown(Duration::from_secs(5)).await;
    let failed = s.run(first.run_id.as_ref().unwrap()).await.unwrap().unwrap();
    assert_eq!(failed.summary.status, RunStatus::Failed);
    let handled = s.run(&error_flow.run_id).await.unwrap().unwrap();
    assert_eq!(handled.segments.len(), 2, "the question and the resume");
    assert_eq!(handled.summary.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_failure_gets_the_default_reply_without_an_error_flow() {
    let engine = engine();
    let failing = flow(&engine, FAILING);
    let options = ConversationOptions { error_reply: Some("Sorry.".into()), ..ConversationOptions::default() };
    let s = Conversations::start(engine, Arc::new(MemoryConversationStore::default()), options, None);
    s.set_flows(vec![failing.clone()]);
    let a = s.submit(msg("c", None, "lookup"), None).unwrap().wait().await.unwrap();
    assert_eq!((a.status, a.replies.len(), a.replies[0].text.as_str()), (AnswerStatus::Failed, 1, "Sorry."));
    assert!(a.error_flow.is_none());
    // Without a default reply the contact gets nothing, as before.
    let plain = service(Arc::new(MemoryConversationStore::default()), ConversationOptions::default());
    plain.set_flows(vec![failing]);
    let a = plain.submit(msg("c", None, "lookup"), None).unwrap().wait().await.unwrap();
    assert_eq!(a.status, AnswerStatus::Failed);
    assert!(a.replies.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paused_run_index_survives_a_restart_and_follows_pauses_and_ends() {
    use tern_store::SqliteStore;
    use tern_store::crypto::{Keyring, MasterKey};
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = MasterKey::generate();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), Keyring::new(key)).await.unwrap());
    let echo = flow(&engine(), ECHO);
    store.put_flow_version(&echo.hash, "echo", ECHO).await.unwrap();
    let index = store.paused_index(10).await.unwrap().unwrap();
    assert!(index.is_empty(), "a SQLite store gives an index: it has one writer");

    let s = service(store.clone(), ConversationOptions::default());
    s.recover().await.unwrap();
    let a = s.submit(msg("c-1", Some("1"), "start"), None).unwrap().wait().await.unwrap();
    assert_eq!(a.status, AnswerStatus::Paused);
    // The index learnt the pause: the next message resumes the run.
    let b = s.submit(msg("c-1", Some("2"), "one"), None).unwrap().wait().await.unwrap();
    assert_eq!(
        (b.run_id.as_ref().map(|r| r.as_str()), b.replies[0].text.as_str()),
        (a.run_id.as_ref().map(|r| r.as_str()), "got one")
    );
    s.shutdown(Duration::from_secs(5)).await;

    // After a restart the index is loaded from the store before any message runs.
    assert_eq!(store.paused_index(10).await.unwrap().unwrap().len(), 1);
    assert!(store.paused_index(0).await.unwrap().is_none(), "more paused runs than the limit: no index");
    let s = service(store.clone(), ConversationOptions::default());
    s.recover().await.unwrap();
    let c = s.submit(msg("c-1", Some("3"), "two"), None).unwrap().wait().await.unwrap();
    assert_eq!(
        (c.run_id.as_ref().map(|r| r.as_str()), c.replies[0].text.as_str()),
        (a.run_id.as_ref().map(|r| r.as_str()), "got two")
    );
    // A conversation without a paused run starts the flow as before.
    let d = s.submit(msg("c-2", Some("1"), "start"), None).unwrap().wait().await.unwrap();
    assert_ne!(d.run_id, a.run_id);
    assert_eq!(d.status, AnswerStatus::Paused);
    s.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.paused_index(10).await.unwrap().unwrap().len(), 2);
}

const HELLO: &str = r#"{"version": 1, "id": "hello", "trigger": {"type": "message", "match": {"regex": "^hi$"}},
  "steps": [{"id": "say", "type": "send_message", "text": "hello"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_newest_first_filtered_and_paged_without_gaps() {
    list_runs(Arc::new(MemoryConversationStore::default())).await;
    let dir = tempfile::tempdir().unwrap();
    list_runs(sqlite(&dir).await).await;
    let (db, store) = postgres().await;
    list_runs(store).await;
    db.drop_db().await;
}

async fn list_runs(store: Arc<dyn ConversationStore>) {
    let engine = engine();
    let flows = vec![flow(&engine, ECHO), flow(&engine, HELLO)];
    let clock = Arc::new(tern_engine::clock::ManualClock::at_system_time());
    let options = ConversationOptions { clock: clock.clone(), ..ConversationOptions::default() };
    let s = Conversations::start(engine, store, options, None);
    s.set_flows(flows);
    let mut ids = Vec::new();
    for i in 0..7 {
        let text = if i % 2 == 0 { "start" } else { "hi" };
        let a = s.submit(msg(&format!("c{i}"), None, text), None).unwrap().wait().await.unwrap();
        ids.push(a.run_id.unwrap());
        clock.advance(Duration::from_millis(5));
    }
    // Resuming c0 makes it the newest activity.
    s.submit(msg("c0", None, "again"), None).unwrap().wait().await.unwrap();
    s.shutdown(Duration::from_secs(5)).await;

    let all = s.runs(&RunQuery { limit: 100, ..RunQuery::default() }).await.unwrap();
    assert_eq!(all.runs.len(), 7);
    assert!(all.next.is_none());
    assert_eq!(all.runs[0].run_id, ids[0], "the resumed run has the newest activity");
    let order: Vec<_> = all.runs.iter().map(|r| (r.updated_at_ms, r.run_id.clone())).collect();
    assert!(order.windows(2).all(|w| w[0] > w[1]), "newest first, no ties: {order:?}");

    // Pages of 3 give every run once, in the same order.
    let mut paged = Vec::new();
    let mut query = RunQuery { limit: 3, ..RunQuery::default() };
    loop {
        let page = s.runs(&query).await.unwrap();
        assert!(page.runs.len() <= 3);
        paged.extend(page.runs.iter().map(|r| r.run_id.clone()));
        let Some(next) = page.next else { break };
        query.after = Some(next.to_string().parse().unwrap());
    }
    assert_eq!(paged, all.runs.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>());

    let hello = s.runs(&RunQuery { flow_id: Some("hello".into()), ..RunQuery::default() }).await.unwrap();
    assert_eq!(hello.runs.len(), 3);
    assert!(hello.runs.iter().all(|r| r.flow_id == "hello" && r.status == RunStatus::Completed));
    let paused = s.runs(&RunQuery { status: Some(RunStatus::Paused), ..RunQuery::default() }).await.unwrap();
    assert_eq!(paused.runs.len(), 4);
    let c3 = s.runs(&RunQuery { conversation_id: Some("c3".into()), ..RunQuery::default() }).await.unwrap();
    assert_eq!(c3.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), [ids[3].as_str()]);
    let none = s
        .runs(&RunQuery { flow_id: Some("hello".into()), status: Some(RunStatus::Paused), ..RunQuery::default() })
        .await
        .unwrap();
    assert!(none.runs.is_empty());
}

/// On SQLite, once the pruning pass has said the limit, the writer itself keeps history at
/// `history_max_runs` under load: every batch that adds runs deletes the oldest beyond it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_writer_keeps_history_at_its_limit_between_pruning_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let engine = engine();
    let hello = flow(&engine, HELLO);
    // Pruning only once, at start-up (the interval is far longer than the test).
    let retention = Retention { history_max_runs: 10, ..Retention::default() };
    let options = ConversationOptions { retention, prune_every: Duration::from_secs(3600), ..Default::default() };
    let s = Conversations::start(engine, store.clone(), options, None);
    s.set_flows(vec![hello]);
    // The start-up pass has run once it has said the count: wait for it.
    s.prune().await.unwrap();
    let tickets: Vec<_> = (0..60).map(|i| s.submit(msg(&format!("h{i}"), None, "hi"), None).unwrap()).collect();
    for mut t in tickets {
        t.wait().await.unwrap();
    }
    s.shutdown(Duration::from_secs(5)).await;
    let page = s.runs(&RunQuery { limit: 200, ..RunQuery::default() }).await.unwrap();
    assert_eq!(page.runs.len(), 10, "the newest 10 runs are kept without another pruning pass");
}

/// A message id re-sent with other content (text, contact) is refused with
/// `message-id-reused`, while its first message is still queued (the queue) and once it is
/// answered (the store); the same message again gets the first answer. A current-thread
/// runtime keeps the first message queued until the test awaits.
#[tokio::test]
async fn a_message_id_reused_for_other_content_is_refused_queued_and_answered() {
    message_id_reuse(Arc::new(MemoryConversationStore::default())).await;
    let dir = tempfile::tempdir().unwrap();
    message_id_reuse(sqlite(&dir).await).await;
    let (db, store) = postgres().await;
    message_id_reuse(store).await;
    db.drop_db().await;
}

async fn message_id_reuse(store: Arc<dyn ConversationStore>) {
    let s = service(store, ConversationOptions::default());
    let reused = |e: ConversationError| assert_eq!(e.code(), "message-id-reused", "{e}");
    let mut first = s.submit(msg("reuse", Some("m-1"), "start"), None).unwrap();
    // Queued: another text under its id is refused at once; the same message shares its ticket.
    reused(s.submit(msg("reuse", Some("m-1"), "start over"), None).unwrap_err());
    let mut same = s.submit(msg("reuse", Some("m-1"), "start"), None).unwrap();
    let answer = first.wait().await.unwrap();
    assert_eq!(same.wait().await.unwrap(), answer);
    assert_eq!(answer.replies[0].text, "ready");
    // Answered: the store's digest tells them apart.
    let mut other_text = s.submit(msg("reuse", Some("m-1"), "start over"), None).unwrap();
    reused(other_text.wait().await.unwrap_err());
    let mut other_contact = msg("reuse", Some("m-1"), "start");
    other_contact.contact.insert("id".into(), json!("k-2"));
    reused(s.submit(other_contact, None).unwrap().wait().await.unwrap_err());
    assert_eq!(s.submit(msg("reuse", Some("m-1"), "start"), None).unwrap().wait().await.unwrap(), answer);
    // Nothing else ran: the paused run still waits for its next message.
    let next = s.submit(msg("reuse", Some("m-2"), "hi"), None).unwrap().wait().await.unwrap();
    assert_eq!(next.replies[0].text, "got hi");
    s.shutdown(Duration::from_secs(5)).await;
}

/// A step that panics (a bug in a step type, say a plugin host's): the message fails with
/// `interrupted`, and the conversation's next message is handled as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_fails_its_message_not_the_conversation() {
    use tern_engine::{BuildContext, Outcome, Step, StepContext, StepFailure, StepType};

    struct Boom;
    impl StepType for Boom {
        fn name(&self) -> &str {
            "boom"
        }
        fn description(&self) -> &str {
            "Panics"
        }
        fn config_schema(&self) -> serde_json::Value {
            json!({"type": "object"})
        }
        fn build(&self, _: &serde_json::Value, _: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
            Some(Box::new(BoomStep))
        }
    }
    #[derive(Debug)]
    struct BoomStep;
    #[async_trait::async_trait]
    impl Step for BoomStep {
        async fn run(&self, _: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
            panic!("a bug in a step")
        }
    }

    let mut registry = tern_steps::registry();
    registry.register(Arc::new(Boom)).unwrap();
    let engine = Engine { registry: Arc::new(registry), ..engine() };
    let source = r#"{"version": 1, "id": "boom", "trigger": {"type": "message", "match": {"regex": "^go$"}},
      "steps": [{"id": "b", "type": "boom"}, {"id": "say", "type": "send_message", "text": "done"}]}"#;
    let boom = flow(&engine, source);
    let s = Conversations::start(
        engine,
        Arc::new(MemoryConversationStore::default()),
        ConversationOptions::default(),
        None,
    );
    s.set_flows(vec![boom]);
    let first = s.submit(msg("c", Some("m-1"), "go"), None).unwrap().wait().await;
    assert!(matches!(first, Err(ConversationError::Interrupted { .. })), "{first:?}");
    // The worker survived: the next message of the same conversation is handled.
    let second = s.submit(msg("c", Some("m-2"), "go"), None).unwrap().wait().await;
    assert!(matches!(second, Err(ConversationError::Interrupted { .. })), "{second:?}");
    assert_eq!(s.in_flight(), 0);
}

/// A called flow asks for a customer number, pauses over a restart of the service (a new
/// service on the same SQLite file, with `identify` changed meanwhile) and returns the number
/// to two different callers, each on the version it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_called_flow_pauses_over_a_restart_and_returns_to_each_caller() {
    const IDENTIFY: &str = r#"{"version": 1, "id": "identify", "inputs": ["purpose"], "outputs": ["customer_id"],
      "steps": [{"id": "ask", "type": "ask", "text": "Customer number for {{purpose}}?", "save_as": "customer_id"}]}"#;
    const IDENTIFY_V2: &str = r#"{"version": 1, "id": "identify", "inputs": ["purpose"], "outputs": ["customer_id"],
      "steps": [{"id": "ask", "type": "ask", "text": "CHANGED {{purpose}}", "save_as": "customer_id"}]}"#;
    let caller = |id: &str, word: &str| {
        format!(
            r#"{{"version": 1, "id": "{id}", "trigger": {{"type": "message", "match": {{"keywords": ["{word}"]}}}},
              "steps": [
                {{"id": "who", "type": "call_flow", "flow": "identify", "inputs": {{"purpose": "{word}"}}, "outputs": {{"customer": "customer_id"}}}},
                {{"id": "done", "type": "send_message", "text": "{word} for {{{{customer}}}}"}}]}}"#
        )
    };
    let (billing_src, support_src) = (caller("billing", "invoice"), caller("support", "ticket"));
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let first = engine();
    let loaded: Vec<LoadedFlow> =
        [IDENTIFY, billing_src.as_str(), support_src.as_str()].iter().map(|s| flow(&first, s)).collect();
    for (f, src) in loaded.iter().zip([IDENTIFY, &billing_src, &support_src]) {
        store.put_flow_version(&f.hash, f.flow.id.as_str(), src).await.unwrap();
    }
    let s = Conversations::start(first, store.clone(), ConversationOptions::default(), None);
    s.set_flows(loaded);
    let a = s.submit(msg("c-bill", Some("m1"), "invoice"), None).unwrap().wait().await.unwrap();
    assert_eq!(a.status, AnswerStatus::Paused, "{:?}", a.error);
    assert_eq!(a.replies[0].text, "Customer number for invoice?");
    let b = s.submit(msg("c-sup", Some("m1"), "ticket"), None).unwrap().wait().await.unwrap();
    assert_eq!(b.replies[0].text, "Customer number for ticket?");
    s.shutdown(Duration::from_secs(5)).await;
    drop(s);

    // A new service on the same store; `identify` changed in the meantime.
    let second = engine();
    let v2 = flow(&second, IDENTIFY_V2);
    store.put_flow_version(&v2.hash, "identify", IDENTIFY_V2).await.unwrap();
    let s = Conversations::start(second.clone(), store.clone(), ConversationOptions::default(), None);
    s.set_flows(vec![v2, flow(&second, &billing_src), flow(&second, &support_src)]);
    let a = s.submit(msg("c-bill", Some("m2"), "C-42"), None).unwrap().wait().await.unwrap();
    assert_eq!(a.status, AnswerStatus::Completed, "{:?}", a.error);
    assert_eq!(a.replies[0].text, "invoice for C-42");
    let b = s.submit(msg("c-sup", Some("m2"), "C-7"), None).unwrap().wait().await.unwrap();
    assert_eq!(b.replies[0].text, "ticket for C-7", "{:?}", b.error);
    // A new call starts the current version.
    let c = s.submit(msg("c-new", Some("m1"), "invoice"), None).unwrap().wait().await.unwrap();
    assert_eq!(c.replies[0].text, "CHANGED invoice");
    s.shutdown(Duration::from_secs(5)).await;
}
