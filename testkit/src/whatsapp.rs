//! A local WhatsApp Cloud API on 127.0.0.1:0 for platform-channel tests: the phone number's
//! record (`GET /{version}/{phone-number-id}`), and `POST
//! /{version}/{phone-number-id}/messages` checked as the real one checks it (`Authorization:
//! Bearer` with the system user's token, the phone number id it was started with, a JSON body
//! with `messaging_product: "whatsapp"`, a `to`, and a `text.body` of 1 to 4,096 characters,
//! or an `interactive` message: at most 3 reply buttons of at most 20 characters, or a list of
//! at most 10 rows of at most 24, with a body of at most 1,024), answered
//! with the Graph API's shapes (`{"messaging_product", "contacts", "messages": [{"id"}]}` or
//! `{"error": {"message", "type", "code", "fbtrace_id"}}`), and recorded. Faults are scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A message the fake took: the recipient, its text and its reply buttons or list rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `to`.
    pub to: String,
    /// `text.body`, or an interactive message's `body.text`.
    pub text: String,
    /// An interactive message's buttons or rows: (id, title).
    pub choices: Vec<(String, String)>,
}

impl Sent {
    /// A text message.
    pub fn text(to: &str, text: &str) -> Self {
        Self { to: to.into(), text: text.into(), choices: Vec::new() }
    }
}

#[derive(Default)]
struct State_ {
    token: String,
    phone_number_id: String,
    sent: Vec<Sent>,
    /// Every call: the status it got.
    calls: Vec<u16>,
    /// The next calls' answers: `Some((status, code))` a failure.
    faults: VecDeque<(u16, i64)>,
    /// Each taken message's `biz_opaque_callback_data` and the `wamid` it got.
    callback_data: Vec<(Option<String>, String)>,
}

type Shared = Arc<Mutex<State_>>;

/// The fake Cloud API.
pub struct FakeWhatsApp {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeWhatsApp {
    /// Starts the fake for the business number `phone_number_id`, taking `token`.
    pub fn start(token: &str, phone_number_id: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_ {
            token: token.to_string(),
            phone_number_id: phone_number_id.to_string(),
            ..State_::default()
        }));
        let app = Router::new()
            .route("/{version}/{number}/messages", axum::routing::post(call))
            .route("/{version}/{number}", axum::routing::get(number))
            .with_state(state.clone());
        let addr = crate::serve_on_thread(app);
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT/v23.0` (the `--api-base`).
    pub fn url(&self) -> String {
        format!("http://{}/v23.0", self.addr)
    }

    /// The messages taken so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().expect("state").sent.clone()
    }

    /// Each taken message's `biz_opaque_callback_data` (what Meta echoes in its statuses) and
    /// the `wamid` the fake gave it, in order.
    pub fn callback_data(&self) -> Vec<(Option<String>, String)> {
        self.state.lock().expect("state").callback_data.clone()
    }

    /// The status of every call so far.
    pub fn calls(&self) -> Vec<u16> {
        self.state.lock().expect("state").calls.clone()
    }

    /// The next calls are refused with these (HTTP status, Graph error code) pairs, then
    /// answered normally again: e.g. `(400, 130429)` a rate limit, `(500, 131000)` a failure,
    /// `(400, 131047)` more than 24 hours since the contact wrote.
    pub fn fail_next(&self, faults: &[(u16, i64)]) {
        self.state.lock().expect("state").faults.extend(faults.iter().copied());
    }

    /// Waits until at least `n` messages were taken (at most `within`), and returns them.
    pub fn wait_sent(&self, n: usize, within: Duration) -> Vec<Sent> {
        crate::wait_for(n, within, || self.sent())
    }
}

fn refuse(status: u16, code: i64, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}});
    (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response()
}

async fn call(
    State(state): State<Shared>,
    Path((_version, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().expect("state");
    let answer = answer(&mut s, &number, &headers, &body);
    let status = answer.status().as_u16();
    s.calls.push(status);
    answer
}

/// `GET /{version}/{phone-number-id}`: the number's record, for the bearer token only.
async fn number(
    State(state): State<Shared>,
    Path((_version, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().expect("state");
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(s.token.as_str()) {
        return refuse(401, 190, "Error validating access token: The session is invalid.");
    }
    if number != s.phone_number_id {
        return refuse(400, 100, "Unsupported get request. Object with ID does not exist");
    }
    axum::Json(json!({"display_phone_number": "15550783881", "verified_name": "Tern Test", "id": number}))
        .into_response()
}

fn answer(s: &mut State_, number: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(s.token.as_str()) {
        return refuse(401, 190, "Error validating access token: The session is invalid.");
    }
    if number != s.phone_number_id {
        return refuse(400, 100, "Unsupported post request. Object with ID does not exist");
    }
    if let Some((status, code)) = s.faults.pop_front() {
        return refuse(status, code, "scripted failure");
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return refuse(400, 100, "(#100) The parameter messaging_product is required.");
    };
    if body["messaging_product"] != "whatsapp" {
        return refuse(400, 100, "(#100) The parameter messaging_product is required.");
    }
    let Some(to) = body["to"].as_str().filter(|t| !t.is_empty()) else {
        return refuse(400, 100, "(#100) The parameter to is required.");
    };
    let (text, choices) = match body["type"].as_str() {
        Some("text") => (body["text"]["body"].as_str().unwrap_or_default().to_string(), Vec::new()),
        Some("interactive") => {
            let i = &body["interactive"];
            let (items, max, title_max): (Vec<Value>, usize, usize) = match i["type"].as_str() {
                Some("button") => (
                    i["action"]["buttons"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|b| b["reply"].clone())
                        .collect(),
                    3,
                    20,
                ),
                Some("list") => (
                    i["action"]["sections"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default())
                        .collect(),
                    10,
                    24,
                ),
                _ => return refuse(400, 100, "(#100) interactive.type must be button or list"),
            };
            if items.is_empty() || items.len() > max {
                return refuse(400, 131009, "(#131009) Parameter value is not valid: too many buttons or rows");
            }
            if items.iter().any(|b| b["title"].as_str().is_none_or(|t| t.is_empty() || t.chars().count() > title_max)) {
                return refuse(400, 131009, "(#131009) Parameter value is not valid: a title is too long");
            }
            if i["type"] == "list"
                && i["action"]["button"].as_str().is_none_or(|b| b.is_empty() || b.chars().count() > 20)
            {
                return refuse(400, 131009, "(#131009) Parameter value is not valid: the list's button text");
            }
            let body_text = i["body"]["text"].as_str().unwrap_or_default().to_string();
            if body_text.chars().count() > 1024 {
                return refuse(400, 131009, "(#131009) Parameter value is not valid: body text over 1024 characters");
            }
            let choices = items
                .iter()
                .map(|b| {
                    (
                        b["id"].as_str().unwrap_or_default().to_string(),
                        b["title"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (body_text, choices)
        }
        _ => return refuse(400, 100, "(#100) Param type must be one of {TEXT, INTERACTIVE, …}"),
    };
    if text.trim().is_empty() {
        return refuse(400, 100, "(#100) The parameter text['body'] is required.");
    }
    if text.chars().count() > 4096 {
        return refuse(400, 100, "(#100) Param text['body'] must be at most 4096 characters long.");
    }
    s.sent.push(Sent { to: to.to_string(), text: text.clone(), choices });
    let id = format!("wamid.HBgL{:08}", s.sent.len());
    s.callback_data.push((body["biz_opaque_callback_data"].as_str().map(str::to_string), id.clone()));
    axum::Json(
        json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": id}]}),
    )
    .into_response()
}
