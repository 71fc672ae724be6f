//! A Slack app (Events API and interactivity) as a channel kind.
//!
//! - **Inbound.** Slack posts events (`application/json`) and interactive payloads (a form whose
//!   `payload` field is JSON) to the request URLs, each signed: `X-Slack-Signature: v0=` and the
//!   hex HMAC-SHA256, keyed with the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw
//!   body}`, the timestamp within [`MAX_SKEW_SECS`] of the server's clock ([`verify`]). The
//!   `url_verification` challenge is answered with the challenge. A `message` event of a person
//!   (not a bot, not an edit: no `bot_id`, no `subtype`) becomes a message of the conversation of
//!   its Slack channel, with the `event_id` as the message id (Slack retries an event until it
//!   gets a 2xx within 3 seconds, `X-Slack-Retry-Num` counting: the id dedupes it). A
//!   `block_actions` payload (a button of a reply's choices) becomes a message whose text is the
//!   button's `value`, with its `action_ts` in the message id.
//!   In a channel where several people write (not a direct message), each person has a
//!   conversation of their own (`{channel}:{user}`).
//! - **Outbound.** Each reply is `POST {api_base}/api/chat.postMessage` with `{"channel",
//!   "text"}` (`&`, `<` and `>` escaped: a reply cannot ping `<!channel>` or hide a link) and, for choices, Block Kit: a section with the text and an actions block of buttons
//!   (at most [`MAX_BUTTONS`], titles of at most 75 characters, values of at most 2,000), with the
//!   bot token of the channel's integration (`xoxb-…`, an OAuth v2 integration of the `slack`
//!   profile) injected like any flow step's.
//!
//! Sources: api.slack.com/authentication/verifying-requests-from-slack,
//! api.slack.com/apis/events-api, api.slack.com/events/message,
//! api.slack.com/reference/interaction-payloads/block-actions, api.slack.com/methods/chat.postMessage,
//! api.slack.com/reference/block-kit/block-elements#button.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{Outcome, PlatformMessage, Received, UpdateError, parts_of, without_values};
use crate::http::{Method, PreparedRequest, RequestBody};
use crate::ids::IntegrationName;
use crate::step::Choice;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header carrying the signed timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// How far a request's timestamp may be from the server's clock, in seconds (Slack's 5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;
/// The Web API's base URL.
pub const DEFAULT_API_BASE: &str = "https://slack.com";
/// Longest text of one message Tern sends, in characters (Slack truncates beyond 40,000; a
/// section block holds 3,000).
pub const MAX_TEXT_CHARS: usize = 3000;
/// Most buttons Tern puts in one actions block (Slack's limit is 25).
pub const MAX_BUTTONS: usize = 25;
/// Longest button text, in characters.
pub const MAX_BUTTON_TEXT_CHARS: usize = 75;

/// What a Slack channel needs.
#[derive(Clone)]
pub struct Slack {
    /// The app's signing secret (Basic Information > App Credentials).
    pub signing_secret: SecretString,
    /// The integration whose bot token (`xoxb-…`) sends the replies.
    pub integration: IntegrationName,
    /// The Web API's base URL ([`DEFAULT_API_BASE`], or a local server in tests).
    pub api_base: url::Url,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("signing_secret", &"[redacted]")
            .field("integration", &self.integration.as_str())
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

/// Whether `secret` can be a signing secret: 32 hexadecimal digits, as Slack gives it.
///
/// # Errors
/// The rule, in words.
pub fn check_signing_secret(secret: &str) -> Result<(), &'static str> {
    if secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("a Slack signing secret is the 32 hexadecimal digits under Basic Information > App Credentials")
    }
}

/// Whether the headers carry one signature and one timestamp (checked on the body by
/// [`verify`]).
pub fn has_signature(headers: &http::HeaderMap) -> bool {
    headers.get_all(SIGNATURE_HEADER).iter().count() == 1 && headers.get_all(TIMESTAMP_HEADER).iter().count() == 1
}

/// `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}` with `secret`.
pub fn signature(secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else { return String::new() };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `body` is signed with the channel's signing secret at a timestamp within
/// [`MAX_SKEW_SECS`] of `now_s` (Unix seconds), compared in constant time.
pub fn verify(slack: &Slack, headers: &http::HeaderMap, body: &[u8], now_s: i64) -> bool {
    let (Some(given), Some(timestamp)) = (
        headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()),
        headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    if !has_signature(headers) {
        return false;
    }
    let Ok(at) = timestamp.trim().parse::<i64>() else { return false };
    if (now_s - at).abs() > MAX_SKEW_SECS {
        return false;
    }
    let expected = signature(&slack.signing_secret, timestamp.trim(), body);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.trim().as_bytes()))
}

/// The text of a string field, bounded.
fn text_of(v: &Value, pointer: &str, max: usize) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(|s| s.chars().take(max).collect())
}

/// The conversation of `user` in the Slack channel `channel`: the channel itself for a direct
/// message (`D…`, one person), else `{channel}:{user}`, so that two people in one channel each
/// have their own conversation (one's answer never resumes the other's run).
fn conversation_of(channel: &str, user: &str) -> String {
    if channel.starts_with('D') { channel.to_string() } else { format!("{channel}:{user}") }
}

/// The Slack channel of a conversation ([`conversation_of`]), where its replies are posted.
fn channel_of(conversation: &str) -> &str {
    conversation.split(':').next().unwrap_or(conversation)
}

fn contact_id(contact: &Map<String, Value>) -> String {
    contact.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// `text` with `&`, `<` and `>` escaped, as Slack asks of text it formats: what a reply quotes
/// (a CRM field, another platform's name) cannot ping `<!channel>` or hide a link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Reads an event or an interactive payload whose signature was checked.
///
/// # Errors
/// [`UpdateError::Malformed`]: neither JSON nor a form with a JSON `payload`.
pub fn parse(body: &[u8]) -> Result<Received, UpdateError> {
    let form_payload = url::form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned());
    let value: Value = match form_payload {
        Some(p) => serde_json::from_str(&p).map_err(|e| UpdateError::Malformed(without_values(&e)))?,
        None => serde_json::from_slice(body).map_err(|e| UpdateError::Malformed(without_values(&e)))?,
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut received = Received::default();
    match kind {
        "url_verification" => {
            let challenge = text_of(&value, "/challenge", 512).unwrap_or_default();
            received.response = json!({"challenge": challenge});
        }
        "event_callback" => {
            let event = value.get("event").cloned().unwrap_or_default();
            let event_type = event.get("type").and_then(Value::as_str).unwrap_or_default();
            let from_bot = event.get("bot_id").is_some() || event.get("subtype").is_some();
            let (Some(event_id), Some(channel), Some(user)) =
                (text_of(&value, "/event_id", 64), text_of(&event, "/channel", 64), text_of(&event, "/user", 64))
            else {
                received.ignored.push(format!("event {event_type} without an id, channel or user"));
                return Ok(received);
            };
            if event_type != "message" || from_bot {
                received
                    .ignored
                    .push(format!("event {event_type}{}", if from_bot { " (a bot's, or an edit)" } else { "" }));
                return Ok(received);
            }
            let mut meta = Map::new();
            meta.insert("type".into(), "message".into());
            for (key, pointer) in [("channel_type", "/channel_type"), ("ts", "/ts"), ("thread_ts", "/thread_ts")] {
                if let Some(v) = text_of(&event, pointer, 64) {
                    meta.insert(key.into(), v.into());
                }
            }
            if let Some(team) = text_of(&value, "/team_id", 64) {
                meta.insert("team".into(), team.into());
            }
            received.messages.push(PlatformMessage {
                chat_id: conversation_of(&channel, &user),
                message_id: event_id,
                text: text_of(&event, "/text", 40_000).unwrap_or_default(),
                contact: Map::from_iter([("id".to_string(), Value::String(user))]),
                metadata: Map::from_iter([("slack".to_string(), Value::Object(meta))]),
            });
        }
        "block_actions" => {
            let action = value.pointer("/actions/0").cloned().unwrap_or_default();
            let (Some(channel), Some(user), Some(action_ts)) = (
                text_of(&value, "/channel/id", 64),
                text_of(&value, "/user/id", 64),
                text_of(&action, "/action_ts", 64),
            ) else {
                received.ignored.push("block_actions without a channel, user or action".into());
                return Ok(received);
            };
            let mut contact = Map::from_iter([("id".to_string(), Value::String(user))]);
            if let Some(name) = text_of(&value, "/user/name", 200) {
                contact.insert("name".into(), name.into());
            }
            let mut meta = Map::new();
            meta.insert("type".into(), "block_actions".into());
            for (key, pointer) in [("action_id", "/action_id"), ("title", "/text/text")] {
                if let Some(v) = text_of(&action, pointer, 256) {
                    meta.insert(key.into(), v.into());
                }
            }
            received.messages.push(PlatformMessage {
                chat_id: conversation_of(&channel, &contact_id(&contact)),
                message_id: format!("action-{action_ts}"),
                text: text_of(&action, "/value", 2000).unwrap_or_default(),
                contact,
                metadata: Map::from_iter([("slack".to_string(), Value::Object(meta))]),
            });
        }
        other => received.ignored.push(format!("payload {}", other.chars().take(64).collect::<String>())),
    }
    Ok(received)
}

/// The `chat.postMessage` calls of one reply to `conversation` (posted in its Slack channel,
/// [`conversation_of`]): its text, escaped ([`escape`]), in parts of at most
/// [`MAX_TEXT_CHARS`], the last with the choices as buttons (numbered text when more than
/// [`MAX_BUTTONS`]).
pub fn send_reply(
    slack: &Slack,
    conversation: &str,
    text: &str,
    choices: &[Choice],
    timeout: Duration,
) -> Vec<PreparedRequest> {
    let channel = channel_of(conversation);
    let text = escape(text);
    let text = text.as_str();
    let mut url = slack.api_base.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/api/chat.postMessage"));
    let as_buttons = !choices.is_empty() && choices.len() <= MAX_BUTTONS;
    let text = if as_buttons || choices.is_empty() { text.to_string() } else { Choice::numbered(text, choices) };
    let mut parts = parts_of(&text, MAX_TEXT_CHARS, |_| 1);
    if parts.is_empty() && as_buttons {
        parts.push(" ".into());
    }
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let mut body = json!({"channel": channel, "text": part});
            if as_buttons && i == last {
                let buttons: Vec<Value> = choices
                    .iter()
                    .enumerate()
                    .map(|(n, c)| {
                        json!({"type": "button", "action_id": format!("choice-{n}"),
                            "text": {"type": "plain_text", "text": c.title.chars().take(MAX_BUTTON_TEXT_CHARS).collect::<String>()},
                            "value": c.payload})
                    })
                    .collect();
                let mut blocks = Vec::new();
                if !part.trim().is_empty() {
                    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": part}}));
                }
                blocks.push(json!({"type": "actions", "elements": buttons}));
                body["blocks"] = Value::Array(blocks);
            }
            PreparedRequest { method: Method::Post, url: url.clone(), headers: HeaderMap::new(), body: Some(RequestBody::Json(body)), timeout }
        })
        .collect()
}

/// Slack errors that are final for this message: the channel is gone or the bot is not in it,
/// the message is refused.
const REFUSED_ERRORS: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "restricted_action",
];

/// Reads the Web API's answer: `{"ok": true}` is sent; 429 (`ratelimited`, after
/// `Retry-After`), 5xx and other errors are retried, except those of [`REFUSED_ERRORS`]. A
/// revoked or invalid token (`invalid_auth`, `token_revoked`) is retried too: authorizing the
/// integration again fixes it.
pub fn outcome(status: u16, body: &[u8]) -> Outcome {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if (200..300).contains(&status) && answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Outcome::Sent;
    }
    let error = answer.get("error").and_then(Value::as_str).map(|e| e.chars().take(100).collect::<String>());
    let why =
        format!("the Slack API answered {status}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default());
    if error.as_deref().is_some_and(|e| REFUSED_ERRORS.contains(&e)) {
        Outcome::Refused { why }
    } else {
        Outcome::Retry { why, after: None }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slack() -> Slack {
        Slack {
            signing_secret: SecretString::from("8f742231b10e8888abcd99yyyzzz85a5".to_string()),
            integration: IntegrationName::new("slack").unwrap(),
            api_base: url::Url::parse("http://127.0.0.1:9").unwrap(),
        }
    }

    #[test]
    fn the_documented_signature_example_is_reproduced() {
        // api.slack.com/authentication/verifying-requests-from-slack: this secret, timestamp and
        // body give this signature.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(signature(&slack().signing_secret, "1531420618", body), expected);
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, expected.parse().unwrap());
        headers.insert(TIMESTAMP_HEADER, "1531420618".parse().unwrap());
        assert!(verify(&slack(), &headers, body, 1_531_420_618 + 299));
        assert!(!verify(&slack(), &headers, body, 1_531_420_618 + 301), "older than 5 minutes");
        assert!(!verify(&slack(), &headers, &body[1..], 1_531_420_618));
    }

    #[test]
    fn events_and_button_presses_become_messages() {
        let challenge = parse(br#"{"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}"#).unwrap();
        assert_eq!(challenge.response["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
        let event = br#"{"token": "x", "team_id": "T123ABC456", "api_app_id": "A123", "event": {"type": "message", "channel": "D024BE91L", "user": "U2147483697", "text": "Hello hello can you hear me?", "ts": "1355517523.000005", "channel_type": "im"}, "type": "event_callback", "event_id": "Ev0PV52K21", "event_time": 1355517523}"#;
        let m = &parse(event).unwrap().messages[0];
        assert_eq!(
            (m.chat_id.as_str(), m.message_id.as_str(), m.text.as_str()),
            ("D024BE91L", "Ev0PV52K21", "Hello hello can you hear me?")
        );
        // In a shared channel each person has a conversation of their own.
        let shared = String::from_utf8_lossy(event).replace("D024BE91L", "C2147483705");
        assert_eq!(parse(shared.as_bytes()).unwrap().messages[0].chat_id, "C2147483705:U2147483697");
        let bot = br#"{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", "subtype": "bot_message", "bot_id": "B1", "channel": "D1", "user": "U1", "text": "x"}}"#;
        assert!(parse(bot).unwrap().messages.is_empty());
        let payload = r#"{"type": "block_actions", "user": {"id": "U2147483697", "name": "ann"}, "channel": {"id": "D024BE91L"}, "actions": [{"action_id": "choice-1", "block_id": "b", "text": {"type": "plain_text", "text": "Antwerp"}, "value": "antwerpen", "type": "button", "action_ts": "1548426417.840180"}]}"#;
        let form = url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", payload).finish();
        let m = &parse(form.as_bytes()).unwrap().messages[0];
        assert_eq!(
            (m.chat_id.as_str(), m.message_id.as_str(), m.text.as_str()),
            ("D024BE91L", "action-1548426417.840180", "antwerpen")
        );
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn replies_are_posted_with_buttons_and_answers_are_classified() {
        let reqs = send_reply(
            &slack(),
            "D1",
            "Which shop?",
            &[Choice::new("Ghent", "gent"), Choice::new("Antwerp", "antwerpen")],
            Duration::from_secs(5),
        );
        assert_eq!(reqs[0].url.path(), "/api/chat.postMessage");
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(body["blocks"][1]["elements"][1]["value"], "antwerpen");
        assert_eq!(body["text"], "Which shop?");
        let reqs = send_reply(&slack(), "C1:U1", "Hi <!channel> & <https://x|y>", &[], Duration::from_secs(5));
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(body["channel"], "C1");
        assert_eq!(body["text"], "Hi &lt;!channel&gt; &amp; &lt;https://x|y&gt;");
        let reqs = send_reply(&slack(), "C1:U1", "Hi <!channel> & <https://x|y>", &[], Duration::from_secs(5));
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(
            (body["channel"].as_str(), body["text"].as_str()),
            (Some("C1"), Some("Hi &lt;!channel&gt; &amp; &lt;https://x|y&gt;"))
        );
        assert_eq!(outcome(200, br#"{"ok": true, "channel": "D1", "ts": "1"}"#), Outcome::Sent);
        assert!(matches!(outcome(200, br#"{"ok": false, "error": "channel_not_found"}"#), Outcome::Refused { .. }));
        assert!(matches!(outcome(429, br#"{"ok": false, "error": "ratelimited"}"#), Outcome::Retry { .. }));
        assert!(check_signing_secret("8f742231b10e8888abcd99aaabbb85a5").is_ok() && check_signing_secret("x").is_err());
    }
}
