//! The serializable flow document (format version 1). Steps stay raw JSON here: each one is
//! parsed by its own step type when the flow is compiled, so one broken step does not hide the
//! problems of the others.

use std::collections::BTreeMap;

use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::ids::{FlowId, IntegrationName, StepId, Target, VarName};

/// A flow as written.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// The flow format version; must be 1.
    pub version: u32,
    /// A unique id for the flow.
    pub id: FlowId,
    /// A human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// What the flow does.
    #[serde(default)]
    pub description: Option<String>,
    /// What starts the flow. Without a trigger the flow runs only when started explicitly.
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
    /// Variables with their initial values; `tern run --var NAME=VALUE` overrides them.
    #[serde(default)]
    pub variables: BTreeMap<VarName, Value>,
    /// The variables a caller must give when it runs this flow with `call_flow`; each is set
    /// before the first step.
    #[serde(default)]
    pub inputs: Vec<VarName>,
    /// The variables a caller may take back (`call_flow`'s `outputs`) when this flow ends.
    #[serde(default)]
    pub outputs: Vec<VarName>,
    /// Where a failing step without its own `on_error` goes (a step id, or `end` to finish
    /// quietly). Taken at most once per run activation: a failure after it fails the run.
    #[serde(default)]
    pub on_error: Option<Target>,
    /// The steps, run in order unless a step says otherwise.
    pub steps: Vec<Value>,
}

/// The fields every step has, whatever its type.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepHeader {
    /// The step's id, unique in the flow.
    pub id: StepId,
    /// The step type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to go after this step (a step id or `end`); the next step in order when omitted.
    #[serde(default)]
    pub next: Option<Target>,
    /// Where to go when this step fails; without it a failure fails the run.
    #[serde(default)]
    pub on_error: Option<Target>,
    /// A note for people reading the flow.
    #[serde(default)]
    pub description: Option<String>,
}

/// The names of the [`StepHeader`] fields.
pub const HEADER_FIELDS: &[&str] = &["id", "type", "next", "on_error", "description"];

/// What starts a flow.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerConfig {
    /// An incoming conversation message.
    Message {
        /// Which messages; every message when omitted.
        #[serde(default, rename = "match")]
        matcher: Option<MessageMatch>,
        /// Higher wins when several flows match (default 0); ties go to the flow id in order.
        #[serde(default)]
        priority: i32,
    },
    /// An event the integration's service posted to `/v1/integrations/{name}/events`
    /// (the event body is `{{event.*}}`).
    IntegrationEvent {
        /// The integration whose events start the flow.
        integration: IntegrationName,
        /// Higher wins when several flows match (default 0).
        #[serde(default)]
        priority: i32,
    },
    /// Another flow's run failed and nothing in it caught the failure (the error flow, as in
    /// n8n). The failure is in the variable `error`: `{{error.code}}`, `{{error.step}}`,
    /// `{{error.message}}`, `{{error.flow}}`.
    Error {},
}

/// Conditions on the message text. With both, either may match.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageMatch {
    /// A regular expression (Rust `regex` syntax) searched in the text; `(?i)` for case-insensitive.
    #[serde(default)]
    pub regex: Option<String>,
    /// Words or phrases; matches when the text contains one as whole words, ignoring case (a last
    /// word of 3 or more letters also matches its plural: `order` matches `orders`).
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// The variable an error flow (trigger [`Trigger::Error`]) receives the failure in; the
/// compiler knows it is set in such a flow, and [`crate::ErrorHandling`] sets it.
pub const ERROR_VARIABLE: &str = "error";

/// A compiled trigger.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// An incoming message.
    Message {
        /// The regular expression, if any.
        regex: Option<Regex>,
        /// Lower-cased keywords.
        keywords: Vec<String>,
        /// Priority among matching flows.
        priority: i32,
    },
    /// An integration's event.
    IntegrationEvent {
        /// The integration.
        integration: IntegrationName,
        /// Priority among matching flows.
        priority: i32,
    },
    /// Started for another flow's failure (see [`crate::fallback`]); never by a message.
    Error,
}

impl Trigger {
    /// Whether an event of `integration` starts this flow.
    pub fn matches_event(&self, integration: &IntegrationName) -> bool {
        matches!(self, Trigger::IntegrationEvent { integration: i, .. } if i == integration)
    }

    /// Whether a message with `text` starts this flow.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Trigger::IntegrationEvent { .. } | Trigger::Error => false,
            Trigger::Message { regex, keywords, .. } => {
                if regex.is_none() && keywords.is_empty() {
                    return true;
                }
                regex.as_ref().is_some_and(|r| r.is_match(text)) || keywords.iter().any(|k| contains_words(text, k))
            }
        }
    }

    /// The trigger as JSON, for listings.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Trigger::Message { regex, keywords, .. } => serde_json::json!({
                "type": "message",
                "regex": regex.as_ref().map(Regex::as_str),
                "keywords": keywords,
            }),
            Trigger::IntegrationEvent { integration, .. } => {
                serde_json::json!({"type": "integration_event", "integration": integration.as_str()})
            }
            Trigger::Error => serde_json::json!({"type": "error"}),
        }
    }

    /// The priority among matching flows.
    pub fn priority(&self) -> i32 {
        match self {
            Trigger::Message { priority, .. } | Trigger::IntegrationEvent { priority, .. } => *priority,
            Trigger::Error => 0,
        }
    }
}

/// Whether `text` contains `phrase` (already lower-case) as whole words in order, ignoring
/// case. Words are runs of letters and digits (an apostrophe splits them: `order's` contains
/// `order`). The last word of a keyword, of [`PLURAL_MIN_LETTERS`] or more letters, also
/// matches its English plural ([`plural_of`]: `order`/`orders`, `box`/`boxes`,
/// `company`/`companies`); no other word forms match (no stemming: `ordering` is not
/// `order`), which a `regex` can express.
fn contains_words(text: &str, phrase: &str) -> bool {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let want: Vec<&str> = phrase.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let last = want.len().saturating_sub(1);
    !want.is_empty()
        && words.windows(want.len()).any(|w| {
            w.iter().zip(&want).enumerate().all(|(i, (word, k))| *word == *k || (i == last && plural_of(word, k)))
        })
}

/// The fewest letters a keyword word needs for its plural to match too (`hi` must not match
/// `his`).
pub const PLURAL_MIN_LETTERS: usize = 3;

/// Whether `word` is the English plural of `keyword` (of [`PLURAL_MIN_LETTERS`] letters or
/// more): `+s`; `+es` after `s`, `x`, `z`, `ch`, `sh` or `o` (`box`/`boxes`, not `not`/`notes`);
/// `y` → `ies` after a consonant (`company`/`companies`).
fn plural_of(word: &str, keyword: &str) -> bool {
    if keyword.chars().count() < PLURAL_MIN_LETTERS {
        return false;
    }
    if word.strip_suffix('s') == Some(keyword) {
        return true;
    }
    let sibilant = ["s", "x", "z", "ch", "sh", "o"].iter().any(|end| keyword.ends_with(end));
    if sibilant && word.strip_suffix("es") == Some(keyword) {
        return true;
    }
    keyword
        .strip_suffix('y')
        .is_some_and(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']) && word.strip_suffix("ies") == Some(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words() {
        let t = Trigger::Message { regex: None, keywords: vec!["last name".into(), "hi".into()], priority: 0 };
        assert!(t.matches("What is my LAST NAME?"));
        assert!(t.matches("hi"));
        assert!(!t.matches("this"));
        let any = Trigger::Message { regex: None, keywords: vec![], priority: 0 };
        assert!(any.matches("anything"));
    }

    #[test]
    fn keywords_match_plurals_of_words_of_three_letters_or_more() {
        let t = Trigger::Message {
            regex: None,
            keywords: vec!["order".into(), "box".into(), "company".into(), "hi".into(), "open ticket".into()],
            priority: 0,
        };
        for text in ["my orders", "Where are my ORDERS?", "two boxes", "which companies", "my order's status"] {
            assert!(t.matches(text), "{text}");
        }
        assert!(t.matches("any open tickets?"), "the last word of a phrase may be plural");
        assert!(t.matches("open tickets"));
        for text in ["this is his", "reordering", "ordering", "orderly", "tickets open", "boxing", "opens tickets"] {
            assert!(!t.matches(text), "{text}");
        }
        // `+es` only where English writes it.
        let t = Trigger::Message {
            regex: None,
            keywords: vec!["not".into(), "plan".into(), "rat".into(), "key".into()],
            priority: 0,
        };
        for text in ["my notes", "planes to Paris", "the rates", "kies"] {
            assert!(!t.matches(text), "{text}");
        }
        assert!(t.matches("two keys") && t.matches("our plans"));
    }
}
