//! A picture of a flow: the [`FlowGraph`] of a compiled flow (one node per step, one edge per
//! way out of a step) and its renderings as Graphviz DOT, a Mermaid flowchart, and SVG laid
//! out by `layout-rs`.
//!
//! The edges are the executor's rules, not the document's text: a step's `next` (or, without
//! one, the following step; past the last step the run ends), its `on_error`, and every target
//! its type declared through [`crate::BuildContext::target`] (branch cases, plugin outcomes),
//! so step types added later are drawn without changes here. A step whose type ends the run
//! (`end`) has no `next` edge.
//!
//! Ids and labels come from flow authors; each renderer escapes them for its format.

mod cost;
mod dot;
mod mermaid;
mod summary;
mod svg;

pub use summary::step_summary;

use crate::step::{CompiledFlow, Jump};

/// The longest node or edge label, in characters (longer ones end with `…`).
pub const MAX_LABEL_CHARS: usize = 48;

/// The longest line of what a step does (a request's method and URL), in characters.
pub const MAX_SUMMARY_CHARS: usize = 64;

/// The font of the SVG picture's text: the console's own (a CSS `font-family` list), so that
/// the picture reads like the page around it.
pub const FONT_FAMILY: &str = r#"system-ui, -apple-system, "Segoe UI", sans-serif"#;

/// Where an edge leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The step at this index of [`FlowGraph::nodes`].
    Step(usize),
    /// The end of the run.
    End,
}

/// Why the executor takes an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// The step's `next`.
    Next,
    /// No `next`: the following step (or the end, after the last step).
    FallThrough,
    /// The step's `on_error`.
    OnError,
    /// A target the step declared in its own fields, with its label (a branch case's
    /// condition, a plugin outcome).
    Jump(String),
}

/// One way out of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The step's index in [`FlowGraph::nodes`].
    pub from: usize,
    /// Where it leads.
    pub to: Endpoint,
    /// Why.
    pub kind: EdgeKind,
}

impl Edge {
    /// The text shown on the edge: `next`, `on_error`, or the jump's label.
    pub fn label(&self) -> &str {
        match &self.kind {
            EdgeKind::Next | EdgeKind::FallThrough => "next",
            EdgeKind::OnError => "on_error",
            EdgeKind::Jump(label) => label,
        }
    }
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The step id.
    pub id: String,
    /// The step type.
    pub step_type: String,
    /// What the step does, in short lines (its message, request, variables; see
    /// [`step_summary`]).
    pub does: Vec<String>,
    /// The step's `description`, on one line and shortened.
    pub label: Option<String>,
    /// The run starts here (the first step).
    pub start: bool,
    /// The run can end right after this step: its type ends the run, or an edge leads to `end`.
    pub end: bool,
    /// The flow-level `on_error` step: where a failing step without its own `on_error` goes.
    pub fallback: bool,
}

impl Node {
    /// The lines shown in the node's box: the id, the type, what it does, the label and, for
    /// the flow's `on_error` step, a note saying so.
    pub fn lines(&self) -> Vec<&str> {
        let mut lines = vec![self.id.as_str(), self.step_type.as_str()];
        lines.extend(self.does.iter().map(String::as_str));
        lines.extend(self.label.as_deref());
        if self.fallback {
            lines.push("flow on_error");
        }
        lines
    }
}

/// The graph of a flow's steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowGraph {
    /// The flow's id.
    pub flow_id: String,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// The steps, in document order.
    pub nodes: Vec<Node>,
    /// The ways out of each step, by step, in the order `next`, declared targets, `on_error`.
    pub edges: Vec<Edge>,
}

/// Why a picture could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The flow has too many ways through it for the built-in SVG layout to finish in time.
    #[error(
        "flow `{flow}` ({steps} steps) has too many paths through it for the built-in SVG layout; draw it with `--format dot` (Graphviz) or `--format mermaid`"
    )]
    TooComplex {
        /// The flow's id.
        flow: String,
        /// Its number of steps.
        steps: usize,
    },
    /// The layout library failed on this graph.
    #[error(
        "the built-in SVG layout failed on flow `{flow}`; draw it with `--format dot` (Graphviz) or `--format mermaid`"
    )]
    Layout {
        /// The flow's id.
        flow: String,
    },
}

/// An output format of [`FlowGraph::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// SVG, laid out by `layout-rs`.
    Svg,
    /// Graphviz DOT text.
    Dot,
    /// A Mermaid `flowchart TD`.
    Mermaid,
}

impl FlowGraph {
    /// The graph of a compiled flow.
    pub fn of(flow: &CompiledFlow) -> Self {
        let n = flow.steps.len();
        let endpoint = |jump: Jump| match jump {
            Jump::Step(i) => Endpoint::Step(i),
            Jump::End => Endpoint::End,
        };
        let mut edges = Vec::new();
        for (i, step) in flow.steps.iter().enumerate() {
            if !step.behavior.terminal {
                let (to, kind) = match step.next {
                    Some(jump) => (endpoint(jump), EdgeKind::Next),
                    None if i + 1 < n => (Endpoint::Step(i + 1), EdgeKind::FallThrough),
                    None => (Endpoint::End, EdgeKind::FallThrough),
                };
                edges.push(Edge { from: i, to, kind });
            }
            for jump in &step.jumps {
                let label = jump.label.clone().unwrap_or_else(|| label_of_pointer(&jump.pointer));
                edges.push(Edge { from: i, to: endpoint(jump.jump), kind: EdgeKind::Jump(short(&label)) });
            }
            if let Some(jump) = step.on_error {
                edges.push(Edge { from: i, to: endpoint(jump), kind: EdgeKind::OnError });
            }
        }
        let fallback = match flow.on_error {
            Some(Jump::Step(i)) => Some(i),
            _ => None,
        };
        let nodes = flow
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| Node {
                id: step.id.to_string(),
                step_type: step.type_name.to_string(),
                does: step.summary.clone(),
                label: step.description.as_deref().map(short).filter(|l| !l.is_empty()),
                start: i == 0,
                end: step.behavior.terminal || edges.iter().any(|e| e.from == i && e.to == Endpoint::End),
                fallback: fallback == Some(i),
            })
            .collect();
        Self { flow_id: flow.id.to_string(), name: flow.name.clone(), nodes, edges }
    }

    /// Whether an edge leads to the end of the run (renderers draw an `end` node then).
    pub fn reaches_end(&self) -> bool {
        self.edges.iter().any(|e| e.to == Endpoint::End)
    }

    /// The graph in `format`.
    ///
    /// # Errors
    /// Only for SVG, as [`FlowGraph::to_svg`].
    pub fn render(&self, format: Format) -> Result<String, GraphError> {
        match format {
            Format::Svg => self.to_svg(),
            Format::Dot => Ok(self.to_dot()),
            Format::Mermaid => Ok(self.to_mermaid()),
        }
    }

    /// Graphviz DOT text (`digraph`), for `dot -Tsvg` and the tools that read it.
    pub fn to_dot(&self) -> String {
        dot::render(self)
    }

    /// A Mermaid `flowchart TD`, for Markdown renderers that draw Mermaid blocks.
    pub fn to_mermaid(&self) -> String {
        mermaid::render(self)
    }

    /// A standalone SVG document, laid out by `layout-rs` (no Graphviz needed).
    ///
    /// # Errors
    /// [`GraphError::TooComplex`] for a graph with so many paths through it that the layout
    /// would take too long; [`GraphError::Layout`] when the layout library fails on it.
    pub fn to_svg(&self) -> Result<String, GraphError> {
        svg::render(self)
    }

    /// [`FlowGraph::to_svg`], or, when the flow cannot be drawn, a small SVG that says why and
    /// how to draw it (for an `<img>` in the console).
    pub fn to_svg_or_note(&self) -> String {
        self.to_svg().unwrap_or_else(|e| svg::note(&e.to_string()))
    }
}

/// A label for a target a step declared without one, from its pointer: the last token
/// (`/outcomes/found` → `found`), or the pointer without `next` when that token is a number
/// (`/cases/0/next` → `cases/0`).
fn label_of_pointer(pointer: &str) -> String {
    let mut tokens: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    if tokens.len() > 1 && tokens.last().is_some_and(|t| t == "next") {
        tokens.pop();
    }
    match tokens.last() {
        Some(last) if !last.is_empty() && !last.chars().all(|c| c.is_ascii_digit()) => last.clone(),
        _ => tokens.join("/"),
    }
}

/// `text` on one line (runs of whitespace become one space), at most [`MAX_LABEL_CHARS`].
fn short(text: &str) -> String {
    short_to(text, MAX_LABEL_CHARS)
}

/// `text` on one line, at most `max` characters (longer ones end with `…`).
fn short_to(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
