//! The conformance suite every backend passes (SQLite and PostgreSQL run it in this crate's
//! tests), and a throw-away PostgreSQL database for tests ([`PgTestDb`]).
//!
//! The checks panic with a message on failure: they are test code.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, json};
use tern_engine::{IntegrationName, TokenOwner};
use tern_integrations::config::{IntegrationConfig, Profile};

use crate::{Backend, DatabaseUrl, IntegrationStatus, PendingAuthorization, Store, StoreError, TokenRecord};

/// Unix seconds now (the store under test runs on the system clock).
fn now() -> i64 {
    tern_engine::clock::Clock::now_s(&tern_engine::clock::SystemClock)
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

/// Runs every check of the integration store against `store` (an empty one).
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
    // A client certificate's key: stored with the settings, kept while the certificate is,
    // removed with it.
    let key = SecretString::from("-----BEGIN PRIVATE KEY-----\nclient-key-1\n".to_string());
    config.client_cert = Some("-----BEGIN CERTIFICATE-----\n".into());
    store.put_integration_with_key(&tl, &config, None, Some(&key)).await.unwrap();
    assert!(store.get_integration(&tl).await.unwrap().unwrap().client_key_set);
    store.put_integration(&tl, &config, None).await.unwrap();
    assert_eq!(store.client_key(&tl).await.unwrap().unwrap().expose_secret(), key.expose_secret());
    assert_eq!(store.client_secret(&tl).await.unwrap().unwrap().expose_secret(), "client-secret-1");
    config.client_cert = None;
    store.put_integration(&tl, &config, None).await.unwrap();
    assert!(store.client_key(&tl).await.unwrap().is_none(), "no certificate, no key");
    assert!(!store.get_integration(&tl).await.unwrap().unwrap().client_key_set);
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

    // Compare-and-set (a refresh whose lock was lost): stored only over the version it read.
    let rotated = token("at-cas", Some("rt-cas"));
    assert_eq!(store.put_token_if_version(&z, &owner, &rotated, 1).await.unwrap(), None, "a newer token is kept");
    assert_eq!(store.get_token(&z, &owner).await.unwrap().unwrap().access_token.expose_secret(), "at-2");
    assert_eq!(store.put_token_if_version(&z, &owner, &rotated, 2).await.unwrap(), Some(3));
    let t = store.get_token(&z, &owner).await.unwrap().unwrap();
    assert_eq!((t.refresh_token.unwrap().expose_secret(), t.version), ("rt-cas", 3));
    let fresh_owner = TokenOwner::Contact("c-cas".into());
    assert_eq!(store.put_token_if_version(&z, &fresh_owner, &rotated, 0).await.unwrap(), Some(1), "none stored yet");
    assert_eq!(store.put_token_if_version(&z, &fresh_owner, &rotated, 0).await.unwrap(), None, "one was stored first");
    // Back to the token the rest of the suite expects.
    assert_eq!(store.put_token(&z, &owner, &token("at-2", Some("rt-2"))).await.unwrap(), 4);
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

/// Runs every check of the conversation store against `store` (an empty one): flow
/// versions, accepting and completing messages, remembered answers, paused runs, history in
/// segments and its listing, the webhook outbox, the effect journal, and retention.
pub async fn run_conversation_suite(store: Arc<dyn Backend>) {
    use tern_engine::conversation::{
        Answer, AnswerStatus, Answered, Completion, ConversationId, Inbound, MessageId, PausedChange, PausedRun,
        Retention, RunId, RunQuery, RunStatus, RunSummary, Segment, WriteOp,
    };
    use tern_engine::effects::{EffectKey, PriorEffect, RecordedResponse};

    let c = ConversationId::new("conv-1").unwrap();
    let m = |id: &str| MessageId::new(id).unwrap();
    // Flow versions are idempotent.
    store.put_flow_version("hash-1", "echo", "{\"v\": 1}").await.unwrap();
    store.put_flow_version("hash-1", "echo", "{\"v\": 2}").await.unwrap();
    assert_eq!(store.flow_version("hash-1").await.unwrap().as_deref(), Some("{\"v\": 1}"));
    assert!(store.flow_version("nope").await.unwrap().is_none());

    // Accepted messages are kept, in order, until answered.
    let first = Inbound::message(c.clone(), Some(m("m-1")), "hello secret-text-1");
    let second = Inbound::message(c.clone(), Some(m("m-2")), "again");
    store.write(&[WriteOp::Accept(Box::new(first.clone())), WriteOp::Accept(Box::new(second.clone()))]).await.unwrap();
    let accepted = store.accepted().await.unwrap();
    assert_eq!(accepted.iter().map(|i| i.message_id.as_str()).collect::<Vec<_>>(), ["m-1", "m-2"]);
    assert!(store.is_accepted(&c, &m("m-1")).await.unwrap());
    let far_future = now() * 1000 + 60_000;
    let stale = store.stale_accepted(far_future, 1).await.unwrap();
    if store.is_shared() {
        assert_eq!(stale.len(), 1, "bounded by the limit");
        assert_eq!(stale[0].text, "hello secret-text-1");
        assert!(store.stale_accepted(0, 10).await.unwrap().is_empty(), "none accepted before 1970");
    } else {
        assert!(stale.is_empty(), "a store with one process has no other instance to take over from");
    }

    // Completing the first: answer, paused run, history, webhook delivery, in one write.
    let snapshot = serde_json::from_value(json!({
        "run_id": "run-1", "flow_id": "echo", "step": "wait", "variables": {"n": 1},
        "executed_steps": 1, "paused_with": null
    }))
    .unwrap();
    let paused = PausedRun {
        format: tern_engine::conversation::PAUSED_FORMAT,
        flow_hash: "hash-1".into(),
        snapshot,
        started_at_ms: 1_000,
        expires_at: now() + 3600,
    };
    // History times are recent: retention keeps them by default.
    let t0 = now() * 1000 - 10_000;
    let run_1 = RunId::new("run-1").unwrap();
    let summary = |status: RunStatus, updated: i64| RunSummary {
        run_id: run_1.clone(),
        conversation_id: c.to_string(),
        contact_id: Some("contact-1".into()),
        flow_id: "echo".into(),
        flow_version: "hash-1".into(),
        status,
        started_at_ms: t0,
        updated_at_ms: t0 + updated,
        finished_at_ms: (status != RunStatus::Paused).then_some(t0 + updated),
        duration_ms: updated,
        work_ms: None,
        recovered: None,
        answered_last: None,
    };
    let segment = |message: &str, status: &str| -> Segment {
        serde_json::from_value(json!({
            "message_id": "m", "message": message, "started_at_ms": 1, "finished_at_ms": 2, "status": status,
            "replies": [{"text": format!("got {message}")}], "trace": [], "variables": {}
        }))
        .unwrap()
    };
    // An activation that sends no reply.
    let quiet = |message: &str, status: &str| -> Segment {
        let mut s = segment(message, status);
        s.replies.clear();
        s
    };
    let mut answer = Answer::without_run(AnswerStatus::Paused, &m("m-1"));
    answer.run_id = Some(run_1.clone());
    // A stored channel's delivery keeps its incarnation.
    let sms = tern_engine::channel::ChannelRef {
        name: tern_engine::channel::ChannelName::new("sms").unwrap(),
        incarnation: Some(tern_engine::channel::Incarnation::generate()),
    };
    let done = Completion {
        channel: sms.clone(),
        conversation: c.clone(),
        message_id: m("m-1"),
        remember_answer: true,
        accepted: true,
        answer: Answered::new(answer.clone()),
        digest: Some("d-1".into()),
        paused: PausedChange::Set(Box::new(paused.clone())),
        history: vec![(summary(RunStatus::Paused, 2_000), segment("hello", "paused"))],
        outbox: Some(json!({"conversation_id": "conv-1", "n": 1}).to_string().into_bytes()),
        fence: None,
        transcript: Vec::new(),
    };
    store.write(&[WriteOp::Complete(Box::new(done))]).await.unwrap();
    assert!(!store.is_accepted(&c, &m("m-1")).await.unwrap());
    let remembered = store.answer(&c, &m("m-1")).await.unwrap().unwrap();
    assert_eq!(remembered.answer.run_id, Some(run_1.clone()));
    assert_eq!(remembered.digest.as_deref(), Some("d-1"), "the message's digest is kept with its answer");
    assert!(store.answer(&c, &m("m-2")).await.unwrap().is_none());
    assert_eq!(store.paused(&c).await.unwrap().unwrap(), paused);
    // Accepting a message that is answered already keeps nothing.
    store.write(&[WriteOp::Accept(Box::new(first.clone()))]).await.unwrap();
    assert!(!store.is_accepted(&c, &m("m-1")).await.unwrap());

    // The second resumes and ends the run: a second segment, the paused run cleared.
    let done = Completion {
        channel: tern_engine::channel::ChannelRef::named(tern_engine::channel::ChannelName::default_channel()),
        conversation: c.clone(),
        message_id: m("m-2"),
        remember_answer: false,
        accepted: true,
        answer: Answered::new(Answer::without_run(AnswerStatus::Completed, &m("m-2"))),
        digest: None,
        paused: PausedChange::Clear,
        history: vec![(summary(RunStatus::Completed, 3_000), quiet("again", "completed"))],
        outbox: None,
        fence: None,
        transcript: Vec::new(),
    };
    store.write(&[WriteOp::Complete(Box::new(done))]).await.unwrap();
    assert!(store.paused(&c).await.unwrap().is_none());
    assert!(store.accepted().await.unwrap().is_empty());
    let run = store.run(&run_1).await.unwrap().unwrap();
    assert_eq!(run.summary.status, RunStatus::Completed);
    assert_eq!(run.summary.finished_at_ms, Some(t0 + 3_000));
    assert_eq!(run.segments.iter().map(|s| s.message.as_str()).collect::<Vec<_>>(), ["hello", "again"]);

    // One batch of several runs (their history rows go in multi-row statements), one of them
    // with two segments in the same batch (the second must follow the first).
    let other = ConversationId::new("conv-batch").unwrap();
    let batch_done = |run: &str, status: RunStatus, message: &str| {
        let mut s = summary(status, 4_000);
        s.run_id = RunId::new(run).unwrap();
        s.conversation_id = other.to_string();
        Completion {
            history: vec![(s, segment(message, status.as_str()))],
            paused: PausedChange::Keep,
            ..no_run_completion(&other, &format!("{run}-{message}"))
        }
    };
    let batch: Vec<WriteOp> = [
        batch_done("batch-a", RunStatus::Completed, "a"),
        batch_done("batch-c", RunStatus::Paused, "c1"),
        batch_done("batch-b", RunStatus::Completed, "b"),
        batch_done("batch-c", RunStatus::Completed, "c2"),
        batch_done("batch-d", RunStatus::Completed, "d"),
    ]
    .into_iter()
    .map(|d| WriteOp::Complete(Box::new(d)))
    .collect();
    store.write(&batch).await.unwrap();
    for (run, messages) in
        [("batch-a", &["a"][..]), ("batch-b", &["b"]), ("batch-c", &["c1", "c2"]), ("batch-d", &["d"])]
    {
        let stored = store.run(&RunId::new(run).unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.segments.iter().map(|s| s.message.as_str()).collect::<Vec<_>>(), messages, "{run}");
    }
    let c_run = store.run(&RunId::new("batch-c").unwrap()).await.unwrap().unwrap();
    assert_eq!(c_run.summary.status, RunStatus::Completed, "the later segment's status");
    // The summary keeps what the runs list shows without reading segments: work summed over
    // the activations (1 ms each), no recovery, and the last activation sent nothing.
    assert_eq!(
        (run.summary.work_ms, run.summary.recovered, run.summary.answered_last),
        (Some(2), Some(false), Some(false))
    );
    let listed = store.runs(&RunQuery { conversation_id: Some(c.to_string()), ..RunQuery::default() }).await.unwrap();
    let listed = listed.runs.iter().find(|r| r.run_id == run_1).unwrap();
    assert_eq!((listed.work_ms, listed.recovered, listed.answered_last), (Some(2), Some(false), Some(false)));
    assert!(store.run(&RunId::new("run-2").unwrap()).await.unwrap().is_none());
    // What a platform says of the run's replies joins its history, bounded; a run not in
    // history gets none.
    let status = |n: usize| tern_engine::conversation::DeliveryStatus {
        message_id: format!("wamid.{n}"),
        status: "read".into(),
        recipient: "16505551234".into(),
        error: None,
        at_ms: t0 + 4_000,
    };
    store.record_delivery(&run_1, &status(1)).await.unwrap();
    store.record_delivery(&RunId::new("run-2").unwrap(), &status(2)).await.unwrap();
    assert_eq!(store.run(&run_1).await.unwrap().unwrap().deliveries, [status(1)]);
    assert!(store.run(&RunId::new("run-2").unwrap()).await.unwrap().is_none());
    for n in 0..tern_engine::conversation::MAX_DELIVERY_STATUSES + 5 {
        store.record_delivery(&run_1, &status(n + 10)).await.unwrap();
    }
    let deliveries = store.run(&run_1).await.unwrap().unwrap().deliveries;
    assert_eq!(deliveries.len(), tern_engine::conversation::MAX_DELIVERY_STATUSES);
    assert_eq!(deliveries[1], status(10), "in the order they came");
    let page = store.runs(&RunQuery { conversation_id: Some("conv-1".into()), ..RunQuery::default() }).await.unwrap();
    assert_eq!(page.runs.len(), 1);
    let none = store.runs(&RunQuery { flow_id: Some("other".into()), ..RunQuery::default() }).await.unwrap();
    assert!(none.runs.is_empty());

    // The outbox: due now with its channel and a Standard Webhooks id, claimed (not due
    // again while in flight, until the lease ends), retried later, removed.
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    let due = store.outbox_due(now() * 1000 + 1_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].body["n"], 1);
    assert_eq!(due[0].channel, sms);
    assert!(due[0].id.starts_with("msg_"), "{}", due[0].id);
    assert!(store.outbox_due(now() * 1000 + 1_000, 10).await.unwrap().is_empty(), "claimed: not picked twice");
    let lease = i64::try_from(tern_engine::conversation::OUTBOX_LEASE.as_millis()).unwrap();
    let again = store.outbox_due(now() * 1000 + 1_000 + lease, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|d| &d.id).collect::<Vec<_>>(),
        [&due[0].id],
        "due again, same id, once the lease ends"
    );
    assert_eq!(again[0].lease, due[0].lease + 1, "each claim has its number");
    // The first claim's attempt ends after its lease: its retry changes nothing of the
    // second claim's (which is still in flight, not due again before its own lease ends).
    store.outbox_retry(&due[0].id, due[0].lease, 1, now() * 1000).await.unwrap();
    assert!(
        store.outbox_due(now() * 1000 + 2_000 + lease, 10).await.unwrap().is_empty(),
        "a stale claim's retry is ignored"
    );
    // A platform took the first part: the next claim goes on from there; a stale claim's
    // progress changes nothing.
    assert_eq!(again[0].sent, 0);
    store.outbox_progress(&again[0].id, again[0].lease, 1).await.unwrap();
    store.outbox_progress(&due[0].id, due[0].lease, 5).await.unwrap();
    store.outbox_retry(&again[0].id, again[0].lease, 1, now() * 1000 + 3_600_000).await.unwrap();
    assert!(store.outbox_due(now() * 1000 + 1_000, 10).await.unwrap().is_empty(), "not due before its retry");
    let third = store.outbox_due(now() * 1000 + 3_600_000, 10).await.unwrap();
    assert_eq!((third.len(), third[0].sent, third[0].attempts), (1, 1, 1), "progress and attempts are kept");
    store.outbox_remove(&due[0].id).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    // A conversation's deliveries go one at a time, in the order written: the second waits
    // while the first is in flight or waiting for its retry, another conversation's does not.
    let other = ConversationId::new("conv-2").unwrap();
    let delivery = |conversation: &ConversationId, n: i64| {
        WriteOp::Complete(Box::new(Completion {
            channel: sms.clone(),
            conversation: conversation.clone(),
            message_id: m(&format!("d-{n}")),
            remember_answer: false,
            accepted: false,
            answer: Answered::new(Answer::without_run(AnswerStatus::Completed, &m(&format!("d-{n}")))),
            digest: None,
            paused: PausedChange::Keep,
            history: vec![],
            outbox: Some(json!({"conversation_id": conversation.as_str(), "n": n}).to_string().into_bytes()),
            fence: None,
            transcript: Vec::new(),
        }))
    };
    store.write(&[delivery(&c, 10)]).await.unwrap();
    store.write(&[delivery(&c, 11)]).await.unwrap();
    store.write(&[delivery(&other, 20)]).await.unwrap();
    let at = now() * 1000 + 1_000;
    let ns = |items: &[tern_engine::conversation::OutboxItem]| {
        let mut ns: Vec<i64> = items.iter().map(|i| i.body["n"].as_i64().unwrap()).collect();
        ns.sort_unstable();
        ns
    };
    let first = store.outbox_due(at, 10).await.unwrap();
    assert_eq!(ns(&first), [10, 20], "each conversation's oldest only");
    let tenth = first.iter().find(|i| i.body["n"] == 10).unwrap().clone();
    // Within the lease of the claim of 20 (still in flight).
    store.outbox_retry(&tenth.id, tenth.lease, 1, at + 30_000).await.unwrap();
    assert!(store.outbox_due(at + 1, 10).await.unwrap().is_empty(), "the next one waits for the retry");
    let retried = store.outbox_due(at + 30_000, 10).await.unwrap();
    assert_eq!(ns(&retried), [10]);
    store.outbox_remove(&retried[0].id).await.unwrap();
    let next = store.outbox_due(at + 30_001, 10).await.unwrap();
    assert_eq!(ns(&next), [11], "then the next, once the first is gone");
    for item in first.iter().chain(&next) {
        store.outbox_remove(&item.id).await.unwrap();
    }
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    // The effect journal: unknown while running, the response once done.
    let key = EffectKey {
        conversation: "conv-1".into(),
        message_id: "m-3".into(),
        seq: 2,
        attempt: 0,
        step: "charge".into(),
    };
    assert!(matches!(store.begin_effect(&key).await.unwrap(), PriorEffect::None));
    assert!(matches!(store.begin_effect(&key).await.unwrap(), PriorEffect::Unknown));
    let response = RecordedResponse {
        status: 201,
        url: "https://api.example/charges".into(),
        headers: vec![],
        body: b"ok".to_vec(),
    };
    store.finish_effect(&key, &response).await.unwrap();
    match store.begin_effect(&key).await.unwrap() {
        PriorEffect::Done(r) => assert_eq!((r.status, r.body.as_slice()), (201, &b"ok"[..])),
        other => panic!("expected the recorded response, got {other:?}"),
    }
    let moved = EffectKey { step: "other".into(), ..key.clone() };
    assert!(matches!(store.begin_effect(&moved).await.unwrap(), PriorEffect::Unknown), "another step there");

    // Retention: nothing young goes; with limits of zero, runs and answers do.
    let pruned = store.prune(&Retention::default(), now() * 1000).await.unwrap();
    assert_eq!((pruned.runs, pruned.answers), (0, 0));
    let none_kept = Retention { history_max_runs: 0, max_answers: 0, ..Retention::default() };
    let pruned = store.prune(&none_kept, now() * 1000).await.unwrap();
    // run-1 and the four runs of the one-batch write.
    assert_eq!((pruned.runs, pruned.answers), (5, 1));
    assert!(store.run(&run_1).await.unwrap().is_none());
    assert!(store.answer(&c, &m("m-1")).await.unwrap().is_none());

    // Signed requests' ids: once per sender within the window; a retry (same body, later
    // timestamp) goes on, a replay or another body does not; an expired one is new again, and
    // retention forgets it.
    use tern_engine::channel_auth::{Sighting, SignedRequest};
    let seen: Arc<dyn tern_engine::channel_auth::SeenWebhookIds> = store.clone();
    let t = now() * 1000;
    let ts = now();
    let req = |scope: &'static str, body: &'static str, signed_at: i64, expires: i64| SignedRequest {
        scope,
        id: "msg-1",
        body_sha256: body,
        signed_at,
        expires_at_ms: expires,
    };
    let at = |r: SignedRequest<'static>, now_ms: i64| {
        let seen = seen.clone();
        async move { seen.sighting(&r, now_ms).await.unwrap() }
    };
    assert_eq!(at(req("support", "aa", ts, t + 600_000), t).await, Sighting::Accepted);
    assert_eq!(at(req("support", "aa", ts, t + 600_000), t + 1).await, Sighting::Replayed, "a replay");
    assert_eq!(at(req("support", "aa", ts - 1, t + 600_000), t + 1).await, Sighting::Replayed, "an older one");
    assert_eq!(at(req("support", "bb", ts + 1, t + 600_000), t + 1).await, Sighting::Reused, "another body");
    assert_eq!(at(req("support", "aa", ts + 2, t + 602_000), t + 2).await, Sighting::Accepted, "a retry");
    assert_eq!(at(req("support", "aa", ts + 2, t + 602_000), t + 3).await, Sighting::Replayed, "the retry replayed");
    // Refused for now (overloaded) and forgotten: the same bytes again go through, once.
    seen.forget_webhook_id("support", "msg-1").await.unwrap();
    assert_eq!(at(req("support", "aa", ts + 2, t + 602_000), t + 4).await, Sighting::Accepted, "after forgetting");
    assert_eq!(at(req("support", "aa", ts + 2, t + 602_000), t + 5).await, Sighting::Replayed);
    assert_eq!(at(req("sales", "aa", ts, t + 600_000), t).await, Sighting::Accepted, "another sender");
    assert_eq!(at(req("integration:crm", "aa", ts, t + 600_000), t).await, Sighting::Accepted);
    assert_eq!(at(req("support", "bb", ts, t + 1_200_000), t + 602_000).await, Sighting::Accepted, "expired");
    assert_eq!(at(req("support", "bb", ts, t + 1_200_000), t + 602_001).await, Sighting::Replayed);
    store.prune(&Retention::default(), t + 1_200_000).await.unwrap();
    assert_eq!(at(req("sales", "cc", ts, t + 2_000_000), t + 1_200_000).await, Sighting::Accepted, "pruned");
    // A sender with as many live ids as are kept per sender has its new ids refused until a
    // pass finds fewer; the other senders go on.
    let one_each = Retention { max_webhook_ids_per_sender: 1, ..Retention::default() };
    store.prune(&one_each, t + 1_200_001).await.unwrap();
    let other = |scope: &'static str| SignedRequest { id: "msg-2", ..req(scope, "dd", ts, t + 2_000_000) };
    assert_eq!(at(other("sales"), t + 1_200_002).await, Sighting::Replayed, "sales is full");
    assert_eq!(at(other("support"), t + 1_200_002).await, Sighting::Accepted, "support is not");
    store.prune(&Retention::default(), t + 1_200_003).await.unwrap();
    assert_eq!(at(other("sales"), t + 1_200_004).await, Sighting::Accepted, "room again");
}

/// The rate-limit bucket that instances share: a new key starts full and each key has its
/// own; takes wait for the refill; an API's hold stops every take until it ends (a shorter hold
/// does not cut a longer one); and takes at the same instant from many tasks are serialized
/// (exactly the burst goes).
pub async fn run_rate_bucket_suite(bucket: Arc<dyn tern_engine::http::limit::SharedBucket>) {
    use tern_engine::rates::Rate;
    let ms = Duration::from_millis;
    let rate = Some(Rate { per_second: 2.0, burst: 2.0 });
    let t = now() * 1000;
    assert_eq!(bucket.take("crm", rate, t).await.unwrap(), None);
    assert_eq!(bucket.take("crm", rate, t).await.unwrap(), None, "the burst");
    assert_eq!(bucket.take("crm", rate, t).await.unwrap(), Some(ms(500)), "two a second");
    assert_eq!(bucket.take("other", rate, t).await.unwrap(), None, "another key has its own bucket");
    assert_eq!(bucket.take("crm", rate, t + 500).await.unwrap(), None, "refilled");
    assert_eq!(bucket.take("crm", rate, t + 400).await.unwrap(), Some(ms(500)), "a clock behind adds nothing");
    bucket.hold("crm", t + 5_000).await.unwrap();
    bucket.hold("crm", t + 1_000).await.unwrap();
    assert_eq!(bucket.take("crm", rate, t + 2_000).await.unwrap(), Some(ms(3_000)), "the longer hold is kept");
    assert_eq!(bucket.take("crm", rate, t + 5_000).await.unwrap(), None, "after the hold");
    assert_eq!(bucket.take("api", None, t).await.unwrap(), None, "no rate: only holds limit");
    bucket.hold("api", t + 1_000).await.unwrap();
    assert_eq!(bucket.take("api", None, t).await.unwrap(), Some(ms(1_000)));
    let slow = Some(Rate { per_second: 0.001, burst: 5.0 });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let bucket = bucket.clone();
        tasks.spawn(async move { bucket.take("burst", slow, t).await.unwrap() });
    }
    let went = tasks.join_all().await.into_iter().filter(Option::is_none).count();
    assert_eq!(went, 5, "20 takes at once on a bucket of 5: 5 go");
}

/// Notices (deliveries of no conversation, such as connection events): queued once per id
/// however often written (two instances, a restart), due at once with their own id as the
/// `webhook-id`, remembered after they are sent, forgotten by retention (and queued again),
/// and sealed at rest (the text `notice-secret-words` must not appear in plaintext: the
/// callers check).
pub async fn run_notice_suite(store: &dyn tern_engine::conversation::ConversationStore) {
    use tern_engine::channel::{ChannelName, ChannelRef};
    use tern_engine::conversation::{Notice, Retention, WriteOp};
    let before = store.outbox_len().await.unwrap();
    let ops = ChannelRef::named(ChannelName::new("ops").unwrap());
    let notice = Notice {
        id: "conn_0123456789abcdef0123456789abcdef".into(),
        channel: ops.clone(),
        body: json!({"type": "integration.needs_reauthorization", "data": {"reason": "notice-secret-words"}}),
    };
    let write = |n: &Notice| WriteOp::Notify(Box::new(n.clone()));
    store.write(&[write(&notice)]).await.unwrap();
    store.write(&[write(&notice), write(&notice)]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), before + 1, "queued once");
    let due = store.outbox_due(now() * 1000 + 1_000, 100).await.unwrap();
    let item = due.iter().find(|i| i.id == notice.id).expect("the notice is due, under its own id");
    assert_eq!((&item.channel, &item.body), (&ops, &notice.body));
    // Another notice is not held back by the first one (no conversation orders them).
    let second = Notice { id: "conn_second".into(), ..notice.clone() };
    store.write(&[write(&second)]).await.unwrap();
    let due = store.outbox_due(now() * 1000 + 2_000, 100).await.unwrap();
    assert!(due.iter().any(|i| i.id == second.id), "a second notice goes while the first is in flight");
    store.outbox_remove(&notice.id).await.unwrap();
    store.outbox_remove(&second.id).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), before);
    // Sent, and still remembered: the same condition found again is not sent again.
    store.write(&[write(&notice)]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), before, "remembered after it was sent");
    store.prune(&Retention::default(), now() * 1000 + 10_000).await.unwrap();
    store.write(&[write(&notice)]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), before, "remembered within the retention");
    let forget = Retention { notices_max_age_ms: 0, ..Retention::default() };
    store.prune(&forget, now() * 1000 + 10_000).await.unwrap();
    store.write(&[write(&notice)]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), before + 1, "queued again once forgotten");
}

/// Paused runs' timers ([`ConversationStore::timers_due`](tern_engine::conversation::ConversationStore::timers_due)):
/// due ones claimed most overdue first, each once until its lease ends (then again), a claim
/// dropped when the paused run is written again, a timer gone with its paused run, and
/// claims released at start-up only on a store with one process.
pub async fn run_timer_suite(store: &dyn tern_engine::conversation::ConversationStore) {
    use tern_engine::conversation::{Completion, ConversationId, PausedChange, PausedRun, WriteOp};
    let t = now() * 1000;
    let pause = |c: &ConversationId, run: &str, wake: Option<i64>| {
        let snapshot = serde_json::from_value(json!({
            "run_id": run, "flow_id": "f", "step": "s", "variables": {}, "executed_steps": 1,
            "paused_with": null, "wake_at_ms": wake
        }))
        .unwrap();
        let paused = PausedRun {
            format: tern_engine::conversation::PAUSED_FORMAT,
            flow_hash: "h".into(),
            snapshot,
            started_at_ms: t,
            expires_at: now() + 3600,
        };
        WriteOp::Complete(Box::new(Completion {
            paused: PausedChange::Set(Box::new(paused)),
            ..no_run_completion(c, &format!("m-{run}"))
        }))
    };
    let (a, b, c) = (
        ConversationId::new("timer-a").unwrap(),
        ConversationId::new("timer-b").unwrap(),
        ConversationId::new("timer-c").unwrap(),
    );
    store
        .write(&[pause(&a, "run-a", Some(t + 2_000)), pause(&b, "run-b", Some(t + 1_000)), pause(&c, "run-c", None)])
        .await
        .unwrap();
    let mine = |due: Vec<tern_engine::conversation::DueTimer>| {
        due.into_iter()
            .filter(|d| d.conversation.as_str().starts_with("timer-"))
            .map(|d| (d.conversation.as_str().to_string(), d.run_id.to_string(), d.due_at_ms))
            .collect::<Vec<_>>()
    };
    assert!(mine(store.timers_due(t + 500, 10, 60_000).await.unwrap()).is_empty(), "nothing due yet");
    let due = mine(store.timers_due(t + 5_000, 10, 60_000).await.unwrap());
    assert_eq!(
        due,
        [("timer-b".into(), "run-b".into(), t + 1_000), ("timer-a".into(), "run-a".into(), t + 2_000)],
        "most overdue first; a paused run without a timer is never due"
    );
    assert!(mine(store.timers_due(t + 6_000, 10, 60_000).await.unwrap()).is_empty(), "claimed: not again");
    let again = mine(store.timers_due(t + 65_001, 1, 60_000).await.unwrap());
    assert_eq!(again.len(), 1, "once the lease ends it is due again, within the limit");
    // Written again (the timer fired and the run paused anew): a new, unclaimed timer.
    store.write(&[pause(&b, "run-b", Some(t + 3_000))]).await.unwrap();
    let rewritten = mine(store.timers_due(t + 66_000, 10, 60_000).await.unwrap());
    assert!(rewritten.contains(&("timer-b".into(), "run-b".into(), t + 3_000)), "{rewritten:?}");
    // Ended: the timer goes with the paused run.
    let end = |c: &ConversationId| {
        WriteOp::Complete(Box::new(Completion { paused: PausedChange::Clear, ..no_run_completion(c, "m-end") }))
    };
    store.write(&[end(&a), end(&b), end(&c)]).await.unwrap();
    store.write(&[pause(&c, "run-c2", Some(t + 1_000))]).await.unwrap();
    assert_eq!(mine(store.timers_due(t + 200_000, 10, 60_000).await.unwrap()).len(), 1, "only the new one");
    store.release_timer_claims().await.unwrap();
    let released = mine(store.timers_due(t + 200_001, 10, 60_000).await.unwrap());
    if store.is_shared() {
        assert!(released.is_empty(), "another instance may be firing it: the claim stays");
    } else {
        assert_eq!(released.len(), 1, "the only process's claims are released at start-up");
    }
    store.write(&[end(&c)]).await.unwrap();
}

/// A web chat's transcript: each finished message's entries numbered after the last, read
/// from any entry on, kept apart per conversation, at most
/// [`MAX_ENTRIES`](tern_engine::web_chat::transcript::MAX_ENTRIES) per conversation, sealed (the
/// text `transcript-secret-words` must not appear in plaintext in the database afterwards: the
/// callers check), and pruned once no session can read it.
pub async fn run_transcript_suite(store: &dyn tern_engine::conversation::ConversationStore) {
    use tern_engine::conversation::{Completion, ConversationId, Retention, WriteOp};
    use tern_engine::web_chat::transcript::MAX_ENTRIES;
    use tern_engine::web_chat::{Entry, Speaker};
    let entry = |from: Speaker, text: &str| Entry {
        seq: 0,
        at_ms: 0,
        from,
        message_id: "m".into(),
        text: text.into(),
        choices: vec![tern_engine::step::Choice::new("Yes", "yes")],
        run_id: None,
    };
    let complete = |c: &ConversationId, id: &str, entries: Vec<Entry>| {
        WriteOp::Complete(Box::new(Completion {
            channel: tern_engine::channel::ChannelRef::named(tern_engine::channel::ChannelName::new("site").unwrap()),
            transcript: entries,
            ..no_run_completion(c, id)
        }))
    };
    let a = ConversationId::new("channel:site:aaaa").unwrap();
    let b = ConversationId::new("channel:site:bbbb").unwrap();
    assert!(store.transcript(&a, 0, 10).await.unwrap().is_empty());
    store
        .write(&[
            complete(&a, "m-1", vec![entry(Speaker::Contact, "hi"), entry(Speaker::Bot, "transcript-secret-words")]),
            complete(&b, "m-1", vec![entry(Speaker::Contact, "other visitor")]),
            complete(&a, "m-2", vec![entry(Speaker::Contact, "again")]),
        ])
        .await
        .unwrap();
    let got = store.transcript(&a, 0, 10).await.unwrap();
    let shown: Vec<(i64, Speaker, &str)> = got.iter().map(|e| (e.seq, e.from, e.text.as_str())).collect();
    assert_eq!(
        shown,
        [(1, Speaker::Contact, "hi"), (2, Speaker::Bot, "transcript-secret-words"), (3, Speaker::Contact, "again")]
    );
    assert!(got.iter().all(|e| e.at_ms > 0 && e.choices.len() == 1), "stamped by the store, choices kept");
    assert_eq!(store.transcript(&a, 2, 10).await.unwrap().len(), 1, "after an entry");
    assert_eq!(store.transcript(&a, 0, 2).await.unwrap().len(), 2, "at most the limit");
    let other = store.transcript(&b, 0, 10).await.unwrap();
    assert_eq!(other.iter().map(|e| (e.seq, e.text.as_str())).collect::<Vec<_>>(), [(1, "other visitor")]);
    // Bounded per conversation: the oldest go first, the numbers go on.
    let many: Vec<Entry> = (0..MAX_ENTRIES).map(|i| entry(Speaker::Bot, &format!("line {i}"))).collect();
    store.write(&[complete(&a, "m-3", many)]).await.unwrap();
    let kept = store.transcript(&a, 0, usize::MAX >> 1).await.unwrap();
    assert_eq!(kept.len() as i64, MAX_ENTRIES);
    assert_eq!(kept.first().map(|e| e.seq), Some(4));
    assert_eq!(kept.last().map(|e| (e.seq, e.text.as_str())), Some((MAX_ENTRIES + 3, "line 499")));
    // Pruned once no session can read it.
    let session_ms = tern_engine::web_chat::session::SESSION_TTL_S * 1000;
    store.prune(&Retention::default(), now() * 1000 + session_ms - 60_000).await.unwrap();
    assert_eq!(store.transcript(&b, 0, 10).await.unwrap().len(), 1, "still within a session's life");
    store.prune(&Retention::default(), now() * 1000 + session_ms + 60_000).await.unwrap();
    assert!(store.transcript(&a, 0, 10).await.unwrap().is_empty());
    assert!(store.transcript(&b, 0, 10).await.unwrap().is_empty());
    // Kept for the callers' check that no text is in plaintext.
    store.write(&[complete(&b, "m-9", vec![entry(Speaker::Bot, "transcript-secret-words")])]).await.unwrap();
    assert_eq!(store.transcript(&b, 0, 10).await.unwrap()[0].text, "transcript-secret-words");
}

/// A boxed, sendable future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Opens a store with `keys` (a fresh one the first time, the same database after).
pub type Opener<'a> = &'a (dyn Fn(crate::crypto::Keyring) -> BoxFuture<Result<Arc<dyn Backend>, StoreError>> + Sync);

/// A store made with one key refuses another (fail closed), and after a rotation (new key
/// current, old key kept) every value is readable with the new key alone.
pub async fn fails_closed_and_rotates(open: Opener<'_>) {
    use crate::crypto::{Keyring, MasterKey};
    let (key, key_text) = MasterKey::generate();
    {
        let store = open(Keyring::new(key)).await.unwrap();
        store.put_secret("S", &SecretString::from("value-before-rotation".to_string())).await.unwrap();
        store.put_channel(&rotated_channel()).await.unwrap();
    }
    let (other, _) = MasterKey::generate();
    let err = open(Keyring::new(other)).await.expect_err("a wrong key must be refused");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("TERN_MASTER_KEY"));
    let (new, new_text) = MasterKey::generate();
    let ring = Keyring::new(new).with_older(MasterKey::from_base64(&key_text, "old").unwrap());
    let store = open(ring).await.unwrap();
    assert!(store.reencrypt_all().await.unwrap() >= 3, "the secret, the channel and the key check");
    drop(store);
    let only_new = Keyring::new(MasterKey::from_base64(&new_text, "new").unwrap());
    let store = open(only_new).await.unwrap();
    assert_eq!(store.all_secrets().await.unwrap()[0].1.expose_secret(), "value-before-rotation");
    let channel = store.get_channel(&rotated_channel().name).await.unwrap().unwrap();
    assert_eq!(channel.channel.inbound.tokens[0].expose_secret(), "token-before-rotation");
}

fn rotated_channel() -> tern_engine::channel::Channel {
    use tern_engine::channel::{Channel, ChannelKind, ChannelName, Delivery, InboundAuth};
    Channel {
        name: ChannelName::new("rotated").unwrap(),
        incarnation: None,
        kind: ChannelKind::Generic,
        inbound: InboundAuth {
            tokens: vec![SecretString::from("token-before-rotation".to_string())],
            ..Default::default()
        },
        delivery: Delivery::default(),
        platform: None,
        web: None,
    }
}

/// The server the PostgreSQL tests use: `TERN_TEST_DATABASE_URL`, else the local server's
/// `postgres` database over TCP (what `.ci/run` starts).
pub fn admin_url() -> String {
    std::env::var("TERN_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The test run databases are created for: `TERN_TEST_RUN` (letters and digits, at most 16, so that the name fits PostgreSQL's 63 bytes;
/// `scripts/test` sets one per run and drops that run's databases at its end), else `adhoc`.
fn test_run() -> String {
    std::env::var("TERN_TEST_RUN")
        .ok()
        .map(|r| r.chars().filter(char::is_ascii_alphanumeric).take(16).collect::<String>().to_ascii_lowercase())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "adhoc".into())
}

/// A throw-away PostgreSQL database, created on the server of [`admin_url`] and dropped by
/// [`PgTestDb::drop_db`]. It is named `tern_test_<run>_<uuid>` (see [`test_run`]): one a failed
/// test left behind is dropped at the end of its own run (`scripts/postgres --drop-run RUN`),
/// never by another run sharing the server.
pub struct PgTestDb {
    /// The database's URL.
    pub url: DatabaseUrl,
    name: String,
}

impl PgTestDb {
    /// Creates the database.
    ///
    /// # Panics
    /// The server cannot be reached: the message says how to point the tests at one.
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach the PostgreSQL server for tests ({e}); start it (.ci/run does) or set TERN_TEST_DATABASE_URL=postgres://USER@HOST:PORT/postgres"
            )
        });
        let name = format!("tern_test_{}_{}", test_run(), uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        Self { url: DatabaseUrl::parse(url.as_str()).unwrap(), name }
    }

    /// The URL with its password, for a test's own connection.
    pub fn raw_url(&self) -> String {
        self.url.expose().to_string()
    }

    /// Drops the database (sessions still connected to it are ended first).
    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await;
            let _ = conn.close().await;
        }
    }
}

/// Runs every check of the channel store against `store` (one without channels). Its secret
/// values (`channel-token-1`, the `whsec_` secrets below, `hook-password-1`) must not appear in
/// plaintext anywhere in the database afterwards (the callers check).
pub async fn run_channel_suite(store: &dyn tern_engine::channel::ChannelStore) {
    use tern_engine::channel::{Channel, ChannelKind, ChannelName, Delivery, InboundAuth};
    use tern_engine::standard_webhooks::WebhookSecret;
    let name = ChannelName::new("support").unwrap();
    assert!(store.get_channel(&name).await.unwrap().is_none());
    assert!(store.list_channels().await.unwrap().is_empty());
    let signing = WebhookSecret::parse(CHANNEL_SIGNING_SECRET).unwrap();
    let hook = WebhookSecret::parse(CHANNEL_WEBHOOK_SECRET).unwrap();
    let channel = Channel {
        name: name.clone(),
        incarnation: None,
        kind: ChannelKind::Generic,
        inbound: InboundAuth {
            tokens: vec![SecretString::from("channel-token-1".to_string())],
            signing_secrets: vec![signing.clone()],
            open: true,
        },
        delivery: Delivery {
            webhook_url: Some(url::Url::parse("https://bot:hook-password-1@example.com/replies").unwrap()),
            webhook_secret: Some(hook.clone()),
        },
        platform: None,
        web: None,
    };
    store.put_channel(&channel).await.unwrap();
    let got = store.get_channel(&name).await.unwrap().unwrap();
    assert_eq!(got.channel.name, name);
    assert_eq!(got.channel.kind, ChannelKind::Generic);
    assert_eq!(got.channel.inbound.tokens.len(), 1);
    assert_eq!(got.channel.inbound.tokens[0].expose_secret(), "channel-token-1");
    assert_eq!(got.channel.inbound.signing_secrets[0].to_whsec(), signing.to_whsec());
    assert!(!got.channel.inbound.open, "`open` is never stored: only a start-up flag sets it");
    assert_eq!(got.channel.delivery.webhook_url, channel.delivery.webhook_url);
    assert_eq!(got.channel.delivery.webhook_secret.unwrap().to_whsec(), hook.to_whsec());
    assert!(got.created_at > 0 && got.updated_at >= got.created_at);

    // Saving again replaces the settings and keeps the creation time.
    let mut replaced = channel.clone();
    replaced.inbound.tokens.clear();
    replaced.delivery = Delivery::default();
    store.put_channel(&replaced).await.unwrap();
    let got2 = store.get_channel(&name).await.unwrap().unwrap();
    assert!(got2.channel.inbound.tokens.is_empty());
    assert_eq!(got2.channel.inbound.signing_secrets.len(), 1);
    assert!(got2.channel.delivery.webhook_url.is_none() && got2.channel.delivery.webhook_secret.is_none());
    assert_eq!(got2.created_at, got.created_at);
    // The first save made an incarnation; saving again keeps it.
    let incarnation = got.channel.incarnation.clone().expect("a stored channel has an incarnation");
    assert_eq!(got2.channel.incarnation.as_ref(), Some(&incarnation));
    // The first version again, for the callers' plaintext checks.
    store.put_channel(&channel).await.unwrap();

    let other = ChannelName::new("alerts").unwrap();
    store.put_channel(&Channel { name: other.clone(), ..channel.clone() }).await.unwrap();
    let names: Vec<String> =
        store.list_channels().await.unwrap().into_iter().map(|c| c.channel.name.to_string()).collect();
    assert_eq!(names, ["alerts", "support"]);
    assert!(store.remove_channel(&other).await.unwrap());
    assert!(!store.remove_channel(&other).await.unwrap());
    assert!(store.get_channel(&other).await.unwrap().is_none());
    assert_eq!(store.list_channels().await.unwrap().len(), 1);
    // A platform channel keeps its settings, encrypted like every other.
    let bot = ChannelName::new("tgbot").unwrap();
    let telegram = tern_engine::platforms::telegram::Telegram {
        secret_token: SecretString::from("tg-secret-token-1".to_string()),
        bot_token: SecretString::from("123456:ABCdefGHIjklMNOpqrSTUvwxyz0123".to_string()),
        api_base: url::Url::parse("https://api.telegram.org").unwrap(),
    };
    store
        .put_channel(&Channel {
            name: bot.clone(),
            incarnation: None,
            kind: ChannelKind::Telegram,
            inbound: InboundAuth::default(),
            delivery: Delivery::default(),
            platform: Some(tern_engine::platforms::Platform::Telegram(telegram)),
            web: None,
        })
        .await
        .unwrap();
    let got_bot = store.get_channel(&bot).await.unwrap().unwrap().channel;
    assert_eq!(got_bot.kind, ChannelKind::Telegram);
    let Some(tern_engine::platforms::Platform::Telegram(t)) = &got_bot.platform else { panic!("{got_bot:?}") };
    assert_eq!(t.bot_token.expose_secret(), "123456:ABCdefGHIjklMNOpqrSTUvwxyz0123");
    assert_eq!(t.secret_token.expose_secret(), "tg-secret-token-1");
    assert_eq!(t.api_base.as_str(), "https://api.telegram.org/");
    assert!(store.remove_channel(&bot).await.unwrap());
    let number = ChannelName::new("wa").unwrap();
    let whatsapp = tern_engine::platforms::whatsapp::WhatsApp {
        app_secret: SecretString::from("0123456789abcdef0123456789abcdef".to_string()),
        verify_token: SecretString::from("verify-token-0123456789".to_string()),
        phone_number_id: "106540352242922".into(),
        integration: tern_engine::IntegrationName::new("meta").unwrap(),
        api_base: url::Url::parse("https://graph.facebook.com/v23.0").unwrap(),
    };
    store
        .put_channel(&Channel {
            name: number.clone(),
            incarnation: None,
            kind: ChannelKind::Whatsapp,
            inbound: InboundAuth::default(),
            delivery: Delivery::default(),
            platform: Some(tern_engine::platforms::Platform::WhatsApp(whatsapp)),
            web: None,
        })
        .await
        .unwrap();
    let got_number = store.get_channel(&number).await.unwrap().unwrap().channel;
    let Some(tern_engine::platforms::Platform::WhatsApp(w)) = &got_number.platform else { panic!("{got_number:?}") };
    assert_eq!(w.app_secret.expose_secret(), "0123456789abcdef0123456789abcdef");
    assert_eq!(w.verify_token.expose_secret(), "verify-token-0123456789");
    assert_eq!((w.phone_number_id.as_str(), w.integration.as_str()), ("106540352242922", "meta"));
    assert_eq!(w.api_base.as_str(), "https://graph.facebook.com/v23.0");
    assert!(store.remove_channel(&number).await.unwrap());
    // A web chat: its origins and its session key (sealed), which still verifies its tokens.
    let site = ChannelName::new("site").unwrap();
    let web = tern_engine::web_chat::WebChat {
        origins: vec![tern_engine::web_chat::Origin::parse("https://shop.example").unwrap()],
        session_key: tern_engine::web_chat::SessionKey::generate(),
        same_origin: false,
    };
    let (session, token) = web.session_key.issue("site", 1_000);
    store
        .put_channel(&Channel {
            name: site.clone(),
            incarnation: None,
            kind: ChannelKind::Web,
            inbound: InboundAuth::default(),
            delivery: Delivery::default(),
            platform: None,
            web: Some(web),
        })
        .await
        .unwrap();
    let got_site = store.get_channel(&site).await.unwrap().unwrap().channel;
    assert_eq!(got_site.kind, ChannelKind::Web);
    let got_web = got_site.web.expect("web settings");
    assert!(got_web.allows("https://shop.example") && !got_web.allows("https://evil.example"));
    assert_eq!(got_web.session_key.verify("site", &token, 1_001), Ok(session));
    assert!(store.remove_channel(&site).await.unwrap());
    // Removed and added again under the same name, a channel is a new incarnation.
    let first = got.channel.incarnation.clone();
    assert!(store.remove_channel(&name).await.unwrap());
    store.put_channel(&channel).await.unwrap();
    let again = store.get_channel(&name).await.unwrap().unwrap();
    assert!(again.channel.incarnation.is_some() && again.channel.incarnation != first);
}

/// The signing secret [`run_channel_suite`] stores.
pub const CHANNEL_SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The webhook secret [`run_channel_suite`] stores.
pub const CHANNEL_WEBHOOK_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXdlYmhvb2stMDE=";

/// A finished message of `conversation` without a run, committed under the conversation
/// lock's fencing token `fence` ([`Completion::fence`]), remembering its answer.
///
/// # Panics
/// `message_id` is not a valid message id.
pub fn fenced_completion(
    conversation: &tern_engine::conversation::ConversationId,
    message_id: &str,
    fence: Option<i64>,
) -> tern_engine::conversation::WriteOp {
    tern_engine::conversation::WriteOp::Complete(Box::new(tern_engine::conversation::Completion {
        remember_answer: true,
        fence,
        ..no_run_completion(conversation, message_id)
    }))
}

/// A finished message of `conversation` in the `default` channel that started no run: nothing
/// remembered, kept, delivered or fenced (tests set what they need with struct update).
///
/// # Panics
/// `message_id` is not a valid message id.
pub fn no_run_completion(
    conversation: &tern_engine::conversation::ConversationId,
    message_id: &str,
) -> tern_engine::conversation::Completion {
    use tern_engine::conversation::{Answer, AnswerStatus, Answered, Completion, MessageId, PausedChange};
    let message_id = MessageId::new(message_id).unwrap();
    Completion {
        channel: tern_engine::channel::ChannelRef::named(tern_engine::channel::ChannelName::default_channel()),
        conversation: conversation.clone(),
        message_id: message_id.clone(),
        remember_answer: false,
        accepted: false,
        answer: Answered::new(Answer::without_run(AnswerStatus::NoFlow, &message_id)),
        digest: None,
        paused: PausedChange::Keep,
        history: Vec::new(),
        outbox: None,
        fence: None,
        transcript: Vec::new(),
    }
}
