//! The two seams every flow goes through, with the engine's test steps (tests/support): the
//! compiler (`load_flow` on small flows: what compiles, and every problem reported at once with
//! its JSON pointer) and the executor (pause and resume through a serialized snapshot,
//! `on_error`, the step budget and the deadline). No network: milliseconds each.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

mod support;

/// `for_each`.
#[path = "compile_and_run/loops.rs"]
mod loops;

/// `call_flow`.
#[path = "compile_and_run/calls.rs"]
mod calls;

use std::time::Duration;

use serde_json::{Map, Value, json};
use support::{compile, compile_source, compiled, engine, flow, input};
use tern_engine::{CompiledFlow, Diagnostic, Engine, RunLimits, RunResult, RunSnapshot, RunStatus, Severity};

fn errors(flow: &Value) -> Vec<Diagnostic> {
    match compile(flow) {
        Ok(_) => panic!("the flow should not compile: {flow}"),
        Err(d) => d,
    }
}

/// The (code, pointer) of each error diagnostic.
fn codes(diags: &[Diagnostic]) -> Vec<(&str, &str)> {
    diags.iter().filter(|d| d.severity == Severity::Error).map(|d| (d.code, d.pointer.as_str())).collect()
}

// ---- the compiler -------------------------------------------------------------------------

#[test]
fn a_small_flow_compiles_with_its_steps_trigger_and_variables() {
    let f = compiled(&json!({
        "version": 1, "id": "greet",
        "trigger": {"type": "message", "match": {"keywords": ["hi"]}},
        "variables": {"who": "world"},
        "steps": [
            {"id": "ask", "type": "ask", "text": "Name?", "save_as": "who"},
            {"id": "say", "type": "send_message", "text": "Hello {{who}}"}
        ]
    }));
    assert_eq!(f.id.as_str(), "greet");
    assert!(f.trigger.is_some());
    assert_eq!(f.variables["who"], "world");
    let ids: Vec<&str> = f.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ask", "say"]);
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    assert!(f.integrations.is_empty());
}

#[test]
fn every_problem_is_reported_at_once_with_its_pointer() {
    let d = errors(&flow(json!([
        {"id": "a", "type": "send_message", "text": "x", "nxt": "b"},
        {"id": "a", "type": "send_message", "text": "y", "next": "nowhere"},
        {"id": "c", "type": "send_mesage", "text": "z"}
    ])));
    let found = codes(&d);
    assert!(found.contains(&("unknown-field", "/steps/0/nxt")), "{d:#?}");
    assert!(found.contains(&("duplicate-id", "/steps/1/id")), "{d:#?}");
    assert!(found.contains(&("dangling-target", "/steps/1/next")), "{d:#?}");
    assert!(found.iter().any(|(code, at)| *code == "unknown-step-type" && at.starts_with("/steps/2")), "{d:#?}");
    let unknown = d.iter().find(|x| x.code == "unknown-field").unwrap();
    assert!(unknown.hint.as_deref().is_some_and(|h| h.contains("next")), "the hint names `next`: {unknown:?}");
    let typo = d.iter().find(|x| x.code == "unknown-step-type").unwrap();
    assert!(format!("{typo}").contains("`send_message`"), "the nearest step type is suggested: {typo}");
}

/// A plugin's step type that no loaded plugin defines says how plugins get there, and that a
/// server started before the install does not have it yet.
#[test]
fn a_missing_plugin_step_says_how_plugins_are_installed() {
    let d = errors(&flow(json!([{"id": "p", "type": "acme.lookup-contact", "email": "x"}])));
    let missing = d.iter().find(|x| x.code == "unknown-step-type").expect("unknown step type");
    let said = format!("{missing}");
    assert!(said.contains("tern plugins install") && said.contains("restarted"), "{said}");
}

#[test]
fn diagnostics_carry_line_and_column_of_the_source() {
    let text = "{\n  \"version\": 1,\n  \"id\": \"t\",\n  \"steps\": [\n    {\"id\": \"a\", \"type\": \"send_message\", \"text\": \"x\", \"oops\": 1}\n  ]\n}";
    let d = compile_source(text).unwrap_err();
    let unknown = d.iter().find(|x| x.code == "unknown-field").expect("unknown field");
    assert_eq!(unknown.line, Some(5), "{unknown:?}");
    assert!(unknown.column.is_some(), "{unknown:?}");
}

#[test]
fn a_loop_without_a_pause_is_an_error_unless_it_can_leave() {
    let endless = flow(json!([
        {"id": "tick", "type": "set_variables", "variables": {"n": 1}},
        {"id": "tock", "type": "send_message", "text": "{{n}}", "next": "tick"}
    ]));
    let d = errors(&endless);
    assert!(codes(&d).iter().any(|(code, _)| *code == "endless-loop"), "{d:#?}");

    // A jump that leaves the loop turns the error into a warning.
    let leaves = counting_loop();
    let f = compiled(&leaves);
    assert!(f.warnings.iter().any(|w| w.code == "loop-without-pause"), "{:?}", f.warnings);

    // An `ask` in the loop pauses it: no diagnostic at all.
    let pauses = flow(json!([
        {"id": "q", "type": "ask", "text": "again?", "save_as": "answer"},
        {"id": "say", "type": "send_message", "text": "{{answer}}", "next": "q"}
    ]));
    assert!(compiled(&pauses).warnings.is_empty());
}

#[test]
fn variables_used_before_they_are_set_are_reported() {
    let f = compile(&flow(json!([{"id": "say", "type": "send_message", "text": "Hello {{nobody}}"}])));
    let diags = match f {
        Ok(f) => f.warnings,
        Err(d) => d,
    };
    assert!(diags.iter().any(|d| d.code == "undefined-variable" && d.message.contains("nobody")), "{diags:#?}");
}

#[test]
fn bad_templates_regexes_and_versions_are_errors() {
    let d = errors(&json!({"version": 2, "id": "t", "steps": [{"id": "a", "type": "send_message", "text": "x"}]}));
    assert!(codes(&d).iter().any(|(c, p)| *c == "unsupported-version" && *p == "/version"), "{d:#?}");
    let d = errors(&flow(json!([{"id": "say", "type": "send_message", "text": "Hello {{who"}])));
    assert!(codes(&d).iter().any(|(c, p)| *c == "bad-template" && p.starts_with("/steps/0/text")), "{d:#?}");
    let d = errors(&json!({"version": 1, "id": "t", "trigger": {"type": "message", "match": {"regex": "("}},
                          "steps": [{"id": "a", "type": "send_message", "text": "x"}]}));
    assert!(codes(&d).iter().any(|(c, _)| *c == "bad-regex"), "{d:#?}");
}

// ---- the executor -------------------------------------------------------------------------

/// A flow that counts in a loop a jump leaves (a warning, not an error).
fn counting_loop() -> Value {
    flow(json!([
        {"id": "init", "type": "set_variables", "variables": {"n": 0, "target": 3}},
        {"id": "check", "type": "jump_if", "var": "n", "at_least": 1000000, "then": "done"},
        {"id": "tick", "type": "set_variables", "variables": {"n": "{{n}}"}, "next": "check"},
        {"id": "done", "type": "send_message", "text": "done"}
    ]))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn start(engine: &Engine, f: &CompiledFlow, text: &str) -> RunResult {
    rt().block_on(engine.start(f, input(text), Map::new(), None))
}

fn replies(r: &RunResult) -> Vec<String> {
    r.replies.iter().map(|x| x.text.clone()).collect()
}

#[test]
fn a_run_pauses_at_ask_and_resumes_from_a_serialized_snapshot() {
    let f = compiled(&flow(json!([
        {"id": "q", "type": "ask", "text": "Your name?", "save_as": "name"},
        {"id": "say", "type": "send_message", "text": "Hello {{name}} ({{message.text}})"}
    ])));
    let e = engine(RunLimits::default());
    let first = start(&e, &f, "hi");
    assert_eq!(first.status, RunStatus::Paused);
    assert_eq!(replies(&first), ["Your name?"]);
    let snapshot = first.snapshot.expect("a paused run has a snapshot");
    assert_eq!(snapshot.step.as_str(), "q");

    // Runs are data: the snapshot survives a round trip through JSON (a restart, another process).
    let stored = serde_json::to_string(&snapshot).unwrap();
    let restored: RunSnapshot = serde_json::from_str(&stored).unwrap();
    assert_eq!(restored, snapshot);
    let second = rt().block_on(e.resume(&f, restored, input("Ada"), None));
    assert_eq!(second.status, RunStatus::Completed, "{:?}", second.error);
    assert_eq!(second.run_id, first.run_id, "the same run goes on");
    assert_eq!(replies(&second), ["Hello Ada (Ada)"]);
    assert_eq!(second.variables["name"], "Ada");
    assert!(second.snapshot.is_none());
}

#[test]
fn a_snapshot_of_another_flow_is_refused() {
    let asking = flow(json!([{"id": "q", "type": "ask", "text": "?", "save_as": "a"}]));
    let f = compiled(&asking);
    let e = engine(RunLimits::default());
    let snapshot = start(&e, &f, "hi").snapshot.unwrap();
    let mut other = asking.clone();
    other["id"] = json!("other");
    other["steps"][0]["id"] = json!("elsewhere");
    let r = rt().block_on(e.resume(&compiled(&other), snapshot, input("x"), None));
    assert_eq!(r.status, RunStatus::Failed);
    let error = r.error.expect("an error");
    assert_eq!(error.code, "stale-snapshot");
    assert!(error.message.contains("`q`"), "{}", error.message);
}

/// A step that fails, then a reply.
fn failing_step(on_error: Option<&str>) -> Value {
    let mut failing = json!({"id": "call", "type": "fail"});
    let mut ok = json!({"id": "ok", "type": "send_message", "text": "fine"});
    if let Some(target) = on_error {
        failing["on_error"] = json!(target);
        ok["next"] = json!("end");
    }
    flow(json!([failing, ok, {"id": "sorry", "type": "send_message", "text": "sorry"}]))
}

#[test]
fn a_failing_step_takes_on_error() {
    let r = start(&engine(RunLimits::default()), &compiled(&failing_step(Some("sorry"))), "go");
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(replies(&r), ["sorry"]);
    let call = r.trace.iter().find(|t| t.step.as_str() == "call").expect("the step is traced");
    assert!(call.error.is_some(), "the failure is in the trace: {call:?}");
}

#[test]
fn a_failing_step_without_on_error_fails_the_run_naming_the_step() {
    let r = start(&engine(RunLimits::default()), &compiled(&failing_step(None)), "go");
    assert_eq!(r.status, RunStatus::Failed);
    assert!(replies(&r).is_empty());
    let error = r.error.expect("an error");
    assert_eq!(error.step.as_ref().map(|s| s.as_str()), Some("call"));
    assert!(!error.message.is_empty());
}

#[test]
fn the_step_budget_stops_a_loop() {
    let f = compiled(&counting_loop());
    let r = start(&engine(RunLimits { max_steps: 10, ..RunLimits::default() }), &f, "go");
    assert_eq!(r.status, RunStatus::Failed);
    let error = r.error.expect("an error");
    assert_eq!(error.code, "step-budget");
    assert!(error.message.contains("10 steps"), "{}", error.message);
    assert_eq!(r.trace.len(), 10, "exactly the budget ran");
}

#[test]
fn the_budget_counts_across_resumes() {
    let f = compiled(&flow(json!([
        {"id": "q", "type": "ask", "text": "?", "save_as": "a"},
        {"id": "say", "type": "send_message", "text": "{{a}}"},
        {"id": "again", "type": "send_message", "text": "again", "next": "q"}
    ])));
    let e = engine(RunLimits { max_steps: 5, ..RunLimits::default() });
    let first = start(&e, &f, "go");
    assert_eq!(first.status, RunStatus::Paused);
    let second = rt().block_on(e.resume(&f, first.snapshot.unwrap(), input("1"), None));
    assert_eq!(second.status, RunStatus::Paused, "{:?}", second.error);
    let third = rt().block_on(e.resume(&f, second.snapshot.unwrap(), input("2"), None));
    assert_eq!(third.status, RunStatus::Failed);
    assert_eq!(third.error.unwrap().code, "step-budget");
}

#[test]
fn a_spent_deadline_fails_the_run_before_the_next_step() {
    let f = compiled(&flow(json!([{"id": "say", "type": "send_message", "text": "hi"}])));
    let r = start(&engine(RunLimits { deadline: Duration::ZERO, ..RunLimits::default() }), &f, "go");
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().code, "deadline");
    assert!(r.replies.is_empty(), "no step ran");
}
