//! `end`: finish the run.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::{Behavior, BuildContext, Outcome, Step, StepContext, StepFailure, StepType, schema::schema_of};

/// `end` has no fields of its own.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {}

pub struct End;

impl StepType for End {
    fn name(&self) -> &str {
        "end"
    }
    fn description(&self) -> &str {
        "End the run"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let _: Config = cx.config(config)?;
        Some(Box::new(EndStep))
    }
}

#[derive(Debug)]
struct EndStep;

#[async_trait]
impl Step for EndStep {
    async fn run(&self, _: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        Ok(Outcome::End)
    }

    fn behavior(&self) -> Behavior {
        Behavior { terminal: true, ..Behavior::default() }
    }
}
