//! Mermaid `flowchart TD`: steps are `s0`, `s1`… (step ids such as `end` would be Mermaid
//! keywords) with the id in the label; `flow_start` and `flow_end` mark where the run starts
//! and ends.

use std::fmt::Write as _;

use super::{EdgeKind, Endpoint, FlowGraph, Node};

pub(super) fn render(graph: &FlowGraph) -> String {
    let mut out = String::from("flowchart TD\n");
    out.push_str("    flow_start((\"start\"))\n");
    for (i, node) in graph.nodes.iter().enumerate() {
        let lines: Vec<String> = node.lines().into_iter().map(text).collect();
        let _ = writeln!(out, "    s{i}[\"{}\"]", lines.join("<br/>"));
    }
    if graph.reaches_end() {
        out.push_str("    flow_end(((\"end\")))\n");
    }
    if !graph.nodes.is_empty() {
        out.push_str("    flow_start --> s0\n");
    }
    for edge in &graph.edges {
        let to = match edge.to {
            Endpoint::Step(i) => format!("s{i}"),
            Endpoint::End => "flow_end".into(),
        };
        let arrow = if edge.kind == EdgeKind::OnError { "-.->" } else { "-->" };
        let _ = writeln!(out, "    s{} {arrow}|\"{}\"| {to}", edge.from, text(edge.label()));
    }
    let ids = |pick: fn(&Node) -> bool| -> Vec<String> {
        graph.nodes.iter().enumerate().filter(|(_, n)| pick(n)).map(|(i, _)| format!("s{i}")).collect()
    };
    let classes = [
        ("first", "stroke-width:3px", ids(|n| n.start)),
        ("last", "stroke-width:3px,stroke-dasharray:4 2", ids(|n| n.end)),
    ];
    for (class, style, members) in classes {
        if !members.is_empty() {
            let _ = writeln!(out, "    classDef {class} {style}");
            let _ = writeln!(out, "    class {} {class}", members.join(","));
        }
    }
    out
}

/// Text inside a quoted Mermaid label: the characters Mermaid or the HTML it renders to read
/// specially become entity codes (`#34;` for `"`), and line breaks become `<br/>`.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("#34;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#38;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            '|' => out.push_str("#124;"),
            '`' => out.push_str("#96;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("<br/>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn text_escapes_what_mermaid_reads_specially() {
        assert_eq!(text(r#"say "hi" #1"#), "say #34;hi#34; #35;1");
        assert_eq!(text("<b>&</b> | `x`"), "#60;b#62;#38;#60;/b#62; #124; #96;x#96;");
        assert_eq!(text("a\r\nb\nc"), "a<br/>b<br/>c");
    }
}
