//! SVG, laid out by `layout-rs` (a Sugiyama-style layered layout, no Graphviz needed): a box
//! per step with its lines, a `start` circle and an `end` double circle, labelled arrows.
//! `layout-rs` escapes the text it writes (`&`, `<`, `>`, quotes).

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{EdgeKind, Endpoint, FlowGraph};

const FONT_SIZE: usize = 14;
const EDGE_FONT_SIZE: usize = 12;

/// Most arrows laid out. The layered layout's time grows much faster than the number of arrows
/// for flows whose arrows skip layers (about a second at 50; minutes past 100); a larger flow
/// gets a picture that says how to draw it with Graphviz instead.
pub const MAX_SVG_ARROWS: usize = 50;

/// Text as `layout-rs` may write it into XML: control characters (which XML 1.0 forbids) become
/// spaces; `\n` stays, it separates a box's lines.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect()
}

/// `text` escaped for XML character data and attribute values.
fn xml(text: &str) -> String {
    clean(text).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The picture of a flow too large to lay out here.
fn too_large(graph: &FlowGraph) -> String {
    let arrows = graph.edges.len() + 1;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="720" height="70" viewBox="0 0 720 70"><rect width="720" height="70" fill="white"/><text x="10" y="28" font-family="sans-serif" font-size="14">Flow {}: {} steps and {arrows} arrows, more than the {MAX_SVG_ARROWS} drawn here.</text><text x="10" y="52" font-family="sans-serif" font-size="14">Draw it with Graphviz: tern flows graph FLOW_FILE --format dot | dot -Tsvg</text></svg>"#,
        xml(&graph.flow_id),
        graph.nodes.len()
    )
}

pub(super) fn render(graph: &FlowGraph) -> String {
    if graph.edges.len() + 1 > MAX_SVG_ARROWS {
        return too_large(graph);
    }
    let direction = Orientation::TopToBottom;
    // Shapes are created in the other orientation, as layout-rs's own DOT reader does.
    let shape_direction = direction.flip();
    let mut vg = VisualGraph::new(direction);
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
        vg.add_edge(arrow("", LineStyleKind::Normal, "black"), start, *first);
    }
    for edge in &graph.edges {
        let Some(from) = steps.get(edge.from) else { continue };
        let to = match edge.to {
            Endpoint::Step(i) => steps.get(i).copied(),
            Endpoint::End => end,
        };
        let Some(to) = to else { continue };
        let (style, color) = match edge.kind {
            EdgeKind::OnError => (LineStyleKind::Dashed, "red"),
            _ => (LineStyleKind::Normal, "black"),
        };
        vg.add_edge(arrow(&clean(edge.label()), style, color), *from, to);
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    svg.finalize()
}

fn arrow(text: &str, style: LineStyleKind, color: &str) -> Arrow {
    let look = StyleAttr::new(Color::fast(color), 1, None, 0, EDGE_FONT_SIZE);
    Arrow::new(LineEndKind::None, LineEndKind::Arrow, style, text, &look, &None, &None)
}

#[cfg(test)]
mod limits {
    use super::super::{Edge, EdgeKind, Endpoint, FlowGraph, Node};

    fn chain(steps: usize, label: &str) -> FlowGraph {
        let nodes = (0..steps)
            .map(|i| Node {
                id: format!("s{i}"),
                step_type: "send_message".into(),
                label: Some(label.to_string()),
                start: i == 0,
                end: i + 1 == steps,
                fallback: false,
            })
            .collect();
        let edges = (0..steps.saturating_sub(1))
            .map(|i| Edge { from: i, to: Endpoint::Step(i + 1), kind: EdgeKind::Next })
            .collect();
        FlowGraph { flow_id: "big<&>".into(), name: None, nodes, edges }
    }

    #[test]
    fn control_characters_never_reach_the_xml() {
        let svg = super::render(&chain(3, "bell\u{7}here"));
        assert!(!svg.contains('\u{7}'), "{svg}");
    }

    #[test]
    fn a_flow_with_too_many_arrows_gets_a_picture_that_says_how_to_draw_it() {
        let svg = super::render(&chain(super::MAX_SVG_ARROWS + 5, "x"));
        assert!(svg.contains("more than the 50 drawn here") && svg.contains("--format dot"), "{svg}");
        assert!(svg.contains("Flow big&lt;&amp;&gt;:"), "{svg}");
    }
}
