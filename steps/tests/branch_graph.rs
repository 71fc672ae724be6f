//! The built-in `branch` step in a flow picture: an edge per case, labelled by its condition.
//! (The compiler and the executor themselves are tested in the engine, with test-only steps:
//! engine/tests/compile_and_run.rs.)
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

use serde_json::{Value, json};
use tern_engine::{CompiledFlow, LoadOptions, load_flow};

fn compiled(flow: &Value) -> CompiledFlow {
    let registry = tern_steps::registry();
    let opts = LoadOptions::new(&registry);
    load_flow(&flow.to_string(), &opts).unwrap_or_else(|d| panic!("the flow should compile: {d:#?}"))
}

fn flow(steps: Value) -> Value {
    json!({"version": 1, "id": "t", "steps": steps})
}

#[test]
fn a_branch_is_drawn_with_an_edge_per_case_labelled_by_its_condition() {
    use tern_engine::graph::{EdgeKind, Endpoint, FlowGraph};
    let f = compiled(&flow(json!([
        {"id": "ask", "type": "ask", "text": "How many?", "save_as": "qty"},
        {"id": "route", "type": "branch", "cases": [
            {"when": {"var": "qty", "gte": 100}, "next": "bulk"},
            {"when": {"var": "qty", "equals": "none"}, "next": "end"},
            {"when": {"var": "qty", "matches": "^[0-9]+$"}, "next": "small"}
        ], "next": "sorry"},
        {"id": "small", "type": "send_message", "text": "ok", "next": "end"},
        {"id": "bulk", "type": "fetch_variables", "request": {"url": "https://api.example.com/x"},
         "variables": {"price": "data.price"}, "on_error": "sorry", "next": "end"},
        {"id": "sorry", "type": "send_message", "text": "sorry"}
    ])));
    let g = FlowGraph::of(&f);
    let from_route: Vec<(&str, Endpoint)> = g.edges.iter().filter(|e| e.from == 1).map(|e| (e.label(), e.to)).collect();
    assert_eq!(
        from_route,
        [
            ("next", Endpoint::Step(4)),
            ("qty gte 100", Endpoint::Step(3)),
            ("qty equals \"none\"", Endpoint::End),
            ("qty matches /^[0-9]+$/", Endpoint::Step(2)),
        ]
    );
    let bulk: Vec<&EdgeKind> = g.edges.iter().filter(|e| e.from == 3).map(|e| &e.kind).collect();
    assert_eq!(bulk, [&EdgeKind::Next, &EdgeKind::OnError]);
    assert!(g.nodes[0].start && !g.nodes[0].end);
    assert!(g.nodes[4].end, "the last step falls through to the end");
}
