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

use crate::effects::JournalScope;
use crate::http::Outbound;
use crate::ids::{FlowId, RunId, StepId};
use crate::secrets::{Masker, SecretMap, SecretSource};
use crate::step::{
    CaughtFailure, CompiledFlow, Jump, Message, Outcome, Registry, Reply, ReplySink, RunEnv, StepContext, StepFailure,
};

/// The trace detail naming the repeating step (`for_each`) that caught a body step's failure
/// (its `on_item_error`), on that step's entry.
pub const CAUGHT_BY: &str = "caught_by";

/// What a run starts or resumes with.
#[derive(Clone, Debug, Default)]
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
    flow: &'a CompiledFlow,
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

    /// Resumes a paused run with the next message.
    pub async fn resume(
        &self,
        flow: &CompiledFlow,
        snapshot: RunSnapshot,
        input: RunInput,
        sink: Option<&ReplySink>,
    ) -> RunResult {
        let RunSnapshot { run_id, step, variables, executed_steps, paused_with, flow_id, step_state } = snapshot;
        let act = self.activation(flow, input, run_id, variables, executed_steps, step_state).await;
        let Some(index) = flow.step_index(&step).filter(|_| flow_id == flow.id) else {
            let mut act = act;
            let error = RunError {
                step: Some(step.clone()),
                code: "stale-snapshot".into(),
                message: format!(
                    "the paused run is at step `{step}` of flow `{flow_id}`, which the loaded flow `{}` does not have",
                    flow.id
                ),
            };
            return finish(&mut act, RunStatus::Failed, Some(error), None);
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
        let secrets: SecretMap =
            flow.secrets.iter().filter_map(|n| self.secrets.get(n).map(|s| (n.clone(), s))).collect();
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
        let masker = Masker::new(secrets.values()).sent_by_caller(&sent);
        let undecryptable_secrets = flow
            .secrets
            .iter()
            .filter(|n| !secrets.contains_key(*n) && self.secrets.undecryptable(n))
            .cloned()
            .collect();
        let mut integrations = HashMap::new();
        if let Some(tokens) = &self.outbound.tokens {
            for name in &flow.integration_metadata {
                match tokens.metadata(name).await {
                    Ok(meta) => {
                        integrations.insert(name.clone(), meta);
                    }
                    Err(e) => tracing::debug!(integration = %name, error = %e, "no integration metadata"),
                }
            }
        }
        let env = RunEnv {
            conversation_id: input.conversation_id,
            contact: if input.contact.is_object() { input.contact } else { Value::Object(Map::new()) },
            message: input.message,
            event: input.event,
            secrets,
            undecryptable_secrets,
            integrations,
            masker,
            journal: input.journal,
        };
        Activation {
            flow,
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

    async fn drive(
        &self,
        mut act: Activation<'_>,
        mut index: usize,
        mut resume_with: Option<Value>,
        sink: Option<&ReplySink>,
    ) -> RunResult {
        let flow = act.flow;
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        tracing::debug!(flow = %flow.id, run = %act.run_id, resumed = resume_with.is_some(), "run activation");
        // A body step's failure on its way back to the repeating step that catches it.
        let mut caught: Option<CaughtFailure> = None;
        // The step the run came from in this activation (for repeating steps).
        let mut previous: Option<usize> = None;
        loop {
            let Some(compiled) = flow.steps.get(index) else {
                return finish(&mut act, RunStatus::Completed, None, None);
            };
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
            let started = Instant::now();
            let mut detail = Map::new();
            let result = {
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
                Ok(Outcome::Next) => compiled.next.unwrap_or(Jump::Step(index + 1)),
                Ok(Outcome::Goto(j)) => j,
                Ok(Outcome::End) => Jump::End,
                Ok(Outcome::Pause(with)) => {
                    push_trace(&mut act, index, started, detail, StepStatus::Paused, None);
                    let snapshot = RunSnapshot {
                        run_id: act.run_id.clone(),
                        flow_id: flow.id.clone(),
                        step: compiled.id.clone(),
                        variables: act.vars.clone(),
                        executed_steps: act.executed,
                        paused_with: with,
                        step_state: act.step_state.clone(),
                    };
                    return finish(&mut act, RunStatus::Paused, None, Some(snapshot));
                }
                Err(failure) => {
                    let error = step_error(&act.env.masker, &compiled.id, &failure);
                    tracing::info!(flow = %flow.id, run = %act.run_id, step = %compiled.id, code = %error.code, error = %error.message, "step failed");
                    // The step's own `on_error`, else the loop whose body it is in when that loop
                    // catches failures, else the flow's (once per activation).
                    if compiled.on_error.is_none()
                        && let Some(repeat) = compiled.caught_by
                    {
                        caught = Some(CaughtFailure {
                            step: compiled.id.clone(),
                            code: error.code.clone(),
                            message: error.message.clone(),
                        });
                        detail.insert(CAUGHT_BY.into(), Value::from(flow.steps[repeat].id.as_str()));
                        push_trace(&mut act, index, started, detail, StepStatus::ErrorHandled, Some(error));
                        previous = Some(index);
                        index = repeat;
                        continue;
                    }
                    let flow_fallback = flow.on_error.filter(|_| !act.fallback_taken);
                    act.fallback_taken |= compiled.on_error.is_none() && flow_fallback.is_some();
                    match compiled.on_error.or(flow_fallback) {
                        Some(j) => {
                            push_trace(&mut act, index, started, detail, StepStatus::ErrorHandled, Some(error));
                            previous = Some(index);
                            index = match j {
                                Jump::Step(i) => i,
                                Jump::End => return finish(&mut act, RunStatus::Completed, None, None),
                            };
                            continue;
                        }
                        None => {
                            push_trace(&mut act, index, started, detail, StepStatus::Failed, Some(error.clone()));
                            return finish(&mut act, RunStatus::Failed, Some(error), None);
                        }
                    }
                }
            };
            push_trace(&mut act, index, started, detail, StepStatus::Ok, None);
            previous = Some(index);
            index = match jump {
                Jump::Step(i) => i,
                Jump::End => return finish(&mut act, RunStatus::Completed, None, None),
            };
        }
    }
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

fn push_trace(
    act: &mut Activation<'_>,
    index: usize,
    started: Instant,
    mut detail: Map<String, Value>,
    status: StepStatus,
    error: Option<RunError>,
) {
    let step = &act.flow.steps[index];
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
    error: Option<RunError>,
    snapshot: Option<RunSnapshot>,
) -> RunResult {
    // The activation ends here: its variables are moved, not copied.
    let mut variables = Value::Object(std::mem::take(&mut act.vars));
    act.env.masker.mask_value(&mut variables);
    let replies = std::mem::take(&mut act.replies);
    tracing::debug!(flow = %act.flow.id, run = %act.run_id, ?status, steps = act.trace.len(), "run activation ended");
    RunResult {
        run_id: act.run_id.clone(),
        flow_id: act.flow.id.clone(),
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
