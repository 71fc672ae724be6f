//! `tern run`: run one flow in an in-memory conversation. The first message triggers it; each
//! later one answers the step the flow is waiting on (`ask`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value, json};
use tern_engine::conversation::{
    Answer, AnswerStatus, ConversationError, ConversationId, ConversationOptions, Conversations, Inbound, LoadedFlow,
    MemoryConversationStore, Trigger, flow_hash,
};
use tern_engine::http::Outbound;
use tern_engine::secrets::SecretSource;
use tern_engine::{Engine, Registry, ReplySink, RunLimits, TokenSource, VarName};

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

/// The conversation service over an in-memory store, with `flow` as the only flow.
fn service(engine: Engine, flow: Arc<tern_engine::CompiledFlow>, hash: String, max_in_flight: usize) -> Conversations {
    let options = ConversationOptions { max_in_flight: max_in_flight.max(4096), ..ConversationOptions::default() };
    let conversations = Conversations::start(engine, Arc::new(MemoryConversationStore::default()), options, None);
    conversations.set_flows(vec![LoadedFlow { hash, flow }]);
    conversations
}

/// The first message starts the flow (whatever its trigger); later ones resume it.
fn inbound(
    conversation: &ConversationId,
    contact: &str,
    text: String,
    start: Option<(&tern_engine::CompiledFlow, &Map<String, Value>)>,
) -> Inbound {
    let mut m = Inbound::message(conversation.clone(), None, text);
    m.contact.insert("id".into(), json!(contact));
    if let Some((flow, vars)) = start {
        m.trigger = Trigger::Start { flow_id: flow.id.to_string(), event: None };
        m.variables = vars.clone();
    }
    m
}

pub async fn run(shared: &Shared, args: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(super::registry(shared).await?);
    let flow = Arc::new(super::load_file(&args.flow, &registry)?);
    let hash = flow_hash(&std::fs::read_to_string(&args.flow).unwrap_or_default());
    // Open the store when the flow needs it (integrations) or when one exists (stored secrets).
    let engine = engine(shared, !flow.integrations.is_empty() || shared.has_store(), registry.clone()).await?;
    let conversation =
        ConversationId::new(args.conversation.clone()).map_err(|e| anyhow::anyhow!("--conversation: {e}"))?;
    if args.repeat > 1 {
        let conversations = service(engine, flow.clone(), hash, args.repeat);
        return repeat(&conversations, &flow, &args).await;
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
    let overrides: Map<String, Value> = args.vars.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();
    let conversations = service(engine, flow.clone(), hash, 1);
    let first = inbound(&conversation, &args.contact, first, Some((&flow, &overrides)));
    let mut answer = conversations.submit(first, sink.clone())?.wait().await?;
    while answer.status == AnswerStatus::Paused {
        let Some(text) = next_message()? else { break };
        let next = inbound(&conversation, &args.contact, text, None);
        answer = conversations.submit(next, sink.clone())?.wait().await?;
    }
    // Commits the run's history (the in-memory store), which `--json` prints.
    conversations.shutdown(std::time::Duration::from_secs(5)).await;

    if args.json {
        let history = match &answer.run_id {
            Some(id) => conversations.run(id).await?,
            None => None,
        };
        let segments = history.map(|h| h.segments).unwrap_or_default();
        let replies: Vec<&tern_engine::conversation::ReplyText> = segments.iter().flat_map(|s| &s.replies).collect();
        let trace: Vec<&tern_engine::TraceEntry> = segments.iter().flat_map(|s| &s.trace).collect();
        let out = json!({
            "run_id": answer.run_id,
            "flow_id": answer.flow_id,
            "status": answer.status,
            "replies": replies,
            "variables": segments.last().map(|s| s.variables.clone()).unwrap_or_default(),
            "trace": trace,
            "error": answer.error,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if answer.status == AnswerStatus::Paused {
        eprintln!("(the flow is waiting for a reply; pass another --message to answer it)");
    }
    match (&answer.status, &answer.error) {
        (AnswerStatus::Failed, Some(e)) => {
            let at = e.step.as_ref().map(|s| format!("step `{s}` ")).unwrap_or_default();
            Err(Failed(format!("{at}failed [{}]: {}", e.code, e.message)).into())
        }
        (AnswerStatus::Failed, None) => Err(Failed("the run failed".into()).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `--repeat N`: N conversations at once, each fed the same messages.
async fn repeat(
    conversations: &Conversations,
    flow: &tern_engine::CompiledFlow,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let none = Map::new();
    let runs = (0..args.repeat).map(|i| {
        let none = &none;
        async move {
            let conversation = ConversationId::new(format!("{}-{i}", args.conversation))?;
            let contact = format!("{}-{i}", args.contact);
            let mut messages = args.messages.iter();
            let first = messages.next().cloned().unwrap_or_default();
            let mut answer =
                conversations.submit(inbound(&conversation, &contact, first, Some((flow, none))), None)?.wait().await?;
            for text in messages {
                if answer.status != AnswerStatus::Paused {
                    break;
                }
                answer =
                    conversations.submit(inbound(&conversation, &contact, text.clone(), None), None)?.wait().await?;
            }
            Ok::<Answer, ConversationError>(answer)
        }
    });
    let results: Vec<Answer> = futures_util::future::join_all(runs).await.into_iter().collect::<Result<_, _>>()?;
    let failed: Vec<&Answer> = results.iter().filter(|r| r.status == AnswerStatus::Failed).collect();
    let summary = json!({
        "runs": results.len(),
        "completed": results.iter().filter(|r| r.status == AnswerStatus::Completed).count(),
        "paused": results.iter().filter(|r| r.status == AnswerStatus::Paused).count(),
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
