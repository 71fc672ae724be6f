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
        // The called flow sees its inputs and its own variables, not the caller's.
        assert_eq!(runs[0].variables["purpose"], purpose);
        assert_eq!(runs[0].variables["greeting"], "private");
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
    // The deepest call fails; each caller's call fails in turn, up to the run's own flow.
    assert_eq!(error.code, "call-failed", "{error:?}");
    assert!(error.message.contains("call-depth"), "{}", error.message);
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
    let found = check_calls(&[&called, &billing]);
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
    // An output the flow never sets is refused when the called flow loads.
    let mut bad = identify();
    bad["outputs"] = json!(["customer_id", "customr"]);
    let d = crate::support::compile(&bad).unwrap_err();
    assert!(d.iter().any(|d| d.code == "undefined-output" && d.pointer == "/outputs/1"), "{d:?}");
}
