//! A local Slack Web API on 127.0.0.1:0 for platform-channel tests: `auth.test`, and `POST
//! /api/chat.postMessage` checked as the real one checks it (`Authorization: Bearer` with the
//! bot token, a JSON body with a `channel` and a `text` or `blocks`; an actions block of at most
//! 25 buttons, each with a `plain_text` text of at most 75 characters and a `value` of at most
//! 2,000), answered with the API's envelope (`{"ok": true, "channel", "ts"}` or `{"ok": false,
//! "error"}`; 429 `ratelimited` with `Retry-After`), and recorded. Faults are scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A message the fake took: the channel, its text, and its buttons (value, text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `channel`.
    pub channel: String,
    /// `text`.
    pub text: String,
    /// The buttons of its actions blocks: (value, text).
    pub buttons: Vec<(String, String)>,
}

#[derive(Default)]
struct State_ {
    token: String,
    sent: Vec<Sent>,
    calls: Vec<u16>,
    faults: VecDeque<(u16, &'static str)>,
}

type Shared = Arc<Mutex<State_>>;

/// The fake Web API.
pub struct FakeSlack {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeSlack {
    /// Starts the fake for the bot token `token`.
    pub fn start(token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ { token: token.into(), ..State_::default() }));
        let app = Router::new()
            .route("/api/chat.postMessage", axum::routing::post(call))
            .route("/api/auth.test", axum::routing::post(auth_test))
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

    /// The next calls are refused with these (HTTP status, Slack error): e.g. `(429,
    /// "ratelimited")`, `(200, "channel_not_found")`.
    pub fn fail_next(&self, faults: &[(u16, &'static str)]) {
        self.state.lock().expect("state").faults.extend(faults.iter().copied());
    }

    /// Waits until at least `n` messages were taken (at most `within`), and returns them.
    pub fn wait_sent(&self, n: usize, within: Duration) -> Vec<Sent> {
        crate::wait_for(n, within, || self.sent())
    }
}

fn refuse(status: u16, error: &str) -> Response {
    let mut r = (StatusCode::from_u16(status).expect("status"), axum::Json(json!({"ok": false, "error": error})))
        .into_response();
    if status == 429 {
        r.headers_mut().insert("retry-after", "1".parse().expect("header"));
    }
    r
}

async fn call(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = state.lock().expect("state");
    let answer = answer(&mut s, &headers, &body);
    s.calls.push(answer.status().as_u16());
    answer
}

/// `POST /api/auth.test`: who the token is.
async fn auth_test(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let s = state.lock().expect("state");
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(s.token.as_str()) {
        return refuse(200, "invalid_auth");
    }
    axum::Json(json!({"ok": true, "url": "https://example.slack.com/", "team": "Example", "user": "ternbot", "team_id": "T123ABC456", "user_id": "U0BOT", "bot_id": "B0BOT"})).into_response()
}

fn answer(s: &mut State_, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(s.token.as_str()) {
        return refuse(200, "invalid_auth");
    }
    if let Some((status, error)) = s.faults.pop_front() {
        return refuse(status, error);
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else { return refuse(200, "invalid_json") };
    let Some(channel) = body["channel"].as_str().filter(|c| !c.is_empty()) else {
        return refuse(200, "channel_not_found");
    };
    let text = body["text"].as_str().unwrap_or_default().to_string();
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    if text.is_empty() && blocks.is_empty() {
        return refuse(200, "no_text");
    }
    let mut buttons = Vec::new();
    for block in blocks.iter().filter(|b| b["type"] == "actions") {
        let elements = block["elements"].as_array().cloned().unwrap_or_default();
        if elements.is_empty() || elements.len() > 25 {
            return refuse(200, "invalid_blocks");
        }
        for e in elements {
            let title = e["text"]["text"].as_str().unwrap_or_default();
            let value = e["value"].as_str().unwrap_or_default();
            if e["type"] != "button"
                || e["text"]["type"] != "plain_text"
                || title.is_empty()
                || title.chars().count() > 75
                || value.chars().count() > 2000
            {
                return refuse(200, "invalid_blocks");
            }
            buttons.push((value.to_string(), title.to_string()));
        }
    }
    s.sent.push(Sent { channel: channel.to_string(), text, buttons });
    let ts = format!("1700000000.{:06}", s.sent.len());
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
}
