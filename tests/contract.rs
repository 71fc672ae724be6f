//! The HTTP API against its OpenAPI document (`docs/openapi.json`, served at `/openapi.json`):
//! a live `tern serve` on 127.0.0.1 serves the committed document, and `schemathesis` (the
//! Python package; `scripts/test` installs it in a virtual environment under
//! `~/.cache/tern-schemathesis`) sends a bounded number of generated requests to every operation
//! and fails on any 5xx or any answer (status, content type, headers, body) that the document
//! does not describe.
//!
//! Faults of this kind are fixed in the server for every route, and the inputs kept in
//! [`every_error_answer_is_json`]: the integrations page's 401 challenge and axum's own
//! rejections (a path that is not UTF-8, a body over 64 KiB, a malformed query or form) were
//! `text/plain`, and unknown paths and wrong methods had empty bodies (schemathesis reports
//! them as ST105, an undocumented content type); a malformed query or form was answered before
//! the admin check; a message nested as deep as serde_json parses was accepted and then could
//! not be read back from the store (found by the `message_body` fuzz target).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::tools::{Tool, available};
use crate::support::{Flows, free_port, fresh_data_dir, repo, tern};

/// Generated requests per operation and phase (`--max-examples`).
const MAX_EXAMPLES: &str = "50";

/// Longest a schemathesis run may take before the test kills it.
const RUN_BOUND: Duration = Duration::from_secs(600);

/// schemathesis, pinned in `scripts/test`.
const SCHEMATHESIS: Tool = Tool {
    name: "schemathesis",
    programs: &["schemathesis"],
    files: &[],
    install: "python3 -m venv ~/.cache/tern-schemathesis && ~/.cache/tern-schemathesis/bin/pip install schemathesis==4.32.5",
};

/// The schemathesis program: the one `scripts/test` installs, else one on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tern-schemathesis/bin/schemathesis"));
    if let Some(v) = venv.filter(|v| v.is_file()) {
        return Some(v);
    }
    available("the API contract test", &[&SCHEMATHESIS]).then(|| PathBuf::from("schemathesis"))
}

/// Flows that complete, pause, fail and catch everything else, so that generated messages reach
/// every kind of answer.
fn flows() -> Flows {
    let flows = Flows::new();
    flows.write(
        "hello",
        &json!({"version": 1, "id": "hello", "trigger": {"type": "message", "match": {"regex": "^hello"}, "priority": 10},
            "steps": [{"id": "say", "type": "send_message", "text": "hi {{message.text}}"}]}),
    );
    flows.write(
        "ask",
        &json!({"version": 1, "id": "ask", "trigger": {"type": "message", "match": {"regex": "^ask"}, "priority": 10},
        "steps": [
            {"id": "wait", "type": "ask", "text": "what?", "save_as": "answer"},
            {"id": "say", "type": "send_message", "text": "got {{answer}}"}
        ]}),
    );
    flows.write(
        "fail",
        &json!({"version": 1, "id": "fail", "trigger": {"type": "message", "match": {"regex": "^fail"}, "priority": 10},
            "steps": [{"id": "call", "type": "http_request", "request": {"method": "GET", "url": "http://127.0.0.1:1/nothing"}}]}),
    );
    flows.write(
        "echo",
        &json!({"version": 1, "id": "echo", "trigger": {"type": "message", "priority": -1},
            "steps": [{"id": "say", "type": "send_message", "text": "you said {{message.text}}"}]}),
    );
    flows
}

fn start() -> (Server, Flows) {
    let flows = flows();
    let port = free_port();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TERN_SECRET_FROM_ENV", "env-secret-value")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--flows", flows.dir.path().to_str().unwrap()]);
    (Server::spawn(cmd), flows)
}

/// Puts an integration and a secret, so that the lists have entries to check, and runs a flow
/// that fails; returns that run's id, for `GET /v1/runs/{id}`.
fn seed(base: &str) -> String {
    rt().block_on(async {
        let client = reqwest::Client::new();
        let auth = format!("Bearer {ADMIN}");
        let r = client
            .put(format!("{base}/v1/integrations/crm"))
            .header("authorization", &auth)
            .json(
                &json!({"authorization_url": "https://crm.example/authorize", "token_url": "https://crm.example/token",
                "client_id": "tern", "client_secret": "s3cret-client", "api_origins": ["https://api.crm.example"],
                "scopes": ["read"], "event_identifier": "account.id", "account_field": "account_id"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = client
            .put(format!("{base}/v1/secrets/API_KEY"))
            .header("authorization", &auth)
            .json(&json!({"value": "k-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = client
            .post(format!("{base}/v1/conversations/seed/messages"))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "fail now", "message_id": "seed-1"}))
            .send()
            .await
            .unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["status"], "failed", "{answer}");
        answer["run_id"].as_str().unwrap().to_string()
    })
}

/// schemathesis's configuration: the admin token as a bearer token for the JSON API, the
/// `default` channel's token for the message routes (the channel routes on the `default`
/// channel), and a run that exists for `GET /v1/runs/{id}`. (The console's HTML pages are not
/// in the document; integration events need a signature schemathesis cannot make, so they are
/// checked for their documented 401.)
fn config(run_id: &str) -> String {
    let channel = crate::support::CHANNEL_TOKEN;
    format!(
        r#"headers = {{ Authorization = "Bearer {ADMIN}" }}

[[operations]]
include-path = "/v1/runs/{{id}}"
parameters = {{ "path.id" = "{run_id}" }}

[[operations]]
include-path-regex = "^/v1/conversations/"
headers = {{ Authorization = "Bearer {channel}" }}

[[operations]]
include-path-regex = "^/v1/channels/"
headers = {{ Authorization = "Bearer {channel}" }}
parameters = {{ "path.name" = "default" }}
"#
    )
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Option<String>, Value) {
    let r = client.get(url).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = r.text().await.unwrap();
    (status, ct, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn the_server_serves_the_committed_document() {
    let (server, _flows) = start();
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap()).unwrap();
    rt().block_on(async {
        let client = reqwest::Client::new();
        let (status, ct, served) = get(&client, &format!("{}/openapi.json", server.url), ADMIN).await;
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some("application/json"));
        assert_eq!(served, committed, "GET /openapi.json differs from docs/openapi.json");
        assert_eq!(served["openapi"], "3.1.0");
    });
}

/// What schemathesis found, kept: every error answer is the JSON error body, whatever produced
/// it.
#[test]
fn every_error_answer_is_json() {
    let (server, _flows) = start();
    let base = &server.url;
    rt().block_on(async {
        let client = reqwest::Client::new();
        let channel = crate::support::CHANNEL_TOKEN;
        let cases = [
            (format!("{base}/v1/runs/%FF"), 400, ADMIN),
            (format!("{base}/v1/conversations/%FF/messages/m"), 400, channel),
            (format!("{base}/v1/conversations/%FF/messages/m"), 401, ADMIN),
            (format!("{base}/v1/channels/%FF/conversations/c/messages/m"), 401, channel),
            (format!("{base}/no/such/route"), 404, ADMIN),
            (format!("{base}/oauth/callback?state=a&state=b"), 400, ADMIN),
        ];
        for (url, expected, token) in &cases {
            let (status, ct, body) = get(&client, url, token).await;
            assert_eq!(status, *expected, "{url}: {body}");
            assert_eq!(ct.as_deref(), Some("application/json"), "{url}");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{url}: {body}");
        }
        // A wrong method.
        let r = client.delete(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
        // A body over the limit on a route that reads the body itself.
        let r = client
            .put(format!("{base}/v1/secrets/BIG"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(vec![b' '; 70 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
        // The console without a session: to the sign-in page, whatever the query.
        let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = no_redirect.get(format!("{base}/?error=a&error=b")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"));
        // A message nested deeper than the stored records can hold.
        let deep = format!(r#"{{"text": "x", "k": {}{}}}"#, "[".repeat(100), "]".repeat(100));
        let r = client
            .post(format!("{base}/v1/conversations/c/messages"))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .header("content-type", "application/json")
            .body(deep)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "too-deep");
    });
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(program) = schemathesis() else { return };
    let (server, _flows) = start();
    let run_id = seed(&server.url);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("schemathesis.toml"), config(&run_id)).unwrap();
    let started = Instant::now();
    let mut child = Command::new(&program)
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "1", "--no-color", "--generation-database", "none"])
        .args(["--phases", "examples,coverage,fuzzing", "--max-redirects", "0", "--request-timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = {
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > RUN_BOUND {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        let status = status.unwrap_or_else(|| panic!("schemathesis ran past {RUN_BOUND:?}:\n{out}\n{err}"));
        assert!(status.success(), "schemathesis reported failures ({status}):\n{out}\n{err}");
        (out, err)
    };
    eprintln!("schemathesis passed in {:.0?}:\n{out}{err}", started.elapsed());
    assert!(out.contains("passed"), "schemathesis printed no summary:\n{out}\n{err}");
}
