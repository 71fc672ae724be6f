//! The two traits a step type implements: [`StepType`] (build a step from its JSON) and
//! [`Step`] (run it).

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use super::{Behavior, BuildContext, Outcome, StepContext, StepFailure};

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

/// A kind of step, as registered in the [`Registry`](super::Registry).
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
