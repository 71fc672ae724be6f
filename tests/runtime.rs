//! The conversation runtime under real conditions: a channel that gives up waiting, a provider
//! that is slow while it rotates refresh tokens, runs longer than the reply wait (202 and a URL
//! to fetch the answer), retention, the webhook outbox with a channel that is down, and
//! `kill -9` at random points.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, post, rt};
use crate::support::{TestApi, free_port, fresh_data_dir, tern};

/// A flow that opens a ticket (a POST that takes `delay_ms`) and says its number.
fn ticket_flow(api: &TestApi, delay_ms: u64, idempotency_key: bool) -> Value {
    let mut request = json!({"method": "POST", "url": format!("{}/tickets?delay_ms={delay_ms}", api.url()),
        "body": {"subject": "{{message.text}}"}});
    if idempotency_key {
        request["headers"] = json!({"Idempotency-Key": "{{conversation.id}}-{{message.id}}"});
    }
    json!({"version": 1, "id": "tickets", "trigger": {"type": "message", "match": {"regex": "^open"}},
    "steps": [
      {"id": "open", "type": "fetch_variables", "request": request, "variables": {"ticket": "id"}},
      {"id": "say", "type": "send_message", "text": "Ticket {{ticket}} opened."}
    ]})
}

fn flows_with(flow: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.json"), flow.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn serve(data: &Path, flows: &Path, extra: &[&str]) -> Server {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .args(extra);
    Server::spawn(cmd)
}

fn tickets_opened(api: &TestApi) -> usize {
    api.requests().iter().filter(|r| r.uri.starts_with("/tickets")).count()
}

#[test]
fn a_channel_that_gives_up_loses_nothing_and_its_resend_gets_the_first_answer() {
    let api = TestApi::start();
    let (_keep, flows) = flows_with(&ticket_flow(&api, 1500, false));
    let server = serve(&fresh_data_dir(), &flows, &[]);
    let rt = rt();
    rt.block_on(async {
        let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
        let url = format!("{}/v1/conversations/c-1/messages", server.url);
        let gave_up = impatient
            .post(&url)
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "open", "message_id": "m-1"}))
            .send()
            .await;
        assert!(gave_up.is_err(), "the channel timed out and disconnected");
        // The channel sends m-1 again while the run is still going: it waits for that run.
        let client = reqwest::Client::new();
        let (status, again) = post(&client, &server.url, "c-1", json!({"text": "open", "message_id": "m-1"})).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["replies"][0]["text"], "Ticket T-1 opened.", "{again}");
        assert_eq!(tickets_opened(&api), 1, "the API was called once");
        // And once more after the run: the remembered answer, no new call.
        let (_, third) = post(&client, &server.url, "c-1", json!({"text": "open", "message_id": "m-1"})).await;
        assert_eq!(third, again);
        assert_eq!(tickets_opened(&api), 1);
        // The run is in history with its message and trace.
        let run = fetch_run(&client, &server.url, again["run_id"].as_str().unwrap()).await;
        assert_eq!(run["status"], "completed");
        assert_eq!(run["conversation_id"], "c-1");
        assert_eq!(run["segments"][0]["message"], "open");
        assert_eq!(run["segments"][0]["message_id"], "m-1");
        assert!(run["started_at_ms"].as_i64().unwrap() > 0 && run["finished_at_ms"].as_i64().is_some(), "{run}");
    });
}

/// Polls `GET /v1/runs/{id}` until the run is there (history of a run without state to keep
/// is committed in the writer's next batch, moments after the answer).
pub(crate) async fn fetch_run(client: &reqwest::Client, base: &str, id: &str) -> Value {
    for _ in 0..200 {
        let resp = client.get(format!("{base}/v1/runs/{id}")).bearer_auth(ADMIN).send().await.unwrap();
        if resp.status().is_success() {
            return resp.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {id} never appeared in the history");
}

#[test]
fn a_run_longer_than_the_reply_wait_is_accepted_and_its_answer_fetched_later() {
    let api = TestApi::start();
    let (_keep, flows) = flows_with(&ticket_flow(&api, 2500, false));
    let server = serve(&fresh_data_dir(), &flows, &["--reply-wait", "1"]);
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}/v1/conversations/c-9/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "open"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "running");
        assert_eq!(body["answer_url"], location);
        assert!(body["message_id"].as_str().unwrap().starts_with("tern-"), "a generated id: {body}");
        let mut answer = Value::Null;
        for _ in 0..200 {
            let r = client
                .get(format!("{}{location}", server.url))
                .bearer_auth(crate::support::CHANNEL_TOKEN)
                .send()
                .await
                .unwrap();
            if r.status().as_u16() == 200 {
                answer = r.json().await.unwrap();
                break;
            }
            assert_eq!(r.status().as_u16(), 202, "running until answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(answer["replies"][0]["text"], "Ticket T-1 opened.", "{answer}");
        let unknown = client
            .get(format!("{}/v1/conversations/c-9/messages/nope", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 404);
    });
}

#[test]
fn a_dropped_request_still_stores_the_rotated_refresh_token() {
    use crate::support::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};
    let auth = AuthServer::start();
    let flow = json!({"version": 1, "id": "crm", "trigger": {"type": "message", "match": {"regex": "^crm$"}},
    "steps": [
      {"id": "lookup", "type": "fetch_variables", "integration": "crm",
       "request": {"method": "POST", "url": format!("{}/api/contacts.info", auth.url()), "body": {"id": "c1a2"}},
       "variables": {"last_name": "data.last_name"}},
      {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
    ]});
    let (_keep, flows) = flows_with(&flow);
    let data = fresh_data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (authorize, token) = (format!("{}/authorize", auth.url()), format!("{}/token", auth.url()));
    let out = tern()
        .env("TERN_DATA_DIR", &data)
        .env("TERN_PUBLIC_URL", &base)
        .env("CS", CLIENT_SECRET)
        .args(["integrations", "add", "crm", "--client-id", CLIENT_ID, "--client-secret-env", "CS"])
        .args(["--authorization-url", &authorize, "--token-url", &token, "--api-origin", &auth.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_PUBLIC_URL", &base)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--flows", flows.to_str().unwrap()]);
    let server = Server::spawn(cmd);
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        crate::serve::authorize_crm(&client, &server.url).await;
        // The access token is revoked and the provider answers the refresh only after 1.5 s;
        // the channel gives up after 0.3 s.
        auth.revoke_access_tokens();
        auth.set(|f| f.token_delay = Duration::from_millis(1500));
        let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
        let gave_up = impatient
            .post(format!("{}/v1/conversations/c/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "crm"}))
            .send()
            .await;
        assert!(gave_up.is_err());
        // The refresh finishes and commits the rotated refresh token anyway.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
            if m.contains("tern_token_requests_total{integration=\"crm\",outcome=\"refreshed\"} 1") {
                break;
            }
            assert!(Instant::now() < deadline, "the refresh never completed: {m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        auth.set(|f| f.token_delay = Duration::ZERO);
        let (status, answer) = post(&client, &server.url, "c2", json!({"text": "crm"})).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replies"][0]["text"], "Hello Bachman", "the rotated refresh token was kept: {answer}");
        assert_eq!(auth.token_requests("refresh_token"), 1, "one refresh, not a second one with a dead token");
        let list = crate::serve::admin_get(&client, &server.url, "/v1/integrations").await;
        assert_eq!(list["integrations"][0]["status"], "authorized", "{list}");
    });
}

#[test]
fn retention_keeps_the_newest_runs_only() {
    let api = TestApi::start();
    let (_keep, flows) = flows_with(&ticket_flow(&api, 0, false));
    let data = fresh_data_dir();
    let server = serve(&data, &flows, &["--history-max-runs", "3"]);
    let rt = rt();
    let client = reqwest::Client::new();
    let runs: Vec<String> = rt.block_on(async {
        let mut runs = Vec::new();
        for i in 0..8 {
            let (status, a) = post(&client, &server.url, &format!("r-{i}"), json!({"text": "open"})).await;
            assert_eq!(status, 200, "{a}");
            runs.push(a["run_id"].as_str().unwrap().to_string());
        }
        fetch_run(&client, &server.url, &runs[7]).await;
        runs
    });
    drop(server);
    // Retention runs when the server starts (and every minute).
    let server = serve(&data, &flows, &["--history-max-runs", "3"]);
    rt.block_on(async {
        let status = |id: String| {
            let client = client.clone();
            let url = format!("{}/v1/runs/{id}", server.url);
            async move { client.get(url).bearer_auth(ADMIN).send().await.unwrap().status().as_u16() }
        };
        let mut kept = Vec::new();
        for _ in 0..100 {
            kept.clear();
            for id in &runs {
                kept.push(status(id.clone()).await);
            }
            if kept.iter().filter(|s| **s == 200).count() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(kept, vec![404, 404, 404, 404, 404, 200, 200, 200], "the three newest runs are kept");
    });
}

#[test]
fn webhook_deliveries_wait_for_a_channel_that_is_down() {
    use std::sync::{Arc, Mutex};
    // The channel refuses the first three deliveries (503), then accepts.
    let received: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let log = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let log = log.clone();
                    async move {
                        let mut log = log.lock().unwrap();
                        let status = if log.len() < 3 { 503 } else { 200 };
                        log.push((status, body));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    let hook = format!("http://{}/hook", rx.recv().unwrap());
    let api = TestApi::start();
    let (_keep, flows) = flows_with(&ticket_flow(&api, 0, false));
    let server = serve(&fresh_data_dir(), &flows, &["--webhook-url", &hook]);
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let (status, answer) = post(&client, &server.url, "w-1", json!({"text": "open", "message_id": "w"})).await;
        assert_eq!(status, 200, "{answer}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = received.lock().unwrap().clone();
            if let Some((_, body)) = seen.iter().find(|(s, _)| *s == 200) {
                assert_eq!(seen.len(), 4, "three refusals, then the delivery: {seen:?}");
                assert_eq!(body["conversation_id"], "w-1");
                assert_eq!(body["replies"][0]["text"], "Ticket T-1 opened.");
                assert_eq!(body["run_id"], answer["run_id"]);
                break;
            }
            assert!(Instant::now() < deadline, "never delivered: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// SQLite's own integrity check of a data directory's store (Python's sqlite3 module).
fn integrity_check(data: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])",
        ])
        .arg(data.join("tern.db"))
        .output()
        .expect("python3 runs the integrity check");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kill -9` at random points while conversations post tickets. After every restart: every
/// answer the channel received is given again for its message id, no ticket is opened twice
/// for one message (an API call with an Idempotency-Key may be repeated, with the same key; one
/// without is never repeated), and the store passes SQLite's integrity check.
#[test]
fn kill_9_at_random_points_loses_no_acknowledged_message_and_repeats_no_call() {
    use std::collections::HashMap;
    let iterations: usize = std::env::var("TERN_KILL_LOOP").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let api = TestApi::start();
    let dir = tempfile::tempdir().unwrap();
    let mut keyed = ticket_flow(&api, 20, true);
    keyed["id"] = json!("keyed");
    keyed["trigger"]["match"]["regex"] = json!("^key");
    std::fs::write(dir.path().join("plain.json"), ticket_flow(&api, 20, false).to_string()).unwrap();
    std::fs::write(dir.path().join("keyed.json"), keyed.to_string()).unwrap();
    let data = fresh_data_dir();
    let rt = rt();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // message id -> the answer the channel received (acknowledged)
    let mut acknowledged: HashMap<String, Value> = HashMap::new();
    let mut outcome_unknown = 0;
    for i in 0..iterations {
        let server = serve(&data, dir.path(), &[]);
        let kill_after = Duration::from_millis(rand::random::<u64>() % 120);
        let sent: Vec<(String, String, String)> = (0..4)
            .map(|k| {
                let text = if k % 2 == 0 { "open" } else { "key" };
                (format!("k-{}", k), format!("m-{i}-{k}"), text.to_string())
            })
            .collect();
        let answers = rt.block_on(async {
            let posts = sent.iter().map(|(conv, id, text)| {
                let client = client.clone();
                let url = format!("{}/v1/conversations/{conv}/messages", server.url);
                let body = json!({"text": text, "message_id": id});
                async move {
                    let resp =
                        client.post(url).bearer_auth(crate::support::CHANNEL_TOKEN).json(&body).send().await.ok()?;
                    (resp.status().as_u16() == 200).then_some(())?;
                    resp.json::<Value>().await.ok()
                }
            });
            let all = futures_util::future::join_all(posts);
            tokio::select! {
                a = all => Some(a),
                _ = tokio::time::sleep(kill_after) => None,
            }
        });
        if let Some(answers) = answers {
            for ((_, id, _), a) in sent.iter().zip(answers) {
                if let Some(a) = a {
                    acknowledged.insert(id.clone(), a);
                }
            }
        }
        drop(server); // SIGKILL
        assert_eq!(integrity_check(&data), "ok", "iteration {i}");
        // The channel sends again what it has no answer for, and the others too (a retry storm):
        // acknowledged answers come back unchanged.
        let server = serve(&data, dir.path(), &[]);
        rt.block_on(async {
            for (conv, id, text) in &sent {
                let (status, a) = post(&client, &server.url, conv, json!({"text": text, "message_id": id})).await;
                assert_eq!(status, 200, "iteration {i}, {id}: {a}");
                if let Some(first) = acknowledged.get(id) {
                    assert_eq!(&a, first, "iteration {i}: an acknowledged answer changed");
                }
                if a["error"]["code"] == "outcome-unknown" {
                    outcome_unknown += 1;
                } else {
                    assert_eq!(a["status"], "completed", "iteration {i}: {a}");
                }
                acknowledged.insert(id.clone(), a);
            }
        });
        drop(server);
        assert_eq!(integrity_check(&data), "ok", "iteration {i}");
    }
    // No ticket was opened twice for a message without an Idempotency-Key; keyed ones may be
    // re-sent, always with their key.
    let plain_calls = api
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with("/tickets") && r.header("idempotency-key").is_none())
        .count();
    let plain_messages = acknowledged.iter().filter(|(_, a)| a["flow_id"] == "tickets").count();
    assert!(
        plain_calls <= plain_messages,
        "{plain_calls} unkeyed calls for {plain_messages} messages: a call was repeated"
    );
    eprintln!(
        "kill -9 loop: {iterations} iterations, {} messages, {outcome_unknown} outcome-unknown",
        acknowledged.len()
    );
}

#[test]
fn channels_post_what_they_have_and_flows_read_it_as_metadata() {
    let flow = json!({"version": 1, "id": "meta", "trigger": {"type": "message"},
      "steps": [{"id": "say", "type": "send_message",
                 "text": "{{message.text}} via {{message.metadata.channel}} ({{message.metadata.locale}})"}]});
    let (_keep, flows) = flows_with(&flow);
    let server = serve(&fresh_data_dir(), &flows, &[]);
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}/v1/conversations/m-1/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .header("content-type", "application/json; charset=utf-8")
            .body(
                json!({"text": "hi", "channel": "whatsapp", "timestamp": 1764480000,
                       "metadata": {"locale": "nl-BE"}, "contact": {"id": "u"}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let a: Value = resp.json().await.unwrap();
        assert_eq!(a["replies"][0]["text"], "hi via whatsapp (nl-BE)", "{a}");
        // Known fields keep their types and sizes.
        let (status, body) = post(&client, &server.url, "m-1", json!({"text": "hi", "contact": "u"})).await;
        assert_eq!(status, 422, "{body}");
        let (status, body) = post(&client, &server.url, "m-1", json!({"text": "hi", "message_id": ""})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "bad-id");
        let resp = client
            .post(format!("{}/v1/conversations/m-1/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .header("content-type", "text/plain")
            .body("{\"text\": \"hi\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415);
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("content-type application/json"), "{body}");
    });
}
