//! `tern run`: run one flow in an in-memory conversation. The first message triggers it; each
//! later one answers the step the flow is waiting on (`ask`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value, json};
use tern_engine::http::Outbound;
use tern_engine::secrets::SecretSource;
use tern_engine::{
    Engine, ErrorHandling, Message, Registry, ReplySink, RunInput, RunLimits, RunResult, RunStatus, StepStatus,
    TokenSource, VarName,
};

use super::context::Shared;

use super::Failed;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow file.
    #[arg(value_name = "FLOW")]
    flow: PathBuf,
    /// A user message; repeat for a conversation (the first triggers the flow, later ones answer
    /// its questions). When they run out and standard input is a terminal, Tern asks there.
    #[arg(short, long = "message", value_name = "TEXT")]
    messages: Vec<String>,
    /// Set a variable before the run: NAME=VALUE (VALUE is parsed as JSON when it is valid
    /// JSON, otherwise taken as text).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(VarName, Value)>,
    /// Print the run result (replies, variables, step trace) as JSON instead of the replies.
    #[arg(long)]
    json: bool,
    /// The conversation id the run sees as `{{conversation.id}}`.
    #[arg(long, default_value = "cli")]
    conversation: String,
    /// The contact id the run sees as `{{contact.id}}`.
    #[arg(long, default_value = "cli-user")]
    contact: String,
    /// A flow started when the run fails and nothing in the flow caught it (its trigger must be
    /// `{"type": "error"}`; it reads the failure as `{{error.code}}`, `{{error.step}}`,
    /// `{{error.message}}`).
    #[arg(long, value_name = "FLOW")]
    error_flow: Option<PathBuf>,
    /// A reply sent to the contact when the run fails and no error flow answered.
    #[arg(long, value_name = "TEXT")]
    error_reply: Option<String>,
    /// Run this many conversations concurrently with the same messages (a quick load test);
    /// prints a summary instead of the replies.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: usize,
}

fn parse_var(s: &str) -> Result<(VarName, Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    let name = VarName::new(k)?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((name, value))
}

/// The engine the CLI runs flows with. With a store, integrations and stored secrets are
/// available; without one, only `TERN_SECRET_*` secrets.
pub async fn engine(shared: &Shared, with_store: bool, registry: Arc<Registry>) -> anyhow::Result<Engine> {
    let client = shared.http()?;
    let (tokens, secrets): (Option<Arc<dyn TokenSource>>, Arc<dyn SecretSource>) = if with_store {
        let store = shared.open_store().await?;
        let secrets = shared.secrets(Some(&*store)).await?;
        (Some(shared.integrations(store, secrets.clone())? as Arc<dyn TokenSource>), secrets)
    } else {
        (None, shared.secrets(None).await?)
    };
    Ok(Engine { registry, outbound: Outbound { client, tokens }, secrets, limits: RunLimits::default() })
}

pub async fn run(shared: &Shared, args: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(super::registry(shared).await?);
    let integrations = super::known_integrations(shared).await;
    let flow = super::load_file(&args.flow, &registry, integrations.as_ref())?;
    let error_flow = match &args.error_flow {
        Some(path) => Some(Arc::new(super::load_file(path, &registry, integrations.as_ref())?)),
        None => None,
    };
    let uses_integrations = error_flow.iter().any(|f| !f.integrations.is_empty());
    let handling = ErrorHandling::new(args.error_reply.clone(), error_flow)?;
    // Open the store when the flow needs it (integrations) or when one exists (stored secrets).
    let engine =
        engine(shared, !flow.integrations.is_empty() || uses_integrations || shared.has_store(), registry.clone())
            .await?;
    if args.repeat > 1 {
        return repeat(&engine, &flow, &args).await;
    }
    let interactive = std::io::stdin().is_terminal() && !args.json;
    let mut messages = args.messages.into_iter();
    let mut next_message = move || -> anyhow::Result<Option<String>> {
        if let Some(m) = messages.next() {
            return Ok(Some(m));
        }
        if !interactive {
            return Ok(None);
        }
        eprint!("you> ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).context("cannot read standard input")?;
        Ok((read > 0).then(|| line.trim_end_matches(['\r', '\n']).to_string()))
    };
    let Some(first) = next_message()? else {
        anyhow::bail!("no message to start the flow with; pass --message TEXT");
    };
    if let Some(trigger) = &flow.trigger
        && !trigger.matches(&first)
    {
        eprintln!("note: {first:?} does not match the trigger of flow `{}`; running it anyway", flow.id);
    }
    let sink: Option<ReplySink> = (!args.json).then(|| {
        Arc::new(|r: &tern_engine::Reply| {
            println!("{}", r.text);
        }) as ReplySink
    });
    let input = |text: String| RunInput {
        event: None,
        conversation_id: args.conversation.clone(),
        contact: json!({ "id": args.contact }),
        message: Message { text, ..Default::default() },
        journal: None,
    };
    let overrides: Map<String, Value> = args.vars.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();

    let notes = Notes::for_stderr();
    let mut last = first.clone();
    let mut result = engine.start(&flow, input(first), overrides, sink.as_ref()).await;
    let mut current: &tern_engine::CompiledFlow = &flow;
    let mut failure: Option<RunResult> = None;
    let mut all = Collected::default();
    loop {
        if !args.json {
            notes.caught(&result);
        }
        if result.status == RunStatus::Failed && failure.is_none() {
            let handled = handling.handle(&engine, &mut result, input(last.clone()), sink.as_ref()).await;
            all.add(&result);
            if let Some(run) = handled.error_run {
                if !args.json {
                    notes.line(&format!("the run failed; the error flow `{}` ran", run.flow_id));
                }
                failure = Some(std::mem::replace(&mut result, run));
                current = handling.flow().map_or(current, Arc::as_ref);
                continue;
            }
            break;
        }
        all.add(&result);
        if result.status != RunStatus::Paused {
            break;
        }
        let Some(text) = next_message()? else { break };
        last = text.clone();
        let Some(snapshot) = result.snapshot.take() else { break };
        result = engine.resume(current, snapshot, input(text), sink.as_ref()).await;
    }
    // The exit status and message are those of the flow's run, even when an error flow answered.
    let error_run = failure.map(|failed| std::mem::replace(&mut result, failed));

    if args.json {
        let out = json!({
            "run_id": result.run_id,
            "flow_id": result.flow_id,
            "status": result.status,
            "replies": all.replies,
            "variables": result.variables,
            "trace": all.trace,
            "error": result.error,
            "error_flow": error_run.as_ref().map(|r| json!({ "flow_id": r.flow_id, "status": r.status, "error": r.error })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if result.status == RunStatus::Paused {
        eprintln!("(the flow is waiting for a reply; pass another --message to answer it)");
    }
    match (&result.status, &result.error) {
        (RunStatus::Failed, Some(e)) => {
            let at = e.step.as_ref().map(|s| format!("step `{s}` ")).unwrap_or_default();
            Err(Failed(format!("{at}failed [{}]: {}", e.code, e.message)).into())
        }
        (RunStatus::Failed, None) => Err(Failed("the run failed".into()).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Notes on standard error about errors the flow caught (dimmed on a terminal unless
/// `NO_COLOR` is set), so plain `tern run` shows why the flow took its error path.
struct Notes {
    dim: bool,
}

impl Notes {
    fn for_stderr() -> Self {
        Self { dim: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn line(&self, text: &str) {
        if self.dim {
            eprintln!("\x1b[2mnote: {text}\x1b[0m");
        } else {
            eprintln!("note: {text}");
        }
    }

    /// One line per step whose failure `on_error` (the step's or the flow's) caught.
    fn caught(&self, result: &RunResult) {
        for entry in result.trace.iter().filter(|t| t.status == StepStatus::ErrorHandled) {
            if let Some(e) = &entry.error {
                // One line, however the API's answer was laid out.
                let message = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
                self.line(&format!("step `{}` failed [{}]: {message} (caught by on_error)", entry.step, e.code));
            }
        }
    }
}

/// Replies and trace across all activations of the run.
#[derive(Default)]
struct Collected {
    replies: Vec<Value>,
    trace: Vec<Value>,
}

impl Collected {
    fn add(&mut self, r: &RunResult) {
        self.replies.extend(r.replies.iter().filter_map(|x| serde_json::to_value(x).ok()));
        self.trace.extend(r.trace.iter().filter_map(|x| serde_json::to_value(x).ok()));
    }
}

/// `--repeat N`: N conversations at once, each fed the same messages.
async fn repeat(engine: &Engine, flow: &tern_engine::CompiledFlow, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let runs = (0..args.repeat).map(|i| async move {
        let input = |text: &str| RunInput {
            event: None,
            conversation_id: format!("{}-{i}", args.conversation),
            contact: json!({ "id": format!("{}-{i}", args.contact) }),
            message: Message { text: text.to_string(), ..Default::default() },
            journal: None,
        };
        let mut messages = args.messages.iter();
        let first = messages.next().map(String::as_str).unwrap_or_default();
        let mut result = engine.start(flow, input(first), Map::new(), None).await;
        for text in messages {
            let Some(snapshot) = result.snapshot.take() else { break };
            result = engine.resume(flow, snapshot, input(text), None).await;
        }
        result
    });
    let results = futures_util::future::join_all(runs).await;
    let failed: Vec<&RunResult> = results.iter().filter(|r| r.status == RunStatus::Failed).collect();
    let summary = json!({
        "runs": results.len(),
        "completed": results.iter().filter(|r| r.status == RunStatus::Completed).count(),
        "paused": results.iter().filter(|r| r.status == RunStatus::Paused).count(),
        "failed": failed.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "first_errors": failed.iter().take(3).map(|r| &r.error).collect::<Vec<_>>(),
    });
    println!("{}", if args.json { serde_json::to_string_pretty(&summary)? } else { summary.to_string() });
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failed(format!("{} of {} runs failed", failed.len(), results.len())).into())
    }
}
