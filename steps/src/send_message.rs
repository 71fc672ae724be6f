//! `send_message`: send the contact a text.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::Template;
use tern_engine::{BuildContext, Outcome, Step, StepContext, StepFailure, StepType, schema::schema_of};

/// Config of `send_message`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The text to send; a template (`Hello {{first_name}}!`).
    text: String,
}

pub struct SendMessage;

impl StepType for SendMessage {
    fn name(&self) -> &str {
        "send_message"
    }
    fn description(&self) -> &str {
        "Send the contact a message"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let text = cx.template("/text", &cfg.text)?;
        Some(Box::new(Send { text }))
    }
}

#[derive(Debug)]
struct Send {
    text: Template,
}

#[async_trait]
impl Step for Send {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        cx.reply(text);
        Ok(Outcome::Next)
    }
}
