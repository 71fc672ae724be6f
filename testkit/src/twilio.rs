//! A local Twilio Messages API on 127.0.0.1:0 for platform-channel tests: the account's record
//! (`GET /2010-04-01/Accounts/{AccountSid}.json`), and `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` checked as the real one checks it
//! (HTTP Basic authentication with the Account SID and auth token, the account of the path, a
//! form with `To`, `From` or `MessagingServiceSid`, and a `Body` of 1 to 1,600 characters),
//! answered with the API's shapes (`201 {"sid", "status": "queued", …}` or
//! `{"code", "message", "more_info", "status"}`), and recorded. Faults are scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

/// A message the fake took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `To`.
    pub to: String,
    /// `From` (or `MessagingServiceSid`).
    pub from: String,
    /// `Body`.
    pub body: String,
}

#[derive(Default)]
struct State_ {
    account_sid: String,
    auth_token: String,
    sent: Vec<Sent>,
    calls: Vec<u16>,
    faults: VecDeque<(u16, i64)>,
}

type Shared = Arc<Mutex<State_>>;

/// The fake Messages API.
pub struct FakeTwilio {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeTwilio {
    /// Starts the fake for the account `account_sid` with `auth_token`.
    pub fn start(account_sid: &str, auth_token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            ..State_::default()
        }));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", axum::routing::post(call))
            .route("/2010-04-01/Accounts/{account}", axum::routing::get(account))
            .with_state(state.clone());
        let addr = crate::serve_on_thread(app);
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT` (the `--api-base`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The messages taken so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().expect("state").sent.clone()
    }

    /// The status of every call so far.
    pub fn calls(&self) -> Vec<u16> {
        self.state.lock().expect("state").calls.clone()
    }

    /// The next calls are refused with these (HTTP status, Twilio error code) pairs: e.g.
    /// `(429, 20429)` too many requests, `(400, 21610)` an unsubscribed recipient.
    pub fn fail_next(&self, faults: &[(u16, i64)]) {
        self.state.lock().expect("state").faults.extend(faults.iter().copied());
    }

    /// Waits until at least `n` messages were taken (at most `within`), and returns them.
    pub fn wait_sent(&self, n: usize, within: Duration) -> Vec<Sent> {
        crate::wait_for(n, within, || self.sent())
    }
}

fn refuse(status: u16, code: i64, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status});
    (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response()
}

async fn call(State(state): State<Shared>, Path(sid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = state.lock().expect("state");
    let answer = answer(&mut s, &sid, &headers, &body);
    s.calls.push(answer.status().as_u16());
    answer
}

/// Whether the request carries the account's Basic credential.
fn authenticated(s: &State_, headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.account_sid, s.auth_token))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

/// `GET /2010-04-01/Accounts/{AccountSid}.json`: the account's record.
async fn account(State(state): State<Shared>, Path(account): Path<String>, headers: HeaderMap) -> Response {
    let s = state.lock().expect("state");
    if !authenticated(&s, &headers) || account.strip_suffix(".json") != Some(s.account_sid.as_str()) {
        return refuse(401, 20003, "Authenticate");
    }
    axum::Json(json!({"sid": s.account_sid, "friendly_name": "Tern test account", "status": "active", "type": "Full"}))
        .into_response()
}

fn answer(s: &mut State_, sid: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if !authenticated(s, headers) || sid != s.account_sid {
        return refuse(401, 20003, "Authenticate");
    }
    if let Some((status, code)) = s.faults.pop_front() {
        return refuse(status, code, "scripted failure");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(to) = get("To") else { return refuse(400, 21604, "A 'To' phone number is required.") };
    let Some(from) = get("From").or_else(|| get("MessagingServiceSid")) else {
        return refuse(400, 21603, "A 'From' phone number is required.");
    };
    let text = get("Body").unwrap_or_default();
    if text.is_empty() {
        return refuse(400, 21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        return refuse(400, 21617, "The concatenated message body exceeds the 1600 character limit.");
    }
    s.sent.push(Sent { to: to.clone(), from: from.clone(), body: text.clone() });
    let sid = format!("SM{:032x}", s.sent.len());
    (StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued", "to": to, "from": from, "body": text})))
        .into_response()
}
