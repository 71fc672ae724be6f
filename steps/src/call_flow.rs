//! `call_flow`: run another flow of the set with named inputs, and take its outputs back.
//!
//! The called flow declares its interface at its top level: `"inputs": ["phone"]` (variables a
//! caller must give, set before its first step) and `"outputs": ["customer_id"]` (variables a
//! caller may take back). Loading a set of flows checks every call against it (the flow
//! exists, every input is given and only declared ones, outputs are declared): see
//! [`tern_engine::flow_set::check_calls`].
//!
//! The call is the executor's ([`Outcome::Call`]): the caller's variables and position are kept
//! in a frame, the called flow runs with only its own variables and the inputs, and when it
//! ends the outputs are copied into the caller, which goes on with the step's `next`. The
//! called flow may pause (`ask`, `oauth_request`): the paused run keeps the frames and the
//! version of every flow in them, so it resumes after a restart, on another instance, with the
//! versions both flows started with. A failure in the called flow that nothing there catches is
//! this step's failure (`call-failed`), for its `on_error`. Calls nest at most
//! [`MAX_CALL_DEPTH`](tern_engine::MAX_CALL_DEPTH) deep.

use std::collections::BTreeMap;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use tern_engine::diagnostics::pointer_push;
use tern_engine::template::JsonTemplate;
use tern_engine::{
    Behavior, BuildContext, CallRequest, FlowId, Outcome, Step, StepContext, StepFailure, StepType, VarName,
    schema::schema_of,
};

/// Config of `call_flow`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The id of the flow to run (a flow of the same set).
    flow: FlowId,
    /// The called flow's inputs: its input name → a value (strings are templates; `"{{x}}"`
    /// alone keeps x's JSON type).
    #[serde(default)]
    inputs: BTreeMap<VarName, Value>,
    /// What to take back when it ends: a variable of this flow → the called flow's output it
    /// receives.
    #[serde(default)]
    outputs: BTreeMap<VarName, VarName>,
}

pub struct CallFlow;

impl StepType for CallFlow {
    fn name(&self) -> &str {
        "call_flow"
    }
    fn description(&self) -> &str {
        "Run another flow with named inputs and take its outputs back (it may pause; the caller goes on when it ends)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let mut inputs = Vec::new();
        let mut ok = true;
        for (name, value) in &cfg.inputs {
            match cx.json_template(&pointer_push("/inputs", name.as_str()), value) {
                Some(t) => inputs.push((name.clone(), t)),
                None => ok = false,
            }
        }
        for mine in cfg.outputs.keys() {
            cx.defines(&pointer_push("/outputs", mine.as_str()), mine);
        }
        cx.calls(
            "/flow",
            &cfg.flow,
            cfg.inputs.keys().cloned().collect(),
            cfg.outputs.iter().map(|(mine, theirs)| (mine.clone(), theirs.clone())).collect(),
        );
        let outputs = cfg.outputs.into_iter().collect();
        ok.then(|| Box::new(Call { flow: cfg.flow, inputs, outputs }) as Box<dyn Step>)
    }
}

#[derive(Debug)]
struct Call {
    flow: FlowId,
    inputs: Vec<(VarName, JsonTemplate)>,
    outputs: Vec<(VarName, VarName)>,
}

#[async_trait]
impl Step for Call {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let mut inputs = Map::new();
        for (name, template) in &self.inputs {
            inputs.insert(name.as_str().to_string(), template.render(&cx.scope())?);
        }
        cx.record("flow", Value::from(self.flow.as_str()));
        Ok(Outcome::Call(Box::new(CallRequest { flow: self.flow.clone(), inputs, outputs: self.outputs.clone() })))
    }

    fn behavior(&self) -> Behavior {
        // The called flow may wait for the contact.
        Behavior { pauses: true, ..Behavior::default() }
    }
}
