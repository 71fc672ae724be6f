//! Failures that still answer the contact, through `tern run` and `tern serve` against a real
//! API on loopback: caught errors are shown as notes, `--error-flow` and `--error-reply` are
//! checked and reported, the error flow's run in history. What the service does with failures
//! (the flow-level `on_error`, the default error reply, the error flow) is tested in process:
//! steps/tests/flows/failures.rs.

use serde_json::{Value, json};

use crate::support::fixtures::lookup_flow;
use crate::support::{Flows, TestApi, run};

fn tern_run(path: &std::path::Path, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["run", path.to_str().unwrap(), "--allow-private-network", "-m", "hi"];
    args.extend_from_slice(extra);
    run(args)
}

#[test]
fn caught_errors_are_noted_under_the_reply() {
    let api = TestApi::start();
    let flows = Flows::new();
    let path = flows.write("crm", &lookup_flow(&api, Some("sorry"), None));
    let r = tern_run(&path, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "The CRM is not answering.\n");
    let note = r.stderr().lines().find(|l| l.starts_with("note: step `lookup` failed")).map(str::to_string);
    let note = note.unwrap_or_else(|| panic!("no note in {}", r.stderr()));
    assert!(note.contains("[http-status]") && note.contains("404"), "{note}");
    assert!(!note.contains('\u{1b}'), "no colour when standard error is not a terminal: {note:?}");
}

fn error_flow(flows: &Flows, text: &str) -> std::path::PathBuf {
    flows.write(
        "on-error",
        &json!({"version": 1, "id": "on-error", "trigger": {"type": "error"}, "steps": [
            {"id": "tell", "type": "send_message", "text": text}
        ]}),
    )
}

#[test]
fn error_flow_gets_the_failure_as_variables() {
    let api = TestApi::start();
    let flows = Flows::new();
    let path = flows.write("crm", &lookup_flow(&api, None, None));
    let handler = error_flow(&flows, "{{error.flow}}/{{error.step}} failed [{{error.code}}] for {{message.text}}");
    let r = tern_run(&path, &["--error-flow", handler.to_str().unwrap(), "--error-reply", "unused"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(r.stdout(), "crm/lookup failed [http-status] for hi\n", "the error flow answered, so no default reply");
    assert!(r.stderr().contains("the error flow `on-error` ran"), "{}", r.stderr());

    let r = tern_run(&path, &["--error-flow", handler.to_str().unwrap(), "--json"]);
    let out = r.json();
    assert_eq!(out["error"]["code"], "http-status");
    assert_eq!(out["error_flow"]["status"], "completed");
    assert!(out["error_flow"]["run_id"].as_str().is_some_and(|id| id != out["run_id"]), "{out}");
    assert_eq!(out["replies"][0]["text"], "crm/lookup failed [http-status] for hi");
}

#[test]
fn error_flow_needs_the_error_trigger() {
    let api = TestApi::start();
    let flows = Flows::new();
    let path = flows.write("crm", &lookup_flow(&api, None, None));
    let r = tern_run(&path, &["--error-flow", path.to_str().unwrap()]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("its trigger must be {\"type\": \"error\"}"), "{}", r.stderr());
    assert!(api.requests().is_empty(), "nothing ran");
}

// ---- The same through `tern serve`: the error flow is the flow in the directory whose
// trigger is `{"type": "error"}`, the default reply is `--error-reply`.

/// A flows directory with the failing lookup (triggered by "lookup") and, optionally, an error
/// flow.
fn serve_flows(api: &TestApi, error_flow: Option<Value>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut crm = lookup_flow(api, None, None);
    crm["trigger"] = json!({"type": "message", "match": {"keywords": ["lookup"]}});
    std::fs::write(dir.path().join("crm.json"), crm.to_string()).unwrap();
    if let Some(f) = error_flow {
        std::fs::write(dir.path().join("on-error.json"), f.to_string()).unwrap();
    }
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn serve(flows: &std::path::Path, extra: &[&str]) -> crate::serve::Server {
    let mut cmd = crate::support::tern();
    cmd.env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", crate::serve::ADMIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .args(extra);
    crate::serve::Server::spawn(cmd)
}

#[test]
fn serve_starts_the_error_flow_for_an_uncaught_failure() {
    let api = TestApi::start();
    let handler = json!({"version": 1, "id": "on-error", "trigger": {"type": "error"}, "steps": [
        {"id": "tell", "type": "send_message", "text": "{{error.flow}}/{{error.step}} failed [{{error.code}}]"}
    ]});
    let (_keep, flows) = serve_flows(&api, Some(handler));
    let server = serve(&flows, &["--error-reply", "unused: the error flow answers"]);
    crate::serve::rt().block_on(async {
        let client = reqwest::Client::new();
        let body = json!({"text": "lookup please", "message_id": "m-1"});
        let (status, answer) = crate::serve::post(&client, &server.url, "c-1", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "failed", "the flow's run failed: {answer}");
        assert_eq!(answer["error"]["code"], "http-status");
        assert_eq!(answer["replies"], json!([{"text": "crm/lookup failed [http-status]"}]), "{answer}");
        assert_eq!(answer["error_flow"]["flow_id"], "on-error");
        assert_eq!(answer["error_flow"]["status"], "completed");
        // The error flow's run is a run of its own in history.
        let run =
            crate::runtime::fetch_run(&client, &server.url, answer["error_flow"]["run_id"].as_str().unwrap()).await;
        assert_eq!(run["flow_id"], "on-error");
        assert_eq!(run["segments"][0]["message"], "lookup please");
        assert_eq!(run["segments"][0]["replies"][0]["text"], "crm/lookup failed [http-status]");
        let failed = crate::runtime::fetch_run(&client, &server.url, answer["run_id"].as_str().unwrap()).await;
        assert_eq!(failed["status"], "failed");
        // A re-send of the message gets the same answer; nothing runs again.
        let (_, again) = crate::serve::post(&client, &server.url, "c-1", body).await;
        assert_eq!(again, answer);
        assert_eq!(api.requests().len(), 1);
    });
}

#[test]
fn serve_refuses_two_error_flows() {
    let api = TestApi::start();
    let handler = |id: &str| {
        json!({"version": 1, "id": id, "trigger": {"type": "error"}, "steps": [
            {"id": "tell", "type": "send_message", "text": "sorry"}
        ]})
    };
    let (dir, flows) = serve_flows(&api, Some(handler("on-error")));
    std::fs::write(dir.path().join("second.json"), handler("second-handler").to_string()).unwrap();
    let r = run(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()]);
    assert_ne!(r.code(), 0, "{}", r.stderr());
    assert!(r.stderr().contains("flow `second-handler` is a second error flow: `on-error`"), "{}", r.stderr());
    assert!(r.stderr().contains("keep one error flow"), "{}", r.stderr());
    // `tern validate` reports the same mistake.
    let v = run(["validate", flows.to_str().unwrap()]);
    assert_eq!(v.code(), 2, "{}", v.stderr());
    assert!(v.stderr().contains("second-error-flow"), "{}", v.stderr());
    // With --skip-invalid the second one is not loaded: the first stays the error flow.
    let server = serve(&flows, &["--skip-invalid"]);
    crate::serve::rt().block_on(async {
        let client = reqwest::Client::new();
        let flows = crate::serve::admin_get(&client, &server.url, "/v1/flows").await;
        let ids: Vec<&str> = flows["flows"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"on-error") && !ids.contains(&"second-handler"), "{flows}");
    });
}

#[test]
fn an_error_flow_run_alone_needs_the_failure_as_a_variable() {
    let flows = Flows::new();
    let handler = error_flow(&flows, "{{error.step}} failed [{{error.code}}]");
    let r = run(["run", handler.to_str().unwrap(), "-m", "hi"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("is an error flow") && r.stderr().contains("--var 'error="), "{}", r.stderr());
    let r = run([
        "run",
        handler.to_str().unwrap(),
        "-m",
        "hi",
        "--var",
        r#"error={"code": "http-status", "step": "lookup"}"#,
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "lookup failed [http-status]\n");
}

#[test]
fn the_default_error_reply_is_checked_plain_text() {
    let flows = Flows::new();
    let api = TestApi::start();
    let path = flows.write("crm", &lookup_flow(&api, None, None));
    let long = "x".repeat(4097);
    for (reply, expected) in [
        ("", "is empty"),
        ("   ", "is empty"),
        ("Sorry ({{error.code}})", "plain text, sent as is"),
        ("Sorry\u{1b}[31m", "the character U+001B"),
        ("Sorry \u{202e}", "the character U+202E"),
        (long.as_str(), "4097 characters; at most 4096"),
    ] {
        let r = tern_run(&path, &["--error-reply", reply]);
        assert_eq!(r.code(), 2, "{reply:.20}: {}", r.stderr());
        assert!(r.stderr().contains(expected), "{reply:.20}: {}", r.stderr());
        let dir = path.parent().unwrap().to_str().unwrap();
        let s = run(["serve", "--listen", "127.0.0.1:0", "--flows", dir, "--error-reply", reply]);
        assert_eq!(s.code(), 2, "{reply:.20}: {}", s.stderr());
        assert!(s.stderr().contains(expected), "{reply:.20}: {}", s.stderr());
    }
    assert!(api.requests().is_empty(), "nothing ran");
}

#[test]
fn a_failed_run_answers_the_contact_by_default_unless_told_not_to() {
    let flows = Flows::new();
    let api = TestApi::start();
    let path = flows.write("crm", &lookup_flow(&api, None, None));
    // Nothing in the flow catches the 404: the contact still gets an answer.
    let r = tern_run(&path, &[]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(r.stdout(), format!("{}\n", tern_engine::conversation::DEFAULT_ERROR_REPLY));
    assert!(!r.stderr().contains("no answer"), "{}", r.stderr());
    // Another text …
    let r = tern_run(&path, &["--error-reply", "We are on it."]);
    assert_eq!(r.stdout(), "We are on it.\n");
    // … or none, said plainly.
    let r = tern_run(&path, &["--no-error-reply"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(r.stdout(), "");
    assert!(r.stderr().contains("(the contact got no answer"), "{}", r.stderr());
    // `--no-error-reply` wins, wherever the text comes from.
    let r = tern_run(&path, &["--no-error-reply", "--error-reply", "both"]);
    assert_eq!((r.code(), r.stdout()), (1, String::new()), "{}", r.stderr());
    // Asked, then failed on the answer: the question was a reply, the answer got none.
    let mut flow = lookup_flow(&api, None, None);
    let ask = json!({"id": "q", "type": "ask", "text": "Your id?", "save_as": "id"});
    flow["steps"].as_array_mut().unwrap().insert(0, ask);
    let path = flows.write("asks", &flow);
    let r = tern_run(&path, &["--no-error-reply", "-m", "42"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(r.stdout(), "Your id?\n");
    assert!(r.stderr().contains("(the contact got no answer to its last message"), "{}", r.stderr());
}
