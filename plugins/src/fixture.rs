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
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Map, Value, json};

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

/// One recorded call and its answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the plugin must send.
    pub request: RecordedRequest,
    /// What it gets back.
    #[serde(default)]
    pub response: RecordedResponse,
}

/// The request a recorded answer belongs to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// GET (default), POST, PUT, PATCH, DELETE or HEAD.
    #[serde(default = "default_method")]
    pub method: String,
    /// The absolute URL, query included, exactly as the plugin sends it.
    pub url: String,
    /// The integration the plugin names (none for a call without one).
    #[serde(default)]
    pub integration: Option<String>,
    /// When given, the request's body must be this JSON value.
    #[serde(default)]
    pub json: Option<Value>,
    /// When given, the request's body must be this text.
    #[serde(default)]
    pub body: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

/// A recorded answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// The status code (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers (`content-type: application/json` is added for `json`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default)]
    pub json: Option<Value>,
    /// A text body.
    #[serde(default)]
    pub body: Option<String>,
}

fn default_status() -> u16 {
    200
}

impl Default for RecordedResponse {
    fn default() -> Self {
        Self { status: 200, headers: BTreeMap::new(), json: None, body: None }
    }
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

/// The largest recorded body, in bytes: what the host's HTTP policy lets a step receive.
const MAX_RESPONSE_BYTES: usize = 10 << 20;

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
        for (name, origins) in &fixture.integrations {
            for (k, o) in origins.iter().enumerate() {
                match url::Url::parse(o) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.origin().is_tuple() => {}
                    _ => {
                        return Err(invalid(
                            &format!("/integrations/{name}/{k}"),
                            format!("`{o}` is not an http(s) origin"),
                        ));
                    }
                }
            }
        }
        for (i, x) in fixture.http.iter().enumerate() {
            let at = format!("/http/{i}/request");
            let url = url::Url::parse(&x.request.url).map_err(|e| FixtureError::Invalid {
                at: format!("{at}/url"),
                message: format!("`{}` is not an absolute URL: {e}", x.request.url),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(FixtureError::Invalid { at: format!("{at}/url"), message: "use an http(s) URL".into() });
            }
            let method = x.request.method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
                return Err(FixtureError::Invalid {
                    at: format!("{at}/method"),
                    message: "use GET, POST, PUT, PATCH, DELETE or HEAD".into(),
                });
            }
            let r = &x.response;
            if !(100..=599).contains(&r.status) {
                return Err(FixtureError::Invalid {
                    at: format!("/http/{i}/response/status"),
                    message: "a status code is 100 to 599".into(),
                });
            }
            for (name, value) in &r.headers {
                let ok_name = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if !ok_name || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(FixtureError::Invalid {
                        at: format!("/http/{i}/response/headers/{name}"),
                        message: "not a header an HTTP server could send (a token name; no CR, LF or NUL in the value)"
                            .into(),
                    });
                }
            }
            let size = r.json.as_ref().map_or(0, |v| v.to_string().len()) + r.body.as_ref().map_or(0, String::len);
            if size > MAX_RESPONSE_BYTES {
                return Err(FixtureError::Invalid {
                    at: format!("/http/{i}/response"),
                    message: format!("the body is larger than the {} MiB a step may receive", MAX_RESPONSE_BYTES >> 20),
                });
            }
            if x.request.json.is_some() && x.request.body.is_some() {
                return Err(FixtureError::Invalid { at, message: "give `json` or `body`, not both".into() });
            }
            if x.response.json.is_some() && x.response.body.is_some() {
                return Err(FixtureError::Invalid {
                    at: format!("/http/{i}/response"),
                    message: "give `json` or `body`, not both".into(),
                });
            }
        }
        Ok(fixture)
    }

    /// The recorded answers, ready for the host.
    pub fn replay(&self) -> Replay {
        let integrations = self
            .integrations
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().filter_map(|o| url::Url::parse(o).ok()).map(|u| u.origin()).collect()))
            .collect();
        Replay { exchanges: self.http.clone(), used: Mutex::new(vec![false; self.http.len()]), integrations }
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

/// Why a replayed call gets no recorded answer; the words are for the plugin and the author
/// (what to add to the fixture, or which rule refused the call).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAnswered(pub String);

/// A plugin's call, as [`Replay::answer`] matches it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The method, upper case.
    pub method: &'a str,
    /// The URL.
    pub url: &'a str,
    /// The integration named.
    pub integration: Option<&'a str>,
    /// The body.
    pub body: Option<&'a [u8]>,
}

/// A recorded answer, as the host returns it to the plugin.
#[derive(Debug)]
pub struct Answer {
    /// Which exchange answered (its index in `http`).
    pub index: usize,
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The recorded answers of one test run; each answers once.
#[derive(Debug)]
pub struct Replay {
    exchanges: Vec<Exchange>,
    used: Mutex<Vec<bool>>,
    integrations: BTreeMap<String, Vec<url::Origin>>,
}

impl Replay {
    /// The first unused exchange recorded for this call.
    ///
    /// # Errors
    /// The words for the plugin when nobody recorded this call (what to add to the fixture).
    pub fn answer(&self, call: &Call<'_>) -> Result<Answer, NotAnswered> {
        if let Some(name) = call.integration {
            let origin = url::Url::parse(call.url).map(|u| u.origin()).map_err(|e| NotAnswered(e.to_string()))?;
            match self.integrations.get(name) {
                None => {
                    return Err(NotAnswered(format!(
                        "the fixture does not give integration `{name}`'s API origins; add \"integrations\": {{\"{name}\": [\"{}\"]}} as the operator configures them",
                        origin.ascii_serialization()
                    )));
                }
                Some(origins) if !origins.contains(&origin) => {
                    return Err(NotAnswered(format!(
                        "the token of integration `{name}` may not be sent to {}: not one of its API origins in the fixture",
                        origin.ascii_serialization()
                    )));
                }
                Some(_) => {}
            }
        }
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = self
            .exchanges
            .iter()
            .enumerate()
            .find(|(i, x)| !used.get(*i).copied().unwrap_or(true) && matches(&x.request, call));
        let Some((index, x)) = found else {
            return Err(NotAnswered(format!(
                "the fixture has no recorded answer (left) for {} {}{}; add one under \"http\": {}",
                call.method,
                call.url,
                call.integration.map(|i| format!(" with integration `{i}`")).unwrap_or_default(),
                json!({"request": {"method": call.method, "url": call.url, "integration": call.integration},
                       "response": {"status": 200, "json": {}}})
            )));
        };
        if let Some(u) = used.get_mut(index) {
            *u = true;
        }
        let r = &x.response;
        let mut headers: Vec<(String, String)> = r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let body = match (&r.json, &r.body) {
            (Some(v), _) => {
                if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                v.to_string().into_bytes()
            }
            (None, Some(b)) => b.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        Ok(Answer { index, status: r.status, headers, body })
    }

    /// The exchanges no call used, as `METHOD URL` (index in `http`).
    pub fn unused(&self) -> Vec<(usize, String)> {
        let used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.exchanges
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.get(*i).copied().unwrap_or(false))
            .map(|(i, x)| (i, format!("{} {}", x.request.method.to_ascii_uppercase(), x.request.url)))
            .collect()
    }
}

fn matches(recorded: &RecordedRequest, call: &Call<'_>) -> bool {
    let body_ok = match (&recorded.json, &recorded.body) {
        (Some(v), _) => call.body.and_then(|b| serde_json::from_slice::<Value>(b).ok()).as_ref() == Some(v),
        (None, Some(t)) => call.body.unwrap_or_default() == t.as_bytes(),
        (None, None) => true,
    };
    recorded.method.eq_ignore_ascii_case(call.method)
        && same_url(&recorded.url, call.url)
        && recorded.integration.as_deref() == call.integration
        && body_ok
}

/// URLs compared as parsed (`https://A.example` and `https://a.example/` are the same).
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
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
    fn each_recorded_answer_answers_once_in_order() {
        let f = Fixture::parse(
            r#"{"integrations": {"crm": ["https://a.example"]}, "http": [
                {"request": {"url": "https://a.example/x"}, "response": {"json": {"n": 1}}},
                {"request": {"url": "https://a.example/x"}, "response": {"status": 404}},
                {"request": {"method": "post", "url": "https://a.example/y", "integration": "crm", "json": {"id": 1}}}
            ]}"#,
        )
        .unwrap();
        let r = f.replay();
        let get = Call { method: "GET", url: "https://A.example/x", integration: None, body: None };
        let a = r.answer(&get).unwrap();
        assert_eq!((a.index, a.status, a.body.as_slice()), (0, 200, br#"{"n":1}"#.as_slice()));
        assert_eq!(r.answer(&get).unwrap().status, 404);
        assert!(r.answer(&get).unwrap_err().0.contains("no recorded answer (left) for GET https://A.example/x"));
        let wrong_body =
            Call { method: "POST", url: "https://a.example/y", integration: Some("crm"), body: Some(b"{}") };
        assert!(r.answer(&wrong_body).is_err());
        let no_integration =
            Call { method: "POST", url: "https://a.example/y", integration: None, body: Some(b"{\"id\":1}") };
        assert!(r.answer(&no_integration).is_err());
        assert_eq!(r.unused(), vec![(2, "POST https://a.example/y".to_string())]);
        let right =
            Call { method: "POST", url: "https://a.example/y", integration: Some("crm"), body: Some(b"{\"id\": 1}") };
        assert_eq!(r.answer(&right).unwrap().index, 2);
        assert!(r.unused().is_empty());
        let elsewhere = Call { method: "GET", url: "https://b.example/y", integration: Some("crm"), body: None };
        assert!(r.answer(&elsewhere).unwrap_err().0.contains("may not be sent to https://b.example"));
        let unknown = Call { method: "GET", url: "https://a.example/x", integration: Some("billing"), body: None };
        assert!(r.answer(&unknown).unwrap_err().0.contains("does not give integration `billing`'s API origins"));
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
