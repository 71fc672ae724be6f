//! Paused runs' timers through `tern serve`, in real time: a reminder and a timeout reach the
//! channel's webhook signed (verified by the Standard Webhooks reference library), and `kill -9`
//! while a timer's run calls an API loses nothing and sends nothing twice.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, post, rt};
use crate::support::{TestApi, free_port, fresh_data_dir};

fn serve(data: &Path, flows: &Path, extra: &[&str]) -> Server {
    Server::spawn(crate::deliveries::serve_cmd(data, flows, extra))
}

fn write_flow(dir: &Path, flow: &Value) {
    std::fs::write(dir.join(format!("{}.json", flow["id"].as_str().unwrap())), flow.to_string()).unwrap();
}

/// An unanswered question's reminder and timeout go out through the webhook outbox like any
/// reply: each delivery verifies with the Python reference library. (The timeout is 3 s after
/// the reminder, more than the 1 s polling: a reminder found due only after the timeout would
/// be skipped, as the contact is not sent overdue reminders.)
#[test]
fn a_reminder_and_a_timeout_reach_the_webhook_signed() {
    let flows = tempfile::tempdir().unwrap();
    write_flow(
        flows.path(),
        &json!({"version": 1, "id": "order", "trigger": {"type": "message", "match": {"keywords": ["order"]}},
        "steps": [
          {"id": "number", "type": "ask", "text": "Your order number?", "save_as": "order",
           "reminders": [{"after": "1s", "text": "Still there?"}], "timeout": "4s", "on_timeout": "bye"},
          {"id": "thanks", "type": "send_message", "text": "Thanks", "next": "end"},
          {"id": "bye", "type": "send_message", "text": "No answer, closing."}
        ]}),
    );
    let secret = tern_engine::standard_webhooks::WebhookSecret::generate().to_whsec();
    let port = free_port();
    let Some(receiver) = crate::deliveries::python_receiver(port, &secret) else { return };
    let hook = format!("http://127.0.0.1:{port}/hook");
    let server = serve(&fresh_data_dir(), flows.path(), &["--webhook-url", &hook, "--webhook-secret", &secret]);
    let client = reqwest::Client::new();
    let answer = rt().block_on(async {
        let (status, answer) = post(&client, &server.url, "c-1", json!({"text": "order", "message_id": "m-1"})).await;
        assert_eq!(status, 200, "{answer}");
        answer
    });
    assert_eq!(answer["status"], "paused");
    let mut texts = Vec::new();
    for _ in 0..3 {
        let report = receiver.next();
        assert_eq!(report["verified"], true, "{report}");
        assert_eq!(report["body"]["conversation_id"], "c-1", "{report}");
        assert_eq!(report["body"]["run_id"], answer["run_id"], "one run: {report}");
        texts.push(report["body"]["replies"][0]["text"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(texts, ["Your order number?", "Still there?", "No answer, closing."]);
}

/// Gets a run's history through the admin API.
async fn history(client: &reqwest::Client, server: &Server, run_id: &str) -> Value {
    let url = format!("{}/v1/runs/{run_id}", server.url);
    client.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
}

/// `kill -9` while the run a timer resumed waits for an API's answer to a POST: after the
/// restart the timer fires again (the claim of the dead process is released at start-up), the
/// journal knows the POST may have happened, so it is not sent again (`outcome-unknown`), and
/// history has the firing.
#[test]
fn kill_9_while_a_timer_s_run_calls_an_api_sends_nothing_twice() {
    let api = TestApi::start();
    let flows = tempfile::tempdir().unwrap();
    write_flow(
        flows.path(),
        &json!({"version": 1, "id": "later", "trigger": {"type": "message", "match": {"keywords": ["later"]}},
        "steps": [
          {"id": "pause", "type": "wait", "for": "1s"},
          {"id": "open", "type": "http_request",
           "request": {"method": "POST", "url": format!("{}/slow", api.url()), "body": {"subject": "follow-up"}}},
          {"id": "done", "type": "send_message", "text": "Opened"}
        ]}),
    );
    let data = fresh_data_dir();
    let mut server = serve(&data, flows.path(), &[]);
    let client = reqwest::Client::new();
    let rt = rt();
    let answer = rt.block_on(async {
        let (status, answer) = post(&client, &server.url, "k-1", json!({"text": "later", "message_id": "m-1"})).await;
        assert_eq!(status, 200, "{answer}");
        answer
    });
    assert_eq!(answer["status"], "paused");
    let posts = || api.requests().iter().filter(|r| r.uri.starts_with("/slow") && r.method == "POST").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while posts() == 0 {
        assert!(Instant::now() < deadline, "the timer never fired");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();

    let server = serve(&data, flows.path(), &[]);
    let run_id = answer["run_id"].as_str().unwrap();
    let run = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = history(&client, &server, run_id).await;
            if run["status"] != "paused" {
                return run;
            }
            assert!(Instant::now() < deadline, "the timer did not fire again after the restart: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(posts(), 1, "the POST was not sent a second time");
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert!(last["message_id"].as_str().unwrap().starts_with("tern-timer-"), "{last}");
    assert_eq!(last["error"]["code"], "outcome-unknown", "{last}");
    assert!(last["event"]["timer"]["late_ms"].as_i64().unwrap() >= 0, "{last}");
}
