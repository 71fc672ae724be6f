//! The store's share of one message, on SQLite (and PostgreSQL when
//! `TERN_TEST_DATABASE_URL` is set): accept it, journal one HTTP call, then complete it
//! (answer remembered, a new run in history), from 16 conversations at once like the
//! conversation service's workers. Prints messages per second.
//!
//! `cargo bench -p tern-store --bench store_writes` (`TERN_BENCH_MESSAGES`, default 4000; a
//! smoke run passes a small number).

#![allow(clippy::unwrap_used, missing_docs)] // a benchmark: a panic is a failed run

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tern_engine::conversation::{
    Answer, AnswerStatus, Answered, Completion, ConversationId, Inbound, MessageId, PausedChange, RunId, RunStatus,
    RunSummary, Segment, WriteOp,
};
use tern_engine::effects::{EffectKey, RecordedResponse};
use tern_store::Backend;
use tern_store::crypto::{Keyring, MasterKey};

const WORKERS: usize = 16;

async fn one_message(store: &dyn Backend, worker: usize, n: usize) {
    let c = ConversationId::new(format!("conv-{worker}")).unwrap();
    let m = MessageId::new(format!("m-{worker}-{n}")).unwrap();
    let inbound = Inbound::message(c.clone(), Some(m.clone()), "hello there");
    store.write(&[WriteOp::Accept(Box::new(inbound))]).await.unwrap();
    let key =
        EffectKey { conversation: c.to_string(), message_id: m.to_string(), seq: 1, attempt: 0, step: "call".into() };
    store.begin_effect(&key).await.unwrap();
    let response = RecordedResponse {
        status: 200,
        url: "http://127.0.0.1/api".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"name":"Ada","balance":42}"#.to_vec(),
    };
    store.finish_effect(&key, &response).await.unwrap();
    let run_id = RunId::new(format!("run-{worker}-{n}")).expect("run id");
    let mut answer = Answer::without_run(AnswerStatus::Completed, &m);
    answer.run_id = Some(run_id.clone());
    let now = tern_engine::clock::system().now_ms();
    let summary = RunSummary {
        run_id,
        conversation_id: c.to_string(),
        contact_id: Some(format!("contact-{worker}")),
        flow_id: "echo".into(),
        flow_version: "hash-1".into(),
        status: RunStatus::Completed,
        started_at_ms: now - 3,
        updated_at_ms: now,
        finished_at_ms: Some(now),
        duration_ms: 3,
        work_ms: None,
        recovered: None,
        answered_last: None,
    };
    let segment: Segment = serde_json::from_value(json!({
        "message_id": m.as_str(), "message": "hello there", "started_at_ms": now - 3, "finished_at_ms": now,
        "status": "completed", "replies": [{"text": "Hi Ada, your balance is 42"}], "trace": [], "variables": {}
    }))
    .unwrap();
    let done = Completion {
        channel: tern_engine::channel::ChannelRef::named(tern_engine::channel::ChannelName::default_channel()),
        conversation: c.clone(),
        message_id: m.clone(),
        remember_answer: true,
        accepted: true,
        answer: Answered::new(answer),
        digest: None,
        paused: PausedChange::Keep,
        history: vec![(summary, segment)],
        outbox: None,
        fence: None,
        transcript: Vec::new(),
    };
    store.write(&[WriteOp::Complete(Box::new(done))]).await.unwrap();
}

async fn run(name: &str, store: Arc<dyn Backend>, messages: usize) {
    let per_worker = messages / WORKERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..per_worker {
                    one_message(&*store, w, n).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let total = per_worker * WORKERS;
    println!("{name}: {total} messages in {secs:.2} s = {:.0} msg/s", total as f64 / secs);
}

fn main() {
    let messages: usize = std::env::var("TERN_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let store = tern_store::SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap();
        run("sqlite", Arc::new(store), messages).await;
        if std::env::var("TERN_TEST_DATABASE_URL").is_ok() {
            let db = tern_store::testing::PgTestDb::create().await;
            let (key, _) = MasterKey::generate();
            let store = tern_store::PgStore::open(&db.url, Keyring::new(key)).await.unwrap();
            run("postgresql", Arc::new(store), messages / 4).await;
            db.drop_db().await;
        }
    });
}
