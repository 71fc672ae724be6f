//! Graphviz DOT: one quoted node per step (named by its id), `(start)` and `(end)` nodes for
//! where the run starts and ends, one labelled edge per way out of a step.

use std::fmt::Write as _;

use super::{EdgeKind, Endpoint, FlowGraph};

/// The node that marks where the run starts (no step id has parentheses).
const START: &str = "(start)";
/// The node every edge to the end of the run leads to.
const END: &str = "(end)";

pub(super) fn render(graph: &FlowGraph) -> String {
    let mut out = format!("digraph {} {{\n", quote(&graph.flow_id));
    if let Some(name) = &graph.name {
        let _ = writeln!(out, "  label={};", quote(name));
        out.push_str("  labelloc=t;\n");
    }
    out.push_str("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    let _ = writeln!(out, "  {} [shape=circle, label=\"start\"];", quote(START));
    if graph.reaches_end() {
        let _ = writeln!(out, "  {} [shape=doublecircle, label=\"end\"];", quote(END));
    }
    for node in &graph.nodes {
        let mut attrs = vec![format!("label={}", quote(&node.lines().join("\n")))];
        if node.start {
            attrs.push("penwidth=2".into());
        }
        if node.end {
            attrs.push("peripheries=2".into());
        }
        let _ = writeln!(out, "  {} [{}];", quote(&node.id), attrs.join(", "));
    }
    if let Some(first) = graph.nodes.first() {
        let _ = writeln!(out, "  {} -> {};", quote(START), quote(&first.id));
    }
    for edge in &graph.edges {
        let Some(from) = graph.nodes.get(edge.from) else { continue };
        let to = match edge.to {
            Endpoint::Step(i) => match graph.nodes.get(i) {
                Some(n) => n.id.as_str(),
                None => continue,
            },
            Endpoint::End => END,
        };
        let mut attrs = vec![format!("label={}", quote(edge.label()))];
        if edge.kind == EdgeKind::OnError {
            attrs.push("style=dashed".into());
            attrs.push("color=red".into());
        }
        let _ = writeln!(out, "  {} -> {} [{}];", quote(&from.id), quote(to), attrs.join(", "));
    }
    out.push_str("}\n");
    out
}

/// A DOT quoted string: `\` and `"` escaped, line breaks as `\n` (a centred line), other
/// control characters as spaces, and `&` as `&amp;` (Graphviz reads `&name;` in labels as an
/// HTML entity).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '&' => out.push_str("&amp;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_what_dot_reads_specially() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quote("x\r\ny\nz\rw"), r#""x\ny\nz\nw""#);
        assert_eq!(quote("<b>&amp;\t"), "\"<b>&amp;amp; \"");
    }
}
