//! The Telegram Bot API as a channel kind.
//!
//! - **Inbound.** Telegram posts each [Update] to the webhook set with `setWebhook`, with the
//!   `secret_token` given there in the `X-Telegram-Bot-Api-Secret-Token` header (1–256
//!   characters of `A-Z a-z 0-9 _ -`); it is compared in constant time before the body is read
//!   ([`verify`]). A `message` (text, or a caption; a photo, document, location or contact as
//!   metadata) and a `callback_query` (an inline keyboard button: its `data` is the text) become
//!   messages of the conversation `chat.id`, with the `update_id` as the message id (Telegram
//!   sends an update again until it gets a 2xx: the id dedupes it). Every other update type is
//!   acknowledged and ignored ([`Update::Ignored`]).
//! - **Outbound.** Each reply is a `sendMessage` call (`POST {api_base}/bot{token}/sendMessage`
//!   with `{"chat_id", "text"}`), one after the other ([`send_message`]). The bot token is in
//!   the path of every call: it is registered with the masker and the URL is never shown, only
//!   the API base ([`Outcome`] words failures without it).
//!
//! [Update]: https://core.telegram.org/bots/api#update

use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use super::{Outcome, UpdateError};
use super::{parts_of, without_values};
use crate::http::{Method, PreparedRequest, RequestBody};
use crate::step::Choice;

/// The header carrying the webhook's secret token.
pub const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The Bot API's base URL.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";

/// Longest text of one `sendMessage` (the Bot API's 4,096 characters), counted in UTF-16 code
/// units as Telegram counts text (its entity offsets are in them; an emoji is two): a longer
/// reply is sent in several messages.
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// What a Telegram channel needs: the webhook's secret token, the bot token, the API base.
#[derive(Clone)]
pub struct Telegram {
    /// The `secret_token` of `setWebhook`: every update carries it.
    pub secret_token: SecretString,
    /// The bot's token (`123456:ABC…` from @BotFather): in the path of every API call.
    pub bot_token: SecretString,
    /// The API's base URL ([`DEFAULT_API_BASE`], or a local server in tests).
    pub api_base: url::Url,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("secret_token", &"[redacted]")
            .field("bot_token", &"[redacted]")
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

/// Whether `token` can be a webhook secret token: 1 to 256 characters of `A-Z a-z 0-9 _ -`
/// (the Bot API's rule for `setWebhook`). The error says what to do.
///
/// # Errors
/// The rule, in words.
pub fn check_secret_token(token: &str) -> Result<(), &'static str> {
    let ok =
        (1..=256).contains(&token.len()) && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(
            "a Telegram secret token is 1 to 256 characters of letters, digits, `_` and `-` (the rule of setWebhook's secret_token); make one with `openssl rand -hex 32`",
        )
    }
}

/// Whether `token` looks like a bot token: digits, `:`, then at least 20 characters of
/// letters, digits, `_` and `-` (as @BotFather gives them).
///
/// # Errors
/// The rule, in words.
pub fn check_bot_token(token: &str) -> Result<(), &'static str> {
    let ok = token.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && key.len() >= 20
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err("a Telegram bot token is `<digits>:<key>`, as @BotFather gives it (`123456789:AA…`)")
    }
}

/// Whether the request carries the channel's secret token, compared in constant time.
pub fn verify(telegram: &Telegram, headers: &http::HeaderMap) -> bool {
    let Some(given) = headers.get(SECRET_TOKEN_HEADER).and_then(|v| v.to_str().ok()) else { return false };
    crate::channel_auth::is_one_of(given, std::slice::from_ref(&telegram.secret_token))
}

/// A message read from an update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateMessage {
    /// The chat (`chat.id`, as text): the conversation.
    pub chat_id: String,
    /// The `update_id`, as text: the message id.
    pub update_id: String,
    /// The text, the caption, or the pressed button's `data`; empty for media without caption.
    pub text: String,
    /// `{"id": from.id, "name", "username", "language"}` (what Telegram says of the sender).
    pub contact: Map<String, Value>,
    /// `{"telegram": {"update_type", "message_id", "chat_type", "date", …}}` for
    /// `{{message.metadata.telegram.*}}`: media and locations too.
    pub metadata: Map<String, Value>,
    /// The `callback_query.id` of a pressed button, answered in the webhook's response.
    pub callback_query_id: Option<String>,
}

/// What an update is to Tern.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A contact's message or button press.
    Message(Box<UpdateMessage>),
    /// An update type Tern does not handle (`edited_message`, `my_chat_member`, …), or a
    /// message from a channel post: acknowledged, not processed.
    Ignored {
        /// Which type, for the log and the metrics.
        update_type: String,
    },
}

#[derive(Deserialize)]
struct RawUpdate {
    update_id: i64,
    message: Option<RawMessage>,
    callback_query: Option<RawCallback>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawMessage {
    message_id: i64,
    date: Option<i64>,
    chat: RawChat,
    from: Option<RawUser>,
    text: Option<String>,
    caption: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawChat {
    id: i64,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
}

#[derive(Deserialize)]
struct RawCallback {
    id: String,
    from: RawUser,
    message: Option<RawMessage>,
    data: Option<String>,
}

fn contact_of(user: &RawUser) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("id".into(), user.id.to_string().into());
    let name =
        [user.first_name.as_deref(), user.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    if !name.is_empty() {
        c.insert("name".into(), name.into());
    }
    if let Some(u) = &user.username {
        c.insert("username".into(), u.clone().into());
    }
    if let Some(l) = &user.language_code {
        c.insert("language".into(), l.clone().into());
    }
    c
}

/// The media fields of a message Tern hands to flows (scalars only: each is bounded and
/// shallow whatever the sender puts in the update).
fn media_of(other: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let pick = |v: &Value, fields: &[&str]| -> Value {
        let mut m = Map::new();
        for f in fields {
            if let Some(x) = v.get(*f).filter(|x| x.is_string() || x.is_number() || x.is_boolean()) {
                m.insert((*f).to_string(), x.clone());
            }
        }
        Value::Object(m)
    };
    if let Some(largest) = other.get("photo").and_then(Value::as_array).and_then(|p| p.last()) {
        out.insert("photo".into(), pick(largest, &["file_id", "file_unique_id", "width", "height"]));
    }
    for (field, keys) in [
        ("document", &["file_id", "file_unique_id", "file_name", "mime_type", "file_size"][..]),
        ("voice", &["file_id", "file_unique_id", "duration", "mime_type"][..]),
        ("location", &["latitude", "longitude"][..]),
        ("contact", &["phone_number", "first_name", "last_name", "user_id"][..]),
    ] {
        if let Some(v) = other.get(field) {
            out.insert(field.into(), pick(v, keys));
        }
    }
    out
}

/// The conversation of `user` in `chat`: the chat itself for a private chat (one person), else
/// `{chat}:{user}`, so that two people in one group each have their own conversation (one's
/// answer never resumes the other's run). Replies go to the chat ([`chat_of`]).
fn conversation_of(chat: &RawChat, user: i64) -> String {
    match chat.kind.as_deref() {
        Some("group" | "supergroup") => format!("{}:{user}", chat.id),
        _ => chat.id.to_string(),
    }
}

/// The chat of a conversation ([`conversation_of`]), where its replies are sent.
fn chat_of(conversation: &str) -> &str {
    conversation.split(':').next().unwrap_or(conversation)
}

/// Reads an update (the webhook's body).
///
/// # Errors
/// [`UpdateError::Malformed`]: not JSON, or without the fields every update and message has.
pub fn parse_update(body: &[u8]) -> Result<Update, UpdateError> {
    let raw: RawUpdate = serde_json::from_slice(body).map_err(|e| UpdateError::Malformed(without_values(&e)))?;
    let update_id = raw.update_id.to_string();
    if let Some(q) = raw.callback_query {
        let Some(chat) = q.message.as_ref().map(|m| &m.chat) else {
            return Ok(Update::Ignored { update_type: "callback_query without a message".into() });
        };
        let mut telegram = Map::new();
        telegram.insert("update_type".into(), "callback_query".into());
        if let Some(m) = &q.message {
            telegram.insert("message_id".into(), m.message_id.into());
        }
        telegram.insert("chat_type".into(), chat.kind.clone().unwrap_or_default().into());
        return Ok(Update::Message(Box::new(UpdateMessage {
            chat_id: conversation_of(chat, q.from.id),
            update_id,
            text: q.data.unwrap_or_default(),
            contact: contact_of(&q.from),
            metadata: Map::from_iter([("telegram".to_string(), Value::Object(telegram))]),
            callback_query_id: Some(q.id),
        })));
    }
    let Some(message) = raw.message else {
        let update_type = raw.other.keys().next().cloned().unwrap_or_else(|| "empty".into());
        return Ok(Update::Ignored { update_type });
    };
    let Some(from) = message.from.as_ref().filter(|f| !f.is_bot) else {
        return Ok(Update::Ignored { update_type: "message without a person as sender".into() });
    };
    let mut telegram = media_of(&message.other);
    telegram.insert("update_type".into(), "message".into());
    telegram.insert("message_id".into(), message.message_id.into());
    telegram.insert("chat_type".into(), message.chat.kind.clone().unwrap_or_default().into());
    if let Some(date) = message.date {
        telegram.insert("date".into(), date.into());
    }
    Ok(Update::Message(Box::new(UpdateMessage {
        chat_id: conversation_of(&message.chat, from.id),
        update_id,
        text: message.text.or(message.caption).unwrap_or_default(),
        contact: contact_of(from),
        metadata: Map::from_iter([("telegram".to_string(), Value::Object(telegram))]),
        callback_query_id: None,
    })))
}

/// The webhook's response to an update: empty, or an `answerCallbackQuery` made in the
/// response (the Bot API's "reply to the webhook" form) so that the pressed button stops
/// spinning without another call.
pub fn webhook_response(update: &Update) -> Value {
    match update {
        Update::Message(m) if m.callback_query_id.is_some() => {
            json!({"method": "answerCallbackQuery", "callback_query_id": m.callback_query_id})
        }
        _ => json!({}),
    }
}

/// `text` cut into parts of at most [`MAX_MESSAGE_UNITS`] UTF-16 units, in order: at the last
/// line break in the second half of a part, else the last space there, else where the limit
/// falls (never inside a character); an empty text is no part.
pub fn parts(text: &str) -> Vec<String> {
    parts_of(text, MAX_MESSAGE_UNITS, char::len_utf16)
}

/// Longest `callback_data` of an inline keyboard button, in bytes (the Bot API's 64).
pub const MAX_CALLBACK_DATA_BYTES: usize = 64;

/// The `sendMessage` request of one part of a reply to `conversation` (sent to its chat), with
/// an inline keyboard when `keyboard` is given. The API base is an http(s) URL with a host (checked when the channel is saved), so
/// the method's path always goes on it.
pub fn send_message(
    telegram: &Telegram,
    conversation: &str,
    text: &str,
    keyboard: Option<&[Choice]>,
    timeout: Duration,
) -> PreparedRequest {
    let mut url = telegram.api_base.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/bot{}/sendMessage", telegram.bot_token.expose_secret()));
    let mut body = json!({"chat_id": chat_of(conversation), "text": text});
    if let Some(choices) = keyboard {
        // One button per row: titles stay readable on a phone.
        let rows: Vec<Value> = choices.iter().map(|c| json!([{"text": c.title, "callback_data": c.payload}])).collect();
        body["reply_markup"] = json!({"inline_keyboard": rows});
    }
    PreparedRequest {
        method: Method::Post,
        url,
        headers: HeaderMap::new(),
        body: Some(RequestBody::Json(body)),
        timeout,
    }
}

/// The `sendMessage` calls of one reply: its parts in order, the choices as an inline keyboard
/// on the last part when every payload fits in `callback_data` ([`MAX_CALLBACK_DATA_BYTES`]),
/// else as numbered text.
pub fn send_reply(
    telegram: &Telegram,
    chat_id: &str,
    text: &str,
    choices: &[Choice],
    timeout: Duration,
) -> Vec<PreparedRequest> {
    let as_buttons = !choices.is_empty() && choices.iter().all(|c| c.payload.len() <= MAX_CALLBACK_DATA_BYTES);
    let text: std::borrow::Cow<'_, str> =
        if as_buttons || choices.is_empty() { text.into() } else { Choice::numbered(text, choices).into() };
    let mut parts = parts(&text);
    if parts.is_empty() && as_buttons {
        // A keyboard needs a message to hang on.
        parts.push("\u{2063}".to_string());
    }
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| send_message(telegram, chat_id, part, (as_buttons && i == last).then_some(choices), timeout))
        .collect()
}

/// Reads the Bot API's answer: `{"ok": true, …}` is sent; 429 and 5xx are retried; other
/// refusals (400 chat not found, 403 blocked, 401 bad token) are final. The `description` is
/// Telegram's own words and holds no token.
pub fn outcome(status: u16, body: &[u8]) -> Outcome {
    #[derive(Deserialize, Default)]
    struct Answer {
        #[serde(default)]
        ok: bool,
        description: Option<String>,
        parameters: Option<Parameters>,
    }
    #[derive(Deserialize)]
    struct Parameters {
        retry_after: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    if (200..300).contains(&status) && answer.ok {
        return Outcome::Sent;
    }
    let words = answer.description.map(|d| crate::secrets::known::mask(&d).chars().take(200).collect::<String>());
    let why = format!("the Telegram API answered {status}{}", words.map(|d| format!(": {d}")).unwrap_or_default());
    if status == 429 || status >= 500 || (200..300).contains(&status) {
        let after = answer.parameters.and_then(|p| p.retry_after).map(Duration::from_secs);
        Outcome::Retry { why, after }
    } else {
        Outcome::Refused { why }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn telegram() -> Telegram {
        Telegram {
            secret_token: SecretString::from("s3cr3t-token_1".to_string()),
            bot_token: SecretString::from("123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345678".to_string()),
            api_base: url::Url::parse("http://127.0.0.1:9/tg").unwrap(),
        }
    }

    #[test]
    fn the_secret_token_is_checked() {
        let t = telegram();
        let mut h = http::HeaderMap::new();
        assert!(!verify(&t, &h));
        h.insert(SECRET_TOKEN_HEADER, "wrong".parse().unwrap());
        assert!(!verify(&t, &h));
        h.insert(SECRET_TOKEN_HEADER, "s3cr3t-token_1".parse().unwrap());
        assert!(verify(&t, &h));
        assert!(check_secret_token("ok_token-1").is_ok());
        assert!(check_secret_token("").is_err() && check_secret_token("has space").is_err());
        assert!(check_secret_token(&"a".repeat(257)).is_err());
        assert!(check_bot_token("123456:ABCdefGHIjklMNOpqrSTUvwxYZ0").is_ok());
        assert!(check_bot_token("abc:def").is_err() && check_bot_token("123456").is_err());
        assert_eq!(format!("{t:?}").matches("[redacted]").count(), 2);
        assert!(!format!("{t:?}").contains("ABCdef"));
    }

    #[test]
    fn a_text_message_becomes_a_message_of_its_chat() {
        // The shape of the Bot API's Update and Message objects (core.telegram.org/bots/api).
        let body = br#"{"update_id": 10000, "message": {"date": 1441645532, "chat": {"last_name": "Test Lastname",
            "id": 1111111, "type": "private", "first_name": "Test Firstname", "username": "Testusername"},
            "message_id": 1365, "from": {"last_name": "Test Lastname", "id": 1111111, "is_bot": false,
            "first_name": "Test Firstname", "username": "Testusername", "language_code": "en"}, "text": "/start"}}"#;
        let Update::Message(m) = parse_update(body).unwrap() else { panic!() };
        assert_eq!((m.chat_id.as_str(), m.update_id.as_str(), m.text.as_str()), ("1111111", "10000", "/start"));
        assert_eq!(
            Value::Object(m.contact.clone()),
            json!({"id": "1111111", "name": "Test Firstname Test Lastname", "username": "Testusername", "language": "en"})
        );
        assert_eq!(m.metadata["telegram"]["message_id"], 1365);
        assert_eq!(m.metadata["telegram"]["chat_type"], "private");
        assert_eq!(m.callback_query_id, None);
        assert_eq!(webhook_response(&Update::Message(m)), json!({}));
    }

    #[test]
    fn a_button_press_is_its_data_and_is_answered_in_the_response() {
        let body = br#"{"update_id": 10001, "callback_query": {"id": "4382bfdwdsb323b2d9", "from": {"id": 1111111,
            "is_bot": false, "first_name": "Test"}, "data": "contact-42", "chat_instance": "-1",
            "message": {"message_id": 1366, "date": 1441645532, "chat": {"id": 1111111, "type": "private"}}}}"#;
        let update = parse_update(body).unwrap();
        let Update::Message(m) = &update else { panic!() };
        assert_eq!((m.chat_id.as_str(), m.text.as_str()), ("1111111", "contact-42"));
        assert_eq!(
            webhook_response(&update),
            json!({"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"})
        );
    }

    #[test]
    fn media_are_metadata_and_other_updates_are_ignored() {
        let body = br#"{"update_id": 3, "message": {"message_id": 7, "chat": {"id": -5, "type": "group"},
            "from": {"id": 9, "is_bot": false, "first_name": "A"}, "caption": "look",
            "photo": [{"file_id": "small", "width": 90, "height": 90, "nested": {"x": [1]}}, {"file_id": "big", "width": 800, "height": 600}],
            "location": {"latitude": 50.8, "longitude": 4.3}}}"#;
        let Update::Message(m) = parse_update(body).unwrap() else { panic!() };
        assert_eq!(m.text, "look");
        assert_eq!(m.metadata["telegram"]["photo"], json!({"file_id": "big", "width": 800, "height": 600}));
        assert_eq!(m.metadata["telegram"]["location"], json!({"latitude": 50.8, "longitude": 4.3}));
        let edited = br#"{"update_id": 4, "edited_message": {"message_id": 7, "chat": {"id": 1}, "text": "x"}}"#;
        assert_eq!(parse_update(edited).unwrap(), Update::Ignored { update_type: "edited_message".into() });
        let from_bot =
            br#"{"update_id": 5, "message": {"message_id": 8, "chat": {"id": 1}, "from": {"id": 2, "is_bot": true}}}"#;
        assert!(matches!(parse_update(from_bot).unwrap(), Update::Ignored { .. }));
        let bad = parse_update(br#"{"update_id": "secret-looking-value"}"#).unwrap_err().to_string();
        assert!(!bad.contains("secret-looking-value"), "{bad}");
        assert!(parse_update(b"not json").is_err());
    }

    #[test]
    fn long_replies_are_cut_into_parts_at_spaces() {
        assert!(parts("").is_empty());
        assert_eq!(parts("hi"), ["hi"]);
        let long = format!("{} {}", "a".repeat(4000), "b".repeat(200));
        let cut = parts(&long);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0], format!("{} ", "a".repeat(4000)));
        assert_eq!(cut.concat(), long);
        let solid = "é".repeat(5000);
        let cut = parts(&solid);
        assert_eq!(cut[0].chars().count(), MAX_MESSAGE_UNITS);
        assert_eq!(cut.concat(), solid);
        // A line break in the second half wins over a later space.
        let lines = format!("{}\n{} {}", "a".repeat(3000), "b".repeat(900), "c".repeat(900));
        assert_eq!(parts(&lines)[0], format!("{}\n", "a".repeat(3000)));
        // Emoji are two UTF-16 units each: 3,000 of them are two messages.
        let emoji = "😀".repeat(3000);
        let cut = parts(&emoji);
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|p| p.encode_utf16().count() <= MAX_MESSAGE_UNITS), "within the limit");
        assert_eq!(cut.concat(), emoji);
    }

    #[test]
    fn choices_are_an_inline_keyboard_on_the_last_part_or_numbered_text() {
        let choices = [Choice::new("Ann Smith", "c-1"), Choice::new("Bob Jones", "c-2")];
        let long = format!("{} {}", "a".repeat(4000), "b".repeat(200));
        let reqs = send_reply(&telegram(), "42", &long, &choices, Duration::from_secs(5));
        assert_eq!(reqs.len(), 2);
        let body = |r: &PreparedRequest| match &r.body {
            Some(RequestBody::Json(v)) => v.clone(),
            _ => panic!("a JSON body"),
        };
        assert!(body(&reqs[0]).get("reply_markup").is_none());
        assert_eq!(
            body(&reqs[1])["reply_markup"],
            json!({"inline_keyboard": [[{"text": "Ann Smith", "callback_data": "c-1"}], [{"text": "Bob Jones", "callback_data": "c-2"}]]})
        );
        // A payload over 64 bytes cannot be callback data: numbered text.
        let wide = [Choice::new("One", &"x".repeat(65)), Choice::new("Two", "2")];
        let reqs = send_reply(&telegram(), "42", "Pick", &wide, Duration::from_secs(5));
        assert_eq!(body(&reqs[0])["text"], "Pick\n\n1. One\n2. Two");
        assert!(body(&reqs[0]).get("reply_markup").is_none());
    }

    #[test]
    fn each_person_in_a_group_has_a_conversation_and_replies_go_to_the_group() {
        let group = br#"{"update_id": 7, "message": {"message_id": 3, "chat": {"id": -1001234567890, "type": "supergroup"}, "from": {"id": 42, "is_bot": false, "first_name": "Ann"}, "text": "hi"}}"#;
        let Update::Message(m) = parse_update(group).unwrap() else { panic!("a message") };
        assert_eq!(m.chat_id, "-1001234567890:42");
        let req = send_message(&telegram(), &m.chat_id, "hello", None, Duration::from_secs(5));
        let Some(RequestBody::Json(body)) = &req.body else { panic!("JSON") };
        assert_eq!(body["chat_id"], "-1001234567890");
    }

    #[test]
    fn send_message_puts_the_token_in_the_path_and_answers_are_classified() {
        let req = send_message(&telegram(), "42", "hello", None, Duration::from_secs(5));
        assert_eq!(req.url.path(), "/tg/bot123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345678/sendMessage");
        assert_eq!(outcome(200, br#"{"ok": true, "result": {}}"#), Outcome::Sent);
        assert_eq!(
            outcome(429, br#"{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}}"#),
            Outcome::Retry { why: "the Telegram API answered 429: Too Many Requests: retry after 3".into(), after: Some(Duration::from_secs(3)) }
        );
        assert!(matches!(
            outcome(403, br#"{"ok": false, "description": "Forbidden: bot was blocked by the user"}"#),
            Outcome::Refused { .. }
        ));
        assert!(matches!(outcome(502, b"<html>"), Outcome::Retry { after: None, .. }));
    }
}
