//! The conversation edge, end to end: the real `tern serve` on 127.0.0.1 with the `default`
//! channel's token and signing secrets, requests signed by the reference Python library
//! (`standardwebhooks`, pinned in `scripts/test`, in a virtual environment under
//! `~/.cache/tern-standardwebhooks`), and an attacker without credentials.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::{CHANNEL_TOKEN, Flows, fresh_data_dir, tern};

/// The pinned version (also in `scripts/test`).
const STANDARDWEBHOOKS: &str = "1.3.0";

/// Python with the reference `standardwebhooks` package, or `None` (the test is skipped, or
/// fails under `TERN_TEST_REQUIRE_TOOLS=1`).
fn reference_python() -> Option<PathBuf> {
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tern-standardwebhooks/bin/python"));
    if let Some(python) = venv.filter(|p| p.is_file()) {
        let check =
            format!("import importlib.metadata as m; assert m.version('standardwebhooks') == '{STANDARDWEBHOOKS}'");
        if Command::new(&python).args(["-c", &check]).status().is_ok_and(|s| s.success()) {
            return Some(python);
        }
    }
    let message = format!(
        "the Standard Webhooks test needs the Python package standardwebhooks=={STANDARDWEBHOOKS} (install with `python3 -m venv ~/.cache/tern-standardwebhooks && ~/.cache/tern-standardwebhooks/bin/pip install standardwebhooks=={STANDARDWEBHOOKS}`). `scripts/test` installs everything the tests need"
    );
    if std::env::var_os("TERN_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{message}");
    }
    eprintln!("\nSKIPPED {message}.\n");
    None
}

/// Signs with the reference library: for each `[name, secret, id, age_secs, body]` in `cases`,
/// the headers `Webhook(secret).sign` gives for a timestamp `age_secs` before now.
fn reference_signatures(python: &Path, cases: &Value) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timedelta, timezone
from standardwebhooks.webhooks import Webhook
out = {}
for name, secret, msg_id, age, body in json.loads(sys.argv[1]):
    at = datetime.now(tz=timezone.utc) - timedelta(seconds=age)
    out[name] = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }
print(json.dumps(out))
"#;
    let out = Command::new(python).args(["-c", SCRIPT, &cases.to_string()]).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn flows() -> Flows {
    let flows = Flows::new();
    flows.write(
        "echo",
        &json!({"version": 1, "id": "echo", "trigger": {"type": "message"},
            "steps": [{"id": "say", "type": "send_message", "text": "you said {{message.text}}"}]}),
    );
    flows
}

/// `tern serve` with `args`, its JSON log going to `log`.
fn start(flows: &Flows, log: &tempfile::NamedTempFile, args: &[&str]) -> Server {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env_remove("TERN_CHANNEL_TOKEN")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows"])
        .arg(flows.dir.path())
        .args(args)
        .stderr(log.reopen().unwrap());
    Server::spawn_keeping_stderr(cmd)
}

/// The `reason`s of the server's "refused a channel request" log lines, in order, once there
/// are `n` of them.
fn refusals(log: &tempfile::NamedTempFile, n: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(log.path()).unwrap();
        reasons = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "refused a channel request")
            .map(|l| l["fields"]["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        if reasons.len() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    reasons
}

async fn post_signed(client: &reqwest::Client, base: &str, headers: &Value, body: &str) -> (u16, Value) {
    let mut req = client
        .post(format!("{base}/v1/conversations/c-signed/messages"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers.as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[test]
fn requests_signed_by_the_reference_library_are_accepted_and_each_bad_one_is_refused_for_its_reason() {
    let Some(python) = reference_python() else { return };
    let (current, retiring, wrong) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "whsec_dGhpcyBpcyBub3QgdGhlIGNoYW5uZWwncyBrZXk=",
    );
    let body = json!({"text": "hello", "message_id": "m-1"}).to_string();
    let other = json!({"text": "hello", "message_id": "m-2"}).to_string();
    let unnumbered = json!({"text": "once"}).to_string();
    let signed = reference_signatures(
        &python,
        &json!([
            ["valid", current, "msg_valid", 0, body],
            ["tampered", current, "msg_tampered", 0, body],
            ["wrong_secret", wrong, "msg_wrong", 0, other],
            ["old", current, "msg_old", 600, other],
            ["missing", current, "msg_missing", 0, other],
            ["rotation", retiring, "msg_rotation", 0, other],
            ["retired", retiring, "msg_retired", 0, other],
            // A sender's retry: the same id and body (without a message id of its own), signed
            // again later; then the same id with another body.
            ["first", current, "msg_first", 5, unnumbered],
            ["first_retry", current, "msg_first", 0, unnumbered],
            ["reused", current, "msg_first", 0, other],
        ]),
    );
    let flows = flows();
    let log = tempfile::NamedTempFile::new().unwrap();
    // During a rotation the channel accepts the new and the old secret.
    let server = start(&flows, &log, &["--channel-secret", &format!("{current},{retiring}")]);
    let client = reqwest::Client::new();
    let unauthorized = rt().block_on(async {
        let (status, answer) = post_signed(&client, &server.url, &signed["valid"], &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replies"][0]["text"], "you said hello");
        let (status, answer) = post_signed(&client, &server.url, &signed["rotation"], &other).await;
        assert_eq!(status, 200, "the old secret during a rotation: {answer}");
        // The retry gets the first answer: the message took the `webhook-id` as its id, and
        // the run is not repeated.
        let (status, first) = post_signed(&client, &server.url, &signed["first"], &unnumbered).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["message_id"], "msg_first");
        let (status, retried) = post_signed(&client, &server.url, &signed["first_retry"], &unnumbered).await;
        assert_eq!(status, 200, "a retry is not a replay: {retried}");
        assert_eq!((&retried["run_id"], &retried["replies"]), (&first["run_id"], &first["replies"]));

        let mut missing = signed["missing"].clone();
        missing.as_object_mut().unwrap().remove("webhook-signature");
        let tampered = json!({"text": "hello!", "message_id": "m-1"}).to_string();
        let refused = [
            (&signed["valid"], body.as_str()),
            (&signed["tampered"], tampered.as_str()),
            (&signed["wrong_secret"], other.as_str()),
            (&signed["old"], other.as_str()),
            (&missing, other.as_str()),
            (&signed["first"], unnumbered.as_str()),
            (&signed["first_retry"], unnumbered.as_str()),
            (&signed["reused"], other.as_str()),
        ];
        let mut answers = Vec::new();
        for (headers, body) in refused {
            let (status, answer) = post_signed(&client, &server.url, headers, body).await;
            assert_eq!(status, 401, "{headers}: {answer}");
            answers.push(answer);
        }
        assert!(answers.iter().all(|a| *a == answers[0]), "every refusal is the same answer: {answers:?}");
        assert_eq!(answers[0]["code"], "unauthorized");
        answers.remove(0)
    });
    assert_eq!(
        refusals(&log, 8),
        [
            "replayed-webhook-id",
            "signature-mismatch",
            "signature-mismatch",
            "signature-too-old",
            "signature-header-missing",
            "replayed-webhook-id",
            "replayed-webhook-id",
            "webhook-id-reused"
        ]
    );
    let text = std::fs::read_to_string(log.path()).unwrap();
    for secret in [current, retiring, wrong] {
        let key = secret.trim_start_matches("whsec_");
        assert!(!text.contains(key), "a secret in the log");
    }
    drop(server);

    // After the rotation the old secret is refused, with its reason and the same answer.
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = start(&flows, &log, &["--channel-secret", current]);
    rt().block_on(async {
        let (status, answer) = post_signed(&client, &server.url, &signed["retired"], &other).await;
        assert_eq!(status, 401);
        assert_eq!(answer, unauthorized);
    });
    assert_eq!(refusals(&log, 1), ["signature-mismatch"]);
}

/// What an attacker gets: status, body and the headers that could differ.
async fn attempt(req: reqwest::RequestBuilder) -> (u16, String, Option<String>) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), challenge)
}

#[test]
fn an_attacker_without_credentials_can_neither_run_nor_read_nor_probe() {
    let flows = flows();
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = start(&flows, &log, &["--channel-token", CHANNEL_TOKEN]);
    let base = server.url.clone();
    let client = reqwest::Client::new();
    rt().block_on(async {
        // The channel's own message and its answer.
        let r = client
            .post(format!("{base}/v1/conversations/c-1/messages"))
            .bearer_auth(CHANNEL_TOKEN)
            .json(&json!({"text": "my private data", "contact": {"id": "k-1"}, "message_id": "m-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["replies"][0]["text"], "you said my private data");

        let post = |path: &str, auth: Option<&str>, text: &str| {
            let mut req = client.post(format!("{base}{path}")).json(&json!({"text": text, "message_id": "m-1"}));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req
        };
        let wrong = format!("Bearer {ADMIN}");
        let attempts = [
            // Start a run, in an existing conversation and a new one.
            post("/v1/conversations/c-1/messages", None, "attack"),
            post("/v1/conversations/c-new/messages", None, "attack"),
            post("/v1/conversations/c-1/messages", Some(&wrong), "attack"),
            post("/v1/conversations/c-1/messages", Some("Bearer "), "attack"),
            // Reuse the message id with other text (to get the first answer, or drop it).
            post("/v1/conversations/c-1/messages", Some("Bearer testkit-channel-token"), "my private data"),
            // Probe for channels.
            post("/v1/channels/default/conversations/c-1/messages", None, "attack"),
            post("/v1/channels/no-such-channel/conversations/c-1/messages", None, "attack"),
            post(
                "/v1/channels/no-such-channel/conversations/c-1/messages",
                Some(&format!("Bearer {CHANNEL_TOKEN}")),
                "x",
            ),
            // Read the answer, or probe for conversations and messages.
            client.get(format!("{base}/v1/conversations/c-1/messages/m-1")),
            client.get(format!("{base}/v1/conversations/c-1/messages/m-404")),
            client.get(format!("{base}/v1/conversations/c-404/messages/m-1")),
            client.get(format!("{base}/v1/channels/default/conversations/c-1/messages/m-1")),
            client.get(format!("{base}/v1/channels/nobody/conversations/c-1/messages/m-1")),
            client.get(format!("{base}/v1/conversations/c-1/messages/m-1")).header("authorization", &wrong),
        ];
        let mut seen = Vec::new();
        for req in attempts {
            let got = attempt(req).await;
            assert_eq!(got.0, 401, "{got:?}");
            assert!(!got.1.contains("private"), "{got:?}");
            seen.push(got);
        }
        assert!(seen.iter().all(|s| *s == seen[0]), "every answer is the same: {seen:?}");

        // Nothing was run: the history holds the channel's one run, and the answer is still the
        // first one.
        let runs: Value =
            client.get(format!("{base}/v1/runs")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
        let again: Value = client
            .get(format!("{base}/v1/conversations/c-1/messages/m-1"))
            .bearer_auth(CHANNEL_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(again["replies"], answer["replies"]);

        // Integration events: unsigned, for an integration that exists or not, the same 401.
        let a = attempt(client.post(format!("{base}/v1/integrations/crm/events")).json(&json!({"a": 1}))).await;
        let b = attempt(client.post(format!("{base}/v1/integrations/nope/events")).json(&json!({"a": 1}))).await;
        assert_eq!(a.0, 401);
        assert_eq!(a, b);
    });
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains(CHANNEL_TOKEN), "the channel token in the log");
}

#[test]
fn a_server_given_no_channel_token_keeps_a_generated_one_and_refuses_every_message_without_it() {
    let flows = flows();
    let log = tempfile::NamedTempFile::new().unwrap();
    let data = fresh_data_dir();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env_remove("TERN_CHANNEL_TOKEN")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows"])
        .arg(flows.dir.path())
        .stderr(log.reopen().unwrap());
    let server = Server::spawn_keeping_stderr(cmd);
    let generated = std::fs::read_to_string(data.join("channel.token")).unwrap();
    let generated = generated.trim();
    assert!(generated.len() >= 16, "a generated token is kept in channel.token");
    rt().block_on(async {
        let client = reqwest::Client::new();
        let post = |auth: String| {
            client
                .post(format!("{}/v1/conversations/c/messages", server.url))
                .header("authorization", auth)
                .json(&json!({"text": "hello"}))
                .send()
        };
        for auth in ["", "Bearer ", "Bearer anything-at-all-0123456789"] {
            assert_eq!(post(auth.to_string()).await.unwrap().status(), 401, "{auth:?}");
        }
        let r = post(format!("Bearer {generated}")).await.unwrap();
        assert_eq!(r.status(), 200, "the kept token is the default channel's");
    });
    assert_eq!(refusals(&log, 3).len(), 3, "each refusal is logged");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains(generated), "the generated token is not in the log");
}
