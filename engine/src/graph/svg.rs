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

pub(super) fn render(graph: &FlowGraph) -> String {
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
            vg.add_node(element(ShapeKind::new_box(&node.lines().join("\n")), width, fill))
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
        vg.add_edge(arrow(edge.label(), style, color), *from, to);
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    svg.finalize()
}

fn arrow(text: &str, style: LineStyleKind, color: &str) -> Arrow {
    let look = StyleAttr::new(Color::fast(color), 1, None, 0, EDGE_FONT_SIZE);
    Arrow::new(LineEndKind::None, LineEndKind::Arrow, style, text, &look, &None, &None)
}
