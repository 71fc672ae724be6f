//! A local Telegram Bot API on 127.0.0.1:0 for platform-channel tests: `getMe`, and `POST
//! /bot{token}/sendMessage` checked as the real one checks it (the bot token in the path, a
//! JSON body with `chat_id` and a `text` of 1 to 4096 characters, a chat that exists), answered
//! with the Bot API's envelope (`{"ok": true, "result": …}` or `{"ok": false, "error_code",
//! "description"}`), and recorded. Faults are scripted: the next answers can be a 500 or a 429
//! with `retry_after`.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A message the fake took: the chat and the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `chat_id`, as text.
    pub chat_id: String,
    /// The text.
    pub text: String,
}

#[derive(Default)]
struct State_ {
    token: String,
    sent: Vec<Sent>,
    /// Every call, answered or not: (the method, the status it got).
    calls: Vec<(String, u16)>,
    /// The next calls' answers: `None` normally, `Some(status)` a failure.
    faults: VecDeque<Option<u16>>,
    /// The form of the last `setWebhook` call (`url`, `secret_token`, …).
    webhook: Vec<(String, String)>,
    unknown_chats: HashSet<String>,
}

type Shared = Arc<Mutex<State_>>;

/// The fake Bot API.
pub struct FakeTelegram {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeTelegram {
    /// Starts the fake for the bot `token`, on its own thread.
    pub fn start(token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ { token: token.to_string(), ..State_::default() }));
        let app = Router::new().route("/{bot}/{method}", axum::routing::post(call).get(call)).with_state(state.clone());
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

    /// The form of the last `setWebhook` call.
    pub fn webhook(&self) -> Vec<(String, String)> {
        self.state.lock().expect("state").webhook.clone()
    }

    /// Every call so far: the method and the status it got.
    pub fn calls(&self) -> Vec<(String, u16)> {
        self.state.lock().expect("state").calls.clone()
    }

    /// The next calls are answered with these statuses (500: an internal error; 429: Too Many
    /// Requests with `retry_after: 1`), then normally again.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.fail_after(0, statuses);
    }

    /// The next `ok` calls are answered normally, then the following ones with `statuses`.
    pub fn fail_after(&self, ok: usize, statuses: &[u16]) {
        let mut s = self.state.lock().expect("state");
        s.faults.extend(std::iter::repeat_n(None, ok));
        s.faults.extend(statuses.iter().map(|s| Some(*s)));
    }

    /// Messages to `chat_id` are refused with 400 "chat not found".
    pub fn forget_chat(&self, chat_id: &str) {
        self.state.lock().expect("state").unknown_chats.insert(chat_id.to_string());
    }

    /// Waits until at least `n` messages were taken (at most `within`), and returns them.
    pub fn wait_sent(&self, n: usize, within: Duration) -> Vec<Sent> {
        crate::wait_for(n, within, || self.sent())
    }
}

fn refuse(status: u16, description: &str) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if status == 429 {
        body["description"] = "Too Many Requests: retry after 1".into();
        body["parameters"] = json!({"retry_after": 1});
    }
    (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response()
}

async fn call(State(state): State<Shared>, Path((bot, method)): Path<(String, String)>, body: Bytes) -> Response {
    let mut s = state.lock().expect("state");
    let answer = answer(&mut s, &bot, &method, &body);
    let status = answer.status().as_u16();
    s.calls.push((method, status));
    answer
}

fn answer(s: &mut State_, bot: &str, method: &str, body: &[u8]) -> Response {
    if bot.strip_prefix("bot") != Some(s.token.as_str()) {
        return refuse(401, "Unauthorized");
    }
    if let Some(Some(status)) = s.faults.pop_front() {
        return refuse(status, "Internal Server Error");
    }
    if method == "getMe" {
        return axum::Json(json!({"ok": true, "result": {"id": 987654321, "is_bot": true, "first_name": "Tern test", "username": "tern_test_bot"}})).into_response();
    }
    if method == "setWebhook" {
        // As curl's `-d` sends it: a form.
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let url_ok = form.iter().any(|(k, v)| k == "url" && v.starts_with("https://"));
        let token_ok = form.iter().all(|(k, v)| {
            k != "secret_token"
                || (1..=256).contains(&v.len())
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !url_ok || !token_ok {
            return refuse(400, "Bad Request: bad webhook: an HTTPS URL must be provided for webhook");
        }
        s.webhook = form;
        return axum::Json(json!({"ok": true, "result": true, "description": "Webhook was set"})).into_response();
    }
    if method != "sendMessage" {
        return refuse(404, "Not Found: method not found");
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return refuse(400, "Bad Request: the body is not JSON");
    };
    let chat_id = match &body["chat_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return refuse(400, "Bad Request: chat_id is empty"),
    };
    let text = body["text"].as_str().unwrap_or_default();
    if text.trim().is_empty() {
        return refuse(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > 4096 {
        return refuse(400, "Bad Request: message is too long");
    }
    if s.unknown_chats.contains(&chat_id) {
        return refuse(400, "Bad Request: chat not found");
    }
    s.sent.push(Sent { chat_id: chat_id.clone(), text: text.to_string() });
    let id = s.sent.len();
    axum::Json(json!({"ok": true, "result": {"message_id": id, "chat": {"id": chat_id}, "date": 0, "text": text}}))
        .into_response()
}
