//! Failures that still answer the contact.
//!
//! Inside a flow, a failing step goes to its own `on_error`, else to the flow's top-level
//! `on_error` (once per activation; see [`crate::run`]). When neither exists the run fails, and
//! the caller (the conversation service, `tern run`) hands the failed [`RunResult`] to
//! [`ErrorHandling::handle`], which:
//!
//! 1. starts the **error flow**, if one is configured (a flow whose trigger is
//!    `{"type": "error"}`, like n8n's error workflow), in the same conversation, with the
//!    failure in the variable `error`: `{{error.code}}`, `{{error.step}}`, `{{error.message}}`,
//!    `{{error.flow}}` and `{{error.run_id}}`. A failure of the error flow itself is not handled
//!    again (no recursion);
//! 2. sends the **default error reply**, if one is configured, when no error flow answered the
//!    contact (none configured, it failed, or it sent no reply).
//!
//! The error message is the one in the run result, with the run's secret values already masked.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::flow::{ERROR_VARIABLE, Trigger};
use crate::ids::StepId;
use crate::run::{Engine, RunInput, RunResult, RunStatus};
use crate::step::{CompiledFlow, Reply, ReplySink};

/// What to do when a run fails and nothing in its flow caught the failure. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ErrorHandling {
    reply: Option<String>,
    flow: Option<Arc<CompiledFlow>>,
}

/// What [`ErrorHandling::handle`] did.
#[derive(Debug, Default)]
pub struct Handled {
    /// The error flow's run, when one was started. It is a run like any other: it may pause
    /// (resume it with [`Engine::resume`] and the snapshot in it) and its replies go to the same
    /// conversation.
    pub error_run: Option<RunResult>,
    /// The default error reply, when it was sent (it is also appended to the failed run's
    /// replies and given to the reply sink).
    pub reply: Option<Reply>,
}

impl ErrorHandling {
    /// Error handling with a default reply (plain text, sent as is) and/or an error flow.
    ///
    /// # Errors
    /// [`crate::Error::NotAnErrorFlow`] when the flow's trigger is not `{"type": "error"}`: only
    /// such flows may read `{{error.*}}` (validation knows the variable from the trigger).
    pub fn new(reply: Option<String>, flow: Option<Arc<CompiledFlow>>) -> Result<Self, crate::Error> {
        if let Some(f) = &flow
            && !matches!(f.trigger, Some(Trigger::Error))
        {
            return Err(crate::Error::NotAnErrorFlow { flow: f.id.to_string() });
        }
        Ok(Self { reply: reply.filter(|r| !r.trim().is_empty()), flow })
    }

    /// The error flow, if any.
    pub fn flow(&self) -> Option<&Arc<CompiledFlow>> {
        self.flow.as_ref()
    }

    /// The default error reply, if any.
    pub fn reply(&self) -> Option<&str> {
        self.reply.as_deref()
    }

    /// The variables an error flow starts with for a failed run: `error` =
    /// `{"code", "step", "message", "flow", "run_id"}` (`step` is null when no step failed).
    pub fn error_variables(failed: &RunResult) -> Map<String, Value> {
        let error = failed.error.as_ref();
        let value = json!({
            "code": error.map_or("failed", |e| e.code.as_str()),
            "step": error.and_then(|e| e.step.as_ref()).map(StepId::as_str),
            "message": error.map_or("the run failed", |e| e.message.as_str()),
            "flow": failed.flow_id.as_str(),
            "run_id": failed.run_id,
        });
        Map::from_iter([(ERROR_VARIABLE.to_string(), value)])
    }

    /// Handles a finished activation: does nothing unless it failed. `input` is the input of
    /// the activation that failed (same conversation, contact and message).
    pub async fn handle(
        &self,
        engine: &Engine,
        failed: &mut RunResult,
        input: RunInput,
        sink: Option<&ReplySink>,
    ) -> Handled {
        let mut handled = Handled::default();
        if failed.status != RunStatus::Failed {
            return handled;
        }
        let own_failure = self.flow.as_ref().is_some_and(|f| f.id == failed.flow_id);
        if let Some(flow) = self.flow.as_ref().filter(|_| !own_failure) {
            tracing::info!(flow = %failed.flow_id, error_flow = %flow.id, "starting the error flow");
            let run = engine.start(flow, input, Self::error_variables(failed), sink).await;
            handled.error_run = Some(run);
        }
        let answered =
            handled.error_run.as_ref().is_some_and(|r| r.status != RunStatus::Failed && !r.replies.is_empty());
        if let Some(text) = self.reply.as_ref().filter(|_| !answered) {
            let step = failed.error.as_ref().and_then(|e| e.step.clone()).or_else(|| StepId::new("_error").ok());
            if let Some(step) = step {
                let reply = Reply { step, text: text.clone(), choices: Vec::new() };
                if let Some(sink) = sink {
                    sink(&reply);
                }
                failed.replies.push(reply.clone());
                handled.reply = Some(reply);
            }
        }
        handled
    }
}
