//! `tern run` behaviour that needs no HTTP: conversations, variables, exit codes, limits.

use serde_json::json;

use crate::support::{Flows, repo, run};

#[test]
fn branch_example_routes_by_answer() {
    let flow = repo().join("flows/examples/branch-order-size.json");
    let f = flow.to_str().unwrap();
    for (answer, want) in [
        ("150", "Great news: 150 units qualify for a bulk discount (bulk tier)."),
        ("5", "5 units at 12.5 each. Anything else?"),
        ("0", "Zero units? Come back when you need some."),
        ("lots", "Sorry, \"lots\" is not a number."),
    ] {
        let r = run(["run", f, "-m", "I want to order", "-m", answer]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert_eq!(r.stdout(), format!("How many units would you like?\n{want}\n"));
    }
}

#[test]
fn paused_flow_without_more_messages_waits() {
    let flow = repo().join("flows/examples/branch-order-size.json");
    let r = run(["run", flow.to_str().unwrap(), "-m", "order", "--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.json();
    assert_eq!(out["status"], "paused");
    assert_eq!(out["trace"][0]["status"], "paused");
}

#[test]
fn vars_override_and_parse_json() {
    let flows = Flows::new();
    let path = flows.write("v", &json!({"version": 1, "id": "v", "variables": {"n": 1, "who": "nobody"}, "steps": [
        {"id": "s", "type": "send_message", "text": "{{who}} {{n}} {{conversation.id}} {{contact.id}} {{message.text}}"}
    ]}));
    let r = run([
        "run",
        path.to_str().unwrap(),
        "-m",
        "hey",
        "--var",
        "n=42",
        "--var",
        "who=Ann",
        "--contact",
        "u7",
        "--conversation",
        "c9",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Ann 42 c9 u7 hey\n");
}

#[test]
fn step_budget_stops_runaway_loops() {
    let flows = Flows::new();
    let path = flows.write(
        "loop",
        &json!({"version": 1, "id": "loop", "variables": {"n": 0}, "steps": [
            {"id": "again", "type": "set_variables", "variables": {"n": "{{n}}"}},
            {"id": "check", "type": "branch", "cases": [{"when": {"var": "n", "lt": 1000000}, "next": "again"}]},
            {"id": "done", "type": "send_message", "text": "never"}
        ]}),
    );
    let r = run(["run", path.to_str().unwrap(), "-m", "go", "--json"]);
    assert_eq!(r.code(), 1);
    let out = r.json();
    assert_eq!(out["error"]["code"], "step-budget");
    assert_eq!(out["trace"].as_array().unwrap().len(), 1000);
    // Validation warned about the loop without failing the flow.
    assert!(r.stderr().contains("warning[loop-without-pause]"), "{}", r.stderr());
}

#[test]
fn usage_errors_exit_2() {
    let r = run(["run", "/nonexistent/flow.json", "-m", "x"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("cannot read flow file /nonexistent/flow.json"), "{}", r.stderr());
    let bad = repo().join("flows/invalid/unknown-field.json");
    let r = run(["run", bad.to_str().unwrap(), "-m", "x"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("error[unknown-field]"), "{}", r.stderr());
    let r = run(["run", "--var", "1bad=x", "f.json"]);
    assert_eq!(r.code(), 2);
    let r = run(["bogus"]);
    assert_eq!(r.code(), 2);
}

#[test]
fn help_documents_exit_codes() {
    let r = run(["--help"]);
    assert_eq!(r.code(), 0);
    assert!(r.stdout().contains("Exit codes: 0 success, 1"), "{}", r.stdout());
}

/// `tern … | head`: a reader that goes away early ends the command quietly (like SIGPIPE),
/// without a panic message.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    // `tern openapi` prints more than a pipe holds, so the write after the close must fail.
    let mut child = crate::support::tern()
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}
