//! Twilio Programmable Messaging (SMS, MMS and WhatsApp through Twilio) as a channel kind.
//!
//! - **Inbound.** Twilio posts each incoming message to the webhook as a form
//!   (`application/x-www-form-urlencoded`: `MessageSid`, `AccountSid`, `From`, `To`, `Body`,
//!   `NumMedia`, `MediaUrl0`…) signed in `X-Twilio-Signature`: the Base64 HMAC-SHA1, keyed with
//!   the account's auth token, of the full URL Twilio requested followed by every form
//!   parameter's name and value, sorted by name ([`signature`]). The URL is the one Twilio was
//!   given, so the server must know its public URL (`--public-url`); it is checked with and
//!   without the scheme's default port, as Twilio's own validators do. The signature runs names
//!   and values together, so a form is taken only with distinct names and a `MessageSid` of
//!   Twilio's form (`SM`/`MM` and 32 hexadecimal digits): a captured request cannot be replayed
//!   as another message by moving a boundary. A message without this account's `AccountSid` is
//!   ignored. The `MessageSid` is the message id (Twilio retries a webhook that
//!   fails): it dedupes. The answer is an empty TwiML document (`<Response/>`): replies go
//!   through the REST API.
//! - **Outbound.** Each reply is `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//!   with `To`, `From` (the channel's number, a `whatsapp:` address or a Messaging Service) and
//!   a `Body` of at most [`MAX_BODY_CHARS`] characters (a longer reply is several messages), with
//!   HTTP Basic authentication (Account SID and auth token). Choices are numbered text: SMS
//!   shows no buttons.
//!
//! Sources: twilio.com/docs/usage/webhooks/webhooks-security,
//! twilio.com/docs/messaging/guides/webhook-request, twilio.com/docs/messaging/api/message-resource,
//! twilio.com/docs/api/errors.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha1::Sha1;

use super::{Outcome, PlatformMessage, Received, UpdateError, parts_of};
use crate::http::{Method, PreparedRequest, RequestBody};
use crate::step::Choice;
use crate::tokens::Credential;

/// The header carrying the request's signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The REST API's base URL.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// Longest body of one message, in characters (the Messages API's 1,600).
pub const MAX_BODY_CHARS: usize = 1600;

/// The webhook's answer: TwiML that sends nothing.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// What a Twilio channel needs.
#[derive(Clone)]
pub struct Twilio {
    /// The account's SID (`AC` and 32 hexadecimal digits).
    pub account_sid: String,
    /// The account's auth token: signs every webhook, and with the SID authenticates the calls.
    pub auth_token: SecretString,
    /// Where replies come from: a phone number (`+15017122661`), a `whatsapp:` address or a
    /// Messaging Service SID (`MG…`).
    pub from: String,
    /// The REST API's base URL ([`DEFAULT_API_BASE`], or a local server in tests).
    pub api_base: url::Url,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from", &self.from)
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34 && text.starts_with(prefix) && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `sid` is an Account SID: `AC` and 32 hexadecimal digits.
///
/// # Errors
/// The rule, in words.
pub fn check_account_sid(sid: &str) -> Result<(), &'static str> {
    if is_sid(sid, "AC") {
        Ok(())
    } else {
        Err("a Twilio Account SID is `AC` and 32 hexadecimal digits, as the Twilio Console shows it")
    }
}

/// Whether `token` can be an auth token: 32 hexadecimal digits.
///
/// # Errors
/// The rule, in words.
pub fn check_auth_token(token: &str) -> Result<(), &'static str> {
    if token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("a Twilio auth token is 32 hexadecimal digits (Twilio Console > Account info)")
    }
}

/// Whether `from` can send replies: an E.164 number (`+` and 8 to 15 digits), the same after
/// `whatsapp:`, or a Messaging Service SID (`MG…`).
///
/// # Errors
/// The rule, in words.
pub fn check_from(from: &str) -> Result<(), &'static str> {
    let number = from.strip_prefix("whatsapp:").unwrap_or(from);
    let e164 =
        number.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
    if e164 || is_sid(from, "MG") {
        Ok(())
    } else {
        Err(
            "replies come from a Twilio number in E.164 form (`+15017122661`), a `whatsapp:+…` sender, or a Messaging Service SID (`MG…`)",
        )
    }
}

/// `X-Twilio-Signature` of a request to `url` with the form `params`: Base64 of the HMAC-SHA1,
/// keyed with the auth token, of `url` followed by each parameter's name and value, names sorted
/// (and a repeated name's values sorted), as Twilio computes it.
pub fn signature(auth_token: &SecretString, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.expose_secret().as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether the headers carry one signature (checked on the body by [`verify`]).
pub fn has_signature(headers: &http::HeaderMap) -> bool {
    headers.get_all(SIGNATURE_HEADER).iter().count() == 1
}

/// `url` with its scheme's default port written out, and without it: Twilio may sign either.
fn url_forms(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else { return vec![url.to_string()] };
    let mut with_port = parsed.clone();
    let mut without_port = parsed.clone();
    let default = parsed.port_or_known_default();
    let _ = with_port.set_port(default);
    let _ = without_port.set_port(None);
    // `Url` drops a default port it is given; write it out by hand.
    let with_port = match (parsed.port(), default, with_port.host_str()) {
        (None, Some(port), Some(host)) => {
            let mut text = format!("{}://{host}:{port}{}", parsed.scheme(), parsed.path());
            if let Some(q) = parsed.query() {
                text.push('?');
                text.push_str(q);
            }
            text
        }
        _ => with_port.to_string(),
    };
    let mut forms = vec![url.to_string(), with_port, without_port.to_string()];
    forms.dedup();
    forms
}

/// Whether `body` (the form) is signed for `url` (the URL Twilio requested: the public URL
/// and the path, with any query) with the channel's auth token, compared in constant time.
pub fn verify(twilio: &Twilio, headers: &http::HeaderMap, url: &str, body: &[u8]) -> bool {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(given), None) = (values.next(), values.next()) else { return false };
    let given = given.as_bytes();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    url_forms(url).iter().any(|u| {
        let expected = signature(&twilio.auth_token, u, &params);
        !expected.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given))
    })
}

/// Reads an incoming message's form for the channel's account.
///
/// # Errors
/// [`UpdateError::Malformed`]: without `MessageSid` or `From`.
pub fn parse(twilio: &Twilio, body: &[u8]) -> Result<Received, UpdateError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    // Twilio's signature runs names and values together, so a boundary moved between them
    // keeps it: a form is taken only with distinct names and a `MessageSid` of Twilio's form,
    // so that a captured request cannot be replayed as another message.
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(UpdateError::Malformed("a parameter is given twice".into()));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut received = Received { response: Value::Null, ..Received::default() };
    if get("AccountSid") != Some(twilio.account_sid.as_str()) {
        received.ignored.push("a message without this channel's AccountSid".into());
        return Ok(received);
    }
    if let (Some(status), None) = (get("MessageStatus").or_else(|| get("SmsStatus")), get("Body")) {
        // Only logged and counted: nothing runs for it.
        // A status callback (sent, delivered, failed, …), not a message.
        received.statuses.push(super::Status {
            message_id: get("MessageSid").unwrap_or_default().chars().take(64).collect(),
            status: status.chars().take(32).collect(),
            recipient: get("To").unwrap_or_default().chars().take(64).collect(),
            error: get("ErrorCode").map(|c| c.chars().take(16).collect()),
            run_id: None,
        });
        return Ok(received);
    }
    let (Some(sid), Some(from)) = (get("MessageSid").or_else(|| get("SmsMessageSid")), get("From")) else {
        return Err(UpdateError::Malformed("a Twilio message has `MessageSid` and `From`".into()));
    };
    if !is_sid(sid, "SM") && !is_sid(sid, "MM") {
        return Err(UpdateError::Malformed("`MessageSid` is not `SM` or `MM` and 32 hexadecimal digits".into()));
    }
    let mut contact = Map::new();
    contact.insert("id".into(), from.into());
    contact.insert("phone".into(), from.trim_start_matches("whatsapp:").into());
    if let Some(name) = get("ProfileName") {
        contact.insert("name".into(), name.into());
    }
    let mut meta = Map::new();
    for (field, key) in [
        ("MessageSid", "message_sid"),
        ("To", "to"),
        ("NumMedia", "num_media"),
        ("MediaUrl0", "media_url"),
        ("MediaContentType0", "media_content_type"),
        ("Latitude", "latitude"),
        ("Longitude", "longitude"),
        ("FromCountry", "from_country"),
        ("ButtonPayload", "button_payload"),
    ] {
        if let Some(v) = get(field) {
            meta.insert(key.into(), v.chars().take(2048).collect::<String>().into());
        }
    }
    // A WhatsApp quick-reply button through Twilio: its payload is the answer.
    let text = get("ButtonPayload").or_else(|| get("Body")).unwrap_or_default();
    received.messages.push(PlatformMessage {
        chat_id: from.to_string(),
        message_id: sid.to_string(),
        text: text.to_string(),
        contact,
        metadata: Map::from_iter([("twilio".to_string(), Value::Object(meta))]),
    });
    Ok(received)
}

/// The `Authorization: Basic` credential of the REST API calls (Account SID and auth token),
/// marked sensitive.
pub fn credential(twilio: &Twilio) -> Option<Credential> {
    Credential::basic(&twilio.account_sid, twilio.auth_token.expose_secret())
}

/// The Messages API calls of one reply to `to`: its text (choices numbered after it) in parts
/// of at most [`MAX_BODY_CHARS`] characters.
pub fn send_reply(
    twilio: &Twilio,
    to: &str,
    text: &str,
    choices: &[Choice],
    timeout: Duration,
) -> Vec<PreparedRequest> {
    let mut url = twilio.api_base.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/2010-04-01/Accounts/{}/Messages.json", twilio.account_sid));
    let sender = if twilio.from.starts_with("MG") { "MessagingServiceSid" } else { "From" };
    // A reply to a WhatsApp contact goes from the channel's WhatsApp sender.
    let from = match (to.starts_with("whatsapp:"), twilio.from.starts_with("whatsapp:"), sender) {
        (true, false, "From") => format!("whatsapp:{}", twilio.from),
        _ => twilio.from.clone(),
    };
    parts_of(&Choice::numbered(text, choices), MAX_BODY_CHARS, |_| 1)
        .into_iter()
        .map(|part| {
            let form: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("To", to)
                .append_pair(sender, &from)
                .append_pair("Body", &part)
                .finish();
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            PreparedRequest {
                method: Method::Post,
                url: url.clone(),
                headers,
                body: Some(RequestBody::Bytes(form.into_bytes())),
                timeout,
            }
        })
        .collect()
}

/// Twilio error codes that are final for this message: the number is not a valid mobile
/// number (21211, 21614), the contact opted out (21610), the sender cannot send to it (21408,
/// 21612), WhatsApp's 24-hour window is closed (63016).
const REFUSED_CODES: &[i64] = &[21211, 21408, 21610, 21612, 21614, 63016];

/// Reads the Messages API's answer: a 2xx with a `sid` is sent; 429 and 5xx are retried, and
/// so is any other refusal whose code is not final ([`REFUSED_CODES`]) nor an authentication
/// failure (401: the SID or token is wrong, which waiting does not fix).
pub fn outcome(status: u16, body: &[u8]) -> Outcome {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if (200..300).contains(&status) && answer.get("sid").and_then(Value::as_str).is_some() {
        return Outcome::Sent;
    }
    let code = answer.get("code").and_then(Value::as_i64);
    let words = answer
        .get("message")
        .and_then(Value::as_str)
        .map(|m| crate::secrets::known::mask(m).chars().take(200).collect::<String>());
    let why = format!(
        "the Twilio API answered {status}{}{}",
        code.map(|c| format!(" (error {c})")).unwrap_or_default(),
        words.map(|d| format!(": {d}")).unwrap_or_default()
    );
    let refused = status == 401 || status == 403 || code.is_some_and(|c| REFUSED_CODES.contains(&c));
    if refused && status != 429 && status < 500 {
        Outcome::Refused { why }
    } else if status == 429 || status >= 500 || (200..300).contains(&status) || (400..500).contains(&status) {
        Outcome::Retry { why, after: None }
    } else {
        Outcome::Refused { why }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn twilio() -> Twilio {
        Twilio {
            account_sid: "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".replace('X', "a"),
            auth_token: SecretString::from("12345".to_string()),
            from: "+15017122661".into(),
            api_base: url::Url::parse("http://127.0.0.1:9").unwrap(),
        }
    }

    #[test]
    fn the_documented_example_signature_is_reproduced() {
        // twilio.com/docs/usage/webhooks/webhooks-security: auth token 12345, this URL and
        // form, the signature they give.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(signature(&twilio().auth_token, url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=".parse().unwrap());
        assert!(verify(&twilio(), &headers, url, body.as_bytes()));
        assert!(!verify(&twilio(), &headers, "https://mycompany.com/myapp.php?foo=1&bar=3", body.as_bytes()));
        assert!(!verify(&twilio(), &headers, url, body.replace("1234", "1235").as_bytes()));
        // The same URL with its default port written out is signed the same way.
        assert!(verify(&twilio(), &headers, "https://mycompany.com:443/myapp.php?foo=1&bar=2", body.as_bytes()));
    }

    #[test]
    fn messages_statuses_and_other_accounts_are_read() {
        let t = twilio();
        let sid = t.account_sid.clone();
        let sm = |n: u8| format!("SM{}", format!("{n:x}").repeat(32));
        let form = format!(
            "MessageSid={}&AccountSid={sid}&From=%2B14155550100&To=%2B15017122661&Body=Hello+there&NumMedia=0",
            sm(1)
        );
        let r = parse(&t, form.as_bytes()).unwrap();
        let m = &r.messages[0];
        assert_eq!(
            (m.chat_id.as_str(), m.message_id.as_str(), m.text.as_str()),
            ("+14155550100", sm(1).as_str(), "Hello there")
        );
        assert_eq!(m.metadata["twilio"]["to"], "+15017122661");
        // A boundary moved between names and values keeps the signature: refused.
        let shifted =
            format!("MessageSid={}T&AccountSid={sid}&From=%2B14155550100&o=%2B15017122661&Body=Hello+there", sm(1));
        assert!(parse(&t, shifted.as_bytes()).is_err());
        let twice = format!("MessageSid={}&AccountSid={sid}&From=%2B1&Body=a&Body=b", sm(1));
        assert!(parse(&t, twice.as_bytes()).is_err());
        let no_account = format!("MessageSid={}&From=%2B1&Body=x", sm(1));
        assert!(parse(&t, no_account.as_bytes()).unwrap().messages.is_empty());
        let other = format!("MessageSid={}&AccountSid=ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb&From=%2B1&Body=x", sm(2));
        assert!(parse(&t, other.as_bytes()).unwrap().messages.is_empty());
        let status = format!("MessageSid={}&AccountSid={sid}&MessageStatus=undelivered&To=%2B1&ErrorCode=30003", sm(3));
        let r = parse(&t, status.as_bytes()).unwrap();
        assert_eq!(r.statuses[0].status, "undelivered");
        assert!(parse(&t, format!("AccountSid={sid}&Body=no+sid").as_bytes()).is_err());
        let wa = format!(
            "MessageSid={}&AccountSid={sid}&From=whatsapp%3A%2B1415&ProfileName=Ann&ButtonPayload=yes&Body=Yes",
            sm(4)
        );
        let m = &parse(&t, wa.as_bytes()).unwrap().messages[0];
        assert_eq!((m.text.as_str(), m.contact["name"].as_str()), ("yes", Some("Ann")));
    }

    #[test]
    fn replies_are_numbered_text_from_the_channels_sender_and_answers_are_classified() {
        let reqs = send_reply(
            &twilio(),
            "+14155550100",
            "Pick",
            &[Choice::new("One", "1"), Choice::new("Two", "2")],
            Duration::from_secs(5),
        );
        assert_eq!(reqs[0].url.path(), format!("/2010-04-01/Accounts/{}/Messages.json", twilio().account_sid));
        let Some(RequestBody::Bytes(body)) = &reqs[0].body else { panic!() };
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        assert!(form.contains(&("Body".into(), "Pick\n\n1. One\n2. Two".into())), "{form:?}");
        assert!(form.contains(&("From".into(), "+15017122661".into())));
        let wa = send_reply(&twilio(), "whatsapp:+1415", "Hi", &[], Duration::from_secs(5));
        let Some(RequestBody::Bytes(body)) = &wa[0].body else { panic!() };
        assert!(String::from_utf8_lossy(body).contains("From=whatsapp%3A%2B15017122661"));
        assert_eq!(send_reply(&twilio(), "+1", &"a".repeat(3300), &[], Duration::from_secs(5)).len(), 3);
        assert_eq!(outcome(201, br#"{"sid": "SM1", "status": "queued"}"#), Outcome::Sent);
        assert!(matches!(
            outcome(400, br#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}"#),
            Outcome::Refused { .. }
        ));
        assert!(matches!(outcome(429, br#"{"code": 20429, "message": "Too Many Requests"}"#), Outcome::Retry { .. }));
        assert!(matches!(outcome(401, br#"{"code": 20003, "message": "Authenticate"}"#), Outcome::Refused { .. }));
        assert!(matches!(outcome(503, b""), Outcome::Retry { .. }));
        assert!(check_account_sid(&twilio().account_sid).is_ok() && check_account_sid("AC123").is_err());
        assert!(check_from("+15017122661").is_ok() && check_from("whatsapp:+15017122661").is_ok());
        assert!(check_from("15017122661").is_err());
    }
}
