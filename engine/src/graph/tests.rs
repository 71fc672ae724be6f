//! The graph of small flows made of test step types (the engine knows no concrete step type):
//! `say` continues, `choose` declares targets in its own fields like `branch` and plugins do,
//! `stop` ends the run.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::compile::{LoadOptions, load_flow};
use crate::ids::Target;
use crate::step::{Behavior, BuildContext, Outcome, Registry, Step, StepContext, StepFailure, StepType};

#[derive(Debug)]
struct Plain(bool);

#[async_trait]
impl Step for Plain {
    async fn run(&self, _: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        Ok(if self.0 { Outcome::End } else { Outcome::Next })
    }
    fn behavior(&self) -> Behavior {
        Behavior { terminal: self.0, ..Behavior::default() }
    }
}

/// `say` (any fields), `stop` (terminal) and `choose`: `{"cases": {LABEL: TARGET}}` declared
/// with labels, `{"outcomes": {NAME: TARGET}}` without.
struct TestType(&'static str);

impl StepType for TestType {
    fn name(&self) -> &str {
        self.0
    }
    fn description(&self) -> &str {
        "a test step"
    }
    fn config_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        for (field, labeled) in [("cases", true), ("outcomes", false)] {
            for (key, target) in config.get(field).and_then(Value::as_object).into_iter().flatten() {
                let target: Target = serde_json::from_value(target.clone()).ok()?;
                let rel = format!("/{field}/{key}");
                if labeled {
                    cx.labeled_target(&rel, &target, format!("when {key}"))?;
                } else {
                    cx.target(&rel, &target)?;
                }
            }
        }
        Some(Box::new(Plain(self.0 == "stop")))
    }
}

fn graph(flow: Value) -> FlowGraph {
    let mut registry = Registry::new();
    for name in ["say", "choose", "stop"] {
        registry.register(Arc::new(TestType(name))).unwrap();
    }
    let opts = LoadOptions::new(&registry);
    let compiled = load_flow(&flow.to_string(), &opts).unwrap_or_else(|d| panic!("{d:#?}"));
    FlowGraph::of(&compiled)
}

/// `ask` → `route` (choose: big → `bulk`, outcome `none` → end, else `small`), `small` falls
/// through to `bulk`, whose failure goes to `sorry`; `bulk` goes to `end`, `sorry` ends the run.
fn small_flow() -> Value {
    json!({"version": 1, "id": "orders", "name": "Orders", "steps": [
        {"id": "ask", "type": "say"},
        {"id": "route", "type": "choose", "cases": {"big": "bulk"}, "outcomes": {"none": "end"}, "next": "small"},
        {"id": "small", "type": "say", "description": "Small\norder  reply"},
        {"id": "bulk", "type": "say", "next": "end", "on_error": "sorry"},
        {"id": "sorry", "type": "stop"}
    ]})
}

fn edge(from: usize, to: Endpoint, kind: EdgeKind) -> Edge {
    Edge { from, to, kind }
}

#[test]
fn the_model_has_next_fall_through_declared_targets_and_on_error() {
    let g = graph(small_flow());
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["ask", "route", "small", "bulk", "sorry"]);
    let types: Vec<&str> = g.nodes.iter().map(|n| n.step_type.as_str()).collect();
    assert_eq!(types, ["say", "choose", "say", "say", "stop"]);
    assert_eq!(g.nodes[2].label.as_deref(), Some("Small order reply"), "one line, spaces collapsed");
    assert_eq!(
        g.edges,
        [
            edge(0, Endpoint::Step(1), EdgeKind::FallThrough),
            edge(1, Endpoint::Step(2), EdgeKind::Next),
            edge(1, Endpoint::Step(3), EdgeKind::Jump("when big".into())),
            edge(1, Endpoint::End, EdgeKind::Jump("none".into())),
            edge(2, Endpoint::Step(3), EdgeKind::FallThrough),
            edge(3, Endpoint::End, EdgeKind::Next),
            edge(3, Endpoint::Step(4), EdgeKind::OnError),
        ]
    );
    let starts: Vec<bool> = g.nodes.iter().map(|n| n.start).collect();
    assert_eq!(starts, [true, false, false, false, false]);
    // `route` can end the run (outcome `none`), `bulk` goes to `end`, `sorry` is terminal.
    let ends: Vec<bool> = g.nodes.iter().map(|n| n.end).collect();
    assert_eq!(ends, [false, true, false, true, true]);
    assert!(g.reaches_end());
    let labels: Vec<&str> = g.edges.iter().map(Edge::label).collect();
    assert_eq!(labels, ["next", "next", "when big", "none", "next", "next", "on_error"]);
}

#[test]
fn the_last_step_falls_through_to_the_end_and_the_flow_on_error_is_marked() {
    let g = graph(json!({"version": 1, "id": "f", "on_error": "oops", "steps": [
        {"id": "a", "type": "say", "next": "a_again"},
        {"id": "oops", "type": "say", "next": "end"},
        {"id": "a_again", "type": "say"}
    ]}));
    assert_eq!(g.edges.last(), Some(&edge(2, Endpoint::End, EdgeKind::FallThrough)));
    let fallbacks: Vec<bool> = g.nodes.iter().map(|n| n.fallback).collect();
    assert_eq!(fallbacks, [false, true, false]);
    assert_eq!(g.nodes[1].lines(), ["oops", "say", "flow on_error"]);
}

#[test]
fn a_terminal_step_has_no_next_edge_even_with_a_next() {
    let g = graph(json!({"version": 1, "id": "f", "steps": [
        {"id": "a", "type": "stop", "next": "b"},
        {"id": "b", "type": "say"}
    ]}));
    assert!(g.edges.iter().all(|e| e.from != 0), "{:?}", g.edges);
}

#[test]
fn labels_of_undeclared_targets_come_from_their_pointer() {
    assert_eq!(label_of_pointer("/outcomes/found"), "found");
    assert_eq!(label_of_pointer("/outcomes/a~1b~0c"), "a/b~c");
    assert_eq!(label_of_pointer("/cases/0/next"), "cases/0");
    assert_eq!(label_of_pointer("/next"), "next");
    let long = "x".repeat(100);
    assert_eq!(short(&long).chars().count(), MAX_LABEL_CHARS);
    assert!(short(&long).ends_with('…'));
}

#[test]
fn dot_of_a_small_flow() {
    let expected = r#"digraph "orders" {
  label="Orders";
  labelloc=t;
  node [shape=box, style=rounded, fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10];
  "(start)" [shape=circle, label="start"];
  "(end)" [shape=doublecircle, label="end"];
  "ask" [label="ask\nsay", penwidth=2];
  "route" [label="route\nchoose", peripheries=2];
  "small" [label="small\nsay\nSmall order reply"];
  "bulk" [label="bulk\nsay", peripheries=2];
  "sorry" [label="sorry\nstop", peripheries=2];
  "(start)" -> "ask";
  "ask" -> "route" [label="next"];
  "route" -> "small" [label="next"];
  "route" -> "bulk" [label="when big"];
  "route" -> "(end)" [label="none"];
  "small" -> "bulk" [label="next"];
  "bulk" -> "(end)" [label="next"];
  "bulk" -> "sorry" [label="on_error", style=dashed, color=red];
}
"#;
    assert_eq!(graph(small_flow()).to_dot(), expected);
}

#[test]
fn mermaid_of_a_small_flow() {
    let expected = r#"flowchart TD
    flow_start(("start"))
    s0["ask<br/>say"]
    s1["route<br/>choose"]
    s2["small<br/>say<br/>Small order reply"]
    s3["bulk<br/>say"]
    s4["sorry<br/>stop"]
    flow_end((("end")))
    flow_start --> s0
    s0 -->|"next"| s1
    s1 -->|"next"| s2
    s1 -->|"when big"| s3
    s1 -->|"none"| flow_end
    s2 -->|"next"| s3
    s3 -->|"next"| flow_end
    s3 -.->|"on_error"| s4
    classDef first stroke-width:3px
    class s0 first
    classDef last stroke-width:3px,stroke-dasharray:4 2
    class s1,s3,s4 last
"#;
    assert_eq!(graph(small_flow()).to_mermaid(), expected);
}

/// A graph whose texts try to break out of every format.
fn hostile() -> FlowGraph {
    let node = |id: &str, label: Option<&str>| Node {
        id: id.into(),
        step_type: "say".into(),
        does: Vec::new(),
        label: label.map(Into::into),
        start: id == "a",
        end: id == "b",
        fallback: false,
    };
    FlowGraph {
        flow_id: "f\"}".into(),
        name: Some("N\"ame\n<x>".into()),
        nodes: vec![node("a", Some("say \"hi\" <b>&amp; </b>\n]; \\ | #quot; `x`")), node("b", None)],
        edges: vec![
            Edge { from: 0, to: Endpoint::Step(1), kind: EdgeKind::Jump("x \"<&>\" |]\n".into()) },
            Edge { from: 1, to: Endpoint::End, kind: EdgeKind::Next },
        ],
    }
}

#[test]
fn dot_escapes_hostile_text() {
    let dot = hostile().to_dot();
    assert!(dot.starts_with("digraph \"f\\\"}\" {\n  label=\"N\\\"ame\\n<x>\";"), "{dot}");
    assert!(
        dot.contains(r#""a" [label="a\nsay\nsay \"hi\" <b>&amp;amp; </b>\n]; \\ | #quot; `x`", penwidth=2];"#),
        "{dot}"
    );
    assert!(dot.contains(r#""a" -> "b" [label="x \"<&amp;>\" |]\n"];"#), "{dot}");
    // Every line is one statement: no text broke a line.
    assert!(dot.lines().skip(1).all(|l| l == "}" || l.ends_with(';')), "{dot}");
}

#[test]
fn mermaid_escapes_hostile_text() {
    let mermaid = hostile().to_mermaid();
    assert!(
        mermaid.contains(
            "s0[\"a<br/>say<br/>say #34;hi#34; #60;b#62;#38;amp; #60;/b#62;<br/>]; \\ #124; #35;quot; #96;x#96;\"]"
        ),
        "{mermaid}"
    );
    assert!(mermaid.contains("s0 -->|\"x #34;#60;#38;#62;#34; #124;]<br/>\"| s1"), "{mermaid}");
    for line in mermaid.lines().skip(1) {
        assert_eq!(line.matches('"').count() % 2, 0, "unbalanced quotes: {line}");
    }
}

/// The text content of every `<text>` element of an SVG, entities kept.
fn svg_texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        let Some(open_end) = rest[start..].find('>') else { break };
        let body = &rest[start + open_end + 1..];
        let Some(close) = body.find("</text>") else { break };
        let inner = &body[..close];
        // Drop nested tags (tspan, textPath), keep their text.
        let mut text = String::new();
        let mut in_tag = false;
        for c in inner.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        out.push(text);
        rest = &body[close..];
    }
    out
}

/// Checks that tags open and close in order and that no text holds a raw `<` or `&`.
fn assert_well_formed(svg: &str) {
    let body = svg.trim_start().strip_prefix("<?xml").and_then(|s| s.split_once("?>")).map_or(svg, |(_, b)| b);
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| entity.starts_with(e)),
                "a raw `&` in text: {text}"
            );
        }
        let Some(gt) = rest[lt..].find('>') else { panic!("unclosed tag in {rest}") };
        let tag = &rest[lt + 1..lt + gt];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_alphanumeric()).collect();
        if tag.starts_with('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(name);
        }
        rest = &rest[lt + gt + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn svg_has_a_box_per_step_and_escaped_labels() {
    let g = graph(small_flow());
    let svg = g.to_svg().unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert_well_formed(&svg);
    assert!(svg.matches("<rect").count() >= g.nodes.len(), "{svg}");
    let texts = svg_texts(&svg);
    for node in &g.nodes {
        assert!(texts.iter().any(|t| t.starts_with(&node.id)), "no box text for {}: {texts:?}", node.id);
    }
    for label in ["when big", "none", "on_error", "start", "end"] {
        assert!(texts.iter().any(|t| t == label), "no `{label}` in {texts:?}");
    }

    let svg = hostile().to_svg().unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("say &quot;hi&quot; &lt;b&gt;&amp;amp; &lt;/b&gt;"), "{svg}");
    assert!(!svg.contains("<b>"), "{svg}");
}

#[test]
fn svg_lays_out_loops_self_loops_and_parallel_edges() {
    let g = graph(json!({"version": 1, "id": "loops", "steps": [
        {"id": "a", "type": "choose", "cases": {"again": "a", "back": "a", "on": "b"}, "outcomes": {"x": "b"}},
        {"id": "b", "type": "choose", "cases": {"up": "a"}, "outcomes": {"down": "c"}, "on_error": "a"},
        {"id": "c", "type": "say", "next": "a", "on_error": "end"}
    ]}));
    let svg = g.to_svg().unwrap();
    assert_well_formed(&svg);
    for id in ["a", "b", "c"] {
        assert!(svg_texts(&svg).iter().any(|t| t.starts_with(id)), "{svg}");
    }
}

/// Random graphs (a fixed seed): the layout never panics, whatever the loops, self-loops and
/// parallel edges.
#[test]
fn svg_lays_out_random_graphs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..3000 {
        let n = rng.gen_range(1..10);
        let nodes = (0..n)
            .map(|i| Node {
                id: format!("s{i}"),
                step_type: "say".into(),
                does: Vec::new(),
                label: None,
                start: i == 0,
                end: false,
                fallback: false,
            })
            .collect();
        let edges = (0..rng.gen_range(0..3 * n))
            .map(|_| {
                let to = rng.gen_range(0..=n);
                Edge {
                    from: rng.gen_range(0..n),
                    to: if to == n { Endpoint::End } else { Endpoint::Step(to) },
                    kind: match rng.gen_range(0..3) {
                        0 => EdgeKind::Next,
                        1 => EdgeKind::OnError,
                        _ => EdgeKind::Jump("case".into()),
                    },
                }
            })
            .collect();
        let g = FlowGraph { flow_id: "r".into(), name: None, nodes, edges };
        let svg = g.to_svg().unwrap_or_else(|e| panic!("{e}: {g:?}"));
        assert_well_formed(&svg);
    }
}

#[test]
fn svg_refuses_a_graph_too_costly_to_lay_out_at_once() {
    // 60 steps, each going to the next two: the paths through it are a Fibonacci number.
    let n = 60;
    let nodes = (0..n)
        .map(|i| Node {
            id: format!("s{i}"),
            step_type: "say".into(),
            does: Vec::new(),
            label: None,
            start: i == 0,
            end: false,
            fallback: false,
        })
        .collect();
    let edges = (0..n)
        .flat_map(|i| {
            let to = |j: usize| if j < n { Endpoint::Step(j) } else { Endpoint::End };
            [
                Edge { from: i, to: to(i + 1), kind: EdgeKind::Next },
                Edge { from: i, to: to(i + 2), kind: EdgeKind::OnError },
            ]
        })
        .collect();
    let g = FlowGraph { flow_id: "diamonds".into(), name: None, nodes, edges };
    let started = std::time::Instant::now();
    let err = g.to_svg().unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(matches!(err, GraphError::TooComplex { steps: 60, .. }), "{err}");
    assert!(err.to_string().contains("--format dot"), "{err}");
    assert!(g.render(Format::Dot).unwrap().contains("\"s59\""), "DOT has no such limit");
}

#[test]
fn boxes_say_what_each_step_does() {
    let g = graph(json!({"version": 1, "id": "does", "steps": [
        {"id": "hello", "type": "say", "text": "Hello   {{name}},\nwelcome!"},
        {"id": "ask_id", "type": "say", "text": "Your id?", "save_as": "id"},
        {"id": "lookup", "type": "say", "integration": "crm",
         "request": {"method": "post", "url": "https://api.example.com/contacts.info"},
         "variables": {"last_name": "data.last_name", "first_name": "data.first_name"}},
        {"id": "fetch", "type": "say", "request": {"url": "https://api.example.com/a/very/long/path/that/goes/on/and/on/and/on/and/on"}},
        {"id": "who", "type": "say", "flow": "identify", "outputs": {"customer": "customer_id"}},
        {"id": "plain", "type": "stop"}
    ]}));
    assert_eq!(g.nodes[0].lines(), ["hello", "say", "“Hello {{name}}, welcome!”"]);
    assert_eq!(g.nodes[1].lines(), ["ask_id", "say", "“Your id?”", "answer → id"]);
    assert_eq!(
        g.nodes[2].lines(),
        [
            "lookup",
            "say",
            "POST https://api.example.com/contacts.info",
            "with the token of crm",
            "sets last_name, first_name"
        ]
    );
    let get = &g.nodes[3].does[0];
    assert!(get.starts_with("GET https://api.example.com/") && get.ends_with('…'), "{get}");
    assert_eq!(get.chars().count(), MAX_SUMMARY_CHARS);
    assert_eq!(g.nodes[4].lines(), ["who", "say", "runs flow identify", "sets customer"]);
    assert_eq!(g.nodes[5].lines(), ["plain", "stop"]);
    let texts = svg_texts(&g.to_svg().unwrap());
    assert!(texts.iter().any(|t| t.contains("POST https://api.example.com/contacts.info")), "{texts:?}");
}

/// A condition is a box of its own between the two steps (laid out like a step, it lies over
/// none), `next` arrows carry no text, and the text is in the console's font.
#[test]
fn svg_labels_are_boxes_of_their_own_in_the_console_s_font() {
    let g = graph(small_flow());
    let svg = g.to_svg().unwrap();
    assert_well_formed(&svg);
    let texts = svg_texts(&svg);
    assert!(!texts.iter().any(|t| t == "next"), "{texts:?}");
    // Each label's box is a rect of its own: the steps, start/end and 3 labels (when big, none,
    // on_error).
    assert!(svg.matches("<rect").count() >= g.nodes.len() + 3, "{svg}");
    let boxes = rects(&svg);
    for label in ["when big", "none", "on_error"] {
        assert!(texts.iter().any(|t| t == label), "no `{label}` in {texts:?}");
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "boxes overlap: {a:?} {b:?}\n{svg}");
        }
    }
    let style = format!("<style>text {{ font-family: {} !important; }}</style>", FONT_FAMILY.replace('"', "&quot;"));
    assert!(svg.contains(&style), "{svg}");
    assert_eq!(super::svg::font_style(), style);
}

/// The `x`, `y`, `width` and `height` of every `<rect>` but the background (the first).
fn rects(svg: &str) -> Vec<(f64, f64, f64, f64)> {
    let attr = |tag: &str, name: &str| -> f64 {
        let at = tag.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3);
        at.and_then(|i| tag[i..].split('"').next()?.parse().ok()).unwrap_or(0.0)
    };
    svg.split("<rect")
        .skip(2)
        .map(|t| {
            let tag = t.split('>').next().unwrap_or("");
            (attr(tag, "x"), attr(tag, "y"), attr(tag, "width"), attr(tag, "height"))
        })
        .collect()
}
