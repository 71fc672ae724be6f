//! What a running step sees and changes: the [`StepContext`] the executor gives it, and the
//! [`Reply`] it sends to the contact. The journaled way to send a request is in `send.rs`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::env::{RunEnv, RunScope};
use crate::http::Outbound;
use crate::ids::{StepId, VarName};
use crate::secrets::Masker;

/// A message the run sends to the contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub fn masker(&self) -> &Masker {
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
