//! `tern test --record` against a real API on loopback, then `tern test` replaying what it
//! recorded with the API gone; secret values never reach the file; a call nobody recorded and
//! an answer nobody asked for both fail the test with where and what to do.

use serde_json::{Value, json};

use crate::support::{TestApi, tern};

/// A flow that asks for a contact id, looks it up (POST with a JSON body) and sends a GET whose
/// URL carries a secret, which the API echoes back in its answer.
fn write_flow(dir: &std::path::Path, api: &str) {
    let flow = json!({
        "version": 1, "id": "lookup", "trigger": {"type": "message", "match": {"keywords": ["lookup"]}},
        "steps": [
            {"id": "ask", "type": "ask", "text": "Which contact?", "save_as": "id"},
            {"id": "find", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{api}/contacts.info"), "body": {"id": "{{id}}", "pin": "{{secrets.PIN}}"}},
             "variables": {"last_name": "data.last_name"}, "on_error": "missing"},
            {"id": "audit", "type": "http_request",
             "request": {"url": format!("{api}/audit?contact={{{{id}}}}&key={{{{secrets.CRM_KEY}}}}")},
             "save_response_as": "audit"},
            {"id": "greet", "type": "send_message", "text": "Hello {{last_name}}!", "next": "end"},
            {"id": "missing", "type": "send_message", "text": "No contact {{id}}."}
        ]
    });
    std::fs::write(dir.join("lookup.json"), flow.to_string()).unwrap();
}

fn tern_test(dir: &std::path::Path, data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", data).env("TERN_ALLOW_PRIVATE_NETWORK", "1").arg("test").args(args).arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_recorded_conversation_replays_without_the_api_and_without_secrets() {
    // A key with characters a URL encodes, and a short PIN (under the 8 characters the
    // process-wide masker takes; the run's own masker knows it).
    const SECRET: &str = "crm key/0123456789!abc";
    const ENCODED: &str = "crm%20key%2F0123456789%21abc";
    const PIN: &str = "482913";
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let api = TestApi::start();
    write_flow(dir.path(), &api.url());
    let test_file = dir.path().join("lookup.test.json");
    std::fs::write(
        &test_file,
        json!({"tests": [
            {"name": "known", "conversation": [{"contact": "lookup"}, {"contact": "c1a2"}],
             "expect": {"variables": {"last_name": null}}},
            {"name": "unknown", "conversation": [{"contact": "lookup"}, {"contact": "nobody"}]}
        ]})
        .to_string(),
    )
    .unwrap();

    let secrets = [("TERN_SECRET_CRM_KEY", SECRET), ("TERN_SECRET_PIN", PIN)];
    let (code, out) = tern_test(dir.path(), data.path(), &["--record"], &secrets);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("recorded into"), "{out}");
    let text = std::fs::read_to_string(&test_file).unwrap();
    for secret in [SECRET, ENCODED, PIN] {
        assert!(!text.contains(secret), "a secret value ({secret}) reached the recording:\n{text}");
    }
    let recorded: Value = serde_json::from_str(&text).unwrap();
    let known = &recorded["tests"][0];
    assert_eq!(known["conversation"][0]["tern"], json!(["Which contact?"]), "{text}");
    assert_eq!(known["conversation"][1]["tern"], json!(["Hello Bachman!"]), "{text}");
    assert_eq!(known["expect"]["variables"]["last_name"], "Bachman", "{text}");
    assert_eq!(known["expect"]["status"], "completed", "{text}");
    let http = known["http"].as_array().unwrap();
    assert_eq!(http.len(), 2, "{text}");
    assert_eq!(http[0]["request"]["json"], json!({"id": "c1a2", "pin": "[redacted]"}), "{text}");
    assert_eq!(http[0]["response"]["json"]["data"]["last_name"], "Bachman", "{text}");
    // The GET's URL carried the key, and the API echoed it: both masked.
    assert!(http[1]["request"]["url"].as_str().unwrap().contains("[redacted]"), "{text}");
    assert!(http[1]["response"]["json"]["uri"].as_str().unwrap().contains("redacted"), "{text}");
    let unknown = &recorded["tests"][1];
    assert_eq!(unknown["conversation"][1]["tern"], json!(["No contact nobody."]), "{text}");
    assert_eq!(unknown["http"][0]["response"]["status"], 404, "{text}");
    let calls = api.requests().len();
    drop(api);

    // Replayed: no API, no secret given (a stand-in is masked the same way), same result.
    let (code, out) = tern_test(dir.path(), data.path(), &[], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    assert_eq!(calls, 3, "recording called the API once per call of the flows");

    // A call nobody recorded: the test fails and says what to add, even though `on_error`
    // caught the step's failure.
    let mut edited = recorded.clone();
    edited["tests"][1]["http"] = json!([]);
    std::fs::write(&test_file, edited.to_string()).unwrap();
    let (code, out) = tern_test(dir.path(), data.path(), &["--name", "unknown"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/tests/1/http: step `find` made a call the test has no answer for"), "{out}");
    assert!(out.contains("add one under \"http\""), "{out}");
    assert!(out.contains("1 failed"), "{out}");

    // An answer nobody asked for fails the test too.
    let mut edited = recorded.clone();
    let extra = json!({"request": {"url": "https://api.example.com/never"}, "response": {"status": 200}});
    edited["tests"][0]["http"].as_array_mut().unwrap().push(extra);
    std::fs::write(&test_file, edited.to_string()).unwrap();
    let (code, out) = tern_test(dir.path(), data.path(), &[], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("/tests/0/http/2: the recorded answer for GET https://api.example.com/never was never requested"),
        "{out}"
    );
}

/// A run that fails with nothing to catch it gets the default error reply, as in `tern serve`;
/// recording with the API unreachable writes nothing and says why.
#[test]
fn the_default_error_reply_is_tested_and_a_failed_recording_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let flow = json!({
        "version": 1, "id": "down", "trigger": {"type": "message"},
        "steps": [{"id": "call", "type": "http_request", "request": {"url": "http://127.0.0.1:9/x"}}]
    });
    std::fs::write(dir.path().join("down.json"), flow.to_string()).unwrap();
    let test = json!({"tests": [{"name": "fails kindly", "conversation": [
        {"contact": "hi", "tern": ["Sorry, something went wrong. Please try again later."]}],
        "http": [{"request": {"url": "http://127.0.0.1:9/x"}, "response": {"status": 500}}],
        "expect": {"status": "failed", "error": "http-status"}}]});
    let file = dir.path().join("down.test.json");
    std::fs::write(&file, test.to_string()).unwrap();
    let (code, out) = tern_test(dir.path(), data.path(), &[], &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = tern_test(dir.path(), data.path(), &["--no-error-reply"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("- Sorry, something went wrong") && out.contains("+ (no replies)"), "{out}");
    let (code, out) = tern_test(dir.path(), data.path(), &["--record"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("step `call` of flow `down` failed [http]"), "{out}");
    assert!(out.contains("nothing recorded into"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), test.to_string(), "the test file is unchanged");
}

#[test]
fn a_broken_test_file_names_every_problem_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_flow(dir.path(), "https://api.example.com");
    std::fs::write(
        dir.path().join("bad.test.json"),
        r#"{"tests": [{"name": "x", "conversation": [], "expect": {"stauts": "completed"}}]}"#,
    )
    .unwrap();
    let (code, out) = tern_test(dir.path(), data.path(), &[], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/tests/0/conversation"), "{out}");
    assert!(out.contains("/tests/0/expect/stauts"), "{out}");
    assert!(out.contains("did you mean `status`"), "{out}");
    // No test files at all: said so, with where to look.
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = tern_test(empty.path(), data.path(), &[], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no test files (`*.test.json`)"), "{out}");
    // A flow given where a test is expected.
    let (code, out) = tern_test(&dir.path().join("lookup.json"), data.path(), &[], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not a flow test: test files are named NAME.test.json"), "{out}");
}

/// Recording with a secret this data directory does not have writes nothing and names it.
#[test]
fn a_recording_without_the_flow_s_secret_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let flow = json!({
        "version": 1, "id": "keyed", "trigger": {"type": "message"},
        "steps": [
            {"id": "call", "type": "http_request", "request": {"url": "https://api.example.com/x?key={{secrets.CRM_KEY}}"},
             "on_error": "sorry"},
            {"id": "ok", "type": "send_message", "text": "ok", "next": "end"},
            {"id": "sorry", "type": "send_message", "text": "sorry"}
        ]
    });
    std::fs::write(dir.path().join("keyed.json"), flow.to_string()).unwrap();
    let file = dir.path().join("keyed.test.json");
    let test = json!({"tests": [{"name": "calls", "conversation": [{"contact": "hi"}]}]});
    std::fs::write(&file, test.to_string()).unwrap();
    let (code, out) = tern_test(dir.path(), data.path(), &["--record"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("step `call` of flow `keyed` failed [template]"), "{out}");
    assert!(out.contains("set CRM_KEY for this data directory"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), test.to_string(), "the test file is unchanged");
}
