//! The executor: runs a compiled flow step by step, follows `next`/`on_error`, pauses at steps
//! that wait for the user (returning a serializable [`RunSnapshot`]) and resumes from one.
//!
//! Every run has a step budget (a loop cannot spin forever) and a deadline per activation.
//! Every step leaves a [`TraceEntry`] whose details have secret values masked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Clock as _;
use crate::effects::JournalScope;
use crate::http::Outbound;
use crate::ids::{FlowId, RunId, StepId, VarName};
use crate::secrets::{Masker, SecretSource};
use crate::step::{
    CallRequest, CaughtFailure, CompiledFlow, FlowResolver, Jump, MAX_CALL_DEPTH, Message, Outcome, Registry, Reply,
    ReplySink, RunEnv, StepContext, StepFailure,
};

/// The trace detail naming the repeating step (`for_each`) that caught a body step's failure
/// (its `on_item_error`), on that step's entry.
pub const CAUGHT_BY: &str = "caught_by";

/// What a run starts or resumes with.
#[derive(Clone, Default)]
pub struct RunInput {
    /// The conversation.
    pub conversation_id: String,
    /// The contact: `{"id": …}` plus whatever attributes the channel sends.
    pub contact: Value,
    /// The message.
    pub message: Message,
    /// A non-message event that resumes the run (a contact's login finishing), for the step
    /// that paused to read with [`StepContext::event`](crate::StepContext::event).
    pub event: Option<Value>,
    /// Where calls that are not idempotent are recorded (SECURITY R12); `None` runs without.
    pub journal: Option<JournalScope>,
    /// Where `call_flow` finds the flows it calls (the conversation service's flow set and
    /// versions); `None`: a call fails its step (`unknown-flow`).
    pub flows: Option<Arc<dyn FlowResolver>>,
    /// The activation's wall-clock time (Unix milliseconds) from the caller's clock
    /// ([`StepContext::now_ms`](crate::StepContext::now_ms)); `None`: the system clock.
    pub now_ms: Option<i64>,
    /// The paused run's timer that resumes it, when no message does
    /// ([`StepContext::woken`](crate::StepContext::woken)).
    pub woken: Option<crate::timing::Wake>,
}

impl std::fmt::Debug for RunInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunInput")
            .field("conversation_id", &self.conversation_id)
            .field("message", &self.message)
            .field("journal", &self.journal.is_some())
            .field("flows", &self.flows.is_some())
            .field("now_ms", &self.now_ms)
            .field("woken", &self.woken)
            .finish_non_exhaustive()
    }
}

/// Limits on one run.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Most steps executed over the whole run, resumes included.
    pub max_steps: u32,
    /// Longest time one activation (start or resume until pause or end) may take. It is
    /// checked between steps and caps every HTTP request's timeout.
    pub deadline: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self { max_steps: 1000, deadline: Duration::from_secs(60) }
    }
}

/// A paused run, enough to resume it later (in another process, after a restart).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSnapshot {
    /// The run.
    pub run_id: RunId,
    /// The flow.
    pub flow_id: FlowId,
    /// The step that paused.
    pub step: StepId,
    /// Variables at the pause.
    pub variables: Map<String, Value>,
    /// Steps executed so far.
    pub executed_steps: u32,
    /// What the step paused with.
    pub paused_with: Value,
    /// What steps kept for their next visit ([`StepContext::state`]), by step id: where each
    /// active `for_each` is in its list.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub step_state: Map<String, Value>,
    /// The flows that called the paused one and wait for it to end (`call_flow`), outermost
    /// first; empty when the run's own flow paused. `flow_id`, `step`, `variables` and
    /// `step_state` above are then the called flow's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerFrame>,
    /// The version (hash) of the paused flow when it is a called one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_hash: Option<String>,
    /// When the run is to be resumed without a message (Unix milliseconds), as the paused step
    /// asked ([`StepContext::wake_at`](crate::StepContext::wake_at)): the paused run's timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<i64>,
    /// The contact as the last message gave it, kept when the run has a timer
    /// ([`RunSnapshot::wake_at_ms`]): a timer brings no contact of its own, and the steps it
    /// resumes still see `{{contact.*}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Map<String, Value>>,
}

/// A flow waiting for the flow it called (`call_flow`) to end.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallerFrame {
    /// The calling flow.
    pub flow_id: FlowId,
    /// Its version; `None` for the run's own flow (the version the paused run is pinned to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_hash: Option<String>,
    /// The calling step.
    pub step: StepId,
    /// The caller's variables at the call.
    pub variables: Map<String, Value>,
    /// What its steps kept for their next visit.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub step_state: Map<String, Value>,
    /// What it takes back: (its variable, the called flow's output).
    pub outputs: Vec<(VarName, VarName)>,
}

/// How a run (activation) ended: the one run status, from the run's result to history (each
/// activation and the run's summary), the runs filter and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The flow reached its end.
    Completed,
    /// The flow waits for the next message.
    Paused,
    /// A step failed without an `on_error`, or a limit was hit.
    Failed,
}

impl RunStatus {
    /// Every status, in the order they are documented.
    pub const ALL: [Self; 3] = [Self::Completed, Self::Paused, Self::Failed];

    /// The name used in JSON, the store, metrics and the command line (`completed`, `paused`,
    /// `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Paused => "paused",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`RunStatus::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a run status; use one of completed, paused, failed")]
pub struct UnknownStatus {
    /// What was given (cut to 40 characters).
    pub given: String,
}

impl std::str::FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownStatus { given: s.chars().take(40).collect() })
    }
}

/// How one step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It succeeded.
    Ok,
    /// It paused the run.
    Paused,
    /// It failed and the run took its `on_error`.
    ErrorHandled,
    /// It failed the run.
    Failed,
}

impl StepStatus {
    /// The name used in JSON and metrics (`ok`, `paused`, `error_handled`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Paused => "paused",
            Self::ErrorHandled => "error_handled",
            Self::Failed => "failed",
        }
    }
}

/// A failure, as shown in results and history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunError {
    /// The step, when a step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepId>,
    /// A stable code.
    pub code: String,
    /// What went wrong, secrets masked.
    pub message: String,
}

/// One executed step.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceEntry {
    /// The step.
    pub step: StepId,
    /// Its type.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub step_type: std::sync::Arc<str>,
    /// How it went.
    pub status: StepStatus,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// Request/response summaries and other details, secrets masked.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
    /// The failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

/// The result of starting or resuming a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// The run.
    pub run_id: RunId,
    /// The flow.
    pub flow_id: FlowId,
    /// How it ended.
    pub status: RunStatus,
    /// Replies sent in this activation.
    pub replies: Vec<Reply>,
    /// Variables at the end (secrets masked).
    pub variables: Map<String, Value>,
    /// Executed steps.
    pub trace: Vec<TraceEntry>,
    /// The failure, when `status` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The state to resume from, when `status` is `paused`.
    #[serde(skip)]
    pub snapshot: Option<RunSnapshot>,
    /// Masks the run's secret values (for whatever the caller keeps about the run: the
    /// message text in history, events).
    #[serde(skip)]
    pub masker: Masker,
}

/// Runs flows. Cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct Engine {
    /// The step types (kept for schema and plugin listings).
    pub registry: Arc<Registry>,
    /// Outbound HTTP and tokens.
    pub outbound: Outbound,
    /// Where `{{secrets.NAME}}` comes from.
    pub secrets: Arc<dyn SecretSource>,
    /// Per-run limits.
    pub limits: RunLimits,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("registry", &self.registry).field("limits", &self.limits).finish_non_exhaustive()
    }
}

struct Activation<'a> {
    /// The run's own flow.
    root: &'a CompiledFlow,
    /// The flow running now when it is a called one, with its version.
    current: Option<(Arc<CompiledFlow>, String)>,
    /// The flows waiting for it, outermost first, each with its flow (`None`: the root).
    callers: Vec<(CallerFrame, Option<Arc<CompiledFlow>>)>,
    /// Where called flows are found.
    resolver: Option<Arc<dyn FlowResolver>>,
    /// What the caller sent, left unmasked (see [`Masker::sent_by_caller`]).
    sent: Vec<u8>,
    env: RunEnv,
    run_id: RunId,
    vars: Map<String, Value>,
    executed: u32,
    replies: Vec<Reply>,
    trace: Vec<TraceEntry>,
    /// Whether the flow-level `on_error` was taken in this activation (it is taken once).
    fallback_taken: bool,
    /// What steps kept for their next visit (see [`RunSnapshot::step_state`]).
    step_state: Map<String, Value>,
}

impl Engine {
    /// Starts a run of `flow`. `overrides` replace the flow's initial variables.
    pub async fn start(
        &self,
        flow: &CompiledFlow,
        input: RunInput,
        overrides: Map<String, Value>,
        sink: Option<&ReplySink>,
    ) -> RunResult {
        let mut vars = flow.variables.clone();
        vars.extend(overrides);
        let run_id = RunId::generate();
        let act = self.activation(flow, input, run_id, vars, 0, Map::new()).await;
        self.drive(act, 0, None, sink).await
    }

    /// Resumes a paused run with the next message. `flow` is the run's own flow (the version
    /// it is pinned to); the flows it called and that wait (`snapshot.callers`) are found with
    /// the input's [`FlowResolver`], by version.
    pub async fn resume(
        &self,
        flow: &CompiledFlow,
        snapshot: RunSnapshot,
        input: RunInput,
        sink: Option<&ReplySink>,
    ) -> RunResult {
        let RunSnapshot {
            run_id,
            step,
            variables,
            executed_steps,
            paused_with,
            flow_id,
            step_state,
            callers,
            flow_hash,
            wake_at_ms: _,
            contact: _,
        } = snapshot;
        let mut act = self.activation(flow, input, run_id, variables, executed_steps, step_state).await;
        let stale = |act: &mut Activation<'_>, message: String| {
            let error = RunError { step: Some(step.clone()), code: "stale-snapshot".into(), message };
            finish(act, RunStatus::Failed, Some(error), None)
        };
        if !callers.is_empty() {
            // The called flows' versions, as the run left them.
            let resolver = act.resolver.clone();
            let find = |hash: Option<String>| {
                let resolver = resolver.clone();
                async move {
                    match (resolver, hash) {
                        (Some(r), Some(h)) => r.version(&h).await.map(|f| Some((f, h))),
                        (_, None) => Some(None),
                        (None, Some(_)) => None,
                    }
                }
            };
            let Some(Some(current)) = find(flow_hash).await else {
                let message = format!("the paused run waits in flow `{flow_id}`, whose version is no longer known");
                return stale(&mut act, message);
            };
            let mut frames = Vec::with_capacity(callers.len());
            for frame in callers {
                let Some(found) = find(frame.flow_hash.clone()).await else {
                    let message = format!(
                        "flow `{}` waits for a flow it called, and its version is no longer known",
                        frame.flow_id
                    );
                    return stale(&mut act, message);
                };
                let caller = found.map(|(f, _)| f);
                if let Some(f) = &caller {
                    self.extend_env(&mut act.env, f, &act.sent).await;
                }
                frames.push((frame, caller));
            }
            self.extend_env(&mut act.env, &current.0, &act.sent).await;
            act.callers = frames;
            act.current = Some(current);
        }
        let running = act.current.as_ref().map(|(f, _)| f.clone());
        let running: &CompiledFlow = running.as_deref().unwrap_or(act.root);
        let Some(index) = running.step_index(&step).filter(|_| flow_id == running.id) else {
            let message = format!(
                "the paused run is at step `{step}` of flow `{flow_id}`, which the loaded flow `{}` does not have",
                running.id
            );
            return stale(&mut act, message);
        };
        self.drive(act, index, Some(paused_with), sink).await
    }

    async fn activation<'a>(
        &self,
        flow: &'a CompiledFlow,
        input: RunInput,
        run_id: RunId,
        vars: Map<String, Value>,
        executed: u32,
        step_state: Map<String, Value>,
    ) -> Activation<'a> {
        // What the caller sent is not masked in the run's output (no oracle for guessing secrets).
        let mut sent = Vec::with_capacity(input.message.text.len() + 256);
        sent.extend_from_slice(input.conversation_id.as_bytes());
        sent.push(b'\n');
        sent.extend_from_slice(input.message.text.as_bytes());
        sent.push(b'\n');
        for v in
            [&input.contact, &Value::Object(input.message.metadata.clone())].into_iter().chain(input.event.as_ref())
        {
            collect_strings(v, &mut sent);
        }
        let mut env = RunEnv {
            conversation_id: input.conversation_id,
            contact: if input.contact.is_object() { input.contact } else { Value::Object(Map::new()) },
            message: input.message,
            event: input.event,
            secrets: Default::default(),
            undecryptable_secrets: Vec::new(),
            integrations: HashMap::new(),
            masker: Masker::new(std::iter::empty()).sent_by_caller(&sent),
            journal: input.journal,
            now_ms: input.now_ms.unwrap_or_else(|| crate::clock::SystemClock.now_ms()),
            woken: input.woken,
        };
        self.extend_env(&mut env, flow, &sent).await;
        Activation {
            root: flow,
            current: None,
            callers: Vec::new(),
            resolver: input.flows,
            sent,
            env,
            run_id,
            vars,
            executed,
            replies: Vec::new(),
            trace: Vec::new(),
            fallback_taken: false,
            step_state,
        }
    }

    /// Adds what `flow` needs to the run's environment: its secrets (and the masker that hides
    /// them) and its integrations' metadata. A run's own flow, then each flow it calls.
    async fn extend_env(&self, env: &mut RunEnv, flow: &CompiledFlow, sent: &[u8]) {
        let mut added = false;
        for name in &flow.secrets {
            if env.secrets.contains_key(name) || env.undecryptable_secrets.contains(name) {
                continue;
            }
            match self.secrets.get(name) {
                Some(value) => {
                    env.secrets.insert(name.clone(), value);
                    added = true;
                }
                None if self.secrets.undecryptable(name) => env.undecryptable_secrets.push(name.clone()),
                None => {}
            }
        }
        if added {
            env.masker = Masker::new(env.secrets.values()).sent_by_caller(sent);
        }
        if let Some(tokens) = &self.outbound.tokens {
            for name in &flow.integration_metadata {
                if env.integrations.contains_key(name) {
                    continue;
                }
                match tokens.metadata(name).await {
                    Ok(meta) => {
                        env.integrations.insert(name.clone(), meta);
                    }
                    Err(e) => tracing::debug!(integration = %name, error = %e, "no integration metadata"),
                }
            }
        }
    }

    /// Runs the flow `req` names from its first step, keeping the caller (at step `index` of
    /// `caller`) in a frame.
    ///
    /// # Errors
    /// The calling step's failure: calls nested too deep, no such flow loaded.
    async fn enter(
        &self,
        act: &mut Activation<'_>,
        caller: &CompiledFlow,
        index: usize,
        req: CallRequest,
    ) -> Result<(), StepFailure> {
        if act.callers.len() >= MAX_CALL_DEPTH {
            return Err(StepFailure::Other {
                code: "call-depth",
                message: format!(
                    "{MAX_CALL_DEPTH} calls are already nested here (the limit); a flow probably calls itself, or a flow that calls it back, without end"
                ),
            });
        }
        let Some(callee) = act.resolver.as_ref().and_then(|r| r.current(req.flow.as_str())) else {
            return Err(StepFailure::Other {
                code: "unknown-flow",
                message: format!(
                    "flow `{}` is not loaded; load it with the flows that call it (the same folder)",
                    req.flow
                ),
            });
        };
        // The flows may have changed while the run waited: the version loaded now must still
        // take what this (older) caller gives.
        let missing: Vec<&str> =
            callee.flow.inputs.iter().filter(|i| !req.inputs.contains_key(i.as_str())).map(|i| i.as_str()).collect();
        let extra: Vec<&str> = req
            .inputs
            .keys()
            .filter(|k| !callee.flow.inputs.iter().any(|i| i.as_str() == k.as_str()))
            .map(String::as_str)
            .collect();
        let unknown: Vec<&str> = req
            .outputs
            .iter()
            .filter(|(_, theirs)| !callee.flow.outputs.contains(theirs))
            .map(|(_, theirs)| theirs.as_str())
            .collect();
        if !missing.is_empty() || !extra.is_empty() || !unknown.is_empty() {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("needs the input(s) {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                why.push(format!("no longer takes the input(s) {}", extra.join(", ")));
            }
            if !unknown.is_empty() {
                why.push(format!("has no output(s) {}", unknown.join(", ")));
            }
            return Err(StepFailure::Other {
                code: "call-mismatch",
                message: format!(
                    "flow `{}` as loaded now {}, which this version of flow `{}` does not match: the flows changed while this run waited",
                    req.flow,
                    why.join(" and "),
                    caller.id
                ),
            });
        }
        self.extend_env(&mut act.env, &callee.flow, &act.sent).await;
        let (flow, flow_hash) = match act.current.take() {
            Some((f, h)) => (Some(f), Some(h)),
            None => (None, None),
        };
        let frame = CallerFrame {
            flow_id: caller.id.clone(),
            flow_hash,
            step: caller.steps[index].id.clone(),
            variables: std::mem::take(&mut act.vars),
            step_state: std::mem::take(&mut act.step_state),
            outputs: req.outputs,
        };
        act.callers.push((frame, flow));
        let mut vars = callee.flow.variables.clone();
        vars.extend(req.inputs);
        act.vars = vars;
        act.current = Some((callee.flow, callee.hash));
        Ok(())
    }

    async fn drive(
        &self,
        mut act: Activation<'_>,
        mut index: usize,
        mut resume_with: Option<Value>,
        sink: Option<&ReplySink>,
    ) -> RunResult {
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        tracing::debug!(flow = %act.root.id, run = %act.run_id, resumed = resume_with.is_some(), "run activation");
        // A body step's failure on its way back to the repeating step that catches it.
        let mut caught: Option<CaughtFailure> = None;
        // The step the run came from in this activation (for repeating steps).
        let mut previous: Option<usize> = None;
        // A called flow's failure, on its way to the calling step.
        let mut returned_failure: Option<StepFailure> = None;
        loop {
            let running = act.current.as_ref().map(|(f, _)| f.clone());
            let flow: &CompiledFlow = running.as_deref().unwrap_or(act.root);
            let called = running.is_some();
            let Some(compiled) = flow.steps.get(index) else {
                match returned(&mut act) {
                    Some((i, next)) => {
                        previous = Some(i);
                        index = next;
                        continue;
                    }
                    None => return finish(&mut act, RunStatus::Completed, None, None),
                }
            };
            let here = Here { flow, index, called };
            let started = Instant::now();
            // When this step, if it pauses, wants the run woken.
            let mut wake_at: Option<i64> = None;
            let mut detail = Map::new();
            let result = if let Some(failure) = returned_failure.take() {
                Err(failure)
            } else {
                if act.executed >= self.limits.max_steps {
                    let error = RunError {
                        step: Some(compiled.id.clone()),
                        code: "step-budget".into(),
                        message: format!(
                            "the run executed {} steps, its budget; a loop in the flow probably never ends, or a for_each has more items than the budget holds (each pass takes its body's steps and one for the loop)",
                            self.limits.max_steps
                        ),
                    };
                    return finish(&mut act, RunStatus::Failed, Some(error), None);
                }
                act.executed += 1;
                let mut cx = StepContext {
                    step_id: &compiled.id,
                    flow_id: flow.id.as_str(),
                    run_id: &act.run_id,
                    vars: &mut act.vars,
                    env: &act.env,
                    outbound: &self.outbound,
                    replies: &mut act.replies,
                    sink,
                    detail: &mut detail,
                    deadline,
                    seq: act.executed - 1,
                    states: &mut act.step_state,
                    caught: caught.take(),
                    from_body: previous.is_some_and(|p| flow.steps[p].loops.contains(&index)),
                    woken: if resume_with.is_some() { act.env.woken } else { None },
                    wake_at: &mut wake_at,
                };
                if tokio::time::Instant::now() >= deadline {
                    let error = RunError {
                        step: Some(compiled.id.clone()),
                        code: "deadline".into(),
                        message: format!("the run took longer than {} s", self.limits.deadline.as_secs_f64()),
                    };
                    return finish(&mut act, RunStatus::Failed, Some(error), None);
                }
                // No timer per step: every step is bounded by the time it is given (HTTP
                // requests are capped at the time left, see StepContext::time_left).
                match resume_with.take() {
                    Some(v) => compiled.step.resume(&mut cx, v).await,
                    None => compiled.step.run(&mut cx).await,
                }
            };
            let jump = match result {
                Ok(outcome @ (Outcome::Next | Outcome::Goto(_) | Outcome::End)) => {
                    push_trace(&mut act, here, started, detail, StepStatus::Ok, None);
                    match outcome {
                        Outcome::Goto(j) => j,
                        Outcome::End => Jump::End,
                        _ => compiled.next.unwrap_or(Jump::Step(index + 1)),
                    }
                }
                Ok(Outcome::Call(req)) => {
                    match self.enter(&mut act, flow, index, *req).await {
                        Ok(()) => {
                            push_trace(&mut act, here, started, detail, StepStatus::Ok, None);
                            previous = None;
                            index = 0;
                        }
                        // The call could not start: the calling step fails, through the same
                        // path as any failure (on the next turn of the loop).
                        Err(failure) => returned_failure = Some(failure),
                    }
                    continue;
                }
                Ok(Outcome::Pause(with)) => {
                    push_trace(&mut act, here, started, detail, StepStatus::Paused, None);
                    let snapshot = RunSnapshot {
                        run_id: act.run_id.clone(),
                        flow_id: flow.id.clone(),
                        step: compiled.id.clone(),
                        variables: act.vars.clone(),
                        executed_steps: act.executed,
                        paused_with: with,
                        step_state: act.step_state.clone(),
                        callers: act.callers.iter().map(|(frame, _)| frame.clone()).collect(),
                        flow_hash: act.current.as_ref().map(|(_, h)| h.clone()),
                        wake_at_ms: wake_at,
                        contact: wake_at.and_then(|_| act.env.contact.as_object().cloned()),
                    };
                    return finish(&mut act, RunStatus::Paused, None, Some(snapshot));
                }
                Err(failure) => {
                    let error = step_error(&act.env.masker, &compiled.id, &failure);
                    tracing::info!(flow = %flow.id, run = %act.run_id, step = %compiled.id, code = %error.code, error = %error.message, "step failed");
                    // The step's own `on_error`, else the loop whose body it is in when that loop
                    // catches failures, else the flow's (once per activation), else the step
                    // that called this flow.
                    if compiled.on_error.is_none()
                        && let Some(repeat) = compiled.caught_by
                    {
                        caught = Some(CaughtFailure {
                            step: compiled.id.clone(),
                            code: error.code.clone(),
                            message: error.message.clone(),
                        });
                        detail.insert(CAUGHT_BY.into(), Value::from(flow.steps[repeat].id.as_str()));
                        push_trace(&mut act, here, started, detail, StepStatus::ErrorHandled, Some(error));
                        previous = Some(index);
                        index = repeat;
                        continue;
                    }
                    let flow_fallback = flow.on_error.filter(|_| !act.fallback_taken);
                    act.fallback_taken |= compiled.on_error.is_none() && flow_fallback.is_some();
                    match compiled.on_error.or(flow_fallback) {
                        Some(j) => {
                            push_trace(&mut act, here, started, detail, StepStatus::ErrorHandled, Some(error));
                            j
                        }
                        None => {
                            push_trace(&mut act, here, started, detail, StepStatus::Failed, Some(error.clone()));
                            // A called flow's failure is its calling step's.
                            match failed_call(&mut act, &error) {
                                Some((i, failure)) => {
                                    returned_failure = Some(failure);
                                    previous = None;
                                    index = i;
                                    continue;
                                }
                                None => return finish(&mut act, RunStatus::Failed, Some(error), None),
                            }
                        }
                    }
                }
            };
            previous = Some(index);
            index = match jump {
                Jump::Step(i) => i,
                Jump::End => match returned(&mut act) {
                    Some((i, next)) => {
                        previous = Some(i);
                        next
                    }
                    None => return finish(&mut act, RunStatus::Completed, None, None),
                },
            };
        }
    }
}

/// The flow running now ended. Back in the flow that called it (outputs copied, its
/// variables restored): the calling step's index and where the caller goes on. `None` when
/// the run's own flow ended.
fn returned(act: &mut Activation<'_>) -> Option<(usize, usize)> {
    loop {
        let index = back_to_caller(act, true)?;
        let running = act.current.as_ref().map(|(f, _)| f.clone());
        let flow: &CompiledFlow = running.as_deref().unwrap_or(act.root);
        match flow.steps.get(index).and_then(|s| s.next).unwrap_or(Jump::Step(index + 1)) {
            Jump::Step(next) => return Some((index, next)),
            // The calling step was the caller's last: the caller ended too.
            Jump::End => {}
        }
    }
}

/// A called flow failed and nothing in it caught the failure: back in the caller, the calling
/// step's index and its failure. `None` when the run's own flow failed.
fn failed_call(act: &mut Activation<'_>, error: &RunError) -> Option<(usize, StepFailure)> {
    let callee = act.current.as_ref().map(|(f, _)| f.id.clone())?;
    let index = back_to_caller(act, false)?;
    // A failure passed up through several calls says once where it started.
    let message = if error.code == "call-failed" {
        error.message.clone()
    } else {
        let at = error.step.as_ref().map(|s| format!(" at step `{s}`")).unwrap_or_default();
        format!("flow `{callee}` failed{at} [{}]: {}", error.code, error.message)
    };
    Some((index, StepFailure::Other { code: "call-failed", message }))
}

/// Pops the innermost caller frame: its variables (with the outputs when `ended`), its kept
/// state and its flow come back. Returns the calling step's index.
fn back_to_caller(act: &mut Activation<'_>, ended: bool) -> Option<usize> {
    let (frame, flow) = act.callers.pop()?;
    let mut vars = frame.variables;
    if ended {
        for (mine, theirs) in &frame.outputs {
            // An output the called flow never set comes back as null.
            let value = act.vars.get(theirs.as_str()).cloned().unwrap_or(Value::Null);
            vars.insert(mine.as_str().to_string(), value);
        }
    }
    act.vars = vars;
    act.step_state = frame.step_state;
    act.current = flow.zip(frame.flow_hash);
    let running = act.current.as_ref().map(|(f, _)| f.clone());
    let caller: &CompiledFlow = running.as_deref().unwrap_or(act.root);
    caller.step_index(&frame.step)
}

/// Every string and key in `v`, one per line.
fn collect_strings(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
        Value::Number(n) => {
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.extend_from_slice(k.as_bytes());
            out.push(b'\n');
            collect_strings(x, out);
        }),
        _ => {}
    }
}

fn step_error(masker: &Masker, step: &StepId, failure: &StepFailure) -> RunError {
    RunError { step: Some(step.clone()), code: failure.code().to_string(), message: masker.mask(&failure.to_string()) }
}

/// Where a step is: its flow, its index there, and whether that flow is a called one.
#[derive(Clone, Copy)]
struct Here<'f> {
    flow: &'f CompiledFlow,
    index: usize,
    called: bool,
}

fn push_trace(
    act: &mut Activation<'_>,
    Here { flow, index, called }: Here<'_>,
    started: Instant,
    mut detail: Map<String, Value>,
    status: StepStatus,
    error: Option<RunError>,
) {
    let step = &flow.steps[index];
    if called {
        // A step of a called flow says which flow it is in.
        detail.insert("in_flow".into(), Value::from(flow.id.as_str()));
    }
    let mut d = Value::Object(std::mem::take(&mut detail));
    act.env.masker.mask_value(&mut d);
    let detail = match d {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    act.trace.push(TraceEntry {
        step: step.id.clone(),
        step_type: step.type_name.clone(),
        status,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        detail,
        error,
    });
}

fn finish(
    act: &mut Activation<'_>,
    status: RunStatus,
    mut error: Option<RunError>,
    snapshot: Option<RunSnapshot>,
) -> RunResult {
    // The run's variables are its own flow's, also when it stopped inside a called flow (whose
    // variables the snapshot keeps); a failure there says in which flow.
    if let Some((outermost, _)) = act.callers.first_mut() {
        act.vars = std::mem::take(&mut outermost.variables);
        if let (Some(e), Some((flow, _))) = (error.as_mut(), act.current.as_ref()) {
            e.message = format!("in flow `{}`: {}", flow.id, e.message);
        }
    }
    // The activation ends here: its variables are moved, not copied.
    let mut variables = Value::Object(std::mem::take(&mut act.vars));
    act.env.masker.mask_value(&mut variables);
    let replies = std::mem::take(&mut act.replies);
    tracing::debug!(flow = %act.root.id, run = %act.run_id, ?status, steps = act.trace.len(), "run activation ended");
    RunResult {
        run_id: act.run_id.clone(),
        flow_id: act.root.id.clone(),
        status,
        replies,
        variables: match variables {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        trace: std::mem::take(&mut act.trace),
        error,
        snapshot,
        masker: act.env.masker.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::{RunStatus, StepStatus};

    /// `as_str` (metrics, the store, the command line) and serde (JSON, history) name each
    /// status the same way, and a run status reads back from its name.
    #[test]
    fn status_names_are_the_serde_names() {
        for s in RunStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert!("no_flow".parse::<RunStatus>().unwrap_err().to_string().contains("is not a run status"));
        for s in [StepStatus::Ok, StepStatus::Paused, StepStatus::ErrorHandled, StepStatus::Failed] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
