//! The step abstraction: a [`StepType`] turns a step's JSON into a runnable [`Step`] when the
//! flow is compiled; the executor runs steps through a [`StepContext`].
//!
//! Step types are registered explicitly in a [`Registry`] (built-in ones in `tern-steps`,
//! WebAssembly plugins in `tern-plugins`); the engine never names a concrete step type.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::compile::BuildContext;
use crate::http::{HttpError, Outbound};
use crate::ids::{StepId, VarName};
use crate::run::RunEnv;
use crate::template::{RenderError, Root, Scope, VarRef, walk_path};

/// Where the executor goes after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jump {
    /// The step at this index in the flow.
    Step(usize),
    /// The end of the run.
    End,
}

/// What a step asks the executor to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Continue with the step's `next` (or the following step).
    Next,
    /// Jump somewhere else (a branch taken, an outcome label).
    Goto(Jump),
    /// Pause the run until the next message of the conversation; the value is given back to
    /// [`Step::resume`].
    Pause(Value),
    /// End the run.
    End,
}

/// Static facts about a step that validation needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behavior {
    /// The step can pause the run (a cycle through it is not a busy loop).
    pub pauses: bool,
    /// The step never continues to a following step (`end`).
    pub terminal: bool,
}

/// Why a step failed. The executor adds the step id; `on_error` catches every kind.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// A template could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The API answered with a status the step does not accept.
    #[error("{url} answered {status}{excerpt}")]
    Status {
        /// The status code.
        status: u16,
        /// The URL (query removed).
        url: String,
        /// `: <start of body>` or empty.
        excerpt: String,
    },
    /// Response fields could not be mapped into variables (every missing one is listed).
    #[error("{}", missing.iter().map(|(v, r)| format!("variable `{v}`: {r}")).collect::<Vec<_>>().join("; "))]
    Mapping {
        /// Each variable with what is missing and what was found instead.
        missing: Vec<(VarName, String)>,
    },
    /// Anything else, with a stable code.
    #[error("{message}")]
    Other {
        /// A stable, kebab-case code.
        code: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
}

impl StepFailure {
    /// A stable, kebab-case code for the failure.
    pub fn code(&self) -> &'static str {
        match self {
            StepFailure::Render(_) => "template",
            StepFailure::Http(e) => e.code(),
            StepFailure::Status { .. } => "http-status",
            StepFailure::Mapping { .. } => "mapping",
            StepFailure::Other { code, .. } => code,
        }
    }
}

/// A message the run sends to the contact.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Reply {
    /// The step that sent it.
    pub step: StepId,
    /// The text.
    pub text: String,
}

/// Receives replies as soon as a step sends them (the CLI prints them live).
pub type ReplySink = Arc<dyn Fn(&Reply) + Send + Sync>;

/// Everything a running step can see and change.
pub struct StepContext<'a> {
    pub(crate) step_id: &'a StepId,
    pub(crate) flow_id: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) vars: &'a mut Map<String, Value>,
    pub(crate) env: &'a RunEnv,
    pub(crate) outbound: &'a Outbound,
    pub(crate) replies: &'a mut Vec<Reply>,
    pub(crate) sink: Option<&'a ReplySink>,
    pub(crate) detail: &'a mut Map<String, Value>,
    pub(crate) deadline: tokio::time::Instant,
    /// Steps the run executed before this one (the step's position, for the effect journal).
    pub(crate) seq: u32,
}

impl StepContext<'_> {
    /// The running step's id.
    pub fn step_id(&self) -> &StepId {
        self.step_id
    }

    /// The flow's id.
    pub fn flow_id(&self) -> &str {
        self.flow_id
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        self.run_id
    }

    /// Masks the run's known secret values in text bound for logs.
    pub fn masker(&self) -> &crate::secrets::Masker {
        &self.env.masker
    }

    /// Every variable of the run.
    pub fn vars(&self) -> &Map<String, Value> {
        self.vars
    }

    /// Resolves placeholders against this run.
    pub fn scope(&self) -> RunScope<'_> {
        RunScope { vars: self.vars, env: self.env }
    }

    /// A variable's current value.
    pub fn var(&self, name: &VarName) -> Option<&Value> {
        self.vars.get(name.as_str())
    }

    /// Sets a variable.
    pub fn set_var(&mut self, name: &VarName, value: Value) {
        self.vars.insert(name.as_str().to_string(), value);
    }

    /// The text of the message that triggered or resumed the run.
    pub fn message_text(&self) -> &str {
        &self.env.message.text
    }

    /// The event that resumed the run, when it was not a message.
    pub fn event(&self) -> Option<&Value> {
        self.env.event.as_ref()
    }

    /// The conversation's id.
    pub fn conversation_id(&self) -> &str {
        &self.env.conversation_id
    }

    /// Sends a reply to the contact.
    pub fn reply(&mut self, text: String) {
        let reply = Reply { step: self.step_id.clone(), text: self.env.masker.mask(&text) };
        if let Some(sink) = self.sink {
            sink(&reply);
        }
        self.replies.push(reply);
    }

    /// Outbound HTTP (guarded client and token injection).
    pub fn outbound(&self) -> &Outbound {
        self.outbound
    }

    /// Sends a request the way steps should: through [`Outbound::execute`], and for a request
    /// that is not idempotent (POST, PATCH) through the effect journal when the run has one
    /// (SECURITY R12, see [`crate::effects`]): the intent is recorded before sending and the
    /// response after; a message processed again after a crash replays the recorded response
    /// or fails with `outcome-unknown` instead of repeating the call, unless the request
    /// carries an `Idempotency-Key` header (then it is sent again with the same key).
    ///
    /// # Errors
    /// [`StepFailure::Http`] when the exchange failed; `outcome-unknown` as above;
    /// `journal` when the store could not record the intent (nothing was sent).
    pub async fn send(
        &self,
        req: &crate::http::PreparedRequest,
        auth: Option<(&crate::ids::IntegrationName, &crate::tokens::TokenOwner)>,
    ) -> Result<crate::http::HttpResponse, StepFailure> {
        self.send_attempt(req, auth, 0).await
    }

    /// [`send`](Self::send) for the `attempt`-th try of a step that retries (0 for the first):
    /// each attempt is journaled on its own, so that a message processed again after a crash
    /// replays the same sequence of answers.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_attempt(
        &self,
        req: &crate::http::PreparedRequest,
        auth: Option<(&crate::ids::IntegrationName, &crate::tokens::TokenOwner)>,
        attempt: u32,
    ) -> Result<crate::http::HttpResponse, StepFailure> {
        use crate::effects::{EffectKey, PriorEffect, RecordedResponse};
        let journal = match &self.env.journal {
            Some(j) if !req.method.is_idempotent() => j,
            _ => return Ok(self.outbound.execute(req, auth).await?),
        };
        let key = EffectKey {
            conversation: journal.conversation.clone(),
            message_id: journal.message_id.clone(),
            seq: self.seq,
            attempt,
            step: self.step_id.to_string(),
        };
        let prior = journal.journal.begin_effect(&key).await.map_err(|e| {
            tracing::error!(step = %self.step_id, error = %e, "could not record a call's intent; not sending it");
            StepFailure::Other {
                code: "journal",
                message: "the call was not sent because Tern could not record it first (the store failed); try again"
                    .into(),
            }
        })?;
        match prior {
            PriorEffect::None => {}
            PriorEffect::Done(recorded) => {
                tracing::info!(step = %self.step_id, "replaying a call recorded before a restart");
                return recorded.into_response().ok_or_else(|| StepFailure::Other {
                    code: "journal",
                    message: "the call recorded before a restart cannot be replayed".into(),
                });
            }
            PriorEffect::Unknown if req.headers.contains_key("idempotency-key") => {
                tracing::info!(step = %self.step_id, "re-sending a call with its Idempotency-Key after a restart");
            }
            PriorEffect::Unknown => {
                return Err(StepFailure::Other {
                    code: "outcome-unknown",
                    message: format!(
                        "Tern stopped after sending this {} request and before recording its answer, so it may or may not have taken effect; it is not sent again. Give the request an `Idempotency-Key` header to have it re-sent safely, or handle `outcome-unknown` with `on_error`",
                        req.method.as_str()
                    ),
                });
            }
        }
        let resp = self.outbound.execute(req, auth).await?;
        if let Err(e) = journal.journal.finish_effect(&key, &RecordedResponse::of(&resp)).await {
            tracing::warn!(step = %self.step_id, error = %e, "could not record a call's response");
        }
        Ok(resp)
    }

    /// Default timeout for HTTP requests (never more than the run has left).
    pub fn default_timeout(&self) -> std::time::Duration {
        self.outbound.client.policy().default_timeout.min(self.time_left())
    }

    /// Time left before the run's deadline. Steps must not take longer: HTTP requests are
    /// capped at it, and plugins get it as their execution deadline.
    pub fn time_left(&self) -> std::time::Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
    }

    /// The contact's id, when the channel sent one.
    pub fn contact_id(&self) -> Option<&str> {
        self.env.contact.get("id").and_then(Value::as_str)
    }

    /// Records a detail for the run history (request and response summaries). Secret values
    /// are masked before the trace is stored or shown.
    pub fn record(&mut self, key: &str, value: Value) {
        self.detail.insert(key.to_string(), value);
    }
}

/// Placeholder resolution over a run's variables and environment.
pub struct RunScope<'a> {
    vars: &'a Map<String, Value>,
    env: &'a RunEnv,
}

impl Scope for RunScope<'_> {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        let missing = |reason: &str| RenderError::Missing { var: var.raw.clone(), reason: reason.to_string() };
        let root: Cow<'_, Value> = match &var.root {
            Root::Var(name) => {
                Cow::Borrowed(self.vars.get(name.as_str()).ok_or_else(|| missing("the variable is not set yet"))?)
            }
            Root::Message => Cow::Owned(serde_json::json!({
                "text": self.env.message.text,
                "id": self.env.message.id,
                "metadata": self.env.message.metadata,
            })),
            Root::Contact => Cow::Borrowed(&self.env.contact),
            Root::Conversation => Cow::Owned(serde_json::json!({ "id": self.env.conversation_id })),
            Root::Event => Cow::Borrowed(
                self.env.event.as_ref().ok_or_else(|| missing("the run was not started by an integration event"))?,
            ),
            Root::Secret(name) => {
                use secrecy::ExposeSecret;
                let s = self.env.secrets.get(name).ok_or_else(|| {
                    missing(&format!("no secret `{name}`; set it with `tern secrets set {name}` or TERN_SECRET_{name}"))
                })?;
                return Ok(Cow::Owned(Value::String(s.expose_secret().to_string())));
            }
            Root::Integration(name) => {
                let meta = self
                    .env
                    .integrations
                    .get(name)
                    .ok_or_else(|| missing("the integration has no stored metadata; authorize it first"))?;
                let field = var.path.first().map(String::as_str).unwrap_or_default();
                return meta
                    .get(field)
                    .map(|v| Cow::Owned(v.clone()))
                    .ok_or_else(|| missing(&format!("the integration's token response had no `{field}`")));
            }
        };
        match root {
            Cow::Borrowed(v) => walk_path(v, &var.path, &var.raw).map(Cow::Borrowed),
            Cow::Owned(v) => walk_path(&v, &var.path, &var.raw).map(|x| Cow::Owned(x.clone())),
        }
    }
}

/// A runnable step, built once per flow load.
#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    /// Runs the step.
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure>;

    /// Continues after a pause, with the value the step paused with. The message that resumed
    /// the run is in [`StepContext::message_text`].
    async fn resume(&self, cx: &mut StepContext<'_>, paused_with: Value) -> Result<Outcome, StepFailure> {
        let _ = (cx, paused_with);
        Err(StepFailure::Other { code: "cannot-resume", message: "this step does not pause".into() })
    }

    /// Facts validation needs.
    fn behavior(&self) -> Behavior {
        Behavior::default()
    }
}

/// A kind of step, as registered in the [`Registry`].
pub trait StepType: Send + Sync {
    /// The name used in `"type"`.
    fn name(&self) -> &str;
    /// One line for `tern schema` and error hints.
    fn description(&self) -> &str;
    /// JSON Schema of the step's own fields (the common `id`, `type`, `next`, `on_error` and
    /// `description` are added by the engine).
    fn config_schema(&self) -> Value;
    /// Builds the step from its own fields. Problems are reported through `cx`; return `None`
    /// when the step cannot be built.
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>>;
}

/// The step types a flow may use.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, Arc<dyn StepType>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step type; a name can be registered once.
    pub fn register(&mut self, step_type: Arc<dyn StepType>) -> Result<(), crate::Error> {
        let name = step_type.name().to_string();
        if self.types.contains_key(&name) {
            return Err(crate::Error::DuplicateStepType { name });
        }
        self.types.insert(name, step_type);
        Ok(())
    }

    /// The step type called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepType>> {
        self.types.get(name)
    }

    /// All registered step types, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn StepType>> {
        self.types.values()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}
