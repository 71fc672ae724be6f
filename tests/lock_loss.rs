//! Two `tern serve` instances on one PostgreSQL database while the database drops their
//! connections (README "Running several instances", "A lost lock"): `pg_terminate_backend`
//! on random sessions of the instances (lock sessions, pooled query connections, waiting
//! connections) every few dozen milliseconds, and once an outage that ends every session and
//! refuses new ones for two seconds (what a restart or failover does to the instances).
//!
//! Conversations of many messages are in flight on both instances: each message is sent to
//! both at the same moment (a platform's retry reaching the other instance while the first
//! still works on it), and re-sent with the same id after an error, as a channel does. Each reply is
//! the conversation's whole log so far, so a message that ran on another message's stale state
//! (a lost update) shows in its reply. Afterwards every conversation's history holds exactly
//! the answered messages, in order, each once.
//!
//! Without fencing (a run under a lost lock committed anyway) this lost updates in every
//! conversation; the numbers of each run (faults injected, reruns after a lost lock) are
//! printed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use sqlx::Connection;
use tern_store::testing::{PgTestDb, admin_url};

use crate::instances::serve_logged;
use crate::serve::{ADMIN, Server, rt};
use crate::support::{CHANNEL_TOKEN, Flows, TestApi};

const CONVERSATIONS: usize = 24;
/// Rounds of faults (every 20–120 ms); the conversations go on until they are over.
const FAULT_ROUNDS: usize = 160;
/// The round of the outage.
const OUTAGE_ROUND: usize = 60;

/// `begin` starts a log; every later message is appended to it after a slow call (the window
/// in which a lock can be lost), and the reply is the whole log.
fn flows(api: &TestApi) -> Flows {
    let flows = Flows::new();
    flows.write(
        "log",
        &json!({"version": 1, "id": "log", "trigger": {"type": "message", "match": {"regex": "^begin$"}}, "steps": [
            {"id": "init", "type": "set_variables", "variables": {"log": ""}},
            {"id": "wait", "type": "ask", "text": "ready", "save_as": "m"},
            {"id": "slow", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{}/tickets?delay_ms=25", api.url()),
                         "headers": {"Idempotency-Key": "{{conversation.id}}-{{message.id}}"}},
             "variables": {"ticket": "id"}},
            {"id": "add", "type": "set_variables", "variables": {"log": "{{log}}|{{m}}"}},
            {"id": "say", "type": "send_message", "text": "{{log}}", "next": "wait"}
        ]}),
    );
    flows
}

/// Posts the message to the instances in turn until one answers 200; re-sends it (same id)
/// after a connection error, a 5xx or a 202, as a channel does. Returns the answer.
async fn send(client: &reqwest::Client, urls: &[String], first: usize, conversation: &str, body: &Value) -> Value {
    for attempt in 0..200 {
        let url = &urls[(first + attempt) % urls.len()];
        let sent = client
            .post(format!("{url}/v1/conversations/{conversation}/messages"))
            .bearer_auth(CHANNEL_TOKEN)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => return r.json().await.unwrap(),
            Ok(r) if r.status() == 202 || r.status().is_server_error() => {}
            Ok(r) => panic!("{conversation}: {} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50 + 10 * attempt.min(50) as u64)).await;
    }
    panic!("{conversation}: no instance answered {body}");
}

/// Ends sessions of the test database: each with probability `share`. Returns how many.
async fn terminate(admin: &mut sqlx::PgConnection, database: &str, share: f64) -> usize {
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid() AND random() < $2",
    )
    .bind(database)
    .bind(share)
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    ended.into_iter().filter(|e| *e).count()
}

#[test]
fn no_acknowledged_message_is_lost_when_the_database_drops_connections() {
    let rt = rt();
    let db = rt.block_on(PgTestDb::create());
    let database = url::Url::parse(&db.raw_url()).unwrap().path().trim_start_matches('/').to_string();
    let key = tern_store::crypto::MasterKey::generate().1.to_string();
    let api = TestApi::start();
    let flows = flows(&api);
    let logs = tempfile::tempdir().unwrap();
    let log_paths: Vec<_> = (0..2).map(|i| logs.path().join(format!("tern-{i}.log"))).collect();
    let servers: Vec<Server> =
        log_paths.iter().map(|log| serve_logged(&db, &key, flows.dir.path(), Some(log))).collect();
    let urls: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.url.clone()).collect());

    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(AtomicUsize::new(0));
        let injector = {
            let (faults, database) = (faults.clone(), database.clone());
            tokio::spawn(async move {
                let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
                let mut rounds = 0usize;
                while rounds < FAULT_ROUNDS {
                    let pause = rand::thread_rng().gen_range(20..120);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    rounds += 1;
                    if rounds == OUTAGE_ROUND {
                        // An outage: every session ends, and new ones are refused for 2 s.
                        let block = format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false");
                        sqlx::query(&block).execute(&mut admin).await.unwrap();
                        faults.fetch_add(terminate(&mut admin, &database, 1.0).await, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let open = format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true");
                        sqlx::query(&open).execute(&mut admin).await.unwrap();
                    } else {
                        faults.fetch_add(terminate(&mut admin, &database, 0.15).await, Ordering::Relaxed);
                    }
                }
                let _ = admin.close().await;
                rounds
            })
        };

        let mut tasks = Vec::new();
        for c in 0..CONVERSATIONS {
            let (client, urls, done) = (client.clone(), urls.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let conversation = format!("log-{c}");
                let first = send(&client, &urls, c, &conversation, &json!({"text": "begin", "message_id": "m-0"})).await;
                assert_eq!(first["replies"][0]["text"], "ready", "{conversation}: {first}");
                let mut expected = String::new();
                let mut sent = 0;
                while !done.load(Ordering::Relaxed) {
                    let i = sent + 1;
                    let body = json!({"text": format!("m{i}"), "message_id": format!("m-{i}")});
                    // Sent to both instances at once (a platform's retry reaching another
                    // instance while the first still works): one runs it, the other gets its
                    // answer.
                    let (a, b) = tokio::join!(
                        send(&client, &urls, c + i, &conversation, &body),
                        send(&client, &urls, c + i + 1, &conversation, &body)
                    );
                    expected.push_str(&format!("|m{i}"));
                    for answer in [&a, &b] {
                        assert_eq!(answer["replies"][0]["text"], expected.as_str(), "{conversation}: a lost update: {answer}");
                    }
                    assert_eq!(a["run_id"], b["run_id"], "{conversation}: one answer for one message");
                    sent = i;
                }
                (first["run_id"].as_str().unwrap().to_string(), sent)
            }));
        }
        let rounds = injector.await.unwrap();
        done.store(true, Ordering::Relaxed);
        let mut runs = Vec::new();
        for t in tasks {
            runs.push(t.await.unwrap());
        }

        // History: the first activation and every later message, once each, in order.
        let mut seen = HashSet::new();
        for (c, (run_id, sent)) in runs.iter().enumerate() {
            let expected: Vec<String> = (0..=*sent).map(|i| format!("m-{i}")).collect();
            assert!(seen.insert(run_id.clone()), "one run per conversation");
            let run = loop {
                let r = client.get(format!("{}/v1/runs/{run_id}", urls[c % 2])).bearer_auth(ADMIN).send().await;
                if let Ok(r) = r
                    && r.status() == 200
                {
                    break r.json::<Value>().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let messages: Vec<&str> =
                run["segments"].as_array().unwrap().iter().map(|s| s["message_id"].as_str().unwrap()).collect();
            assert_eq!(messages, expected, "log-{c}: each answered message once, in order");
        }
        let reruns: usize = log_paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default().matches("handling it again").count())
            .sum();
        eprintln!(
            "lock loss: {} sessions ended in {rounds} rounds (one a 2 s outage), {} messages in {CONVERSATIONS} conversations, {reruns} reruns after a lost lock; lost 0, duplicated 0, lost updates 0",
            faults.load(Ordering::Relaxed),
            runs.iter().map(|(_, sent)| sent + 1).sum::<usize>(),
        );
        assert!(faults.load(Ordering::Relaxed) > 0, "no session was ended: the test tested nothing");
    });
    drop(servers);
    rt.block_on(db.drop_db());
}
