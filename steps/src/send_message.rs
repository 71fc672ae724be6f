//! `send_message`: send the contact a text, optionally with choices (buttons or a list; see
//! [`crate::choices`]).

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::Template;
use tern_engine::{BuildContext, Outcome, Step, StepContext, StepFailure, StepType, schema::schema_of};

use crate::choices::{ChoiceConfig, Choices, ChoicesFrom};

/// Config of `send_message`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The text to send; a template (`Hello {{first_name}}!`).
    text: String,
    /// Buttons or a list shown with the text (at most 10), each `{"title", "payload"}`
    /// (templates; the payload defaults to the title). A press arrives as a message whose
    /// text is the payload.
    #[serde(default)]
    choices: Vec<ChoiceConfig>,
    /// Choices made from an array variable: `{"variable", "title", "payload"}` where
    /// `{{item}}` is each item (the first 10).
    #[serde(default)]
    choices_from: Option<ChoicesFrom>,
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
        let text = cx.template("/text", &cfg.text);
        let choices = Choices::build(cx, cfg.choices, cfg.choices_from);
        Some(Box::new(Send { text: text?, choices: choices? }))
    }
}

#[derive(Debug)]
struct Send {
    text: Template,
    choices: Choices,
}

#[async_trait]
impl Step for Send {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        let choices = self.choices.render(cx)?;
        cx.reply_with_choices(text, choices);
        Ok(Outcome::Next)
    }
}
