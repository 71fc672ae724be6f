//! What a running step sees and changes: the [`StepContext`] the executor gives it, and the
//! [`Reply`] it sends to the contact. The journaled way to send a request is in `send.rs`.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CaughtFailure;
use super::env::{RunEnv, RunScope};
use crate::http::Outbound;
use crate::ids::{RunId, StepId, VarName};
use crate::secrets::Masker;

/// A message the run sends to the contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The step that sent it.
    pub step: StepId,
    /// The text.
    pub text: String,
    /// The choices offered with it (buttons or a list; none for a plain text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
}

/// Most choices one reply offers: WhatsApp's longest list (10 rows); Telegram and the generic
/// channel take as many.
pub const MAX_CHOICES: usize = 10;

/// Longest title of a choice, in characters (longer ones are cut): what every platform shows
/// as numbered text. A platform with a shorter limit shows choices with longer titles as
/// numbered text (WhatsApp: 20 for buttons, 24 for list rows).
pub const MAX_CHOICE_TITLE_CHARS: usize = 100;

/// Longest payload of a choice, in bytes (what the contact's answer becomes). Telegram's
/// callback data holds 64 bytes: a longer payload makes the choices numbered text there.
pub const MAX_CHOICE_PAYLOAD_BYTES: usize = 256;

/// One choice offered with a reply: a button or a list row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Choice {
    /// What the contact sees (at most [`MAX_CHOICE_TITLE_CHARS`] characters).
    pub title: String,
    /// What choosing it answers (at most [`MAX_CHOICE_PAYLOAD_BYTES`] bytes).
    pub payload: String,
}

impl Choice {
    /// A choice with `title` and `payload` cut to their bounds (never inside a character) and
    /// trimmed; an empty payload is the title.
    pub fn new(title: &str, payload: &str) -> Self {
        let title: String = title.trim().chars().take(MAX_CHOICE_TITLE_CHARS).collect();
        let payload = payload.trim();
        let payload = if payload.is_empty() { title.as_str() } else { payload };
        let mut end = payload.len().min(MAX_CHOICE_PAYLOAD_BYTES);
        while !payload.is_char_boundary(end) {
            end -= 1;
        }
        let payload = payload[..end].to_string();
        Self { title, payload }
    }

    /// `text` followed by the choices as a numbered list (`1. Title`), for a channel that
    /// shows no buttons (SMS) or choices its platform cannot show as buttons.
    pub fn numbered(text: &str, choices: &[Self]) -> String {
        if choices.is_empty() {
            return text.to_string();
        }
        let list: Vec<String> = choices.iter().enumerate().map(|(i, c)| format!("{}. {}", i + 1, c.title)).collect();
        if text.trim().is_empty() { list.join("\n") } else { format!("{text}\n\n{}", list.join("\n")) }
    }

    /// The payload of the choice `answer` picks: its payload or title (case and surrounding
    /// space ignored), or its number in the list (`2`, `2.`); `None` when it picks none.
    pub fn pick<'c>(choices: &'c [Self], answer: &str) -> Option<&'c Self> {
        let answer = answer.trim();
        if let Some(c) = choices.iter().find(|c| c.payload == answer) {
            return Some(c);
        }
        if let Some(c) = choices
            .iter()
            .find(|c| c.payload.eq_ignore_ascii_case(answer) || c.title.to_lowercase() == answer.to_lowercase())
        {
            return Some(c);
        }
        let number = answer.trim_end_matches(['.', ')']).parse::<usize>().ok()?;
        choices.get(number.checked_sub(1)?)
    }
}

/// Receives replies as soon as a step sends them (the CLI prints them live).
pub type ReplySink = Arc<dyn Fn(&Reply) + Send + Sync>;

/// Everything a running step can see and change.
pub struct StepContext<'a> {
    pub(crate) step_id: &'a StepId,
    pub(crate) flow_id: &'a str,
    pub(crate) run_id: &'a RunId,
    pub(crate) vars: &'a mut Map<String, Value>,
    pub(crate) env: &'a RunEnv,
    pub(crate) outbound: &'a Outbound,
    pub(crate) replies: &'a mut Vec<Reply>,
    pub(crate) sink: Option<&'a ReplySink>,
    pub(crate) detail: &'a mut Map<String, Value>,
    pub(crate) deadline: tokio::time::Instant,
    /// Steps the run executed before this one (the step's position, for the effect journal).
    pub(crate) seq: u32,
    /// Every step's kept state, by step id (see [`StepContext::state`]).
    pub(crate) states: &'a mut Map<String, Value>,
    /// The body failure that brought the run back to this (repeating) step.
    pub(crate) caught: Option<CaughtFailure>,
    /// Whether the run came to this step from a step of its body (see [`CompiledStep::loops`](super::CompiledStep)).
    pub(crate) from_body: bool,
    /// The timer that resumed the run, for the step that paused ([`StepContext::woken`]).
    pub(crate) woken: Option<crate::timing::Wake>,
    /// When the step, if it pauses, wants the run woken ([`StepContext::wake_at`]).
    pub(crate) wake_at: &'a mut Option<i64>,
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
    pub fn run_id(&self) -> &RunId {
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
        self.reply_with_choices(text, Vec::new());
    }

    /// Sends a reply with choices (buttons or a list where the channel shows them), each
    /// masked like the text.
    pub fn reply_with_choices(&mut self, text: String, choices: Vec<Choice>) {
        let masker = &self.env.masker;
        let choices = choices
            .into_iter()
            .map(|c| Choice { title: masker.mask(&c.title), payload: masker.mask(&c.payload) })
            .collect();
        let reply = Reply { step: self.step_id.clone(), text: masker.mask(&text), choices };
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

    /// The contact's id, when the channel sent one (a string, or a number as its text: see
    /// [`contact_id`](super::contact_id)).
    pub fn contact_id(&self) -> Option<Cow<'_, str>> {
        self.env.contact.as_object().and_then(super::contact_id)
    }

    /// Takes what this step kept for its next visit in this run ([`StepContext::set_state`]),
    /// if anything: moved out, not copied (put it back with `set_state`). A paused run keeps
    /// it (in its snapshot), so it survives restarts.
    pub fn take_state(&mut self) -> Option<Value> {
        self.states.remove(self.step_id.as_str())
    }

    /// Keeps `state` for this step's next visit in this run; `None` forgets it. Repeating steps
    /// (`for_each`) keep their place in the list here. Keep it small: it is stored with every
    /// paused run.
    pub fn set_state(&mut self, state: Option<Value>) {
        match state {
            Some(v) => self.states.insert(self.step_id.as_str().to_string(), v),
            None => self.states.remove(self.step_id.as_str()),
        };
    }

    /// Whether the run came to this repeating step from a step of its own body (a pass
    /// ended), rather than from elsewhere (the loop starts, or starts again).
    pub fn returned_from_body(&self) -> bool {
        self.from_body
    }

    /// The failure of a body step that brought the run back to this repeating step (see
    /// [`Repeat::catches_failures`](super::Repeat)); `None` when the body's pass went well.
    pub fn caught_failure(&self) -> Option<&CaughtFailure> {
        self.caught.as_ref()
    }

    /// The activation's wall-clock time, Unix milliseconds (the conversation service's clock,
    /// so tests move it without sleeping).
    pub fn now_ms(&self) -> i64 {
        self.env.now_ms
    }

    /// The timer that resumed the run, when no message did: in [`Step::resume`](super::Step::resume)
    /// of the step that asked for it with [`StepContext::wake_at`]; `None` for every other
    /// step and for a run resumed by a message or an event.
    pub fn woken(&self) -> Option<crate::timing::Wake> {
        self.woken
    }

    /// Asks for the run to be resumed at `at_ms` (Unix milliseconds) without a message, when
    /// this step returns [`Outcome::Pause`](super::Outcome::Pause): the conversation service
    /// keeps one durable timer per paused run, cancelled when a message resumes the run first.
    /// Ignored unless the step pauses; the last call counts.
    pub fn wake_at(&mut self, at_ms: i64) {
        *self.wake_at = Some(at_ms);
    }

    /// Records a detail for the run history (request and response summaries). Secret values
    /// are masked before the trace is stored or shown.
    pub fn record(&mut self, key: &str, value: Value) {
        self.detail.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::StepContext;
    use crate::conversation::{ConversationId, Inbound};
    use crate::http::{HttpClient, HttpPolicy, Outbound};
    use crate::ids::{RunId, StepId};
    use crate::step::RunEnv;

    /// What `token: contact` and plugins get as the contact's id for this contact object.
    fn step_sees(contact: &Value) -> Option<String> {
        let env = RunEnv { contact: contact.clone(), ..RunEnv::default() };
        let outbound = Outbound::new(HttpClient::new(HttpPolicy::default()).unwrap(), None);
        let step = StepId::new("s").unwrap();
        let run = RunId::generate();
        let (mut vars, mut replies, mut detail, mut states) = (Map::new(), Vec::new(), Map::new(), Map::new());
        let cx = StepContext {
            step_id: &step,
            flow_id: "f",
            run_id: &run,
            vars: &mut vars,
            env: &env,
            outbound: &outbound,
            replies: &mut replies,
            sink: None,
            detail: &mut detail,
            deadline: tokio::time::Instant::now(),
            seq: 0,
            states: &mut states,
            caught: None,
            from_body: false,
            woken: None,
            wake_at: &mut None,
        };
        cx.contact_id().map(std::borrow::Cow::into_owned)
    }

    /// What history records as the contact's id for this contact object.
    fn history_sees(contact: &Value) -> Option<String> {
        let conversation = ConversationId::new("c").unwrap();
        let inbound =
            Inbound { contact: contact.as_object().unwrap().clone(), ..Inbound::message(conversation, None, "hi") };
        inbound.contact_id()
    }

    #[tokio::test]
    async fn a_contact_id_reads_the_same_for_history_and_for_tokens() {
        for (contact, id) in [
            (json!({"id": 42}), Some("42")),
            (json!({"id": "u-7", "name": "Ada"}), Some("u-7")),
            (json!({"id": null}), None),
            (json!({"id": {"nested": 1}}), None),
            (json!({"name": "no id"}), None),
        ] {
            assert_eq!(step_sees(&contact).as_deref(), id, "step, {contact}");
            assert_eq!(history_sees(&contact).as_deref(), id, "history, {contact}");
        }
    }
}
