//! `tern runs list|show`: run history from the data directory's store (what `tern serve`
//! recorded), readable while the server runs. Thin adapter over
//! [`ConversationStore::runs`](tern_engine::conversation::ConversationStore::runs) and `run`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tern_engine::conversation::{MAX_RUNS_PAGE, RunHistory, RunId, RunQuery, RunStatus, RunSummary, Unanswered};

use super::context::Shared;
use crate::humanize::{duration_ms as duration, time_ms as time};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List runs, newest activity first.
    List(ListArgs),
    /// Show one run: every activation with what the contact wrote, the replies and the steps.
    Show {
        /// The run id (from `tern runs list` or an answer's `run_id`).
        run_id: String,
        /// Print the run as JSON (the same document as `GET /v1/runs/{id}`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only runs of this flow id.
    #[arg(long, value_name = "FLOW_ID")]
    flow: Option<String>,
    /// Only runs with this status.
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Only runs of this conversation: the channel's own id with --channel, else the id as
    /// this list shows it (`channel:NAME@INCARNATION:ID` for a stored channel's).
    #[arg(long, value_name = "CONVERSATION_ID")]
    conversation: Option<String>,
    /// The channel whose conversation --conversation is (its current incarnation).
    #[arg(long, value_name = "CHANNEL", requires = "conversation")]
    channel: Option<tern_engine::channel::ChannelName>,
    /// How many runs (1 to 200).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=MAX_RUNS_PAGE as i64))]
    limit: u16,
    /// Print the page as JSON (the same document as `GET /v1/runs`).
    #[arg(long)]
    json: bool,
}

/// The stored id of conversation `id` of channel `name` as it is now.
async fn channel_conversation(
    shared: &Shared,
    name: &tern_engine::channel::ChannelName,
    id: &str,
) -> anyhow::Result<String> {
    let channels = super::channels::service(shared).await?;
    match tern_engine::conversation::ConversationId::of_current_channel(&channels, name, id).await {
        Ok(Some(id)) => Ok(id.as_str().to_string()),
        Ok(None) => anyhow::bail!("no channel `{name}` (`tern channels list` shows them)"),
        Err(e) => Err(e.into()),
    }
}

fn parse_status(s: &str) -> Result<RunStatus, tern_engine::conversation::UnknownStatus> {
    s.parse::<RunStatus>()
}

pub async fn runs(shared: &Shared, args: RunsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        shared.has_store(),
        "no store in {}: runs are recorded by `tern serve` (pass the same --data-dir)",
        shared.data_dir().display()
    );
    let store = shared.open_store().await?;
    match args.command {
        RunsCommand::List(a) => {
            let conversation_id = match (&a.channel, a.conversation) {
                (Some(channel), Some(id)) => Some(channel_conversation(shared, channel, &id).await?),
                (_, id) => id,
            };
            let query = RunQuery {
                flow_id: a.flow,
                status: a.status,
                conversation_id,
                after: None,
                limit: usize::from(a.limit),
            };
            let page = store.runs(&query).await.context("could not read run history")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else if page.runs.is_empty() {
                println!(
                    "no runs match (a channel's conversation is found with --channel NAME --conversation ID; runs are kept as long as `tern serve --history-retention` says)"
                );
            } else {
                // History holds what contacts wrote and APIs answered: no control characters.
                print!("{}", super::terminal::safe(&table(&page.runs)));
                if page.next.is_some() {
                    println!("(more runs: raise --limit or narrow with --flow, --status, --conversation)");
                }
            }
        }
        RunsCommand::Show { run_id, json } => {
            // An id that cannot be a run id names no run.
            let run = match RunId::new(run_id.as_str()) {
                Ok(id) => store.run(&id).await.context("could not read run history")?,
                Err(_) => None,
            };
            let Some(run) = run else {
                anyhow::bail!(
                    "no run {run_id} (runs are kept as long as `tern serve --history-retention` says; `tern runs list` shows what is kept)"
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                let error_flow = tern_engine::conversation::error_flow_run_of(&*store, &run)
                    .await
                    .context("could not read run history")?;
                print!("{}", super::terminal::safe(&show(&run, error_flow.as_ref())));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs as aligned columns.
fn table(runs: &[RunSummary]) -> String {
    let header = ["UPDATED (UTC)", "RUN", "FLOW", "CONVERSATION", "CONTACT", "STATUS", "DURATION"];
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            [
                time(r.updated_at_ms),
                r.run_id.to_string(),
                r.flow_id.clone(),
                plain(&r.conversation_id).into_owned(),
                r.contact_id.as_deref().map_or_else(|| "-".into(), |c| plain(c).into_owned()),
                r.status.to_string(),
                duration(r.duration_ms),
            ]
        })
        .collect();
    super::table::table(header, &rows)
}

/// A run as a transcript with its step timeline.
/// The run as text; `error_flow` is the error flow's run its failure started, if any.
fn show(run: &RunHistory, error_flow: Option<&RunHistory>) -> String {
    let s = &run.summary;
    let mut out = String::new();
    let _ = writeln!(out, "run {}  flow {} ({})  {}", s.run_id, s.flow_id, short(&s.flow_version), s.status);
    let _ = writeln!(
        out,
        "conversation {}{}  started {}  {}",
        plain(&s.conversation_id),
        s.contact_id.as_deref().map(|c| format!("  contact {}", plain(c))).unwrap_or_default(),
        time(s.started_at_ms),
        match s.finished_at_ms {
            Some(f) => format!("finished {} ({})", time(f), duration(s.duration_ms)),
            None => format!("last activity {}", time(s.updated_at_ms)),
        }
    );
    for (i, g) in run.segments.iter().enumerate() {
        let _ = writeln!(out, "\n[{}] {}  {}", i + 1, time(g.started_at_ms), g.status);
        if let Some(event) = &g.event {
            let _ = writeln!(out, "  event:   {}", plain(&event.to_string()));
        } else {
            let _ = writeln!(out, "  contact: {}", plain(&g.message));
        }
        for r in &g.replies {
            let _ = writeln!(out, "  tern:    {}", plain(&r.text));
        }
        for t in &g.trace {
            let _ = writeln!(
                out,
                "    {:<24} {:<16} {:<10} {}",
                t.step.as_str(),
                &*t.step_type,
                t.status.as_str(),
                duration(i64::try_from(t.duration_us / 1000).unwrap_or(i64::MAX))
            );
            if let Some(e) = &t.error {
                let _ = writeln!(out, "      error[{}]: {}", e.code, plain(&e.message));
            }
        }
        if let Some(e) = &g.error {
            let _ = writeln!(
                out,
                "  failed{}: [{}] {}",
                e.step.as_ref().map(|s| format!(" at step {}", s.as_str())).unwrap_or_default(),
                e.code,
                plain(&e.message)
            );
        }
    }
    if let Some(e) = error_flow {
        let _ = writeln!(
            out,
            "\nthe error flow {} ran for this failure: run {} ({})",
            e.summary.flow_id, e.summary.run_id, e.summary.status
        );
    }
    match run.unanswered(error_flow) {
        Some(Unanswered::Never) => {
            let _ = writeln!(out, "\nthe contact got no answer: the run ended without sending a reply");
        }
        Some(Unanswered::LastMessage) => {
            let _ =
                writeln!(out, "\nthe contact got no answer to its last message: the run ended without replying to it");
        }
        None => {}
    }
    out
}

/// Text from a conversation (what a contact typed, ids a channel chose, replies, provider
/// errors) as it may reach a terminal: control characters (line breaks included, so that a
/// message cannot fake transcript lines), escape sequences, and invisible or text-direction
/// characters ([`tern_engine::is_hidden_char`]) are shown escaped (`\n`, `\u{1b}`), not
/// acted on by the terminal. The console escapes the same text as HTML.
fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || tern_engine::is_hidden_char(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if tern_engine::is_hidden_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    /// A contact's text cannot drive the terminal or fake a transcript line.
    #[test]
    fn conversation_text_reaches_the_terminal_escaped() {
        assert_eq!(super::plain("Hello, Ana"), "Hello, Ana");
        assert_eq!(
            super::plain("hi \u{1b}[2J\u{1b}]0;pwned\u{7}\r\nInjected line"),
            "hi \\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\r\\nInjected line"
        );
        assert_eq!(super::plain("a\u{202E}b\u{A0}c"), "a\\u{202e}b\\u{a0}c");
    }
}
