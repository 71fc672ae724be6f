//! Plugin test fixtures (`tern plugins test FILE --fixture F.json`): a step's configuration,
//! the run's variables, recorded HTTP answers and what the run should produce. The host answers
//! the plugin's `http-fetch` calls from the recording ([`Replay`]) instead of the network, so a
//! fixture needs no network, no integration and no token; everything else (the config schema,
//! the sandbox, the limits, the integration and origin checks, the output checks) is the same
//! as in a flow.
//!
//! ```json
//! { "config": {"integration": "crm", "contact_id": "42", "save_as": "contact"},
//!   "variables": {},
//!   "message": "hello",
//!   "http": [
//!     { "request": {"method": "POST", "url": "https://crm.example.com/contacts.info", "integration": "crm"},
//!       "response": {"status": 200, "json": {"data": {"last_name": "Lovelace"}}} } ],
//!   "expect": {"variables": {"contact": {"last_name": "Lovelace"}}, "outcome": "found"} }
//! ```
//!
//! A call is answered by the first unused recorded exchange with the same method, URL and
//! integration (and body, when the recording gives one); each answers once. A call nobody
//! recorded fails in the plugin as an `http-error.failed` that says so, and fails the test.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
pub use tern_engine::http::recording::{self, Call, Exchange, NotAnswered, RecordedRequest, RecordedResponse, Replay};

/// A fixture file, parsed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// The step's own fields (as in a flow; placeholders are rendered against `variables`).
    #[serde(default)]
    pub config: Map<String, Value>,
    /// The run's variables before the step.
    #[serde(default)]
    pub variables: Map<String, Value>,
    /// The message text that started the run (default `hello`).
    #[serde(default = "default_message")]
    pub message: String,
    /// The conversation contact's id (`token: contact` calls need one; default `fixture-contact`).
    #[serde(default = "default_contact")]
    pub contact: String,
    /// The API origins of each integration the step may use (`{"crm": ["https://api.example.com"]}`),
    /// as the operator configures them: a call naming an integration must go to one of its
    /// origins, as in a flow.
    #[serde(default)]
    pub integrations: BTreeMap<String, Vec<String>>,
    /// The recorded HTTP exchanges, in the order they are expected.
    #[serde(default)]
    pub http: Vec<Exchange>,
    /// What the run must produce; by default, only that the step succeeds.
    #[serde(default)]
    pub expect: Expect,
}

fn default_message() -> String {
    "hello".into()
}

fn default_contact() -> String {
    "fixture-contact".into()
}

/// What the run must produce.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Variables the step must set, with their values (others may be set too).
    #[serde(default)]
    pub variables: Map<String, Value>,
    /// The outcome label the step must return; `null` for none. Unchecked when absent.
    #[serde(default, deserialize_with = "present")]
    pub outcome: Option<Value>,
    /// The step error code the step must fail with (`plugin-fatal`, `plugin-retryable`,
    /// `plugin-invalid-config`, `plugin-trap`, …); when absent the step must succeed.
    #[serde(default)]
    pub error: Option<String>,
    /// Text the error message must contain (with `error`).
    #[serde(default)]
    pub error_contains: Option<String>,
}

/// `Some(null)` for a field given as `null`, `None` for a field left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The largest fixture file read, in bytes.
pub const MAX_FIXTURE_BYTES: usize = 16 << 20;

/// The step error codes a plugin step can fail with (plugins/README.md, "Limits and errors").
pub const ERROR_CODES: &[&str] = &[
    "plugin-timeout",
    "plugin-memory",
    "plugin-trap",
    "plugin-output",
    "plugin-invalid-config",
    "plugin-retryable",
    "plugin-fatal",
];

/// Why a fixture cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The text is not a fixture; `at` is the JSON pointer of the field.
    #[error("{at}: {message}")]
    Invalid {
        /// Where (a JSON pointer, `/` for the whole file).
        at: String,
        /// What is wrong.
        message: String,
    },
}

impl Fixture {
    /// Parses a fixture's text, naming the field that is wrong.
    ///
    /// # Errors
    /// [`FixtureError::Invalid`] with the field's JSON pointer.
    pub fn parse(text: &str) -> Result<Self, FixtureError> {
        let invalid = |at: &str, message: String| FixtureError::Invalid { at: at.to_string(), message };
        if text.len() > MAX_FIXTURE_BYTES {
            return Err(invalid("/", format!("the fixture is larger than {} MiB", MAX_FIXTURE_BYTES >> 20)));
        }
        let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| invalid("/", format!("not JSON: {e}")))?;
        if !value.is_object() {
            return Err(invalid(
                "/",
                "a fixture is a JSON object: {\"config\": {…}, \"http\": […], \"expect\": {…}}".into(),
            ));
        }
        let fixture: Fixture = serde_path_to_error::deserialize(value).map_err(|e| {
            let at = pointer(&e.path().to_string());
            FixtureError::Invalid { at, message: e.into_inner().to_string() }
        })?;
        if fixture.expect.error_contains.is_some() && fixture.expect.error.is_none() {
            return Err(invalid(
                "/expect/error_contains",
                "`error_contains` needs `error`, the step error code the step must fail with (e.g. `plugin-fatal`)"
                    .into(),
            ));
        }
        if let Some(o) = &fixture.expect.outcome
            && !(o.is_string() || o.is_null())
        {
            return Err(invalid("/expect/outcome", "an outcome is a label (a string), or null for none".into()));
        }
        if let Some(code) = &fixture.expect.error
            && !ERROR_CODES.contains(&code.as_str())
        {
            return Err(invalid(
                "/expect/error",
                format!("`{code}` is not a plugin step error code: {}", ERROR_CODES.join(", ")),
            ));
        }
        // The recording's rules are the engine's (`tern test` uses the same format); the first
        // problem is reported, at its pointer in the fixture.
        let mut found = recording::origin_problems(&fixture.integrations)
            .into_iter()
            .map(|(at, m)| (format!("/integrations{at}"), m))
            .chain(recording::problems(&fixture.http).into_iter().map(|(at, m)| (format!("/http{at}"), m)));
        if let Some((at, message)) = found.next() {
            return Err(FixtureError::Invalid { at, message });
        }
        Ok(fixture)
    }

    /// The recorded answers, ready for the host.
    pub fn replay(&self) -> Replay {
        Replay::new(self.http.clone(), &self.integrations)
    }
}

/// serde_path_to_error's `a.b[0]` as a JSON pointer.
fn pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push('/');
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                out.push('/');
                out.push_str(&rest[1..end]);
                rest = &rest[end + 1..];
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// What one test run produced, for [`Expect::check`].
#[derive(Debug)]
pub struct Observed<'a> {
    /// The run's variables at the end.
    pub variables: &'a Map<String, Value>,
    /// The outcome label the step returned.
    pub outcome: Option<&'a str>,
    /// The step error's code and message.
    pub error: Option<(&'a str, &'a str)>,
    /// Recorded exchanges no call used.
    pub unused: &'a [(usize, String)],
}

impl Expect {
    /// Every way the run differs from the expectation, in words (none: the test passes).
    pub fn check(&self, seen: &Observed<'_>) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.error, seen.error) {
            (None, Some((code, message))) => {
                problems.push(format!("the step failed ({code}: {message}); the fixture expects it to succeed"));
            }
            (Some(want), None) => problems.push(format!("the step succeeded; the fixture expects error `{want}`")),
            (Some(want), Some((code, _))) if want != code => {
                problems.push(format!("the step failed with `{code}`; the fixture expects `{want}`"));
            }
            _ => {}
        }
        if let (Some(part), Some((_, message))) = (&self.error_contains, seen.error)
            && !message.contains(part.as_str())
        {
            problems.push(format!("the error message does not contain {part:?}: {message}"));
        }
        for (name, want) in &self.variables {
            match seen.variables.get(name) {
                None => problems.push(format!("variable `{name}` was not set; the fixture expects {want}")),
                Some(got) if got != want => {
                    problems.push(format!("variable `{name}` is {got}; the fixture expects {want}"));
                }
                Some(_) => {}
            }
        }
        if let Some(want) = &self.outcome {
            let got = seen.outcome.map(Value::from).unwrap_or(Value::Null);
            if &got != want {
                problems.push(format!("the outcome is {got}; the fixture expects {want}"));
            }
        }
        for (i, call) in seen.unused {
            problems.push(format!("the recorded answer /http/{i} ({call}) was never requested"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wrong_field_is_named_by_its_pointer() {
        let e = Fixture::parse(r#"{"http": [{"request": {"url": "https://a.example", "methd": "GET"}}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("/http/0/request/methd: unknown field `methd`"), "{e}");
        let e = Fixture::parse(r#"{"http": [{"request": {"url": "not a url"}}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("/http/0/request/url:"), "{e}");
        let e = Fixture::parse(r#"{"expect": {"variables": 3}}"#).unwrap_err();
        assert!(e.to_string().starts_with("/expect/variables:"), "{e}");
    }

    #[test]
    fn unusable_expectations_and_impossible_answers_are_refused() {
        for (text, at) in [
            (r#"[]"#, "/: a fixture is a JSON object"),
            (r#"{"expect": {"error_contains": "x"}}"#, "/expect/error_contains:"),
            (r#"{"expect": {"outcome": 5}}"#, "/expect/outcome:"),
            (r#"{"expect": {"error": "no-such-code"}}"#, "/expect/error:"),
            (
                r#"{"http": [{"request": {"url": "https://a.example"}, "response": {"status": 0}}]}"#,
                "/http/0/response/status:",
            ),
            (r#"{"http": [{"request": {"url": "https://a.example", "method": "GE T"}}]}"#, "/http/0/request/method:"),
            (
                r#"{"http": [{"request": {"url": "https://a.example"}, "response": {"headers": {"x": "a\r\nB: 1"}}}]}"#,
                "/http/0/response/headers/x:",
            ),
            (r#"{"integrations": {"crm": ["ftp://a.example"]}}"#, "/integrations/crm/0:"),
        ] {
            let e = Fixture::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(at), "{text}: {e}");
        }
    }

    #[test]
    fn the_check_lists_every_difference() {
        let expect: Expect = serde_json::from_value(json!({
            "variables": {"a": 1, "b": "x"}, "outcome": null
        }))
        .unwrap();
        let vars = json!({"a": 2}).as_object().cloned().unwrap();
        let unused = vec![(0, "GET https://a.example/".to_string())];
        let seen = Observed { variables: &vars, outcome: Some("found"), error: None, unused: &unused };
        let problems = expect.check(&seen);
        assert_eq!(problems.len(), 4, "{problems:?}");
        let ok = Observed {
            variables: &json!({"a": 1, "b": "x", "c": 0}).as_object().cloned().unwrap(),
            outcome: None,
            error: None,
            unused: &[],
        };
        assert!(expect.check(&ok).is_empty());
        let failed = Observed { variables: &vars, outcome: None, error: Some(("plugin-fatal", "boom")), unused: &[] };
        assert!(Expect::default().check(&failed)[0].contains("plugin-fatal: boom"));
        let want_error: Expect =
            serde_json::from_value(json!({"error": "plugin-fatal", "error_contains": "boom"})).unwrap();
        assert!(want_error.check(&failed).is_empty());
    }
}
