//! SVG, laid out by `layout-rs` (a layered layout, no Graphviz needed): a box per step with its
//! lines, a `start` circle and an `end` double circle, arrows. An arrow's label (a branch
//! condition, `on_error`) is a small rounded box of its own on the arrow, laid out like a step,
//! so that it never lies over a step's box; plain `next` arrows carry no label. The text is in
//! the console's font ([`super::FONT_FAMILY`]). `layout-rs` escapes the text it writes (`&`,
//! `<`, `>`, quotes).
//!
//! `layout-rs` 0.1 has two weaknesses this module guards against: its work grows with the
//! number of paths through the graph (see [`super::cost`]; too costly a graph is refused with
//! [`GraphError::TooComplex`]), and for a few rare graphs it panics on a zero-length vector
//! while routing an arrow. The layout then runs again in other settings (without the edge
//! crossing optimisation, left to right, without arrow labels), each attempt behind
//! `catch_unwind` with the panic message kept off standard error; when every attempt fails the
//! result is [`GraphError::Layout`].

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{EdgeKind, Endpoint, FlowGraph, GraphError, cost};

const FONT_SIZE: usize = 14;
const EDGE_FONT_SIZE: usize = 12;

/// The most work (see [`cost::work`]) a layout may take: about a second.
const MAX_LAYOUT_WORK: u64 = 2_000_000_000;

/// One way of laying the graph out.
#[derive(Clone, Copy)]
struct Attempt {
    direction: Orientation,
    optimize: bool,
    labels: bool,
}

const ATTEMPTS: [Attempt; 4] = [
    Attempt { direction: Orientation::TopToBottom, optimize: true, labels: true },
    Attempt { direction: Orientation::TopToBottom, optimize: false, labels: true },
    Attempt { direction: Orientation::LeftToRight, optimize: true, labels: true },
    Attempt { direction: Orientation::TopToBottom, optimize: true, labels: false },
];

pub(super) fn render(graph: &FlowGraph) -> Result<String, GraphError> {
    let arrows = merged_edges(graph);
    // Nodes: `start`, the steps, `end`.
    let end = graph.nodes.len() + 1;
    let mut pairs: Vec<(usize, usize)> = graph.nodes.first().map(|_| (0, 1)).into_iter().collect();
    pairs.extend(arrows.iter().map(|a| {
        (
            a.from + 1,
            match a.to {
                Endpoint::Step(i) => i + 1,
                Endpoint::End => end,
            },
        )
    }));
    let work = cost::work(end + 1, &pairs);
    if work > MAX_LAYOUT_WORK {
        return Err(GraphError::TooComplex { flow: graph.flow_id.clone(), steps: graph.nodes.len() });
    }
    ATTEMPTS
        .iter()
        .find_map(|attempt| quietly(|| draw(graph, &arrows, *attempt)))
        .ok_or_else(|| GraphError::Layout { flow: graph.flow_id.clone() })
}

/// Text as `layout-rs` may write it into XML: control characters (which XML 1.0 forbids)
/// become spaces; `\n` stays, it separates a box's lines.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect()
}

/// `text` escaped for XML character data.
fn xml(text: &str) -> String {
    clean(text).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A small SVG that says, in words, why a flow is not drawn (for an `<img>` on a page).
pub(super) fn note(text: &str) -> String {
    let width = 8 * text.chars().count().min(160) + 20;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40" viewBox="0 0 {width} 40"><rect width="{width}" height="40" fill="white"/><text x="10" y="25" font-family="sans-serif" font-size="13">{}</text></svg>"#,
        xml(text)
    )
}

/// The style sheet that puts the picture's text in [`super::FONT_FAMILY`].
pub(super) fn font_style() -> String {
    format!("<style>text {{ font-family: {} !important; }}</style>", xml(super::FONT_FAMILY))
}

fn draw(graph: &FlowGraph, arrows: &[MergedEdge], attempt: Attempt) -> String {
    // Shapes are created in the other orientation, as layout-rs's own DOT reader does.
    let shape_direction = attempt.direction.flip();
    let mut vg = VisualGraph::new(attempt.direction);
    let element = |shape: ShapeKind, line_width: usize, fill: &str| {
        let size = get_shape_size(shape_direction, &shape, FONT_SIZE, false);
        let look = StyleAttr::new(Color::fast("black"), line_width, Some(Color::fast(fill)), 6, FONT_SIZE);
        Element::create(shape, look, shape_direction, size)
    };
    let start = vg.add_node(element(ShapeKind::new_circle("start"), 1, "white"));
    let steps: Vec<_> = graph
        .nodes
        .iter()
        .map(|node| {
            let fill = if node.start {
                "honeydew"
            } else if node.end {
                "whitesmoke"
            } else {
                "white"
            };
            let width = if node.start || node.end { 2 } else { 1 };
            vg.add_node(element(ShapeKind::new_box(&clean(&node.lines().join("\n"))), width, fill))
        })
        .collect();
    let end = graph.reaches_end().then(|| vg.add_node(element(ShapeKind::new_double_circle("end"), 1, "white")));
    if let Some(first) = steps.first() {
        vg.add_edge(arrow(false, true), start, *first);
    }
    for edge in arrows {
        let Some(from) = steps.get(edge.from) else { continue };
        let to = match edge.to {
            Endpoint::Step(i) => steps.get(i).copied(),
            Endpoint::End => end,
        };
        let Some(to) = to else { continue };
        let label = if attempt.labels { edge.label.as_str() } else { "" };
        if label.is_empty() || label == "next" {
            vg.add_edge(arrow(edge.on_error, true), *from, to);
        } else {
            // The label on an edge of its own: a box the layout keeps apart from the steps.
            let color = if edge.on_error { "red" } else { "gray" };
            let shape = ShapeKind::new_box(&clean(label));
            let size = get_shape_size(shape_direction, &shape, EDGE_FONT_SIZE, false);
            let look = StyleAttr::new(Color::fast(color), 1, Some(Color::fast("ivory")), 12, EDGE_FONT_SIZE);
            let mid = vg.add_node(Element::create(shape, look, shape_direction, size));
            vg.add_edge(arrow(edge.on_error, false), *from, mid);
            vg.add_edge(arrow(edge.on_error, true), mid, to);
        }
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, !attempt.optimize, false, &mut svg);
    with_font(&svg.finalize())
}

/// The SVG with its text in [`super::FONT_FAMILY`]: a style sheet right after the `<svg>` tag,
/// `!important` so that it wins over the font classes `layout-rs` writes (`Times, serif`).
fn with_font(svg: &str) -> String {
    let style = font_style();
    match svg.find("<svg").and_then(|at| svg[at..].find('>').map(|end| at + end + 1)) {
        Some(at) => format!("{}{style}{}", &svg[..at], &svg[at..]),
        None => svg.to_string(),
    }
}

/// The arrows between two steps, as one.
struct MergedEdge {
    from: usize,
    to: Endpoint,
    /// The labels of every edge between them (`next, on_error`).
    label: String,
    /// Every edge is an `on_error` (drawn dashed and red).
    on_error: bool,
}

/// One arrow per pair of steps, in the order of the first edge between them: layout-rs draws
/// parallel edges on top of each other.
fn merged_edges(graph: &FlowGraph) -> Vec<MergedEdge> {
    let mut merged: Vec<MergedEdge> = Vec::new();
    for edge in &graph.edges {
        let on_error = edge.kind == EdgeKind::OnError;
        match merged.iter_mut().find(|m| m.from == edge.from && m.to == edge.to) {
            Some(m) => {
                m.label.push_str(", ");
                m.label.push_str(edge.label());
                m.on_error &= on_error;
            }
            None => merged.push(MergedEdge { from: edge.from, to: edge.to, label: edge.label().into(), on_error }),
        }
    }
    merged
}

/// An arrow without text (labels are boxes of their own); `head`: with an arrowhead (the
/// half of a labelled edge that leads to its label box has none).
fn arrow(on_error: bool, head: bool) -> Arrow {
    let (style, color) = if on_error { (LineStyleKind::Dashed, "red") } else { (LineStyleKind::Normal, "black") };
    let look = StyleAttr::new(Color::fast(color), 1, None, 0, EDGE_FONT_SIZE);
    let end = if head { LineEndKind::Arrow } else { LineEndKind::None };
    Arrow::new(LineEndKind::None, end, style, "", &look, &None, &None)
}

thread_local! {
    /// Set while this thread runs a layout whose panics are caught (their message is not
    /// printed).
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, returning `None` if it panics, without the panic message: a panic hook installed
/// once stays silent while the thread is inside `quietly` and hands every other panic to the
/// hook that was there before.
fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.ok()
}

#[cfg(test)]
mod xml_text {
    #[test]
    fn control_characters_never_reach_the_xml_and_notes_are_escaped() {
        assert_eq!(super::clean("bell\u{7}here\nline"), "bell here\nline");
        let n = super::note("flow `a<&>` is too large\u{7}");
        assert!(n.contains("flow `a&lt;&amp;&gt;` is too large ") && !n.contains('\u{7}'), "{n}");
    }
}
