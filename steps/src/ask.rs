//! `ask`: send a question, pause until the contact answers, store the answer. With choices
//! ([`crate::choices`]) the answer is the chosen choice's payload: a button press, or a typed
//! number, title or payload; typed text that picks none is stored as it is, or, with `reask`,
//! answered with `reask` and the choices again.
//!
//! With `reminders` and `timeout` the question does not wait forever: each reminder is sent
//! (with the choices again) when its `after` has passed since the question, and when `timeout`
//! passes the run goes to `on_timeout` (or ends). The paused run keeps when the question was
//! asked and how many reminders went out, and asks for one wake-up at a time
//! ([`StepContext::wake_at`]); an answer cancels it (the conversation service replaces the
//! paused run and its timer in one commit). A `reask` restarts the clock: the contact did
//! answer.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::Template;
use tern_engine::timing::FlowDuration;
use tern_engine::{
    Behavior, BuildContext, Choice, Jump, Outcome, Step, StepContext, StepFailure, StepType, Target, VarName,
    schema::schema_of,
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
    /// How long to wait for the answer (`"10m"`, `"1h30m"`, `"2d"`; 1 s to 30 days). When it
    /// passes without an answer the run goes to `on_timeout`, or ends.
    #[serde(default)]
    timeout: Option<FlowDuration>,
    /// Where the run goes when `timeout` passes: a step id or `end` (the default).
    #[serde(default)]
    on_timeout: Option<Target>,
    /// Reminders sent while the question waits, at most 5, in order of `after`, each
    /// `{"after": "5m", "text": "…"}`: `text` (a template) is sent with the choices again when
    /// `after` has passed since the question; before `timeout` when there is one.
    #[serde(default)]
    reminders: Vec<ReminderConfig>,
}

/// A reminder of an unanswered question.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReminderConfig {
    /// How long after the question (`"5m"`).
    after: FlowDuration,
    /// What to send; a template.
    text: String,
}

/// Most reminders one question may have.
pub const MAX_REMINDERS: usize = 5;

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
        let timers = Timers::build(cx, &cfg);
        warn_answer_used_before_given(cx, &cfg);
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
        Some(Box::new(AskStep { text: text?, save_as: cfg.save_as, choices: choices?, reask, timers: timers? }))
    }
}

/// The question's own answer (`save_as`) in what it sends before the answer comes (its text,
/// `reask`, reminders) has no value the first time it is asked: a warning, since a question
/// asked again in a loop may have an earlier answer.
fn warn_answer_used_before_given(cx: &mut BuildContext<'_>, cfg: &Config) {
    let texts = std::iter::once(("/text".to_string(), cfg.text.as_str()))
        .chain(cfg.reask.as_deref().map(|r| ("/reask".to_string(), r)))
        .chain(cfg.reminders.iter().enumerate().map(|(i, r)| (format!("/reminders/{i}/text"), r.text.as_str())));
    for (rel, text) in texts {
        let Ok(t) = Template::parse(text) else { continue };
        let uses_answer =
            t.vars().any(|v| matches!(&v.root, tern_engine::template::Root::Var(name) if *name == cfg.save_as));
        if uses_answer && !text.contains("| default") {
            cx.warning(
                "answer-used-before-given",
                &rel,
                format!(
                    "`{{{{{}}}}}` is this question's own answer, which has no value until the contact answers",
                    cfg.save_as
                ),
                Some(format!("use another variable, or give a default: `{{{{{} | default: \"…\"}}}}`", cfg.save_as)),
            );
        }
    }
}

/// When an unanswered question sends its reminders and gives up.
#[derive(Debug, Default)]
struct Timers {
    /// Each reminder's delay after the question (ms) and text, in order.
    reminders: Vec<(i64, Template)>,
    /// The timeout (ms) and where the run goes then.
    timeout: Option<(i64, Jump)>,
}

impl Timers {
    /// Checks every problem at once: too many reminders, reminders out of order or not before
    /// the timeout, `on_timeout` without a timeout.
    fn build(cx: &mut BuildContext<'_>, cfg: &Config) -> Option<Self> {
        let mut ok = true;
        if cfg.reminders.len() > MAX_REMINDERS {
            let n = cfg.reminders.len();
            cx.error(
                "too-many-reminders",
                "/reminders",
                format!("the question has {n} reminders; at most {MAX_REMINDERS} are sent"),
                Some("keep the reminders that matter; for a longer follow-up, go to steps with `on_timeout`".into()),
            );
            ok = false;
        }
        let mut reminders = Vec::with_capacity(cfg.reminders.len());
        let mut previous: Option<FlowDuration> = None;
        for (i, r) in cfg.reminders.iter().enumerate() {
            if previous.is_some_and(|p| r.after <= p) {
                cx.error(
                    "reminders-out-of-order",
                    &format!("/reminders/{i}/after"),
                    format!(
                        "reminder {} comes after {} but the one before it after {}",
                        i + 1,
                        r.after,
                        previous.map(|p| p.to_string()).unwrap_or_default()
                    ),
                    Some("list the reminders in the order they are sent, each later than the one before".into()),
                );
                ok = false;
            }
            if let Some(t) = cfg.timeout
                && r.after >= t
            {
                cx.error(
                    "reminder-after-timeout",
                    &format!("/reminders/{i}/after"),
                    format!("reminder {} comes after {}, but the question times out after {t}", i + 1, r.after),
                    Some("give the reminder a shorter `after`, or the question a longer `timeout`".into()),
                );
                ok = false;
            }
            previous = Some(r.after);
            // Blank: white space and invisible characters (a zero-width space shows nothing).
            if r.text.chars().all(|c| c.is_whitespace() || tern_engine::is_hidden_char(c)) {
                cx.error(
                    "empty-text",
                    &format!("/reminders/{i}/text"),
                    format!("reminder {} has no text; the contact would get an empty message", i + 1),
                    Some("write what the reminder says, such as \"Still there?\"".into()),
                );
                ok = false;
                continue;
            }
            match cx.template(&format!("/reminders/{i}/text"), &r.text) {
                Some(t) => reminders.push((r.after.as_ms(), t)),
                None => ok = false,
            }
        }
        let timeout = match (cfg.timeout, &cfg.on_timeout) {
            (Some(t), Some(target)) => {
                if matches!(target, Target::Step(id) if id == cx.step_id()) {
                    cx.warning(
                        "timeout-asks-again",
                        "/on_timeout",
                        format!("`on_timeout` asks this question again: a contact who has gone gets it every {t} until the run's step budget or the paused run's expiry ends it"),
                        Some("go to a step that closes the conversation, or send a reminder and then end".into()),
                    );
                }
                Some((t.as_ms(), cx.target("/on_timeout", target)?))
            }
            (Some(t), None) => Some((t.as_ms(), Jump::End)),
            (None, Some(_)) => {
                cx.error(
                    "on-timeout-without-timeout",
                    "/on_timeout",
                    "`on_timeout` is taken when `timeout` passes, and this question has no `timeout`",
                    Some(
                        "add `\"timeout\": \"10m\"` (or how long the question should wait), or remove `on_timeout`"
                            .into(),
                    ),
                );
                return None;
            }
            (None, None) => None,
        };
        ok.then_some(Self { reminders, timeout })
    }

    /// When the question asked at `asked_at_ms`, with `reminded` reminders sent, wants the run
    /// woken next; `None` when nothing is left to do but wait for the answer.
    fn next_wake(&self, asked: &Asked) -> Option<i64> {
        let after = match self.reminders.get(asked.reminded as usize) {
            Some((after, _)) => *after,
            None => self.timeout?.0,
        };
        Some(asked.asked_at_ms.saturating_add(after))
    }
}

#[derive(Debug)]
struct AskStep {
    text: Template,
    save_as: VarName,
    choices: Choices,
    reask: Option<Template>,
    timers: Timers,
}

/// What a paused `ask` keeps: the choices it offered, to read the answer against, and when it
/// asked and how many reminders it sent, for its timers. (Runs paused before timers existed
/// kept only the choices, or `null`.)
#[derive(serde::Serialize, Deserialize, Default)]
struct Asked {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "is_zero")]
    asked_at_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    reminded: u32,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl AskStep {
    /// Pauses with `asked`, asking for the next wake-up its timers need.
    fn pause(&self, cx: &mut StepContext<'_>, asked: &Asked) -> Result<Outcome, StepFailure> {
        if let Some(at) = self.timers.next_wake(asked) {
            cx.wake_at(at);
            cx.record("wakes_at_ms", Value::from(at));
        }
        let state = if asked.choices.is_empty() && self.timers.reminders.is_empty() && self.timers.timeout.is_none() {
            Value::Null
        } else {
            serde_json::to_value(asked).map_err(|e| StepFailure::Other { code: "internal", message: e.to_string() })?
        };
        Ok(Outcome::Pause(state))
    }

    /// The question's timer fired: the timeout when it has passed, else the latest reminder
    /// that is due. After downtime several may be due at once: only the last one counts (the
    /// contact is not sent a burst of reminders, nor reminders after the timeout); the trace
    /// says how many were skipped.
    fn woken(&self, cx: &mut StepContext<'_>, mut asked: Asked, late_ms: i64) -> Result<Outcome, StepFailure> {
        cx.record("late_ms", Value::from(late_ms));
        let elapsed = cx.now_ms().saturating_sub(asked.asked_at_ms);
        let pending = self.timers.reminders.iter().enumerate().skip(asked.reminded as usize);
        let due: Vec<usize> = pending.filter(|(_, (after, _))| *after <= elapsed).map(|(i, _)| i).collect();
        if let Some((timeout, jump)) = self.timers.timeout
            && elapsed >= timeout
        {
            if !due.is_empty() {
                cx.record("skipped_reminders", Value::from(due.len()));
            }
            cx.record("timed_out", Value::Bool(true));
            return Ok(match jump {
                Jump::End => Outcome::End,
                j => Outcome::Goto(j),
            });
        }
        let Some(&last) = due.last() else {
            // Nothing is due (the timer fired early, or every reminder went out and there is
            // no timeout): keep waiting.
            return self.pause(cx, &asked);
        };
        if due.len() > 1 {
            cx.record("skipped_reminders", Value::from(due.len() - 1));
        }
        let text = self.timers.reminders[last].1.render(&cx.scope())?;
        cx.reply_with_choices(text, asked.choices.clone());
        asked.reminded = u32::try_from(last + 1).unwrap_or(u32::MAX);
        cx.record("reminder", Value::from(asked.reminded));
        self.pause(cx, &asked)
    }
}

#[async_trait]
impl Step for AskStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        let choices = self.choices.render(cx)?;
        let asked = Asked { choices: choices.clone(), asked_at_ms: cx.now_ms(), reminded: 0 };
        cx.reply_with_choices(text, choices);
        self.pause(cx, &asked)
    }

    async fn resume(&self, cx: &mut StepContext<'_>, state: Value) -> Result<Outcome, StepFailure> {
        // A run paused before choices existed kept `null`: no choices.
        let mut asked: Asked = serde_json::from_value(state).unwrap_or_default();
        if let Some(wake) = cx.woken() {
            return self.woken(cx, asked, wake.late_ms());
        }
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
                cx.reply_with_choices(text, asked.choices.clone());
                // The contact answered: reminders and the timeout count from now.
                asked.asked_at_ms = cx.now_ms();
                asked.reminded = 0;
                self.pause(cx, &asked)
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
