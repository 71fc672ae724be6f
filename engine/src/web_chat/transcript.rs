//! A web conversation's transcript: what the visitor wrote and what the flows replied, in
//! order, as the widget shows it. It is written with each message's result, in the same
//! transaction ([`Completion::transcript`](crate::conversation::Completion::transcript)), so
//! that a reply is never shown that is not stored, nor stored without being shown: after a
//! reload the page reads it again, and an open page follows it as a stream.
//!
//! Bounds: at most [`MAX_ENTRIES`] entries per conversation (the oldest go first), kept while
//! the visitor's session can read them ([`SESSION_TTL_S`](super::session::SESSION_TTL_S)),
//! then pruned with the rest of retention.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation::{Answer, Inbound, Trigger};
use crate::step::Choice;

/// Most entries a conversation's transcript keeps.
pub const MAX_ENTRIES: i64 = 500;
/// Most entries one read returns (the widget reads again from the last one).
pub const MAX_READ: usize = 200;

/// Who wrote an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The visitor.
    Contact,
    /// A flow.
    Bot,
}

/// One line of the transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Its place in the conversation: 1, 2, 3, … (given by the store when it is written).
    pub seq: i64,
    /// When it was written, Unix milliseconds.
    pub at_ms: i64,
    /// Who wrote it.
    pub from: Speaker,
    /// The message it belongs to: the visitor's own, or the one whose run replied (an event's
    /// id for replies that came without a message, e.g. after a login).
    pub message_id: String,
    /// The text (for the visitor's message, what the widget showed: a pressed button's title).
    pub text: String,
    /// The choices offered with a reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
    /// The run that sent a reply (the console's Try it links to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// What the transcript shows of a visitor's message: the widget's `display` text (a pressed
/// button's title), kept in `{{message.metadata.web.display}}`, else the text.
pub fn shown_text(inbound: &Inbound) -> &str {
    inbound
        .metadata
        .get("web")
        .and_then(|w| w.get("display"))
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .unwrap_or(&inbound.text)
}

/// The entries one finished message adds, at `at_ms`: the visitor's message (for a message, or
/// the message that started a chosen flow in the console's Try it; not for an event such as a
/// finished login), then each reply. `seq` is 0: the store numbers them.
pub fn entries_of(inbound: &Inbound, answer: &Answer, at_ms: i64) -> Vec<Entry> {
    let message_id = inbound.message_id.to_string();
    let written = match inbound.trigger {
        Trigger::Message => true,
        Trigger::Start { .. } => !inbound.text.is_empty(),
        Trigger::Resume { .. } | Trigger::Timer { .. } => false,
    };
    let own = written.then(|| Entry {
        seq: 0,
        at_ms,
        from: Speaker::Contact,
        message_id: message_id.clone(),
        text: shown_text(inbound).to_string(),
        choices: Vec::new(),
        run_id: None,
    });
    let replies = answer.replies.iter().map(|r| Entry {
        seq: 0,
        at_ms,
        from: Speaker::Bot,
        message_id: message_id.clone(),
        text: r.text.clone(),
        choices: r.choices.clone(),
        run_id: answer.run_id.as_ref().map(ToString::to_string),
    });
    own.into_iter().chain(replies).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conversation::{AnswerStatus, ConversationId, ReplyText};

    fn answer(replies: &[&str]) -> Answer {
        Answer {
            run_id: None,
            flow_id: None,
            status: AnswerStatus::Completed,
            replies: replies.iter().map(|t| ReplyText { text: (*t).into(), choices: Vec::new() }).collect(),
            error: None,
            message_id: None,
            error_flow: None,
        }
    }

    #[test]
    fn a_message_adds_the_visitor_s_words_then_the_replies() {
        let mut inbound = Inbound::message(ConversationId::new("c").unwrap(), None, "contact-42");
        inbound.metadata.insert("web".into(), json!({"display": "Ada Lovelace"}));
        let entries = entries_of(&inbound, &answer(&["Hello Ada", "Anything else?"]), 7);
        let shown: Vec<(Speaker, &str)> = entries.iter().map(|e| (e.from, e.text.as_str())).collect();
        assert_eq!(
            shown,
            [(Speaker::Contact, "Ada Lovelace"), (Speaker::Bot, "Hello Ada"), (Speaker::Bot, "Anything else?")]
        );
        assert!(entries.iter().all(|e| e.message_id == inbound.message_id.as_str() && e.at_ms == 7));
    }

    #[test]
    fn a_message_that_starts_a_chosen_flow_is_the_visitor_s_too() {
        let mut inbound = Inbound::message(ConversationId::new("c").unwrap(), None, "look up");
        inbound.trigger = Trigger::Start { flow_id: "lookup".into(), event: None };
        let entries = entries_of(&inbound, &answer(&["Which contact?"]), 7);
        assert_eq!(entries.iter().map(|e| e.from).collect::<Vec<_>>(), [Speaker::Contact, Speaker::Bot]);
        inbound.text.clear();
        assert_eq!(entries_of(&inbound, &answer(&["An event's reply"]), 7).len(), 1, "an event has no words");
    }

    #[test]
    fn an_event_adds_only_the_replies() {
        let mut inbound = Inbound::message(ConversationId::new("c").unwrap(), None, "");
        inbound.trigger = Trigger::Resume { event: json!({"login": {"success": true}}) };
        let entries = entries_of(&inbound, &answer(&["You are signed in"]), 7);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].from, Speaker::Bot);
    }
}
