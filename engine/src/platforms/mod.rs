//! Messaging platforms as channel kinds: what each one needs to take its updates at
//! `/v1/channels/{name}/webhook` and to send replies through its API. A platform channel does
//! not use the generic kind's bearer tokens, signatures or webhook URL: the platform proves its
//! requests its own way, and replies go to the platform's API from the durable outbox.
//!
//! One module per platform, each with the same parts: its settings (unprintable secrets), the
//! check of an inbound request (on the headers before the body is read, then on the body where
//! the platform signs it), the parsing of its payload into [`PlatformMessage`]s, and the
//! requests that send a reply, with how to read the platform's answers ([`Outcome`]).
//! [`Platform`] puts them behind one set of methods, so that the webhook route and the outbox
//! are written once for every platform.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::http::PreparedRequest;
use crate::ids::IntegrationName;
use crate::step::Choice;

pub mod slack;
pub mod telegram;
pub mod twilio;
pub mod whatsapp;

/// A platform channel's settings.
#[derive(Clone, Debug)]
pub enum Platform {
    /// The Telegram Bot API.
    Telegram(telegram::Telegram),
    /// The WhatsApp Cloud API (Meta).
    WhatsApp(whatsapp::WhatsApp),
    /// Twilio Programmable Messaging.
    Twilio(twilio::Twilio),
    /// A Slack app.
    Slack(slack::Slack),
}

/// A message read from a platform's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformMessage {
    /// Where replies go (Telegram's `chat.id`, WhatsApp's `wa_id`): the conversation id.
    pub chat_id: String,
    /// The platform's id of the update or message: the message id, which dedupes a payload
    /// the platform sends again.
    pub message_id: String,
    /// The text (or caption, or the pressed button's payload); empty for media without one.
    pub text: String,
    /// What the platform says of the sender (`{{contact.*}}`).
    pub contact: Map<String, Value>,
    /// `{"<platform>": {…}}` for `{{message.metadata.<platform>.*}}`.
    pub metadata: Map<String, Value>,
}

/// What a platform said of a message Tern sent (WhatsApp's `statuses[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The platform's id of the sent message.
    pub message_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Who it was sent to.
    pub recipient: String,
    /// For a failure: the platform's code and words.
    pub error: Option<String>,
    /// The run whose reply it is, when the platform echoes what Tern sent with the reply
    /// (WhatsApp's `biz_opaque_callback_data`).
    pub run_id: Option<String>,
}

/// What one payload holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Received {
    /// Its messages, in order (WhatsApp may send several in one payload).
    pub messages: Vec<PlatformMessage>,
    /// What it holds that Tern does not handle, for the log and the metrics.
    pub ignored: Vec<String>,
    /// What it says of sent messages.
    pub statuses: Vec<Status>,
    /// The webhook's answer body (Telegram: an `answerCallbackQuery` for a pressed button).
    pub response: Value,
}

/// Why a payload cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// Not the JSON the platform sends.
    #[error("the body is not a platform payload ({0})")]
    Malformed(String),
}

/// A platform's refusal of a channel's credentials ([`Platform::probe_outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {platform} API answered {status}{}", if words.is_empty() { String::new() } else { format!(": {words}") })]
pub struct ProbeRefused {
    /// The platform's name.
    pub platform: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What the platform said (masked), or empty.
    pub words: String,
}

/// What a platform API's answer to a call means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent.
    Sent,
    /// Not now (rate limited, the API failing): send again later, after `after` when the
    /// platform said (Telegram's `parameters.retry_after`).
    Retry {
        /// Why.
        why: String,
        /// The platform's own wait.
        after: Option<Duration>,
    },
    /// Never (the chat does not exist, the bot was blocked, the token was revoked): drop it.
    Refused {
        /// Why.
        why: String,
    },
}

impl Platform {
    /// The channel kind it is.
    pub fn kind(&self) -> crate::channel::ChannelKind {
        match self {
            Self::Telegram(_) => crate::channel::ChannelKind::Telegram,
            Self::WhatsApp(_) => crate::channel::ChannelKind::Whatsapp,
            Self::Twilio(_) => crate::channel::ChannelKind::Twilio,
            Self::Slack(_) => crate::channel::ChannelKind::Slack,
        }
    }

    /// The platform's name, as a person reads it.
    pub fn title(&self) -> &'static str {
        match self {
            Self::Telegram(_) => "Telegram",
            Self::WhatsApp(_) => "WhatsApp",
            Self::Twilio(_) => "Twilio",
            Self::Slack(_) => "Slack",
        }
    }

    /// Every secret value of the settings, to register with the masker and to compare with
    /// other channels' (a credential names one channel).
    pub fn secrets(&self) -> Vec<&secrecy::SecretString> {
        match self {
            Self::Telegram(t) => vec![&t.secret_token, &t.bot_token],
            Self::WhatsApp(w) => vec![&w.app_secret, &w.verify_token],
            Self::Twilio(t) => vec![&t.auth_token],
            Self::Slack(s) => vec![&s.signing_secret],
        }
    }

    /// The platform API's base URL, as it may be shown.
    pub fn api_base(&self) -> &url::Url {
        match self {
            Self::Telegram(t) => &t.api_base,
            Self::WhatsApp(w) => &w.api_base,
            Self::Twilio(t) => &t.api_base,
            Self::Slack(s) => &s.api_base,
        }
    }

    /// Most replies the outbox sends a second through one channel of this platform, below the
    /// platform's documented limits: Telegram 30 (a bot's messages a second), WhatsApp 80 (the
    /// Cloud API's default throughput per number), Twilio 10 (its API takes more and queues
    /// what a number cannot send at once), Slack 20 (one conversation's replies go one at a time
    /// anyway, within `chat.postMessage`'s one a second per Slack channel). More wait in the
    /// outbox rather than meet the platform's 429.
    pub fn sends_per_second(&self) -> u32 {
        match self {
            Self::Telegram(_) => 30,
            Self::WhatsApp(_) => 80,
            Self::Twilio(_) => 10,
            Self::Slack(_) => 20,
        }
    }

    /// The integration whose token authenticates the replies (WhatsApp), if any.
    pub fn integration(&self) -> Option<&IntegrationName> {
        match self {
            Self::Telegram(_) | Self::Twilio(_) => None,
            Self::WhatsApp(w) => Some(&w.integration),
            Self::Slack(s) => Some(&s.integration),
        }
    }

    /// The credential of the reply calls when the channel holds it itself (Twilio's Basic
    /// authentication); Telegram's token is in the path, WhatsApp's comes from an integration.
    pub fn credential(&self) -> Option<crate::tokens::Credential> {
        match self {
            Self::Telegram(_) | Self::WhatsApp(_) | Self::Slack(_) => None,
            Self::Twilio(t) => twilio::credential(t),
        }
    }

    /// Whether the headers carry the platform's proof for this channel, decided before the body
    /// is read: Telegram's secret token (the whole check); WhatsApp's signature header, well
    /// formed (checked on the body by [`Self::check_body`]).
    ///
    /// # Errors
    /// What was expected, in the platform's words.
    pub fn check_headers(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        let ok = match self {
            Self::Telegram(t) => telegram::verify(t, headers),
            Self::WhatsApp(_) => whatsapp::has_signature(headers),
            Self::Twilio(_) => twilio::has_signature(headers),
            Self::Slack(_) => slack::has_signature(headers),
        };
        if ok { Ok(()) } else { Err(self.proof()) }
    }

    /// Whether the body is the platform's, where it signs bodies (WhatsApp's
    /// `X-Hub-Signature-256`; Twilio's `X-Twilio-Signature`, over `url` too: the URL the
    /// platform requested, the server's public URL and the path with its query; Slack's
    /// `X-Slack-Signature`, with a timestamp within 5 minutes of `now_s`, Unix seconds).
    ///
    /// # Errors
    /// What was expected, in the platform's words.
    pub fn check_body(
        &self,
        headers: &http::HeaderMap,
        url: &str,
        body: &[u8],
        now_s: i64,
    ) -> Result<(), &'static str> {
        let ok = match self {
            Self::Telegram(_) => true,
            Self::WhatsApp(w) => whatsapp::verify(w, headers, body),
            Self::Twilio(t) => twilio::verify(t, headers, url, body),
            Self::Slack(s) => slack::verify(s, headers, body, now_s),
        };
        if ok { Ok(()) } else { Err(self.proof()) }
    }

    /// The platform's proof, in its words.
    pub fn proof(&self) -> &'static str {
        match self {
            Self::Telegram(_) => "secret token (X-Telegram-Bot-Api-Secret-Token)",
            Self::WhatsApp(_) => "signature by the app secret (X-Hub-Signature-256)",
            Self::Twilio(_) => "signature by the auth token (X-Twilio-Signature)",
            Self::Slack(_) => "signature by the signing secret (X-Slack-Signature, within 5 minutes)",
        }
    }

    /// Reads a payload whose proof was checked.
    ///
    /// # Errors
    /// [`UpdateError::Malformed`].
    pub fn receive(&self, body: &[u8]) -> Result<Received, UpdateError> {
        match self {
            Self::Telegram(_) => {
                let update = telegram::parse_update(body)?;
                let response = telegram::webhook_response(&update);
                Ok(match update {
                    telegram::Update::Ignored { update_type } => {
                        Received { ignored: vec![update_type], response, ..Received::default() }
                    }
                    telegram::Update::Message(m) => Received {
                        messages: vec![PlatformMessage {
                            chat_id: m.chat_id,
                            message_id: m.update_id,
                            text: m.text,
                            contact: m.contact,
                            metadata: m.metadata,
                        }],
                        response,
                        ..Received::default()
                    },
                })
            }
            // Its acknowledgement is `{}` ([`Self::acknowledgement`]).
            Self::WhatsApp(w) => whatsapp::parse(w, body),
            Self::Twilio(t) => twilio::parse(t, body),
            Self::Slack(_) => slack::parse(body),
        }
    }

    /// The webhook's answer to a payload (whatever became of it): its content type and body.
    /// JSON for Telegram (an `answerCallbackQuery` for a pressed button) and WhatsApp; empty
    /// TwiML for Twilio, which would send any message TwiML holds.
    pub fn acknowledgement(&self, received: &Received) -> (&'static str, String) {
        match self {
            Self::Twilio(_) => ("text/xml", twilio::EMPTY_TWIML.to_string()),
            Self::Telegram(_) | Self::WhatsApp(_) | Self::Slack(_) if received.response.is_null() => {
                ("application/json", "{}".into())
            }
            Self::Telegram(_) | Self::WhatsApp(_) | Self::Slack(_) => {
                ("application/json", received.response.to_string())
            }
        }
    }

    /// The calls that send one reply to `chat_id`, in order (a long text is several), with its
    /// choices as the platform shows them: Telegram's inline keyboard, WhatsApp's reply buttons
    /// or list, or numbered text where the platform's limits do not allow them. `run_id` goes
    /// with the reply where the platform echoes it in its statuses (WhatsApp).
    pub fn reply_requests(
        &self,
        chat_id: &str,
        text: &str,
        choices: &[Choice],
        run_id: Option<&str>,
        timeout: Duration,
    ) -> Vec<PreparedRequest> {
        match self {
            Self::Telegram(t) => telegram::send_reply(t, chat_id, text, choices, timeout),
            Self::WhatsApp(w) => whatsapp::send_reply(w, chat_id, text, choices, run_id, timeout),
            Self::Twilio(t) => twilio::send_reply(t, chat_id, text, choices, timeout),
            Self::Slack(s) => slack::send_reply(s, chat_id, text, choices, timeout),
        }
    }

    /// A call that checks the platform takes the channel's credentials, sending nothing to
    /// anyone: Telegram's `getMe`, the WhatsApp phone number's record, the Twilio account's
    /// record, Slack's `auth.test`. Authenticated like the replies ([`Self::integration`],
    /// [`Self::credential`]).
    pub fn probe(&self, timeout: Duration) -> PreparedRequest {
        let (method, path) = match self {
            Self::Telegram(t) => {
                (crate::http::Method::Get, format!("/bot{}/getMe", secrecy::ExposeSecret::expose_secret(&t.bot_token)))
            }
            Self::WhatsApp(w) => (crate::http::Method::Get, format!("/{}", w.phone_number_id)),
            Self::Twilio(t) => (crate::http::Method::Get, format!("/2010-04-01/Accounts/{}.json", t.account_sid)),
            Self::Slack(_) => (crate::http::Method::Post, "/api/auth.test".to_string()),
        };
        let mut url = self.api_base().clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        if let Self::WhatsApp(_) = self {
            url.set_query(Some("fields=display_phone_number,verified_name"));
        }
        PreparedRequest { method, url, headers: reqwest::header::HeaderMap::new(), body: None, timeout }
    }

    /// What the answer to [`Self::probe`] says: who the credentials are (`Ok`), or why the
    /// platform refused them (`Err`), in its words (masked).
    ///
    /// # Errors
    /// [`ProbeRefused`]: the platform refused the credentials.
    pub fn probe_outcome(&self, status: u16, body: &[u8]) -> Result<String, ProbeRefused> {
        let answer: Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |pointer: &str| {
            answer
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(|s| crate::secrets::known::mask(s).chars().take(200).collect::<String>())
        };
        let ok = (200..300).contains(&status)
            && match self {
                Self::Telegram(_) | Self::Slack(_) => answer.get("ok").and_then(Value::as_bool) == Some(true),
                Self::WhatsApp(_) | Self::Twilio(_) => true,
            };
        if ok {
            return Ok(match self {
                Self::Telegram(_) => format!("the bot @{}", text("/result/username").unwrap_or_default()),
                Self::WhatsApp(_) => format!(
                    "the number {} ({})",
                    text("/display_phone_number").unwrap_or_default(),
                    text("/verified_name").unwrap_or_else(|| "no verified name".into())
                ),
                Self::Twilio(_) => format!(
                    "the account {} ({})",
                    text("/friendly_name").unwrap_or_default(),
                    text("/status").unwrap_or_default()
                ),
                Self::Slack(_) => format!(
                    "the bot user {} of workspace {}",
                    text("/user").unwrap_or_default(),
                    text("/team").unwrap_or_default()
                ),
            });
        }
        let words = text("/description")
            .or_else(|| text("/error/message"))
            .or_else(|| text("/message"))
            .or_else(|| text("/error"));
        Err(ProbeRefused { platform: self.title(), status, words: words.unwrap_or_default() })
    }

    /// What the platform API's answer to a reply call means.
    pub fn outcome(&self, status: u16, body: &[u8]) -> Outcome {
        match self {
            Self::Telegram(_) => telegram::outcome(status, body),
            Self::WhatsApp(_) => whatsapp::outcome(status, body),
            Self::Twilio(_) => twilio::outcome(status, body),
            Self::Slack(_) => slack::outcome(status, body),
        }
    }
}

/// `text` cut into parts of at most `max` units (a character counts `units(c)`), in order: at
/// the last line break in the second half of a part, else the last space there, else where the
/// limit falls (never inside a character); an empty text is no part.
pub(crate) fn parts_of(text: &str, max: usize, units: fn(char) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut counted = 0;
        let cut = rest
            .char_indices()
            .find(|(_, c)| {
                counted += units(*c);
                counted > max
            })
            .map(|(i, _)| i);
        let Some(cut) = cut else {
            out.push(rest.to_string());
            break;
        };
        let head = &rest[..cut];
        let in_second_half = |i: &usize| *i > cut / 2;
        let at = head
            .rfind('\n')
            .filter(in_second_half)
            .or_else(|| head.rfind(' ').filter(in_second_half))
            .map_or(cut, |i| i + 1);
        out.push(rest[..at].to_string());
        rest = &rest[at..];
    }
    out
}

/// A serde error without the values it quotes (a body may hold anything).
pub(crate) fn without_values(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON at line {} column {}", e.line(), e.column())
        }
        _ => {
            let text = e.to_string();
            // `missing field `update_id`` and `invalid type: …, expected i64` keep their field
            // names; quoted values are cut off.
            text.split(" at line").next().unwrap_or(&text).split('"').next().unwrap_or_default().trim_end().to_string()
        }
    }
}
