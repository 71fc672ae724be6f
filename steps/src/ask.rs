//! `ask`: send a question, pause until the contact answers, store the answer.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::Template;
use tern_engine::{
    Behavior, BuildContext, Outcome, Step, StepContext, StepFailure, StepType, VarName, schema::schema_of,
};

/// Config of `ask`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The question; a template.
    text: String,
    /// The variable that receives the answer's text.
    save_as: VarName,
}

pub struct Ask;

impl StepType for Ask {
    fn name(&self) -> &str {
        "ask"
    }
    fn description(&self) -> &str {
        "Ask a question and wait for the contact's reply, stored in `save_as`"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        cx.defines("/save_as", &cfg.save_as);
        let text = cx.template("/text", &cfg.text)?;
        Some(Box::new(AskStep { text, save_as: cfg.save_as }))
    }
}

#[derive(Debug)]
struct AskStep {
    text: Template,
    save_as: VarName,
}

#[async_trait]
impl Step for AskStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        cx.reply(text);
        Ok(Outcome::Pause(Value::Null))
    }

    async fn resume(&self, cx: &mut StepContext<'_>, _: Value) -> Result<Outcome, StepFailure> {
        let answer = cx.message_text().trim().to_string();
        cx.set_var(&self.save_as, Value::String(answer));
        Ok(Outcome::Next)
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, terminal: false }
    }
}
