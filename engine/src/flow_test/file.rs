//! The test file: its shape, and every problem with it at its JSON pointer.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diagnostics::{Diagnostic, pointer_push};
use crate::http::recording::{self, Exchange};
use crate::secrets::known;

/// The largest test file read, in bytes.
pub const MAX_TEST_FILE_BYTES: usize = 16 << 20;
/// Most test cases in one file.
pub const MAX_CASES: usize = 1000;
/// Most turns in one test case.
pub const MAX_TURNS: usize = 200;

/// A test file (`*.test.json`): conversations with a set of flows, each with the API answers
/// it gets and what Tern must reply and store.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The JSON Schema of this file, for editors (ignored).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The flows under test: a flow file or a folder of them, relative to the test file
    /// (default: the test file's folder, as `tern serve --flows` would load it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<String>,
    /// The API origins of each integration the flows use, as the operator configures them
    /// (`{"crm": ["https://api.example.com"]}`): a call with an integration's token must go to
    /// one of them. `tern test --record` fills this in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub integrations: BTreeMap<String, Vec<String>>,
    /// Values of `{{secrets.NAME}}` for the tests. A secret not given here gets a stand-in value
    /// (masked like any secret, so recordings that show `[redacted]` still match).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The test cases, run in order, each in a conversation of its own.
    pub tests: Vec<TestCase>,
}

/// One conversation and what must come of it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows, in a few words (unique in the file).
    pub name: String,
    /// The contact: `{"id": "…"}` and any attributes, as a channel sends them (default
    /// `{"id": "test-contact"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Map<String, Value>>,
    /// Start this flow (by id) with the first message instead of letting triggers choose; for
    /// flows started by an event, or without a trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The event a started flow reads as `{{event.*}}` (with `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Variables set before the run starts (with `start`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    /// The conversation, turn by turn: what the contact says and what Tern must reply.
    pub conversation: Vec<Turn>,
    /// The third-party API's answers, in the order the flows call it (see
    /// [`recording`](crate::http::recording)); nothing reaches the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<Exchange>,
    /// What must hold after the last turn.
    #[serde(default, skip_serializing_if = "Expect::is_empty")]
    pub expect: Expect,
}

/// One message of the contact and Tern's replies to it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// What the contact writes.
    pub contact: String,
    /// The replies Tern must send to it, in order: a text (the whole reply), or an object for
    /// part of one or its choices. Left out, the replies are not checked; `[]` means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tern: Option<Vec<ExpectedReply>>,
}

/// A reply Tern must send.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum ExpectedReply {
    /// The whole text.
    Text(String),
    /// A reply described by its parts.
    Described(DescribedReply),
}

/// A reply described by its parts; give `text` or `contains`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DescribedReply {
    /// The whole text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Text the reply must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The titles of the choices offered with it, in order (unchecked when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
}

/// What must hold after the last turn.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How the last run ended: `completed`, `paused` (waiting for the contact) or `failed`.
    /// Left out: anything but `failed`, unless `error` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExpectedStatus>,
    /// Variables the run must hold at the end, with their values (others may be set too).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    /// The error code the run must fail with (`http-status`, `not-json`, `template`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Expect {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.variables.is_empty() && self.error.is_none()
    }
}

/// How the last run must end.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedStatus {
    /// It reached its end.
    Completed,
    /// It waits for the contact's next message.
    Paused,
    /// It failed.
    Failed,
}

impl TestFile {
    /// Parses a test file's text: every problem at once, each at its JSON pointer with a line
    /// and column.
    ///
    /// # Errors
    /// The diagnostics (at least one error).
    pub fn parse(text: &str) -> Result<Self, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        if text.len() > MAX_TEST_FILE_BYTES {
            let message = format!("the test file is {} bytes; the limit is {MAX_TEST_FILE_BYTES}", text.len());
            return Err(vec![Diagnostic::error("too-large", "", message)]);
        }
        let text = crate::json::without_bom_str(text);
        let value: Value = match crate::duplicates::parse(text) {
            Ok((v, repeated)) => {
                // A key written twice keeps only its last value: the first would be ignored.
                diags.extend(crate::duplicates::diagnostics(text, &repeated));
                v
            }
            Err(e) => {
                let mut d = Diagnostic::error("not-json", "", format!("the test file is not JSON: {e}"))
                    .with_hint("check for a missing comma or quote near this position");
                d.line = Some(e.line());
                d.column = Some(e.column());
                return Err(vec![d]);
            }
        };
        let (file, _) = crate::checked::parse_checked::<TestFile>(&value, "", &[], &mut diags);
        if let Some(file) = &file {
            file.check(&mut diags);
        }
        crate::diagnostics::locate(text, &mut diags);
        match file {
            Some(file) if !diags.iter().any(Diagnostic::is_error) => Ok(file),
            _ => Err(diags),
        }
    }

    /// The checks the shape cannot make.
    fn check(&self, diags: &mut Vec<Diagnostic>) {
        for (at, message) in recording::origin_problems(&self.integrations) {
            diags.push(Diagnostic::error("invalid-value", format!("/integrations{at}"), message));
        }
        for (name, value) in &self.secrets {
            if let Err(e) = crate::secrets::check_secret_name(name) {
                diags.push(Diagnostic::error("invalid-value", pointer_push("/secrets", name), e.to_string()));
            } else if value.chars().count() < known::MIN_VALUE_CHARS {
                diags.push(Diagnostic::error(
                    "invalid-value",
                    pointer_push("/secrets", name),
                    format!(
                        "a test secret has at least {} characters: shorter values are not masked, so a recording's `[redacted]` would not match",
                        known::MIN_VALUE_CHARS
                    ),
                ));
            }
        }
        if self.tests.is_empty() {
            diags.push(
                Diagnostic::error("invalid-value", "/tests", "the file has no test cases")
                    .with_hint("add one: {\"name\": \"…\", \"conversation\": [{\"contact\": \"hello\"}]}"),
            );
        }
        if self.tests.len() > MAX_CASES {
            diags.push(Diagnostic::error(
                "invalid-value",
                "/tests",
                format!("at most {MAX_CASES} test cases in a file"),
            ));
        }
        let mut names = BTreeMap::new();
        for (i, case) in self.tests.iter().enumerate() {
            let at = format!("/tests/{i}");
            if let Some(first) = names.insert(case.name.trim().to_string(), i) {
                diags.push(Diagnostic::error(
                    "duplicate-name",
                    format!("{at}/name"),
                    format!("test `{}` is already at /tests/{first}; give each test its own name", case.name),
                ));
            }
            if case.name.trim().is_empty() {
                diags.push(Diagnostic::error("invalid-value", format!("{at}/name"), "the name is empty"));
            } else if case.name.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
                || case.name.chars().count() > 200
            {
                diags.push(Diagnostic::error(
                    "invalid-value",
                    format!("{at}/name"),
                    "a test's name is one line of at most 200 characters, without control characters",
                ));
            }
            if case.conversation.is_empty() {
                diags.push(
                    Diagnostic::error("invalid-value", format!("{at}/conversation"), "the conversation has no turns")
                        .with_hint("the first turn is what the contact writes: [{\"contact\": \"hello\"}]"),
                );
            }
            if case.conversation.len() > MAX_TURNS {
                diags.push(Diagnostic::error(
                    "invalid-value",
                    format!("{at}/conversation"),
                    format!("at most {MAX_TURNS} turns in a test"),
                ));
            }
            if case.start.is_none() && (case.event.is_some() || !case.variables.is_empty()) {
                let field = if case.event.is_some() { "event" } else { "variables" };
                diags.push(
                    Diagnostic::error("invalid-value", format!("{at}/{field}"), format!("`{field}` needs `start`"))
                        .with_hint("name the flow to start: \"start\": \"FLOW_ID\""),
                );
            }
            for (t, turn) in case.conversation.iter().enumerate() {
                for (r, reply) in turn.tern.iter().flatten().enumerate() {
                    if let ExpectedReply::Described(d) = reply
                        && d.text.is_some() == d.contains.is_some()
                    {
                        diags.push(Diagnostic::error(
                            "invalid-value",
                            format!("{at}/conversation/{t}/tern/{r}"),
                            "describe a reply with `text` (the whole text) or `contains` (a part), not both or neither",
                        ));
                    }
                }
            }
            for (p, message) in recording::problems(&case.http) {
                diags.push(Diagnostic::error("invalid-value", format!("{at}/http{p}"), message));
            }
            if case.expect.error.is_some() && case.expect.status.is_some_and(|s| s != ExpectedStatus::Failed) {
                diags.push(Diagnostic::error(
                    "invalid-value",
                    format!("{at}/expect/status"),
                    "a run that fails with `error` has the status `failed`",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let text = r#"{
          "integrations": {"crm": ["ftp://x"]},
          "secrets": {"1BAD": "x"},
          "tests": [
            {"name": "a", "conversation": [], "http": [{"request": {"url": "nope"}}]},
            {"name": "a", "conversation": [{"contact": "hi", "tern": [{"text": "x", "contains": "y"}]}],
             "event": {}, "expect": {"status": "completed", "error": "http-status"}},
            {"name": "b", "conversation": [{"contact": "x"}], "conversaton": []}
          ]
        }"#;
        let diags = TestFile::parse(text).unwrap_err();
        let at: Vec<&str> = diags.iter().map(|d| d.pointer.as_str()).collect();
        for want in [
            "/integrations/crm/0",
            "/secrets/1BAD",
            "/tests/0/conversation",
            "/tests/0/http/0/request/url",
            "/tests/1/name",
            "/tests/1/conversation/0/tern/0",
            "/tests/1/event",
            "/tests/1/expect/status",
            "/tests/2/conversaton",
        ] {
            assert!(at.contains(&want), "{want} not in {at:?}");
        }
        assert!(diags.iter().all(|d| d.line.is_some()), "{diags:?}");
    }

    #[test]
    fn a_key_written_twice_and_a_name_of_two_lines_are_refused() {
        let diags = TestFile::parse(
            "{\"tests\": [{\"name\": \"a\\nok  forged\", \"conversation\": [{\"contact\": \"x\"}]}], \"tests\": []}",
        )
        .unwrap_err();
        let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"duplicate-key"), "{diags:?}");
        let diags = TestFile::parse(
            "\u{feff}{\"tests\": [{\"name\": \"a\\nok  forged\", \"conversation\": [{\"contact\": \"x\"}]}]}",
        )
        .unwrap_err();
        assert_eq!(diags[0].pointer, "/tests/0/name", "{diags:?}");
        assert_eq!(diags[0].line, Some(1), "a byte order mark does not lose the position");
    }

    #[test]
    fn a_short_file_parses() {
        let f = TestFile::parse(
            r#"{"tests": [{"name": "hi", "conversation": [{"contact": "hi", "tern": ["Hello!", {"contains": "order"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(f.tests[0].conversation[0].tern.as_ref().unwrap().len(), 2);
    }
}
