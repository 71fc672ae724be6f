//! `tern flows graph`: a picture of a flow (SVG, Graphviz DOT or Mermaid), drawn by
//! [`tern_engine::graph`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use tern_engine::graph::{FlowGraph, Format};

use super::context::Shared;

#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(subcommand)]
    command: FlowsCommand,
}

#[derive(Debug, Subcommand)]
enum FlowsCommand {
    /// Draw a flow: a box per step, arrows for `next` (or the following step), `on_error`
    /// and branch cases, from `start` to `end`. An invalid flow prints its problems instead.
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
struct GraphArgs {
    /// The flow file.
    #[arg(value_name = "FLOW_FILE")]
    flow: PathBuf,
    /// Output format; without it, taken from the `-o` file's extension (`.dot`/`.gv`,
    /// `.mmd`), else `svg`.
    #[arg(long, value_enum)]
    format: Option<GraphFormat>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    /// SVG laid out by Tern itself (no Graphviz needed).
    Svg,
    /// Graphviz DOT text (`dot -Tpng`).
    Dot,
    /// A Mermaid `flowchart TD` (Markdown renderers draw it).
    Mermaid,
}

impl From<GraphFormat> for Format {
    fn from(f: GraphFormat) -> Self {
        match f {
            GraphFormat::Svg => Format::Svg,
            GraphFormat::Dot => Format::Dot,
            GraphFormat::Mermaid => Format::Mermaid,
        }
    }
}

pub async fn flows(shared: &Shared, args: FlowsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FlowsCommand::Graph(args) => graph(shared, args).await,
    }
}

async fn graph(shared: &Shared, args: GraphArgs) -> anyhow::Result<ExitCode> {
    let registry = super::registry(shared).await?;
    // Drawing needs no integration: they are not checked against the store.
    let flow = super::load_file(&args.flow, &registry, None, true)?;
    let format = args.format.map(Format::from).unwrap_or_else(|| format_of(args.output.as_deref()));
    let mut text = FlowGraph::of(&flow).render(format)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The format an output file's extension names; SVG otherwise.
fn format_of(output: Option<&Path>) -> Format {
    match output.and_then(Path::extension).and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("dot" | "gv") => Format::Dot,
        Some("mmd" | "mermaid") => Format::Mermaid,
        _ => Format::Svg,
    }
}
