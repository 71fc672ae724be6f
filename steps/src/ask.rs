//! `ask`: send a question, pause until the contact answers, store the answer. With choices
//! ([`crate::choices`]) the answer is the chosen choice's payload: a button press, or a typed
//! number, title or payload; typed text that picks none is stored as it is, or, with `reask`,
//! answered with `reask` and the choices again.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::Template;
use tern_engine::{
    Behavior, BuildContext, Choice, Outcome, Step, StepContext, StepFailure, StepType, VarName, schema::schema_of,
};

use crate::choices::{ChoiceConfig, Choices, ChoicesFrom};

/// Config of `ask`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The question; a template.
    text: String,
    /// The variable that receives the answer's text (with choices: the chosen payload).
    save_as: VarName,
    /// Buttons or a list to answer with (at most 10), each `{"title", "payload"}` (templates;
    /// the payload defaults to the title).
    #[serde(default)]
    choices: Vec<ChoiceConfig>,
    /// Choices made from an array variable: `{"variable", "title", "payload"}` where
    /// `{{item}}` is each item (the first 10).
    #[serde(default)]
    choices_from: Option<ChoicesFrom>,
    /// With choices: what to answer when the contact types something that picks none (a
    /// template, sent with the choices again; e.g. "Please pick one of these."). Without it,
    /// the typed text is stored as the answer.
    #[serde(default)]
    reask: Option<String>,
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
        let text = cx.template("/text", &cfg.text);
        let choices = Choices::build(cx, cfg.choices, cfg.choices_from);
        let reask = cfg.reask.as_ref().map(|r| cx.template("/reask", r));
        if reask.is_some() && choices.as_ref().is_some_and(Choices::is_empty) {
            cx.warning(
                "reask-without-choices",
                "/reask",
                "`reask` is sent when the answer picks none of the choices, and this question has none",
                Some("add `choices` or `choices_from`, or remove `reask`".into()),
            );
        }
        let reask = match reask {
            None => None,
            Some(r) => Some(r?),
        };
        Some(Box::new(AskStep { text: text?, save_as: cfg.save_as, choices: choices?, reask }))
    }
}

#[derive(Debug)]
struct AskStep {
    text: Template,
    save_as: VarName,
    choices: Choices,
    reask: Option<Template>,
}

/// What a paused `ask` keeps: the choices it offered, to read the answer against.
#[derive(serde::Serialize, Deserialize, Default)]
struct Asked {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[async_trait]
impl Step for AskStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        let choices = self.choices.render(cx)?;
        let state = if choices.is_empty() { Value::Null } else { serde_json::json!({"choices": choices}) };
        cx.reply_with_choices(text, choices);
        Ok(Outcome::Pause(state))
    }

    async fn resume(&self, cx: &mut StepContext<'_>, state: Value) -> Result<Outcome, StepFailure> {
        // A run paused before choices existed kept `null`: no choices.
        let asked: Asked = serde_json::from_value(state.clone()).unwrap_or_default();
        let answer = cx.message_text().trim().to_string();
        if asked.choices.is_empty() {
            cx.set_var(&self.save_as, Value::String(answer));
            return Ok(Outcome::Next);
        }
        if let Some(chosen) = Choice::pick(&asked.choices, &answer) {
            let payload = chosen.payload.clone();
            cx.set_var(&self.save_as, Value::String(payload));
            return Ok(Outcome::Next);
        }
        match &self.reask {
            Some(reask) => {
                let text = reask.render(&cx.scope())?;
                cx.reply_with_choices(text, asked.choices);
                Ok(Outcome::Pause(state))
            }
            None => {
                cx.set_var(&self.save_as, Value::String(answer));
                Ok(Outcome::Next)
            }
        }
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, ..Behavior::default() }
    }
}
