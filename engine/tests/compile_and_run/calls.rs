//! `call_flow` at the compiler and executor seams: inputs in, outputs back, a pause inside the
//! called flow through serialized snapshots, a failure caught by the calling step's
//! `on_error`, the depth bound, and the checks across a set of flows.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{replies, rt};
use crate::support::{compiled, engine, input};
use tern_engine::flow_set::check_calls;
use tern_engine::{CompiledFlow, FixedFlows, LoadedFlow, RunLimits, RunResult, RunSnapshot, RunStatus, flow_hash};

/// Asks for a customer number and returns it; its own variable `greeting` stays its own.
fn identify() -> Value {
    json!({
        "version": 1, "id": "identify", "inputs": ["purpose"], "outputs": ["customer_id"],
        "variables": {"greeting": "private"},
        "steps": [
            {"id": "ask", "type": "ask", "text": "Your customer number, for {{purpose}}?", "save_as": "customer_id"},
            {"id": "thanks", "type": "send_message", "text": "Thanks."}
        ]
    })
}

fn caller(id: &str, purpose: &str) -> Value {
    json!({
        "version": 1, "id": id, "variables": {"greeting": "hello", "id_seen": "none"},
        "steps": [
            {"id": "who", "type": "call_flow", "flow": "identify", "inputs": {"purpose": purpose},
             "outputs": {"customer": "customer_id"}},
            {"id": "done", "type": "send_message", "text": "{{greeting}} {{customer}} ({{id_seen}})"}
        ]
    })
}

fn loaded(doc: &Value) -> LoadedFlow {
    let source = doc.to_string();
    LoadedFlow { hash: flow_hash(&source), flow: Arc::new(compiled(doc)) }
}

fn with_flows(text: &str, flows: &[&LoadedFlow]) -> tern_engine::RunInput {
    let mut i = input(text);
    i.flows = Some(Arc::new(FixedFlows(flows.iter().map(|f| (*f).clone()).collect())));
    i
}

/// Starts `root` and answers each of `answers` through a serialized snapshot (as a restart
/// would), returning every activation.
fn converse(root: &CompiledFlow, flows: &[&LoadedFlow], answers: &[&str]) -> Vec<RunResult> {
    let e = engine(RunLimits::default());
    let rt = rt();
    let mut out = vec![rt.block_on(e.start(root, with_flows("start", flows), Map::new(), None))];
    for text in answers {
        let snapshot = out.last().unwrap().snapshot.clone().expect("paused");
        let stored = serde_json::to_string(&snapshot).unwrap();
        let snapshot: RunSnapshot = serde_json::from_str(&stored).unwrap();
        out.push(rt.block_on(e.resume(root, snapshot, with_flows(text, flows), None)));
    }
    out
}

#[test]
fn a_called_flow_asks_pauses_and_returns_its_output_to_each_caller() {
    let identify = loaded(&identify());
    for (id, purpose) in [("billing", "your invoice"), ("support", "your ticket")] {
        let root = loaded(&caller(id, purpose));
        let runs = converse(&root.flow, &[&identify, &root], &["C-42"]);
        assert_eq!(runs[0].status, RunStatus::Paused);
        assert_eq!(replies(&runs[0]), [format!("Your customer number, for {purpose}?")]);
        let snapshot = runs[0].snapshot.as_ref().unwrap();
        assert_eq!(snapshot.flow_id.as_str(), "identify", "the pause is in the called flow");
        assert_eq!(snapshot.callers.len(), 1);
        assert_eq!(snapshot.callers[0].flow_id.as_str(), id);
        assert_eq!(snapshot.flow_hash.as_deref(), Some(identify.hash.as_str()));
        // The called flow sees its inputs and its own variables, not the caller's; the run shows
        // its own flow's variables.
        assert_eq!(snapshot.variables["purpose"], purpose);
        assert_eq!(snapshot.variables["greeting"], "private");
        assert_eq!(runs[0].variables["greeting"], "hello");
        assert!(runs[0].variables.get("purpose").is_none());
        let end = &runs[1];
        assert_eq!(end.status, RunStatus::Completed, "{:?}", end.error);
        assert_eq!(replies(end), ["Thanks.", "hello C-42 (none)"]);
        assert_eq!(end.variables["customer"], "C-42");
        assert!(end.variables.get("purpose").is_none(), "the called flow's variables stay there");
        assert_eq!(end.flow_id.as_str(), id);
        let in_flow: Vec<_> = end.trace.iter().filter_map(|t| t.detail.get("in_flow")).collect();
        assert_eq!(in_flow, [&json!("identify"), &json!("identify")], "the called flow's steps say where they ran");
    }
}

#[test]
fn a_paused_call_resumes_the_version_it_started_with() {
    let old = loaded(&identify());
    let root = loaded(&caller("billing", "x"));
    let runs = converse(&root.flow, &[&old, &root], &[]);
    let snapshot = runs[0].snapshot.clone().unwrap();
    // The called flow changes while the run waits: the run finishes on the old version.
    let mut changed = identify();
    changed["steps"][1]["text"] = json!("Merci.");
    let new = loaded(&changed);
    let e = engine(RunLimits::default());
    let mut i = input("C-1");
    i.flows = Some(Arc::new(FixedFlows(vec![new.clone(), root.clone(), LoadedFlow { ..old.clone() }])));
    let end = rt().block_on(e.resume(&root.flow, snapshot.clone(), i, None));
    assert_eq!(replies(&end)[0], "Thanks.", "{:?}", end.error);
    // With the old version gone, the run says so instead of running another version.
    let mut i = input("C-1");
    i.flows = Some(Arc::new(FixedFlows(vec![new, root.clone()])));
    let end = rt().block_on(e.resume(&root.flow, snapshot, i, None));
    assert_eq!(end.status, RunStatus::Failed);
    assert_eq!(end.error.unwrap().code, "stale-snapshot");
}

#[test]
fn a_paused_caller_meeting_a_changed_interface_fails_its_call_clearly() {
    // `main` calls `identify` twice; while the first call waits, `identify` gains an input.
    let root = loaded(&json!({
        "version": 1, "id": "main",
        "steps": [
            {"id": "first", "type": "call_flow", "flow": "identify", "inputs": {"purpose": "a"}, "outputs": {"one": "customer_id"}},
            {"id": "second", "type": "call_flow", "flow": "identify", "inputs": {"purpose": "b"}, "outputs": {"two": "customer_id"},
             "on_error": "sorry"},
            {"id": "done", "type": "send_message", "text": "{{one}} {{two}}", "next": "end"},
            {"id": "sorry", "type": "send_message", "text": "sorry"}
        ]
    }));
    let old = loaded(&identify());
    let mut changed = identify();
    changed["inputs"] = json!(["purpose", "lang"]);
    let new = loaded(&changed);
    let runs = converse(&root.flow, &[&old, &root], &[]);
    let e = engine(RunLimits::default());
    let mut i = input("C-1");
    i.flows = Some(Arc::new(FixedFlows(vec![new, root.clone(), old.clone()])));
    // The current `identify` is the first in the list: the changed one.
    let end = rt().block_on(e.resume(&root.flow, runs[0].snapshot.clone().unwrap(), i, None));
    assert_eq!(replies(&end), ["Thanks.", "sorry"], "{:?}", end.trace);
    let failed = end.trace.iter().rev().find(|t| t.step.as_str() == "second").unwrap();
    let error = failed.error.as_ref().unwrap();
    assert_eq!(error.code, "call-mismatch");
    assert!(error.message.contains("needs the input(s) lang"), "{}", error.message);
}

#[test]
fn a_failure_in_the_called_flow_is_the_calling_step_s() {
    let failing = loaded(&json!({
        "version": 1, "id": "identify", "outputs": ["customer_id"], "variables": {"customer_id": null},
        "steps": [{"id": "boom", "type": "fail", "code": "crm-down"}]
    }));
    let mut doc = caller("billing", "x");
    doc["steps"][0]["inputs"] = json!({});
    doc["steps"][0]["on_error"] = json!("sorry");
    doc["steps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "sorry", "type": "send_message", "text": "sorry: {{greeting}}"}));
    doc["steps"][1]["next"] = json!("end");
    let root = loaded(&doc);
    let runs = converse(&root.flow, &[&failing, &root], &[]);
    let end = &runs[0];
    assert_eq!(end.status, RunStatus::Completed, "{:?}", end.error);
    assert_eq!(replies(end), ["sorry: hello"], "the caller's variables are back for its on_error");
    // The calling step is traced when it calls, and again when the call comes back failed.
    let entries: Vec<_> = end.trace.iter().filter(|t| t.step.as_str() == "who").collect();
    assert_eq!(entries.len(), 2, "{:?}", end.trace);
    let caught = entries[1];
    let error = caught.error.as_ref().unwrap();
    assert_eq!(error.code, "call-failed");
    assert!(error.message.contains("flow `identify` failed at step `boom` [crm-down]"), "{}", error.message);
    // Without an on_error the run fails with it.
    doc["steps"][0].as_object_mut().unwrap().remove("on_error");
    doc["steps"].as_array_mut().unwrap().pop();
    let root = loaded(&doc);
    let runs = converse(&root.flow, &[&failing, &root], &[]);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].error.as_ref().unwrap().code, "call-failed");
}

#[test]
fn a_flow_that_calls_itself_stops_at_the_depth_bound() {
    let looping = loaded(&json!({
        "version": 1, "id": "again",
        "steps": [{"id": "call", "type": "call_flow", "flow": "again"}]
    }));
    let runs = converse(&looping.flow, &[&looping], &[]);
    assert_eq!(runs[0].status, RunStatus::Failed);
    let error = runs[0].error.as_ref().unwrap();
    // The deepest call fails; each caller's call fails in turn, up to the run's own flow, and
    // the message says once where it started.
    assert_eq!(error.code, "call-failed", "{error:?}");
    assert!(error.message.contains("call-depth"), "{}", error.message);
    assert_eq!(error.message.matches("failed at step").count(), 1, "{}", error.message);
    // Without a flow set (outside the conversation service), a call says what is missing.
    let e = engine(RunLimits::default());
    let alone = rt().block_on(e.start(&looping.flow, input("x"), Map::new(), None));
    assert_eq!(alone.error.unwrap().code, "unknown-flow");
}

#[test]
fn calls_are_checked_against_the_called_flow_s_interface() {
    let called = compiled(&identify());
    let mut doc = caller("billing", "x");
    doc["steps"][0]["inputs"] = json!({"purpse": "x"});
    doc["steps"][0]["outputs"] = json!({"customer": "customer"});
    doc["steps"].as_array_mut().unwrap().push(json!({"id": "other", "type": "call_flow", "flow": "identfy"}));
    let billing = compiled(&doc);
    let found = check_calls(&[&called, &billing], &[]);
    assert!(found[0].is_empty(), "{:?}", found[0]);
    let at: Vec<(&str, &str)> = found[1].iter().map(|d| (d.code, d.pointer.as_str())).collect();
    assert_eq!(
        at,
        [
            ("missing-input", "/steps/0/inputs"),
            ("unknown-input", "/steps/0/inputs/purpse"),
            ("unknown-output", "/steps/0/outputs/customer"),
            ("unknown-flow", "/steps/2/flow"),
        ]
    );
    assert_eq!(found[1][1].hint.as_deref(), Some("did you mean `purpose`?"));
    assert_eq!(found[1][3].hint.as_deref(), Some("did you mean `identify`?"));
    // A call to a flow that does not load says so (not that the flow is missing); a call to the
    // error flow or an event flow is refused.
    let found = check_calls(&[&billing], &["identify"]);
    assert_eq!(found[0][0].code, "called-flow-invalid");
    let error_flow = compiled(&json!({"version": 1, "id": "identify", "trigger": {"type": "error"},
        "steps": [{"id": "s", "type": "send_message", "text": "{{error.code}}"}]}));
    let found = check_calls(&[&error_flow, &billing], &[]);
    assert_eq!(found[1][0].code, "uncallable-flow", "{:?}", found[1]);
    // An output the flow never sets is refused when the called flow loads.
    let mut bad = identify();
    bad["outputs"] = json!(["customer_id", "customr"]);
    let d = crate::support::compile(&bad).unwrap_err();
    assert!(d.iter().any(|d| d.code == "undefined-output" && d.pointer == "/outputs/1"), "{d:?}");
}

#[test]
fn a_set_of_flows_refuses_a_second_flow_with_the_same_id_and_names_a_broken_callee() {
    use tern_engine::flow_set::{FileOutcome, load_files};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-identify.json"), identify().to_string()).unwrap();
    std::fs::write(dir.path().join("b-identify-copy.json"), identify().to_string()).unwrap();
    std::fs::write(dir.path().join("c-billing.json"), caller("billing", "x").to_string()).unwrap();
    let registry = crate::support::registry();
    let opts = tern_engine::LoadOptions::new(&registry);
    let files = load_files(&[dir.path().to_path_buf()], &opts).unwrap();
    let outcome = |name: &str| &files.iter().find(|f| f.path.ends_with(name)).unwrap().outcome;
    assert!(matches!(outcome("a-identify.json"), FileOutcome::Loaded { .. }));
    match outcome("b-identify-copy.json") {
        FileOutcome::Invalid(d) => {
            assert_eq!(d[0].code, "duplicate-flow-id");
            assert!(d[0].message.contains("a-identify.json"), "{}", d[0].message);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcome("c-billing.json"), FileOutcome::Loaded { .. }));
    // The called flow broken: its callers say so, not that it is missing.
    let mut broken = identify();
    broken["steps"][0]["txt"] = json!("typo");
    std::fs::remove_file(dir.path().join("b-identify-copy.json")).unwrap();
    std::fs::write(dir.path().join("a-identify.json"), broken.to_string()).unwrap();
    let files = load_files(&[dir.path().to_path_buf()], &opts).unwrap();
    match &files.iter().find(|f| f.path.ends_with("c-billing.json")).unwrap().outcome {
        FileOutcome::Invalid(d) => assert_eq!(d[0].code, "called-flow-invalid", "{d:?}"),
        other => panic!("{other:?}"),
    }
    // A caller with a problem of its own still has its calls checked: every problem at once.
    std::fs::write(dir.path().join("a-identify.json"), identify().to_string()).unwrap();
    let mut billing = caller("billing", "x");
    billing["steps"][0]["flow"] = json!("identfy");
    billing["steps"][1]["text"] = json!("{{nope}}");
    std::fs::write(dir.path().join("c-billing.json"), billing.to_string()).unwrap();
    let files = load_files(&[dir.path().to_path_buf()], &opts).unwrap();
    match &files.iter().find(|f| f.path.ends_with("c-billing.json")).unwrap().outcome {
        FileOutcome::Invalid(d) => {
            let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
            assert!(codes.contains(&"undefined-variable") && codes.contains(&"unknown-flow"), "{codes:?}");
            let unknown = d.iter().find(|d| d.code == "unknown-flow").unwrap();
            assert_eq!(unknown.hint.as_deref(), Some("did you mean `identify`?"));
            assert!(unknown.line.is_some());
        }
        other => panic!("{other:?}"),
    }
}
