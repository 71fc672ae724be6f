//! The conversation service in process, for tests of what flows do (HTTP steps, response
//! mapping, failures, error flows) without starting the `tern` binary.
//!
//! [`Service::builder`] takes flow documents and the few settings the binary takes from flags
//! and the environment (the outbound policy, secrets, the default error reply, a token
//! source), and starts [`Conversations`] with the built-in steps over a
//! [`MemoryConversationStore`], as `tern run` does (src/cli/run.rs). [`Service::converse`]
//! talks to it the way `tern run` does: the first message starts the first flow whatever its
//! trigger, each later one answers the step the run waits on, until the run stops waiting.
//! What comes back is data (every [`Answer`] and every run's [`RunResult`]), so tests assert on
//! codes, steps and fields rather than on printed text; the binary's own surfaces (exit codes,
//! notes, `--json`) keep a few end-to-end tests in tests/.
//!
//! This file is the only place the tests build the service: when the service's API changes,
//! the change is made here.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tern_engine::conversation::{
    Answer, AnswerStatus, ConversationId, ConversationOptions, Conversations, Inbound, LoadedFlow,
    MemoryConversationStore, RunObserver, Trigger, flow_hash,
};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::LayeredSecrets;
use tern_engine::{
    Diagnostic, Engine, LoadOptions, RunError, RunLimits, RunResult, TokenSource, TraceEntry, load_flow,
};

/// What [`Service::builder`] starts.
#[must_use]
pub struct ServiceBuilder {
    flows: Vec<Value>,
    allow_private_network: bool,
    secrets: Vec<(String, String)>,
    error_reply: Option<String>,
    tokens: Option<Arc<dyn TokenSource>>,
}

impl ServiceBuilder {
    /// Adds a flow document. The first one added is the flow [`Service::converse`] starts; an
    /// error flow (trigger `{"type": "error"}`) among them is started when a run fails.
    pub fn flow(mut self, flow: &Value) -> Self {
        self.flows.push(flow.clone());
        self
    }

    /// Refuses private and loopback destinations, as `tern` does without
    /// `--allow-private-network` (the default here allows them: the test APIs listen on
    /// 127.0.0.1).
    pub fn deny_private_network(mut self) -> Self {
        self.allow_private_network = false;
        self
    }

    /// A secret for `{{secrets.NAME}}` (as `tern secrets set NAME` stores one).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_string(), value.to_string()));
        self
    }

    /// The default error reply (`--error-reply`).
    pub fn error_reply(mut self, text: &str) -> Self {
        self.error_reply = Some(text.to_string());
        self
    }

    /// Where steps that name an integration get their credentials.
    pub fn tokens(mut self, tokens: Arc<dyn TokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Compiles the flows and starts the service on the current Tokio runtime.
    ///
    /// # Errors
    /// The diagnostics of the first flow that does not compile (every problem in it).
    pub fn try_start(self) -> Result<Service, Vec<Diagnostic>> {
        let client =
            HttpClient::new(HttpPolicy { allow_private_network: self.allow_private_network, ..HttpPolicy::default() })
                .expect("HTTP client");
        // Set one by one, as the admin API does: each value is registered for masking.
        let secrets = LayeredSecrets::new(Vec::new());
        for (name, value) in self.secrets {
            secrets.update(&name, Some(secrecy::SecretString::from(value)));
        }
        let engine = Engine {
            registry: Arc::new(tern_steps::registry()),
            outbound: Outbound::new(client, self.tokens),
            secrets: Arc::new(secrets),
            limits: RunLimits::default(),
        };
        let opts = LoadOptions::new(&engine.registry);
        let mut flows = Vec::new();
        for doc in &self.flows {
            let source = doc.to_string();
            flows.push(LoadedFlow { hash: flow_hash(&source), flow: Arc::new(load_flow(&source, &opts)?) });
        }
        let first = flows.first().map(|f| f.flow.id.to_string()).expect("Service::builder().flow(…) before start");
        let runs = Arc::new(Mutex::new(Vec::new()));
        let observer = {
            let runs = runs.clone();
            Arc::new(move |r: &RunResult| runs.lock().expect("runs").push(r.clone())) as RunObserver
        };
        let options = ConversationOptions { error_reply: self.error_reply, ..ConversationOptions::default() };
        let conversations =
            Conversations::start(engine, Arc::new(MemoryConversationStore::default()), options, Some(observer));
        conversations.set_flows(flows);
        Ok(Service { conversations, first, runs, conversation_count: Mutex::new(0) })
    }

    /// Asserts that a flow does not compile and returns its diagnostics one per line, as
    /// `tern validate` prints them (`error[CODE] at POINTER: message`, hints indented).
    ///
    /// # Panics
    /// When every flow compiles.
    pub fn refused(self) -> String {
        match self.try_start() {
            Ok(_) => panic!("the flows compiled"),
            Err(diags) => diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        }
    }

    /// [`try_start`](Self::try_start), panicking with the diagnostics when a flow does not
    /// compile.
    pub fn start(self) -> Service {
        self.try_start().unwrap_or_else(|diags| panic!("the flow does not compile: {diags:#?}"))
    }
}

/// A running conversation service with the built-in steps (see the module docs).
pub struct Service {
    conversations: Conversations,
    /// The flow [`converse`](Self::converse) starts.
    first: String,
    /// Every run result, in the order runs ended or paused.
    runs: Arc<Mutex<Vec<RunResult>>>,
    /// Conversations started so far (each gets its own id).
    conversation_count: Mutex<usize>,
}

impl Service {
    /// A builder with no flows, private destinations allowed, no secrets, no default error
    /// reply and no token source.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder {
            flows: Vec::new(),
            allow_private_network: true,
            secrets: Vec::new(),
            error_reply: None,
            tokens: None,
        }
    }

    /// The service itself, for what [`converse`](Self::converse) does not cover.
    pub fn conversations(&self) -> &Conversations {
        &self.conversations
    }

    /// A new conversation: the first message starts the first flow, each later one answers
    /// the step the run waits on; it ends when no run waits (or the messages run out).
    pub async fn converse(&self, messages: &[&str]) -> Conversation {
        self.converse_with(Map::new(), messages).await
    }

    /// [`converse`](Self::converse) with variables set before the run (`tern run --var`).
    pub async fn converse_with(&self, variables: Map<String, Value>, messages: &[&str]) -> Conversation {
        let id = {
            let mut n = self.conversation_count.lock().expect("count");
            *n += 1;
            ConversationId::new(format!("test-{n}")).expect("conversation id")
        };
        let before = self.runs.lock().expect("runs").len();
        let contact = Map::from_iter([("id".to_string(), json!("test-user"))]);
        let mut answers: Vec<Answer> = Vec::new();
        for (i, text) in messages.iter().enumerate() {
            let mut inbound = Inbound { contact: contact.clone(), ..Inbound::message(id.clone(), None, *text) };
            if i == 0 {
                inbound.trigger = Trigger::Start { flow_id: self.first.clone(), event: None };
                inbound.variables = variables.clone();
            }
            let answer = self.conversations.submit(inbound, None).expect("submit").wait().await.expect("answer");
            let waiting = answer.status == AnswerStatus::Paused
                || answer.error_flow.as_ref().is_some_and(|e| e.status == AnswerStatus::Paused);
            answers.push(answer);
            if !waiting {
                break;
            }
        }
        let runs = self.runs.lock().expect("runs")[before..].to_vec();
        Conversation { answers, runs }
    }
}

/// What one conversation got: every answer and every run, in order.
#[derive(Debug)]
pub struct Conversation {
    /// The answers, one per message sent.
    pub answers: Vec<Answer>,
    /// The results of the runs (the flow's activations and the error flow's), in order.
    pub runs: Vec<RunResult>,
}

impl Conversation {
    /// The texts of every reply, in order.
    pub fn replies(&self) -> Vec<String> {
        self.answers.iter().flat_map(|a| &a.replies).map(|r| r.text.clone()).collect()
    }

    /// The last answer of the flow's run (the run the first message started).
    pub fn main(&self) -> &Answer {
        let first = self.answers.first().expect("an answer");
        self.answers.iter().rev().find(|a| a.run_id == first.run_id).unwrap_or(first)
    }

    /// Why the flow's run failed (its step, code and message, as `tern run` reports them).
    ///
    /// # Panics
    /// When it did not fail.
    pub fn failure(&self) -> &RunError {
        let main = self.main();
        main.error.as_ref().unwrap_or_else(|| panic!("the run did not fail: {:#}", self.json()))
    }

    /// Asserts that the flow's run failed at step `step` with error code `code` and returns
    /// the error's message.
    ///
    /// # Panics
    /// When it did not fail, or failed elsewhere or otherwise.
    pub fn failed_at(&self, step: &str, code: &str) -> &str {
        let e = self.failure();
        let at = e.step.as_ref().map(|s| s.as_str());
        assert_eq!((at, e.code.as_str()), (Some(step), code), "{e:?}");
        assert_eq!(self.main().status, AnswerStatus::Failed, "{:#}", self.json());
        &e.message
    }

    /// Every step the runs executed, in order.
    pub fn trace(&self) -> Vec<&TraceEntry> {
        self.runs.iter().flat_map(|r| &r.trace).collect()
    }

    /// The flow's run as `tern run --json` prints it: `run_id`, `flow_id`, `status`,
    /// `replies`, `variables`, `trace` (of every run), `error` and `error_flow`.
    pub fn json(&self) -> Value {
        let main = self.main();
        let variables = self.runs.iter().rev().find(|r| Some(&r.run_id) == main.run_id.as_ref()).map(|r| &r.variables);
        let error_flow = self.answers.iter().rev().find_map(|a| a.error_flow.as_ref());
        json!({
            "run_id": main.run_id,
            "flow_id": main.flow_id,
            "status": main.status,
            "replies": self.answers.iter().flat_map(|a| &a.replies).collect::<Vec<_>>(),
            "variables": variables,
            "trace": self.trace(),
            "error": main.error,
            "error_flow": error_flow,
        })
    }

    /// The trace entry of step `id` (the first, when it ran more than once).
    pub fn step(&self, id: &str) -> Value {
        let entry = self.trace().into_iter().find(|t| t.step.as_str() == id);
        serde_json::to_value(entry.unwrap_or_else(|| panic!("step `{id}` did not run: {:#}", self.json())))
            .expect("trace JSON")
    }
}
