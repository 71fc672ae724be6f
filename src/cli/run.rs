//! `tern run`: run one flow in an in-memory conversation. The first message triggers it; each
//! later one answers the step the flow is waiting on (`ask`). It goes through the same
//! conversation service as `tern serve` (with a [`MemoryConversationStore`]), so error flows,
//! the default error reply, pauses and history behave the same.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value, json};
use tern_engine::conversation::{
    Answer, AnswerStatus, ConversationError, ConversationId, ConversationOptions, Conversations, ErrorFlowRun, Inbound,
    LoadedFlow, MemoryConversationStore, ReplyText, RunObserver, Trigger as ConversationTrigger, flow_hash,
};
use tern_engine::http::Outbound;
use tern_engine::secrets::SecretSource;
use tern_engine::{CompiledFlow, Engine, Registry, ReplySink, RunLimits, RunResult, StepStatus, TokenSource, VarName};

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
    #[command(flatten)]
    error_reply: super::ErrorReplyArgs,
    /// Run this many conversations concurrently with the same messages (a quick load test);
    /// prints a summary instead of the replies.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: usize,
}

fn parse_var(s: &str) -> Result<(VarName, Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    let name = VarName::new(k).map_err(|e| e.to_string())?;
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
    Ok(Engine { registry, outbound: Outbound::new(client, tokens), secrets, limits: RunLimits::default() })
}

pub async fn run(shared: &Shared, args: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(super::registry(shared).await?);
    let integrations = super::known_integrations(shared).await;
    let flow = Arc::new(super::load_file(&args.flow, &registry, integrations.as_ref(), shared.allow_private_network)?);
    let error_flow = match &args.error_flow {
        Some(path) => {
            Some(Arc::new(super::load_file(path, &registry, integrations.as_ref(), shared.allow_private_network)?))
        }
        None => None,
    };
    if let Some(f) = &error_flow
        && !matches!(f.trigger, Some(tern_engine::Trigger::Error))
    {
        return Err(tern_engine::Error::NotAnErrorFlow { flow: f.id.to_string() }.into());
    }
    if matches!(flow.trigger, Some(tern_engine::Trigger::Error))
        && !args.vars.iter().any(|(k, _)| k.as_str() == "error")
    {
        anyhow::bail!(
            "flow `{}` is an error flow: it starts when another flow fails, with the failure in `error`; run that flow with --error-flow {}, or try this one alone with --var 'error={{\"code\": \"http-status\", \"step\": \"lookup\", \"message\": \"…\"}}'",
            flow.id,
            args.flow.display()
        );
    }
    let uses_integrations = error_flow.iter().any(|f| !f.integrations.is_empty());
    // Open the store when the flow needs it (integrations) or when one exists (stored secrets).
    let engine =
        engine(shared, !flow.integrations.is_empty() || uses_integrations || shared.has_store(), registry.clone())
            .await?;
    // The same conversation service as `tern serve`, over an in-memory store. A flow's version
    // key only has to tell the two flows apart here.
    let mut flows = vec![LoadedFlow { hash: flow_hash(&format!("run\n{}", args.flow.display())), flow: flow.clone() }];
    if let (Some(f), Some(path)) = (&error_flow, &args.error_flow) {
        flows.push(LoadedFlow { hash: flow_hash(&format!("error\n{}", path.display())), flow: f.clone() });
    }
    if !flow.calls.is_empty() {
        flows.extend(called_flows(&args.flow, &flow, &registry, integrations.as_ref(), shared.allow_private_network)?);
    }
    let runs = Arc::new(Mutex::new(Vec::<Observed>::new()));
    let observer = (args.repeat <= 1).then(|| {
        let runs = runs.clone();
        Arc::new(move |r: &RunResult| lock(&runs).push(Observed::of(r))) as RunObserver
    });
    let options = ConversationOptions {
        error_reply: args.error_reply.text(),
        max_in_flight: args.repeat.max(1),
        ..ConversationOptions::default()
    };
    let service = Conversations::start(engine, Arc::new(MemoryConversationStore::default()), options, observer);
    service.set_flows(flows);
    let outcome = if args.repeat > 1 {
        repeat(&service, &flow, &args).await
    } else {
        converse(&service, &flow, args, &runs).await
    };
    service.shutdown(std::time::Duration::from_secs(5)).await;
    outcome
}

/// The flows `flow` (the file at `path`) may call: the other flows of its folder, as `tern serve
/// --flows FOLDER` would load them (not the folder's error flow: `--error-flow` names one). The
/// folder is loaded as a set, so `flow`'s calls are checked against it first.
fn called_flows(
    path: &std::path::Path,
    flow: &CompiledFlow,
    registry: &Registry,
    integrations: Option<&std::collections::BTreeSet<tern_engine::IntegrationName>>,
    allow_private_network: bool,
) -> anyhow::Result<Vec<LoadedFlow>> {
    use tern_engine::flow_set::FileOutcome;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let opts =
        tern_engine::LoadOptions { integrations, allow_private_network, ..tern_engine::LoadOptions::new(registry) };
    let this = std::fs::canonicalize(path).ok();
    let files = tern_engine::flow_set::load_files(&[dir.to_path_buf()], &opts)?;
    // The run's flow does not load with its folder, or two flows there share an id (which one
    // a call would run is then a guess): every problem of the folder, then stop.
    let refused = files.iter().any(|f| match &f.outcome {
        FileOutcome::Invalid(diags) => {
            (this.is_some() && std::fs::canonicalize(&f.path).ok() == this)
                || diags.iter().any(|d| d.code == "duplicate-flow-id")
        }
        _ => false,
    });
    if refused {
        for f in &files {
            if let FileOutcome::Invalid(diags) = &f.outcome {
                super::print_diagnostics(&f.path, diags);
            }
        }
        anyhow::bail!(
            "{}: loaded with the flows of {}, the set has problems (above); run `tern validate {}`",
            path.display(),
            dir.display(),
            dir.display()
        );
    }
    let mut others = Vec::new();
    for file in files {
        let is_this = this.is_some() && std::fs::canonicalize(&file.path).ok() == this;
        match file.outcome {
            FileOutcome::Loaded { flow: loaded, .. }
                if !is_this
                    && loaded.flow.id != flow.id
                    && !matches!(loaded.flow.trigger, Some(tern_engine::Trigger::Error)) =>
            {
                others.push(loaded);
            }
            _ => {}
        }
    }
    Ok(others)
}

/// What the run observer saw of one activation (for notes and `--json`).
struct Observed {
    run_id: tern_engine::RunId,
    trace: Vec<tern_engine::TraceEntry>,
    variables: Map<String, Value>,
}

impl Observed {
    fn of(r: &RunResult) -> Self {
        Self { run_id: r.run_id.clone(), trace: r.trace.clone(), variables: r.variables.clone() }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One conversation: the first message starts the flow, each later one answers the step it
/// waits on, until it stops waiting or the messages run out.
async fn converse(
    service: &Conversations,
    flow: &CompiledFlow,
    args: RunArgs,
    runs: &Mutex<Vec<Observed>>,
) -> anyhow::Result<ExitCode> {
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
            // Choices as a channel without buttons shows them: numbered after the text.
            println!("{}", super::terminal::safe(&tern_engine::Choice::numbered(&r.text, &r.choices)));
        }) as ReplySink
    });
    let conversation = ConversationId::new(args.conversation.clone())?;
    let contact = Map::from_iter([("id".to_string(), Value::String(args.contact.clone()))]);
    let inbound = |text: String, trigger: ConversationTrigger| Inbound {
        contact: contact.clone(),
        trigger,
        ..Inbound::message(conversation.clone(), None, text)
    };
    let mut start = inbound(first, ConversationTrigger::Start { flow_id: flow.id.to_string(), event: None });
    start.variables = args.vars.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();

    let notes = Notes::for_stderr();
    let mut seen = 0;
    let mut conversation_log = Conversation::default();
    let mut answer = service.submit(start, sink.clone())?.wait().await?;
    loop {
        if !args.json {
            for r in &lock(runs)[seen..] {
                notes.caught(&r.trace);
            }
            if let Some(e) = &answer.error_flow {
                notes.line(&format!("the run failed; the error flow `{}` ran", e.flow_id));
            }
        }
        seen = lock(runs).len();
        conversation_log.add(&answer);
        if !conversation_log.waiting(&answer) {
            break;
        }
        let Some(text) = next_message()? else { break };
        answer = service.submit(inbound(text, ConversationTrigger::Message), sink.clone())?.wait().await?;
    }
    let main = conversation_log.main.take().context("the flow did not run")?;
    if args.json {
        let runs = lock(runs);
        let trace: Vec<&tern_engine::TraceEntry> = runs.iter().flat_map(|r| &r.trace).collect();
        let variables = runs.iter().rev().find(|r| Some(&r.run_id) == main.run_id.as_ref()).map(|r| &r.variables);
        let out = json!({
            "run_id": main.run_id,
            "flow_id": main.flow_id,
            "status": main.status,
            "replies": conversation_log.replies,
            "variables": variables,
            "trace": trace,
            "error": main.error,
            "error_flow": conversation_log.error_flow,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if conversation_log.waiting(&answer) {
        eprintln!("(the flow is waiting for a reply; pass another --message to answer it)");
    } else if conversation_log.replies.is_empty() {
        eprintln!("(the contact got no answer: the run ended without a reply)");
    } else if answer.replies.is_empty() {
        eprintln!("(the contact got no answer to its last message: the run ended without replying to it)");
    }
    // The exit status and message are those of the flow's run, even when an error flow answered.
    match (&main.status, &main.error) {
        (AnswerStatus::Failed, Some(e)) => {
            let at = e.step.as_ref().map(|s| format!("step `{s}` ")).unwrap_or_default();
            Err(Failed(format!("{at}failed [{}]: {}", e.code, e.message)).into())
        }
        (AnswerStatus::Failed, None) => Err(Failed("the run failed".into()).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The answers of one `tern run` conversation: the flow's run, the error flow's run (when the
/// flow failed) and every reply in order.
#[derive(Default)]
struct Conversation {
    main: Option<Answer>,
    error_flow: Option<ErrorFlowRun>,
    replies: Vec<ReplyText>,
}

impl Conversation {
    fn add(&mut self, answer: &Answer) {
        self.replies.extend(answer.replies.iter().cloned());
        let main_id = self.main.as_ref().and_then(|m| m.run_id.clone());
        if self.main.is_none() || answer.run_id == main_id {
            self.main = Some(answer.clone());
        }
        if let Some(e) = &answer.error_flow {
            self.error_flow = Some(e.clone());
        } else if let Some(e) = self.error_flow.as_mut().filter(|e| answer.run_id.as_ref() == Some(&e.run_id)) {
            e.status = answer.status;
            e.error = answer.error.clone();
        }
    }

    /// Whether a run (the flow's, or the error flow's) waits for the next message.
    fn waiting(&self, last: &Answer) -> bool {
        last.status == AnswerStatus::Paused
            || last.error_flow.as_ref().is_some_and(|e| e.status == AnswerStatus::Paused)
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
            eprintln!("\x1b[2mnote: {}\x1b[0m", super::terminal::safe(text));
        } else {
            eprintln!("note: {}", super::terminal::safe(text));
        }
    }

    /// One line per step whose failure `on_error` (the step's or the flow's) or a loop's
    /// `on_item_error` caught.
    fn caught(&self, trace: &[tern_engine::TraceEntry]) {
        for entry in trace.iter().filter(|t| t.status == StepStatus::ErrorHandled) {
            if let Some(e) = &entry.error {
                // One line, however the API's answer was laid out.
                let message = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
                let by = match entry.detail.get(tern_engine::CAUGHT_BY).and_then(|v| v.as_str()) {
                    Some(repeat) => format!("caught by `{repeat}`: on_item_error"),
                    None => "caught by on_error".to_string(),
                };
                self.line(&format!("step `{}` failed [{}]: {message} ({by})", entry.step, e.code));
            }
        }
    }
}

/// `--repeat N`: N conversations at once, each fed the same messages.
async fn repeat(service: &Conversations, flow: &CompiledFlow, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let runs = (0..args.repeat).map(|i| async move {
        let conversation = ConversationId::new(format!("{}-{i}", args.conversation))?;
        let contact = Map::from_iter([("id".to_string(), Value::String(format!("{}-{i}", args.contact)))]);
        let mut messages = args.messages.iter();
        let first = messages.next().cloned().unwrap_or_default();
        let mut inbound = Inbound {
            contact: contact.clone(),
            trigger: ConversationTrigger::Start { flow_id: flow.id.to_string(), event: None },
            ..Inbound::message(conversation.clone(), None, first)
        };
        let mut answer = service.submit(inbound, None)?.wait().await?;
        for text in messages {
            if answer.status != AnswerStatus::Paused {
                break;
            }
            inbound =
                Inbound { contact: contact.clone(), ..Inbound::message(conversation.clone(), None, text.clone()) };
            answer = service.submit(inbound, None)?.wait().await?;
        }
        Ok::<Answer, ConversationError>(answer)
    });
    let results = futures_util::future::join_all(runs).await;
    let count = |s: AnswerStatus| results.iter().filter(|r| r.as_ref().is_ok_and(|a| a.status == s)).count();
    let errors: Vec<Value> = results
        .iter()
        .filter_map(|r| match r {
            Ok(a) if a.status == AnswerStatus::Failed => Some(json!(a.error)),
            Ok(_) => None,
            Err(e) => Some(json!({ "code": e.code(), "message": e.to_string() })),
        })
        .collect();
    let summary = json!({
        "runs": results.len(),
        "completed": count(AnswerStatus::Completed),
        "paused": count(AnswerStatus::Paused),
        "failed": errors.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "first_errors": errors.iter().take(3).collect::<Vec<_>>(),
    });
    println!("{}", if args.json { serde_json::to_string_pretty(&summary)? } else { summary.to_string() });
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failed(format!("{} of {} runs failed", errors.len(), results.len())).into())
    }
}
