//! The compiled form of a flow: what the compiler produces and the executor runs. Templates,
//! paths, regexes and jump targets are already resolved; jumps are step indexes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Behavior, Jump, Step};
use crate::diagnostics::Diagnostic;
use crate::flow::Trigger;
use crate::ids::{FlowId, IntegrationName, StepId};

/// A step ready to run.
#[derive(Debug)]
pub struct CompiledStep {
    /// The id.
    pub id: StepId,
    /// The type name (shared: copied into every trace entry).
    pub type_name: Arc<str>,
    /// Where to go after the step (`None`: the following step).
    pub next: Option<Jump>,
    /// Where to go when it fails.
    pub on_error: Option<Jump>,
    /// The other places the step may jump to, named in its own fields (branch cases, plugin
    /// outcomes), as the step type declared them through [`BuildContext::target`](super::BuildContext::target).
    pub jumps: Vec<StepJump>,
    /// The step's `description`, a note for people reading the flow.
    pub description: Option<String>,
    /// What the step does, in short lines for its box in a picture (its message, request and
    /// variables; see [`crate::graph::step_summary`]).
    pub summary: Vec<String>,
    /// The step.
    pub step: Box<dyn Step>,
    /// Its behaviour.
    pub behavior: Behavior,
    /// The repeating steps (`for_each`) whose body holds this step, innermost first. The run
    /// coming from one of these steps to the loop ends a pass; coming from anywhere else
    /// starts the loop anew.
    pub loops: Vec<usize>,
    /// The innermost of [`CompiledStep::loops`] that catches the body's failures
    /// ([`Repeat::catches_failures`](super::Repeat)): a failure of this step without its own
    /// `on_error` goes back there.
    pub caught_by: Option<usize>,
}

/// A place a step may jump to, declared in its own fields (not `next` or `on_error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepJump {
    /// The target's JSON pointer, relative to the step (`/cases/0/next`).
    pub pointer: String,
    /// A short text for people (`qty gte 100`), when the step type gave one
    /// ([`BuildContext::labeled_target`](super::BuildContext::labeled_target)).
    pub label: Option<String>,
    /// Where.
    pub jump: Jump,
}

/// A flow ready to run.
#[derive(Debug)]
pub struct CompiledFlow {
    /// The flow id.
    pub id: FlowId,
    /// The human-readable name.
    pub name: Option<String>,
    /// What the flow does (its `description`).
    pub description: Option<String>,
    /// The trigger, if any.
    pub trigger: Option<Trigger>,
    /// Initial variables.
    pub variables: Map<String, Value>,
    /// The steps, in document order.
    pub steps: Vec<CompiledStep>,
    /// The flow-level fallback: where a failing step without its own `on_error` goes (taken at
    /// most once per activation, so a failing fallback cannot loop).
    pub on_error: Option<Jump>,
    /// Integrations the flow uses.
    pub integrations: BTreeSet<IntegrationName>,
    /// Integrations whose metadata templates read (`{{integration.NAME.FIELD}}`).
    pub integration_metadata: BTreeSet<IntegrationName>,
    /// Secrets the flow uses.
    pub secrets: BTreeSet<String>,
    /// What a caller must give when it runs this flow with `call_flow` (its `inputs`).
    pub inputs: BTreeSet<crate::ids::VarName>,
    /// What a caller may take back when it ends (its `outputs`).
    pub outputs: BTreeSet<crate::ids::VarName>,
    /// The flows its steps call.
    pub calls: Vec<super::FlowCall>,
    /// Warnings found while loading.
    pub warnings: Vec<Diagnostic>,
}

impl CompiledFlow {
    /// The index of a step.
    pub fn step_index(&self, id: &StepId) -> Option<usize> {
        self.steps.iter().position(|s| &s.id == id)
    }
}
