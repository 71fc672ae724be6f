//! The WhatsApp Business Platform's Cloud API (Meta) as a channel kind.
//!
//! - **Verification handshake.** When the callback URL is set in the app dashboard, Meta sends
//!   `GET …/webhook?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`; the answer is the
//!   challenge as plain text when the verify token is the channel's ([`handshake`]).
//! - **Inbound.** Each notification is a `POST` of a `whatsapp_business_account` object signed
//!   with the app secret: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`,
//!   checked in constant time on the exact bytes before anything is parsed ([`verify`]). One
//!   notification may hold several messages (`entry[].changes[].value.messages[]`): text,
//!   `interactive` button and list replies (their `id` is the text), template `button` payloads,
//!   and media, location and contacts as metadata (with a caption as the text). The `wamid` is
//!   the message id: Meta sends a notification again until it gets a 200, and the id dedupes it.
//!   A notification for another phone number of the same app is ignored. `statuses[]` (sent,
//!   delivered, read, failed) are read for the log and the metrics ([`Status`]).
//! - **Outbound.** Each reply is `POST {api_base}/{phone-number-id}/messages`: a text body of at
//!   most [`MAX_TEXT_CHARS`] characters (a longer reply is several messages), or an interactive
//!   message with reply buttons or a list for a reply with choices ([`shape`]), authenticated by
//!   the channel's integration (a system user's token, static or OAuth) with the same token
//!   injection and origin rules as any flow step: the token goes only to the integration's API
//!   origins, so the integration must list the API base's origin.
//!
//! The API base carries the Graph API version (`https://graph.facebook.com/v23.0`).
//!
//! Sources: developers.facebook.com/docs/whatsapp/cloud-api/guides/set-up-webhooks,
//! …/webhooks/components, …/reference/messages, …/support/error-codes;
//! developers.facebook.com/docs/graph-api/webhooks/getting-started (the handshake and
//! `X-Hub-Signature-256`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{Outcome, PlatformMessage, Received, Status, UpdateError, parts_of, without_values};
use crate::http::{Method, PreparedRequest, RequestBody};
use crate::ids::IntegrationName;
use crate::step::Choice;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The Graph API's base URL, with the version the reply calls use.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com/v23.0";

/// Longest text body of one message, in characters (the Cloud API's 4,096).
pub const MAX_TEXT_CHARS: usize = 4096;

/// What a WhatsApp channel needs.
#[derive(Clone)]
pub struct WhatsApp {
    /// The Meta app's secret: signs every notification.
    pub app_secret: SecretString,
    /// The verify token typed into the app dashboard with the callback URL.
    pub verify_token: SecretString,
    /// The business phone number's id (digits): replies are sent from it.
    pub phone_number_id: String,
    /// The integration whose token authenticates the replies.
    pub integration: IntegrationName,
    /// The Graph API's base URL with its version ([`DEFAULT_API_BASE`], or a local server in
    /// tests).
    pub api_base: url::Url,
}

impl std::fmt::Debug for WhatsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsApp")
            .field("app_secret", &"[redacted]")
            .field("verify_token", &"[redacted]")
            .field("phone_number_id", &self.phone_number_id)
            .field("integration", &self.integration.as_str())
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

/// Whether `id` can be a phone number id: 1 to 32 digits (the id the app dashboard's
/// "API Setup" shows, not the phone number).
///
/// # Errors
/// The rule, in words.
pub fn check_phone_number_id(id: &str) -> Result<(), &'static str> {
    if (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(
            "a WhatsApp phone number id is the number's id of digits shown under WhatsApp > API Setup in the Meta app dashboard (not the phone number itself)",
        )
    }
}

/// Whether `secret` can be an app secret: 16 to 128 printable characters without spaces
/// (Meta's are 32 hexadecimal digits).
///
/// # Errors
/// The rule, in words.
pub fn check_app_secret(secret: &str) -> Result<(), &'static str> {
    if (16..=128).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(
            "a Meta app secret is the 32 hexadecimal digits under App settings > Basic > App secret in the app dashboard",
        )
    }
}

/// Whether `token` can be a verify token: 16 to 256 printable characters without spaces
/// (it is typed into the dashboard and sent back in a query string).
///
/// # Errors
/// The rule, in words.
pub fn check_verify_token(token: &str) -> Result<(), &'static str> {
    if (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(
            "a verify token is 16 to 256 printable characters without spaces, the same typed into the app dashboard with the callback URL; make one with `openssl rand -hex 32`",
        )
    }
}

/// Whether the headers carry a well-formed signature (`sha256=` and 64 hexadecimal digits):
/// checked before the body is read; [`verify`] checks it on the body.
pub fn has_signature(headers: &http::HeaderMap) -> bool {
    signature_of(headers).is_some()
}

fn signature_of(headers: &http::HeaderMap) -> Option<Vec<u8>> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let hex_digits = value.to_str().ok()?.trim().strip_prefix("sha256=")?;
    if hex_digits.len() != 64 {
        return None;
    }
    hex::decode(hex_digits).ok()
}

/// Whether `body` is signed with the channel's app secret (`X-Hub-Signature-256`: the hex
/// HMAC-SHA256 of the exact body bytes), compared in constant time.
pub fn verify(whatsapp: &WhatsApp, headers: &http::HeaderMap, body: &[u8]) -> bool {
    let Some(given) = signature_of(headers) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(whatsapp.app_secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Why a verification request is refused (a 403), for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// `hub.verify_token` is missing, given twice, or not the channel's.
    WrongVerifyToken,
    /// `hub.mode` is not `subscribe`.
    NotSubscribe,
    /// `hub.challenge` is missing, given twice, or not 1 to 256 printable characters.
    BadChallenge,
}

impl HandshakeRefusal {
    /// A stable, kebab-case name.
    pub fn reason(self) -> &'static str {
        match self {
            Self::WrongVerifyToken => "wrong-verify-token",
            Self::NotSubscribe => "not-subscribe",
            Self::BadChallenge => "bad-challenge",
        }
    }
}

/// The answer to the verification request: the challenge when `hub.mode` is `subscribe`,
/// `hub.verify_token` is the channel's (compared in constant time) and `hub.challenge` is 1 to
/// 256 printable characters, each given once. `query` is the request's raw query string.
///
/// # Errors
/// Why it is refused (a 403).
pub fn handshake(whatsapp: &WhatsApp, query: &str) -> Result<String, HandshakeRefusal> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let once = |name: &str| {
        let mut values = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    let token_ok = once("hub.verify_token")
        .is_some_and(|t| crate::channel_auth::is_one_of(t, std::slice::from_ref(&whatsapp.verify_token)));
    if !token_ok {
        return Err(HandshakeRefusal::WrongVerifyToken);
    }
    if once("hub.mode") != Some("subscribe") {
        return Err(HandshakeRefusal::NotSubscribe);
    }
    once("hub.challenge")
        .filter(|c| (1..=256).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .ok_or(HandshakeRefusal::BadChallenge)
}

#[derive(Deserialize)]
struct Notification {
    object: Option<String>,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: Option<String>,
    value: Option<ChangeValue>,
}

#[derive(Deserialize)]
struct ChangeValue {
    metadata: Option<NumberMetadata>,
    #[serde(default)]
    contacts: Vec<RawContact>,
    #[serde(default)]
    messages: Vec<RawMessage>,
    #[serde(default)]
    statuses: Vec<RawStatus>,
}

#[derive(Deserialize)]
struct NumberMetadata {
    phone_number_id: Option<String>,
    display_phone_number: Option<String>,
}

#[derive(Deserialize)]
struct RawContact {
    wa_id: Option<String>,
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    from: String,
    id: String,
    timestamp: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawStatus {
    id: String,
    status: String,
    recipient_id: Option<String>,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<i64>,
    title: Option<String>,
}

/// The scalar fields of `v` named in `fields` (each bounded and shallow whatever the sender
/// puts in the notification).
fn pick(v: &Value, fields: &[&str]) -> Value {
    let mut m = Map::new();
    for f in fields {
        if let Some(x) = v.get(*f).filter(|x| x.is_string() || x.is_number() || x.is_boolean()) {
            m.insert((*f).to_string(), x.clone());
        }
    }
    Value::Object(m)
}

/// The text of a message and what the flow may read of it (`message.metadata.whatsapp`).
fn read_message(m: &RawMessage) -> (String, Map<String, Value>) {
    let kind = m.kind.clone().unwrap_or_else(|| "unknown".into());
    let mut meta = Map::new();
    let text_of = |field: &str, key: &str| m.other.get(field).and_then(|v| v.get(key)).and_then(Value::as_str);
    let text = match kind.as_str() {
        "text" => text_of("text", "body").unwrap_or_default().to_string(),
        "interactive" => {
            let reply = m.other.get("interactive").cloned().unwrap_or_default();
            let (which, chosen) = match reply.get("type").and_then(Value::as_str) {
                Some("list_reply") => ("list_reply", reply.get("list_reply").cloned().unwrap_or_default()),
                _ => ("button_reply", reply.get("button_reply").cloned().unwrap_or_default()),
            };
            meta.insert(which.into(), pick(&chosen, &["id", "title", "description"]));
            chosen.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
        }
        "button" => {
            let button = m.other.get("button").cloned().unwrap_or_default();
            meta.insert("button".into(), pick(&button, &["text", "payload"]));
            button.get("payload").or_else(|| button.get("text")).and_then(Value::as_str).unwrap_or_default().to_string()
        }
        media @ ("image" | "video" | "audio" | "document" | "sticker") => {
            let v = m.other.get(media).cloned().unwrap_or_default();
            meta.insert(media.into(), pick(&v, &["id", "mime_type", "sha256", "caption", "filename", "voice"]));
            v.get("caption").and_then(Value::as_str).unwrap_or_default().to_string()
        }
        "location" => {
            let v = m.other.get("location").cloned().unwrap_or_default();
            meta.insert("location".into(), pick(&v, &["latitude", "longitude", "name", "address"]));
            String::new()
        }
        "contacts" => {
            let people = m.other.get("contacts").and_then(Value::as_array).cloned().unwrap_or_default();
            let shared: Vec<Value> = people
                .iter()
                .take(10)
                .map(|c| {
                    let name = c.get("name").map(|n| pick(n, &["formatted_name"])).unwrap_or_default();
                    let phone = c
                        .get("phones")
                        .and_then(Value::as_array)
                        .and_then(|p| p.first())
                        .map(|p| pick(p, &["phone", "wa_id"]))
                        .unwrap_or_default();
                    json!({"name": name.get("formatted_name"), "phone": phone.get("phone"), "wa_id": phone.get("wa_id")})
                })
                .collect();
            meta.insert("contacts".into(), Value::Array(shared));
            String::new()
        }
        _ => String::new(),
    };
    if let Some(context) = m.other.get("context") {
        meta.insert("context".into(), pick(context, &["id", "from"]));
    }
    meta.insert("type".into(), kind.into());
    meta.insert("message_id".into(), m.id.clone().into());
    if let Some(t) = &m.timestamp {
        meta.insert("timestamp".into(), t.clone().into());
    }
    (text, meta)
}

/// Reads a notification (the webhook's body, whose signature was checked) for the channel's
/// phone number: its messages, its statuses, and what it holds that Tern does not handle.
///
/// # Errors
/// [`UpdateError::Malformed`]: not JSON, not a `whatsapp_business_account` notification, or a
/// message without its sender or id.
pub fn parse(whatsapp: &WhatsApp, body: &[u8]) -> Result<Received, UpdateError> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| UpdateError::Malformed(without_values(&e)))?;
    if n.object.as_deref() != Some("whatsapp_business_account") {
        return Err(UpdateError::Malformed("the object is not `whatsapp_business_account`".into()));
    }
    let mut received = Received::default();
    for change in n.entry.into_iter().flat_map(|e| e.changes) {
        let Some(value) = change.value.filter(|_| change.field.as_deref() == Some("messages")) else {
            received.ignored.push(format!("change of field {}", change.field.as_deref().unwrap_or("(none)")));
            continue;
        };
        let number = value.metadata.as_ref().and_then(|m| m.phone_number_id.as_deref());
        if number != Some(whatsapp.phone_number_id.as_str()) {
            received.ignored.push("a notification for another phone number of the app (or none)".into());
            continue;
        }
        let display = value.metadata.as_ref().and_then(|m| m.display_phone_number.clone());
        for m in &value.messages {
            let (text, mut meta) = read_message(m);
            if let Some(d) = &display {
                meta.insert("to".into(), d.clone().into());
            }
            let mut contact = Map::new();
            contact.insert("id".into(), m.from.clone().into());
            contact.insert("phone".into(), m.from.clone().into());
            let profile = value.contacts.iter().find(|c| c.wa_id.as_deref() == Some(m.from.as_str()));
            if let Some(name) = profile.and_then(|c| c.profile.as_ref()).and_then(|p| p.name.clone()) {
                contact.insert("name".into(), name.into());
            }
            received.messages.push(PlatformMessage {
                chat_id: m.from.clone(),
                message_id: m.id.clone(),
                text,
                contact,
                metadata: Map::from_iter([("whatsapp".to_string(), Value::Object(meta))]),
            });
        }
        for s in value.statuses {
            let error = s.errors.first().map(|e| {
                format!("{} {}", e.code.map(|c| c.to_string()).unwrap_or_default(), e.title.clone().unwrap_or_default())
                    .trim()
                    .chars()
                    .take(200)
                    .collect()
            });
            received.statuses.push(Status {
                message_id: s.id.chars().take(200).collect(),
                status: s.status.chars().take(32).collect(),
                recipient: s.recipient_id.unwrap_or_default().chars().take(64).collect(),
                error,
                run_id: s.biz_opaque_callback_data.filter(|r| r.len() <= MAX_CALLBACK_DATA_BYTES),
            });
        }
    }
    Ok(received)
}

/// Most reply buttons of an interactive message.
pub const MAX_BUTTONS: usize = 3;
/// Longest reply button title, in characters.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
/// Most rows of an interactive list (all sections together).
pub const MAX_LIST_ROWS: usize = 10;
/// Longest list row title, in characters.
pub const MAX_ROW_TITLE_CHARS: usize = 24;
/// Longest body text of an interactive message, in characters.
pub const MAX_INTERACTIVE_BODY_CHARS: usize = 1024;
/// Longest id of a reply button, in characters.
pub const MAX_REPLY_ID_CHARS: usize = 256;
/// Longest id of a list row, in characters.
pub const MAX_ROW_ID_CHARS: usize = 200;
/// Longest `biz_opaque_callback_data` of a message, in bytes (the run id goes there).
pub const MAX_CALLBACK_DATA_BYTES: usize = 512;

/// How one reply's choices are shown on WhatsApp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Reply buttons: at most [`MAX_BUTTONS`], titles of at most [`MAX_BUTTON_TITLE_CHARS`].
    Buttons,
    /// A list: at most [`MAX_LIST_ROWS`] rows, titles of at most [`MAX_ROW_TITLE_CHARS`].
    List,
    /// Numbered text after the reply's text (the choices do not fit, or the text is longer than
    /// an interactive message's body).
    Numbered,
}

/// The shape `choices` take with a body of `text`.
pub fn shape(text: &str, choices: &[Choice]) -> Shape {
    let titles_within = |max: usize| choices.iter().all(|c| c.title.chars().count() <= max);
    let body_fits = (1..=MAX_INTERACTIVE_BODY_CHARS).contains(&text.trim().chars().count());
    let ids_fit = choices.iter().all(|c| c.payload.chars().count() <= MAX_REPLY_ID_CHARS);
    if !body_fits || !ids_fit || choices.is_empty() {
        Shape::Numbered
    } else if choices.len() <= MAX_BUTTONS && titles_within(MAX_BUTTON_TITLE_CHARS) {
        Shape::Buttons
    } else if choices.len() <= MAX_LIST_ROWS
        && titles_within(MAX_ROW_TITLE_CHARS)
        && choices.iter().all(|c| c.payload.chars().count() <= MAX_ROW_ID_CHARS)
    {
        Shape::List
    } else {
        Shape::Numbered
    }
}

/// The requests of one reply to `to` (the contact's `wa_id`): an interactive message with reply
/// buttons or a list when the choices fit ([`shape`]), else text messages of at most
/// [`MAX_TEXT_CHARS`] characters each (the choices numbered after the text). A pressed button
/// or row comes back with its id: the choice's payload. The API base is an http(s) URL with a
/// host (checked when the channel is saved).
pub fn send_reply(
    whatsapp: &WhatsApp,
    to: &str,
    text: &str,
    choices: &[Choice],
    run_id: Option<&str>,
    timeout: Duration,
) -> Vec<PreparedRequest> {
    let mut url = whatsapp.api_base.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/{}/messages", whatsapp.phone_number_id));
    let request = |body: Value| PreparedRequest {
        method: Method::Post,
        url: url.clone(),
        headers: HeaderMap::new(),
        body: Some(RequestBody::Json(body)),
        timeout,
    };
    let envelope = |kind: &str, content: Value| {
        let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind});
        body[kind] = content;
        // Echoed in the message's statuses: they go to the run's history.
        if let Some(run) = run_id.filter(|r| r.len() <= MAX_CALLBACK_DATA_BYTES) {
            body["biz_opaque_callback_data"] = run.into();
        }
        body
    };
    let action = match shape(text, choices) {
        Shape::Buttons => {
            json!({"type": "button", "action": {"buttons": choices.iter().map(|c| json!({"type": "reply", "reply": {"id": c.payload, "title": c.title}})).collect::<Vec<_>>()}})
        }
        Shape::List => {
            json!({"type": "list", "action": {"button": "Choose", "sections": [{"rows": choices.iter().map(|c| json!({"id": c.payload, "title": c.title})).collect::<Vec<_>>()}]}})
        }
        Shape::Numbered => {
            return parts_of(&Choice::numbered(text, choices), MAX_TEXT_CHARS, |_| 1)
                .into_iter()
                .map(|part| request(envelope("text", json!({"preview_url": false, "body": part}))))
                .collect();
        }
    };
    let mut interactive = action;
    interactive["body"] = json!({"text": text.trim()});
    vec![request(envelope("interactive", interactive))]
}

/// Error codes that mean "not now": rate limits and throttling (4, 80007, 130429, 131048,
/// 131056), a temporary service error (131000 after a 5xx, 133004 server unavailable), and the
/// token (190: refreshed or authorized again, then sent).
const RETRIED_CODES: &[i64] = &[4, 190, 80007, 130429, 131048, 131056, 133004];

/// Reads the Cloud API's answer: a 2xx with `messages[0].id` is sent; 429, 5xx and the codes of
/// [`RETRIED_CODES`] are retried; any other refusal (131047 more than 24 hours since the
/// contact last wrote, 131026 undeliverable, 100 invalid parameter) is final. Meta's `message`
/// holds no token (masked anyway).
pub fn outcome(status: u16, body: &[u8]) -> Outcome {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    let sent = answer.pointer("/messages/0/id").and_then(Value::as_str).is_some();
    if (200..300).contains(&status) && sent {
        return Outcome::Sent;
    }
    let error = answer.get("error");
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    let words = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| crate::secrets::known::mask(m).chars().take(200).collect::<String>());
    let why = format!(
        "the WhatsApp Cloud API answered {status}{}{}",
        code.map(|c| format!(" (code {c})")).unwrap_or_default(),
        words.map(|d| format!(": {d}")).unwrap_or_default()
    );
    if status == 429
        || status >= 500
        || (200..300).contains(&status)
        || code.is_some_and(|c| RETRIED_CODES.contains(&c))
    {
        Outcome::Retry { why, after: None }
    } else {
        Outcome::Refused { why }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn whatsapp() -> WhatsApp {
        WhatsApp {
            app_secret: SecretString::from("0123456789abcdef0123456789abcdef".to_string()),
            verify_token: SecretString::from("verify-token-0123456789".to_string()),
            phone_number_id: "123456123".into(),
            integration: IntegrationName::new("meta").unwrap(),
            api_base: url::Url::parse("http://127.0.0.1:9/v23.0").unwrap(),
        }
    }

    fn signed(body: &[u8], secret: &str) -> http::HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let mut h = http::HeaderMap::new();
        h.insert(SIGNATURE_HEADER, format!("sha256={}", hex::encode(mac.finalize().into_bytes())).parse().unwrap());
        h
    }

    #[test]
    fn the_signature_is_checked_on_the_exact_body() {
        let w = whatsapp();
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let headers = signed(body, "0123456789abcdef0123456789abcdef");
        assert!(has_signature(&headers) && verify(&w, &headers, body));
        assert!(!verify(&w, &headers, br#"{"object":"whatsapp_business_account","entry":[] }"#));
        assert!(!verify(&w, &signed(body, "another-secret-0123456789"), body));
        let mut bare = http::HeaderMap::new();
        assert!(!has_signature(&bare));
        bare.insert(SIGNATURE_HEADER, "sha1=abc".parse().unwrap());
        assert!(!has_signature(&bare) && !verify(&w, &bare, body));
        // Twice is refused, whatever the values.
        let mut twice = headers.clone();
        twice.append(SIGNATURE_HEADER, headers.get(SIGNATURE_HEADER).unwrap().clone());
        assert!(!verify(&w, &twice, body));
        assert!(!format!("{w:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_handshake_answers_the_challenge_for_the_verify_token_only() {
        let w = whatsapp();
        let ok = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-token-0123456789";
        assert_eq!(handshake(&w, ok).as_deref(), Ok("1158201444"));
        let refused = |q: &str| handshake(&w, q).unwrap_err();
        assert_eq!(
            refused("hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong"),
            HandshakeRefusal::WrongVerifyToken
        );
        assert_eq!(
            refused(
                "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong&hub.verify_token=verify-token-0123456789"
            ),
            HandshakeRefusal::WrongVerifyToken
        );
        assert_eq!(
            refused("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-token-0123456789"),
            HandshakeRefusal::NotSubscribe
        );
        assert_eq!(
            refused("hub.mode=subscribe&hub.verify_token=verify-token-0123456789"),
            HandshakeRefusal::BadChallenge
        );
        assert_eq!(
            refused("hub.mode=subscribe&hub.challenge=%3Cscript%3E%20x&hub.verify_token=verify-token-0123456789"),
            HandshakeRefusal::BadChallenge
        );
    }

    #[test]
    fn documented_notifications_become_messages_and_statuses() {
        // The examples of developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples.
        let text = br#"{"object": "whatsapp_business_account", "entry": [{"id": "WHATSAPP_BUSINESS_ACCOUNT_ID", "changes": [{"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "16505551111", "phone_number_id": "123456123"}, "contacts": [{"profile": {"name": "test user name"}, "wa_id": "16315551181"}], "messages": [{"from": "16315551181", "id": "ABGGFlA5Fpa", "timestamp": "1504902988", "type": "text", "text": {"body": "this is a text message"}}]}, "field": "messages"}]}]}"#;
        let r = parse(&whatsapp(), text).unwrap();
        assert!(r.statuses.is_empty() && r.ignored.is_empty());
        let m = &r.messages[0];
        assert_eq!(
            (m.chat_id.as_str(), m.message_id.as_str(), m.text.as_str()),
            ("16315551181", "ABGGFlA5Fpa", "this is a text message")
        );
        assert_eq!(
            Value::Object(m.contact.clone()),
            json!({"id": "16315551181", "phone": "16315551181", "name": "test user name"})
        );
        assert_eq!(m.metadata["whatsapp"]["type"], "text");

        let button = br#"{"object": "whatsapp_business_account", "entry": [{"id": "WHATSAPP_BUSINESS_ACCOUNT_ID", "changes": [{"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "PHONE_NUMBER", "phone_number_id": "123456123"}, "contacts": [{"profile": {"name": "NAME"}, "wa_id": "PHONE_NUMBER"}], "messages": [{"from": "PHONE_NUMBER", "id": "wamid.ID", "timestamp": "TIMESTAMP", "interactive": {"button_reply": {"id": "unique-button-identifier-here", "title": "button-text"}, "type": "button_reply"}, "type": "interactive"}]}, "field": "messages"}]}]}"#;
        let r = parse(&whatsapp(), button).unwrap();
        assert_eq!(r.messages[0].text, "unique-button-identifier-here");
        assert_eq!(r.messages[0].metadata["whatsapp"]["button_reply"]["title"], "button-text");

        let list = br#"{"object": "whatsapp_business_account", "entry": [{"id": "X", "changes": [{"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "P", "phone_number_id": "123456123"}, "contacts": [{"profile": {"name": "NAME"}, "wa_id": "P"}], "messages": [{"from": "P", "id": "wamid.L", "timestamp": "T", "interactive": {"list_reply": {"id": "list_reply_id", "title": "list_reply_title", "description": "list_reply_description"}, "type": "list_reply"}, "type": "interactive"}]}, "field": "messages"}]}]}"#;
        assert_eq!(parse(&whatsapp(), list).unwrap().messages[0].text, "list_reply_id");

        let image = br#"{"object": "whatsapp_business_account", "entry": [{"id": "X", "changes": [{"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "P", "phone_number_id": "123456123"}, "contacts": [{"profile": {"name": "NAME"}, "wa_id": "P"}], "messages": [{"from": "P", "id": "wamid.I", "timestamp": "T", "type": "image", "image": {"caption": "CAPTION", "mime_type": "image/jpeg", "sha256": "IMAGE_HASH", "id": "ID"}}]}, "field": "messages"}]}]}"#;
        let m = &parse(&whatsapp(), image).unwrap().messages[0];
        assert_eq!(m.text, "CAPTION");
        assert_eq!(
            m.metadata["whatsapp"]["image"],
            json!({"id": "ID", "mime_type": "image/jpeg", "sha256": "IMAGE_HASH", "caption": "CAPTION"})
        );

        let status = br#"{"object": "whatsapp_business_account", "entry": [{"id": "X", "changes": [{"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "P", "phone_number_id": "123456123"}, "statuses": [{"id": "wamid.S", "recipient_id": "P", "status": "failed", "timestamp": "T", "biz_opaque_callback_data": "run-7", "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}, "field": "messages"}]}]}"#;
        let r = parse(&whatsapp(), status).unwrap();
        assert!(r.messages.is_empty());
        assert_eq!(r.statuses[0].status, "failed");
        assert_eq!(r.statuses[0].error.as_deref(), Some("131047 Re-engagement message"));
        assert_eq!(r.statuses[0].run_id.as_deref(), Some("run-7"));

        let other_number = String::from_utf8_lossy(text).replace("123456123", "999");
        let r = parse(&whatsapp(), other_number.as_bytes()).unwrap();
        assert!(r.messages.is_empty() && r.ignored.len() == 1);
        assert!(parse(&whatsapp(), br#"{"object": "page", "entry": []}"#).is_err());
        assert!(parse(&whatsapp(), b"[1]").is_err());
        let bad = parse(&whatsapp(), br#"{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {"messages": [{"id": "secret-looking-value"}]}}]}]}"#).unwrap_err().to_string();
        assert!(!bad.contains("secret-looking-value"), "{bad}");
    }

    #[test]
    fn choices_are_buttons_a_list_or_numbered_text_within_whatsapps_limits() {
        let c = |n: usize, title: &str| {
            (1..=n).map(|i| Choice::new(&format!("{title} {i}"), &format!("p{i}"))).collect::<Vec<_>>()
        };
        assert_eq!(shape("Which one?", &c(3, "Contact")), Shape::Buttons);
        assert_eq!(shape("Which one?", &c(4, "Contact")), Shape::List);
        assert_eq!(shape("Which one?", &c(2, "A title of twenty-two")), Shape::List);
        assert_eq!(shape("Which one?", &c(2, "A title longer than any row")), Shape::Numbered);
        // Row ids are shorter than button ids.
        let long_ids: Vec<Choice> =
            (1..=5).map(|i| Choice::new(&format!("C{i}"), &format!("{i}{}", "x".repeat(210)))).collect();
        assert_eq!(shape("Which one?", &long_ids), Shape::Numbered);
        assert_eq!(shape("Which one?", &long_ids[..3]), Shape::Buttons);
        assert_eq!(shape(&"x".repeat(1025), &c(2, "A")), Shape::Numbered);
        assert_eq!(shape("", &c(2, "A")), Shape::Numbered);
        let reqs = send_reply(&whatsapp(), "1", "Which one?", &c(2, "Contact"), Some("run-1"), Duration::from_secs(5));
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(body["type"], "interactive");
        assert_eq!(body["interactive"]["type"], "button");
        assert_eq!(body["interactive"]["body"]["text"], "Which one?");
        assert_eq!(body["biz_opaque_callback_data"], "run-1", "echoed in the statuses");
        assert_eq!(
            body["interactive"]["action"]["buttons"][1],
            json!({"type": "reply", "reply": {"id": "p2", "title": "Contact 2"}})
        );
        let reqs = send_reply(&whatsapp(), "1", "Which one?", &c(5, "Contact"), None, Duration::from_secs(5));
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(body["interactive"]["action"]["sections"][0]["rows"][4], json!({"id": "p5", "title": "Contact 5"}));
        let reqs = send_reply(
            &whatsapp(),
            "1",
            "Which one?",
            &c(2, "A title longer than any row"),
            None,
            Duration::from_secs(5),
        );
        let Some(RequestBody::Json(body)) = &reqs[0].body else { panic!() };
        assert_eq!(
            body["text"]["body"],
            "Which one?\n\n1. A title longer than any row 1\n2. A title longer than any row 2"
        );
    }

    #[test]
    fn the_probe_reads_the_number_or_the_refusal() {
        let p = super::super::Platform::WhatsApp(whatsapp());
        let req = p.probe(Duration::from_secs(5));
        assert_eq!(
            (req.url.path(), req.url.query()),
            ("/v23.0/123456123", Some("fields=display_phone_number,verified_name"))
        );
        assert_eq!(
            p.probe_outcome(200, br#"{"display_phone_number": "15550783881", "verified_name": "Tern", "id": "1"}"#)
                .as_deref(),
            Ok("the number 15550783881 (Tern)")
        );
        let refused = p
            .probe_outcome(401, br#"{"error": {"message": "Error validating access token", "code": 190}}"#)
            .unwrap_err();
        assert_eq!(refused.to_string(), "the WhatsApp API answered 401: Error validating access token");
    }

    #[test]
    fn replies_are_text_messages_of_the_phone_number_and_answers_are_classified() {
        let reqs = send_reply(&whatsapp(), "16315551181", &"a".repeat(5000), &[], None, Duration::from_secs(5));
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].url.path(), "/v23.0/123456123/messages");
        let Some(RequestBody::Json(body)) = &reqs[1].body else { panic!() };
        assert_eq!(body["to"], "16315551181");
        assert_eq!(body["text"]["body"].as_str().unwrap().len(), 904);
        assert_eq!(outcome(200, br#"{"messaging_product": "whatsapp", "contacts": [{"input": "1", "wa_id": "1"}], "messages": [{"id": "wamid.X"}]}"#), Outcome::Sent);
        assert!(matches!(outcome(400, br#"{"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047}}"#), Outcome::Refused { .. }));
        assert!(matches!(
            outcome(400, br#"{"error": {"message": "(#130429) Rate limit hit", "code": 130429}}"#),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            outcome(401, br#"{"error": {"message": "Error validating access token", "code": 190}}"#),
            Outcome::Retry { .. }
        ));
        assert!(matches!(outcome(503, b""), Outcome::Retry { .. }));
    }
}
