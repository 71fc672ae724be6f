//! Recorded HTTP exchanges: what a test gives instead of the network. A flow test (`tern test`)
//! and a plugin fixture (`tern plugins test`) list the calls they expect and their answers in
//! one format ([`Exchange`]); [`Replay`] answers calls from such a list, and [`Recorder`] makes
//! one from a real run (`tern test --record`). Both sit behind [`Tape`], which
//! [`Outbound`](super::Outbound) consults before the network.
//!
//! ```json
//! { "request": {"method": "POST", "url": "https://crm.example.com/contacts.info", "integration": "crm",
//!               "json": {"id": "42"}},
//!   "response": {"status": 200, "json": {"data": {"last_name": "Lovelace"}}} }
//! ```
//!
//! Matching: a call is answered by the first unused exchange with the same method, URL (compared
//! parsed, so `https://A.example` is `https://a.example/`) and integration, and the same body
//! when the recording gives one; each exchange answers once. Secret values the process knows are
//! masked in the call before it is compared, as they were when it was recorded, so a recording
//! holds `[redacted]` where a key was and still matches. A call nobody recorded fails with
//! [`NotAnswered`], whose words say what to add. A call naming an integration must go to one of
//! the integration's API origins as the test gives them, as it must in a real run.
//!
//! Bounds: a recorded body is at most [`MAX_BODY_BYTES`]; a recording holds at most
//! [`MAX_EXCHANGES`] exchanges.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{HttpResponse, PreparedRequest, RequestBody};
use crate::secrets::known;

/// The largest recorded body, in bytes: what the HTTP policy lets a step receive by default.
pub const MAX_BODY_BYTES: usize = 10 << 20;
/// Most exchanges one recording holds.
pub const MAX_EXCHANGES: usize = 1000;
/// Most bytes (as JSON) of exchanges one recording holds: what a test file may hold.
pub const MAX_RECORDING_BYTES: usize = 16 << 20;

/// `content_type` with its charset said as UTF-8 (the charset a recorded text body is in).
fn utf8_content_type(content_type: &str) -> String {
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.filter(|p| !p.to_ascii_lowercase().starts_with("charset=")).collect();
    let had_charset = content_type.to_ascii_lowercase().contains("charset=");
    let mut out = media.to_string();
    for p in rest {
        out.push_str("; ");
        out.push_str(p);
    }
    if had_charset {
        out.push_str("; charset=utf-8");
    }
    out
}

/// One recorded call and its answer.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the flow (or plugin) must send.
    pub request: RecordedRequest,
    /// What it gets back (default: 200 with no body).
    #[serde(default)]
    pub response: RecordedResponse,
}

/// The request a recorded answer belongs to.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// GET (default), POST, PUT, PATCH, DELETE or HEAD.
    #[serde(default = "default_method")]
    pub method: String,
    /// The absolute URL, query included, as it is sent.
    pub url: String,
    /// The integration whose token goes with the call (none for a call without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// When given, the request's body must be this JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// When given, the request's body must be this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

/// A recorded answer.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// The status code (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers (`content-type: application/json` is added for `json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// A text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Every problem of a list of exchanges, each as (JSON pointer below the list, e.g. `/0/request/url`;
/// what is wrong): the checks serde's types cannot make.
pub fn problems(exchanges: &[Exchange]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, x) in exchanges.iter().enumerate() {
        let mut problem = |at: &str, message: &str| out.push((format!("/{i}/{at}"), message.to_string()));
        match url::Url::parse(&x.request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            // A URL whose origin was a secret, masked when it was recorded.
            Err(_) if x.request.url.starts_with(known::REDACTED) => {}
            Ok(_) => problem("request/url", "use an http(s) URL"),
            Err(e) => problem("request/url", &format!("`{}` is not an absolute URL: {e}", x.request.url)),
        }
        if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&x.request.method.to_ascii_uppercase().as_str())
        {
            problem("request/method", "use GET, POST, PUT, PATCH, DELETE or HEAD");
        }
        if x.request.json.is_some() && x.request.body.is_some() {
            problem("request", "give `json` or `body`, not both");
        }
        let r = &x.response;
        if !(100..=599).contains(&r.status) {
            problem("response/status", "a status code is 100 to 599");
        }
        for (name, value) in &r.headers {
            let ok_name =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !ok_name || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                problem(
                    &crate::diagnostics::pointer_push("response/headers", name),
                    "not a header an HTTP server could send (a token name; no CR, LF or NUL in the value)",
                );
            }
        }
        if r.json.is_some() && r.body.is_some() {
            problem("response", "give `json` or `body`, not both");
        }
        let size = r.json.as_ref().map_or(0, |v| v.to_string().len()) + r.body.as_ref().map_or(0, String::len);
        if size > MAX_BODY_BYTES {
            problem(
                "response",
                &format!("the body is larger than the {} MiB a step may receive", MAX_BODY_BYTES >> 20),
            );
        }
    }
    if exchanges.len() > MAX_EXCHANGES {
        out.push((String::new(), format!("at most {MAX_EXCHANGES} recorded exchanges")));
    }
    out
}

/// Problems of the integrations' API origins a test gives (`{"crm": ["https://api.example.com"]}`),
/// each as (JSON pointer below the map; what is wrong).
pub fn origin_problems(integrations: &BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, origins) in integrations {
        for (k, o) in origins.iter().enumerate() {
            match url::Url::parse(o) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.origin().is_tuple() => {}
                _ => out.push((
                    crate::diagnostics::pointer_push(&crate::diagnostics::pointer_push("", name), &k.to_string()),
                    format!("`{o}` is not an http(s) origin"),
                )),
            }
        }
    }
    out
}

/// Why a call gets no recorded answer; the words say what to add to the recording, or which
/// rule refused the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAnswered(pub String);

/// A call, as [`Replay::answer`] matches it.
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

/// A recorded answer, as a call gets it.
#[derive(Debug)]
pub struct Answer {
    /// Which exchange answered (its index in the list).
    pub index: usize,
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The recorded answers of one test; each answers once.
#[derive(Debug)]
pub struct Replay {
    exchanges: Vec<Exchange>,
    used: Mutex<Vec<bool>>,
    integrations: BTreeMap<String, Vec<url::Origin>>,
}

impl Replay {
    /// Answers from `exchanges`; a call naming an integration must go to one of its origins in
    /// `integrations` (origins that do not parse are left out: [`origin_problems`] reports them).
    pub fn new(exchanges: Vec<Exchange>, integrations: &BTreeMap<String, Vec<String>>) -> Self {
        let integrations = integrations
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().filter_map(|o| url::Url::parse(o).ok()).map(|u| u.origin()).collect()))
            .collect();
        let used = Mutex::new(vec![false; exchanges.len()]);
        Self { exchanges, used, integrations }
    }

    /// The first unused exchange recorded for this call.
    ///
    /// # Errors
    /// [`NotAnswered`] when nobody recorded this call (with the exchange to add), or when the
    /// call takes an integration's token to an origin the test does not give it.
    pub fn answer(&self, call: &Call<'_>) -> Result<Answer, NotAnswered> {
        if let Some(name) = call.integration {
            let origin = url::Url::parse(call.url).map(|u| u.origin()).map_err(|e| NotAnswered(e.to_string()))?;
            match self.integrations.get(name) {
                None => {
                    return Err(NotAnswered(format!(
                        "the test does not give integration `{name}`'s API origins; add \"integrations\": {{\"{name}\": [\"{}\"]}} as the operator configures them",
                        origin.ascii_serialization()
                    )));
                }
                Some(origins) if !origins.contains(&origin) => {
                    return Err(NotAnswered(format!(
                        "the token of integration `{name}` may not be sent to {}: not one of its API origins in the test; if the operator allows it, add it to \"integrations\": {{\"{name}\": [...]}}",
                        origin.ascii_serialization()
                    )));
                }
                Some(_) => {}
            }
        }
        let url = known::mask(call.url);
        let body = call.body.map(|b| known::mask_bytes(b));
        let masked = Call { url: &url, body: body.as_deref(), ..*call };
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let found = self
            .exchanges
            .iter()
            .enumerate()
            .find(|(i, x)| !used.get(*i).copied().unwrap_or(true) && matches(&x.request, &masked));
        let Some((index, x)) = found else {
            let mut request = json!({"method": call.method, "url": url});
            if let Some(i) = call.integration {
                request["integration"] = Value::from(i);
            }
            if let Some(body) = body.as_deref().filter(|b| !b.is_empty()) {
                match serde_json::from_slice::<Value>(body) {
                    Ok(v) => request["json"] = v,
                    Err(_) => request["body"] = Value::from(String::from_utf8_lossy(body).into_owned()),
                }
            }
            let closest = self
                .exchanges
                .iter()
                .enumerate()
                .filter(|(i, _)| !used.get(*i).copied().unwrap_or(true))
                .find_map(|(i, x)| {
                    near_miss(&x.request, &masked)
                        .map(|why| format!("; the recorded answer {i} (from 0) is for the same address but {why}"))
                })
                .unwrap_or_default();
            return Err(NotAnswered(format!(
                "no recorded answer is left for {} {}{}{closest}; add one under \"http\": {}",
                call.method,
                url,
                call.integration.map(|i| format!(" with integration `{i}`")).unwrap_or_default(),
                json!({"request": request, "response": {"status": 200, "json": {}}})
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

    /// Answers a prepared request as the network would ([`HttpResponse`]).
    ///
    /// # Errors
    /// [`NotAnswered`], as [`answer`](Self::answer).
    pub fn respond(&self, req: &PreparedRequest, integration: Option<&str>) -> Result<HttpResponse, NotAnswered> {
        let body = req.body.as_ref().map(RequestBody::bytes);
        let call = Call { method: req.method.as_str(), url: req.url.as_str(), integration, body: body.as_deref() };
        let a = self.answer(&call)?;
        let mut headers = HeaderMap::new();
        for (k, v) in &a.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        Ok(HttpResponse {
            status: StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
            url: req.url.clone(),
            headers,
            body: a.body,
            token_refreshed: false,
            rate_limit_wait: None,
            retried_after_429: false,
        })
    }

    /// The exchanges no call used, as (index, `METHOD URL`).
    pub fn unused(&self) -> Vec<(usize, String)> {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        self.exchanges
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.get(*i).copied().unwrap_or(false))
            .map(|(i, x)| (i, format!("{} {}", x.request.method.to_ascii_uppercase(), x.request.url)))
            .collect()
    }
}

/// Whether `call` (secret values masked) is the call `recorded` is for. The recording is
/// masked too, so a secret written out in it matches the same secret sent.
fn matches(recorded: &RecordedRequest, call: &Call<'_>) -> bool {
    recorded.method.eq_ignore_ascii_case(call.method)
        && same_url(&known::mask(&recorded.url), call.url)
        && recorded.integration.as_deref() == call.integration
        && body_difference(recorded, call.body).is_none()
}

/// How the body sent differs from the one recorded, in words; `None` when it matches (or the
/// recording does not say).
fn body_difference(recorded: &RecordedRequest, sent: Option<&[u8]>) -> Option<String> {
    match (&recorded.json, &recorded.body) {
        (Some(want), _) => {
            let want = serde_json::from_str::<Value>(&known::mask(&want.to_string())).unwrap_or_else(|_| want.clone());
            match sent.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
                None => Some("its JSON body was not sent (the call has no JSON body)".into()),
                Some(got) => first_difference(&want, &got, String::new()).map(|(at, w, g)| {
                    format!(
                        "the JSON body differs at `{}`: recorded {w}, sent {g}",
                        if at.is_empty() { "/" } else { &at }
                    )
                }),
            }
        }
        (None, Some(text)) => {
            let text = known::mask(text);
            (sent.unwrap_or_default() != text.as_bytes()).then(|| {
                let got = String::from_utf8_lossy(sent.unwrap_or_default()).chars().take(200).collect::<String>();
                format!("the body differs: sent {got:?}")
            })
        }
        (None, None) => None,
    }
}

/// The first place two JSON values differ: (JSON pointer, recorded, sent), each cut short.
fn first_difference(want: &Value, got: &Value, at: String) -> Option<(String, String, String)> {
    let short = |v: &Value| v.to_string().chars().take(80).collect::<String>();
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let here = crate::diagnostics::pointer_push(&at, k);
                match g.get(k) {
                    None => return Some((here, short(wv), "nothing".into())),
                    Some(gv) => {
                        if let Some(d) = first_difference(wv, gv, here) {
                            return Some(d);
                        }
                    }
                }
            }
            g.iter()
                .find(|(k, _)| !w.contains_key(*k))
                .map(|(k, gv)| (crate::diagnostics::pointer_push(&at, k), "nothing".into(), short(gv)))
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            w.iter().zip(g).enumerate().find_map(|(i, (wv, gv))| first_difference(wv, gv, format!("{at}/{i}")))
        }
        _ => (want != got).then(|| (at, short(want), short(got))),
    }
}

/// Why a recorded request for the same address (origin and path) does not answer `call`, in
/// words; `None` for another address (or no difference found).
fn near_miss(recorded: &RecordedRequest, call: &Call<'_>) -> Option<String> {
    let (Ok(r), Ok(c)) = (url::Url::parse(&known::mask(&recorded.url)), url::Url::parse(call.url)) else { return None };
    if r.origin() != c.origin() || decoded_path(&r) != decoded_path(&c) {
        return None;
    }
    let mut why = Vec::new();
    if !recorded.method.eq_ignore_ascii_case(call.method) {
        why.push(format!("its method is {}", recorded.method.to_ascii_uppercase()));
    }
    let (rp, cp) = (query_pairs(&r), query_pairs(&c));
    if rp != cp {
        let (mut rs, mut cs) = (rp.clone(), cp.clone());
        rs.sort();
        cs.sort();
        if rs == cs {
            why.push("its query has the same parameters in another order (the order counts)".into());
        } else {
            why.push(format!("its query is `{}`", r.query().unwrap_or("")));
        }
    }
    if recorded.integration.as_deref() != call.integration {
        why.push(match &recorded.integration {
            Some(i) => format!("it is for integration `{i}`"),
            None => "it names no integration".into(),
        });
    }
    if let Some(d) = body_difference(recorded, call.body) {
        why.push(d);
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// URLs compared as parsed and decoded: `https://A.example` is `https://a.example/`, and
/// `?fields=status,eta` is `?fields=status%2Ceta` (the query as its decoded name–value pairs, in
/// order; the fragment, never sent, is ignored).
fn same_url(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(a), url::Url::parse(b)) else { return a == b };
    a.scheme() == b.scheme()
        && a.username() == b.username()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && decoded_path(&a) == decoded_path(&b)
        && query_pairs(&a) == query_pairs(&b)
}

/// A URL's path, percent-decoded.
fn decoded_path(u: &url::Url) -> String {
    percent_encoding::percent_decode_str(u.path()).decode_utf8_lossy().into_owned()
}

/// A URL's query as decoded name–value pairs, in order.
fn query_pairs(u: &url::Url) -> Vec<(String, String)> {
    u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Response headers a recording leaves out: the connection's, the server's clock and cookies.
const UNRECORDED_HEADERS: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "date",
    "keep-alive",
    "server",
    "set-cookie",
    "transfer-encoding",
    "vary",
];

/// The exchanges of a real run, with every secret value the process knows masked (tokens and
/// client secrets never appear: credentials travel in headers, which are not recorded).
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    /// The recorded exchanges' size as JSON.
    bytes: usize,
    exchanges: Vec<Exchange>,
    origins: BTreeMap<String, BTreeSet<String>>,
    dropped: usize,
}

impl Recorder {
    /// Records one answered call (at most [`MAX_EXCHANGES`]; later ones are counted, not kept).
    pub fn record(&self, req: &PreparedRequest, integration: Option<&str>, resp: &HttpResponse) {
        let body = req.body.as_ref().map(RequestBody::bytes);
        let request_type = req.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let (json, body) = split_body(body.as_deref(), request_type, true);
        let request = RecordedRequest {
            method: req.method.as_str().to_string(),
            url: known::mask(req.url.as_str()).into_owned(),
            integration: integration.map(str::to_string),
            json,
            body,
        };
        let content_type = resp.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let (json, body) = split_body(Some(&resp.body), content_type, resp.is_json_type());
        let headers = resp
            .headers
            .iter()
            .filter(|(k, _)| !UNRECORDED_HEADERS.contains(&k.as_str()))
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes());
                // The body is recorded as UTF-8 text, whatever charset it came in.
                let v = if k == reqwest::header::CONTENT_TYPE { utf8_content_type(&v) } else { v.into_owned() };
                (k.as_str().to_string(), known::mask(&v).into_owned())
            })
            .collect();
        let response = RecordedResponse { status: resp.status.as_u16(), headers, json, body };
        let size = serde_json::to_string(&request).map_or(0, |s| s.len())
            + serde_json::to_string(&response).map_or(0, |s| s.len());
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.exchanges.len() < MAX_EXCHANGES && inner.bytes + size <= MAX_RECORDING_BYTES {
            inner.bytes += size;
            inner.exchanges.push(Exchange { request, response });
        } else {
            inner.dropped += 1;
        }
    }

    /// Notes the API origins an integration's token may go to, as the operator configured them.
    pub fn learn_origins(&self, integration: &str, origins: &[url::Origin]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let known = inner.origins.entry(integration.to_string()).or_default();
        known.extend(origins.iter().map(url::Origin::ascii_serialization));
    }

    /// What was recorded so far (and the recorder starts over).
    pub fn take(&self) -> Recording {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let origins =
            std::mem::take(&mut inner.origins).into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
        inner.bytes = 0;
        Recording {
            exchanges: std::mem::take(&mut inner.exchanges),
            origins,
            dropped: std::mem::take(&mut inner.dropped),
        }
    }
}

/// What a [`Recorder`] recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recording {
    /// The exchanges, in order.
    pub exchanges: Vec<Exchange>,
    /// Each integration's API origins, as the operator configured them.
    pub origins: BTreeMap<String, Vec<String>>,
    /// How many exchanges were past [`MAX_EXCHANGES`] or [`MAX_RECORDING_BYTES`] and left out.
    pub dropped: usize,
}

/// A body as a recording shows it: JSON when it is JSON (and `json_wanted`), else text read in
/// the charset `content_type` declares; known secret values masked in the text and, once
/// parsed, in every string of the JSON (an API may escape a value differently, `\/` or
/// `\u00e9`); nothing for an empty body.
fn split_body(bytes: Option<&[u8]>, content_type: Option<&str>, json_wanted: bool) -> (Option<Value>, Option<String>) {
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else { return (None, None) };
    let bytes = &bytes[..bytes.len().min(MAX_BODY_BYTES)];
    let text = super::decode::text_lossy(content_type, bytes);
    if json_wanted && let Ok(mut v) = serde_json::from_str::<Value>(&text) {
        mask_strings(&mut v);
        return (Some(v), None);
    }
    (None, Some(known::mask(&text).into_owned()))
}

/// Masks known secret values in every string (and key) of `v`.
fn mask_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(m) = known::mask(s) {
                *s = m;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_strings),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut item) in entries {
                mask_strings(&mut item);
                map.insert(known::mask(&k).into_owned(), item);
            }
        }
        _ => {}
    }
}

/// Where [`Outbound`](super::Outbound) takes its answers from instead of (or besides) the
/// network.
#[derive(Clone, Debug)]
pub enum Tape {
    /// Answers come from a recording; nothing reaches the network and no token is fetched.
    Replay(Arc<Replay>),
    /// Calls go out as usual and are recorded.
    Record(Arc<Recorder>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchanges(v: Value) -> Vec<Exchange> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_recorded_answer_answers_once_in_order() {
        let r = Replay::new(
            exchanges(json!([
                {"request": {"url": "https://a.example/x"}, "response": {"json": {"n": 1}}},
                {"request": {"url": "https://a.example/x"}, "response": {"status": 404}},
                {"request": {"method": "post", "url": "https://a.example/y", "integration": "crm", "json": {"id": 1}}}
            ])),
            &BTreeMap::from([("crm".to_string(), vec!["https://a.example".to_string()])]),
        );
        let get = Call { method: "GET", url: "https://A.example/x#top", integration: None, body: None };
        let a = r.answer(&get).unwrap();
        assert_eq!((a.index, a.status, a.body.as_slice()), (0, 200, br#"{"n":1}"#.as_slice()));
        assert_eq!(r.answer(&get).unwrap().status, 404);
        assert!(r.answer(&get).unwrap_err().0.contains("no recorded answer is left for GET https://A.example/x"));
        assert!(same_url("https://a.example/o?f=status,eta&q=a%20b", "https://a.example:443/o?f=status%2Ceta&q=a+b"));
        assert!(
            !same_url("https://a.example/o?f=1&g=2", "https://a.example/o?g=2&f=1"),
            "the order of parameters counts"
        );
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
    fn a_replayed_call_follows_the_address_rules() {
        use crate::http::{HttpClient, HttpError, HttpPolicy, Method, Outbound, PreparedRequest};
        let replay = Arc::new(Replay::new(
            exchanges(
                json!([{"request": {"url": "http://localhost/x"}}, {"request": {"url": "http://169.254.169.254/x"}}]),
            ),
            &BTreeMap::new(),
        ));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (url, allow) in
            [("http://localhost/x", false), ("http://169.254.169.254/x", false), ("http://localhost/x", true)]
        {
            let policy = HttpPolicy { allow_private_network: allow, ..HttpPolicy::default() };
            let outbound =
                Outbound::new(HttpClient::new(policy).unwrap(), None).with_tape(Tape::Replay(replay.clone()));
            let req = PreparedRequest {
                method: Method::Get,
                url: url::Url::parse(url).unwrap(),
                headers: HeaderMap::new(),
                body: None,
                timeout: std::time::Duration::from_secs(1),
            };
            let got = rt.block_on(outbound.execute(&req, None));
            match (allow, got) {
                (false, Err(HttpError::Denied { .. })) => {}
                (true, Ok(r)) => assert_eq!(r.status, 200),
                (_, other) => panic!("{url} (allow {allow}): {other:?}"),
            }
        }
    }

    #[test]
    fn a_near_miss_says_how_it_differs() {
        let r = Replay::new(
            exchanges(json!([
                {"request": {"method": "POST", "url": "https://a.example/t?a=1&b=2", "json": {"prio": "2", "x": [1]}}},
            ])),
            &BTreeMap::new(),
        );
        let call = Call {
            method: "POST",
            url: "https://a.example/t?b=2&a=1",
            integration: None,
            body: Some(br#"{"prio": 2, "x": [1]}"#),
        };
        let why = r.answer(&call).unwrap_err().0;
        assert!(why.contains("the recorded answer 0 (from 0) is for the same address but its query has the same parameters in another order"), "{why}");
        assert!(why.contains("the JSON body differs at `/prio`: recorded \"2\", sent 2"), "{why}");
        assert!(why.contains(r#""json":{"prio":2,"x":[1]}"#), "the exchange to add has the body sent: {why}");
        let elsewhere = Call { method: "GET", url: "https://a.example/other", integration: None, body: None };
        assert!(!r.answer(&elsewhere).unwrap_err().0.contains("same address"));
    }

    #[test]
    fn a_known_secret_matches_its_masked_recording() {
        known::remember_str("rec-secret-0123456789");
        let r = Replay::new(
            exchanges(json!([{"request": {"url": "https://a.example/x?key=[redacted]"}, "response": {"status": 204}}])),
            &BTreeMap::new(),
        );
        let call =
            Call { method: "GET", url: "https://a.example/x?key=rec-secret-0123456789", integration: None, body: None };
        assert_eq!(r.answer(&call).unwrap().status, 204);
        let missing = r.answer(&call).unwrap_err().0;
        assert!(!missing.contains("rec-secret-0123456789"), "{missing}");
        // A recording that writes the secret out matches it too.
        let r = Replay::new(
            exchanges(json!([{"request": {"url": "https://a.example/x?key=rec-secret-0123456789"}}])),
            &BTreeMap::new(),
        );
        assert_eq!(r.answer(&call).unwrap().status, 200);
    }

    #[test]
    fn every_problem_is_named_by_its_pointer() {
        let list = exchanges(json!([
            {"request": {"url": "not a url", "method": "GE T"}, "response": {"status": 0, "headers": {"x": "a\r\nB: 1"}}},
            {"request": {"url": "ftp://a.example", "json": 1, "body": "x"}, "response": {"json": 1, "body": "x"}}
        ]));
        let at: Vec<String> = problems(&list).into_iter().map(|(at, _)| at).collect();
        assert_eq!(
            at,
            [
                "/0/request/url",
                "/0/request/method",
                "/0/response/status",
                "/0/response/headers/x",
                "/1/request/url",
                "/1/request",
                "/1/response"
            ]
        );
        let origins = BTreeMap::from([("crm".to_string(), vec!["ftp://a.example".to_string()])]);
        assert_eq!(origin_problems(&origins)[0].0, "/crm/0");
    }
}
