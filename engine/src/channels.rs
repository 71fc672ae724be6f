//! The channels service, [`Channels`]: saves, lists, shows and removes channels (the stored ones,
//! through a [`ChannelStore`]) and answers the edge's and the outbox's lookups
//! ([`ChannelDirectory`]) from a bounded cache.
//!
//! - **Configured channels** come from start-up flags (the `default` channel: `--channel-token`
//!   or `channel.token`, `--webhook-url`) and `tern.toml`. They are not stored and cannot be
//!   saved over or removed through the service: they are changed where they are configured.
//! - **Rules** are checked in one place, [`ChannelDraft::check`], for every front end (the CLI,
//!   the admin API, the console, `tern.toml`); each broken rule is a [`Problem`] at its
//!   [`Field`], every one of them at once.
//! - **Open channels** (`--insecure-open-channel NAME`) get [`InboundAuth::open`] set when they
//!   are looked up; `open` is never stored.
//! - **Cache**: at most [`CACHE_MAX`] names (channels and names that are no channel), each for
//!   [`CACHE_TTL_MS`]. A save or remove through this service drops the name from this
//!   instance's cache at once; another instance sharing the database (or a `tern channels`
//!   command in another process) is seen when the entry expires, so within
//!   [`CACHE_TTL_MS`].
//! - **Secrets**: every token and secret of every channel read or saved is registered with
//!   [`known::remember`](crate::secrets::known::remember), so that it is masked in every log
//!   line and answer.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use crate::channel::{
    Channel, ChannelDirectory, ChannelKind, ChannelName, ChannelStore, Delivery, InboundAuth, StoredChannel,
};
use crate::clock::Clock;
use crate::platforms::Platform;
use crate::secrets::known;
use crate::standard_webhooks::WebhookSecret;
use crate::storage::StoreError;

/// How long a looked-up channel (or the absence of one) is kept, in milliseconds: how soon this
/// instance sees a change made by another instance or process.
pub const CACHE_TTL_MS: i64 = 5_000;
/// Most names the lookup cache holds.
pub const CACHE_MAX: usize = 1024;
/// Shortest bearer token, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest bearer token, in characters.
pub const MAX_TOKEN_CHARS: usize = 512;
/// Most bearer tokens (or signing secrets) one channel has: enough for a rotation.
pub const MAX_CREDENTIALS: usize = 8;
/// Longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A new random bearer token: 24 random bytes in hex (48 characters), registered with the
/// masker. The one way Tern makes the tokens it hands out (`channel.token`, `admin.token`,
/// `tern channels add`).
pub fn generate_token() -> SecretString {
    let token = new_token();
    known::remember(&token);
    token
}

/// A new random bearer token like [`generate_token`]'s, not registered with the masker: for a
/// value proposed on a form before anything is saved with it (the console's add form), which
/// the page must show. Saving a channel registers its tokens.
pub fn new_token() -> SecretString {
    let bytes: [u8; 24] = rand::random();
    SecretString::from(hex::encode(bytes))
}

/// A setting a [`Problem`] is at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The channel's name.
    Name,
    /// Its kind.
    Kind,
    /// The bearer tokens.
    Tokens,
    /// The Standard Webhooks secrets the channel signs with.
    SigningSecrets,
    /// Where replies are posted.
    WebhookUrl,
    /// The secret replies are signed with.
    WebhookSecret,
    /// A platform's webhook secret (Telegram's `secret_token`).
    SecretToken,
    /// A platform's bot token (Telegram).
    BotToken,
    /// A platform API's base URL.
    ApiBase,
    /// The secret a platform signs its requests with (WhatsApp: the Meta app secret).
    AppSecret,
    /// The token of a platform's verification handshake (WhatsApp).
    VerifyToken,
    /// The platform's id of the business phone number replies are sent from (WhatsApp).
    PhoneNumberId,
    /// The integration whose token authenticates the replies (WhatsApp).
    Integration,
    /// A platform account's token that signs its requests and authenticates the replies
    /// (Twilio's auth token).
    AuthToken,
    /// The platform account's id (Twilio's Account SID).
    AccountSid,
    /// Where replies are sent from (Twilio: a number, a `whatsapp:` sender or a Messaging
    /// Service).
    From,
    /// The secret a platform app signs its requests with (Slack's signing secret).
    SigningSecret,
    /// The origins whose pages may use a web chat.
    Origins,
}

impl Field {
    /// Its name in the admin API's JSON.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Kind => "kind",
            Self::Tokens => "tokens",
            Self::SigningSecrets => "signing_secrets",
            Self::WebhookUrl => "webhook_url",
            Self::WebhookSecret => "webhook_secret",
            Self::SecretToken => "secret_token",
            Self::BotToken => "bot_token",
            Self::ApiBase => "api_base",
            Self::AppSecret => "app_secret",
            Self::VerifyToken => "verify_token",
            Self::PhoneNumberId => "phone_number_id",
            Self::Integration => "integration",
            Self::AuthToken => "auth_token",
            Self::AccountSid => "account_sid",
            Self::From => "from",
            Self::SigningSecret => "signing_secret",
            Self::Origins => "origins",
        }
    }

    /// Its option of `tern channels add`.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Name => "NAME",
            Self::Kind => "--kind",
            Self::Tokens => "--token-env",
            Self::SigningSecrets => "--secret-env",
            Self::WebhookUrl => "--webhook-url",
            Self::WebhookSecret => "--webhook-secret-env",
            Self::SecretToken => "--secret-token-env",
            Self::BotToken => "--bot-token-env",
            Self::ApiBase => "--api-base",
            Self::AppSecret => "--app-secret-env",
            Self::VerifyToken => "--verify-token-env",
            Self::PhoneNumberId => "--phone-number-id",
            Self::Integration => "--integration",
            Self::AuthToken => "--auth-token-env",
            Self::AccountSid => "--account-sid",
            Self::From => "--from",
            Self::SigningSecret => "--signing-secret-env",
            Self::Origins => "--origin",
        }
    }

    /// Its label on the console's form.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "Name",
            Self::Kind => "Kind",
            Self::Tokens => "Bearer token",
            Self::SigningSecrets => "Signing secret",
            Self::WebhookUrl => "Webhook URL",
            Self::WebhookSecret => "Webhook secret",
            Self::SecretToken => "Secret token",
            Self::BotToken => "Bot token",
            Self::ApiBase => "API base URL",
            Self::AppSecret => "App secret",
            Self::VerifyToken => "Verify token",
            Self::PhoneNumberId => "Phone number id",
            Self::Integration => "Integration",
            Self::AuthToken => "Auth token",
            Self::AccountSid => "Account SID",
            Self::From => "Sender",
            Self::SigningSecret => "App signing secret",
            Self::Origins => "Allowed origins",
        }
    }
}

/// One broken rule: the field to correct and what to do, in words that name no front end's
/// option (each front end puts its own name for the field in front: [`Problem`]'s `Display` is
/// the command line's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field to correct.
    pub field: Field,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    fn at(field: Field, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.flag(), self.message)
    }
}

/// Why the service refused or failed. Messages are the command line's words.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The settings break rules (every problem at once).
    #[error("channel `{name}` was not saved:\n  {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The channel (as given).
        name: String,
        /// Each broken rule.
        problems: Vec<Problem>,
    },
    /// No such stored channel.
    #[error("there is no channel `{name}`; `tern channels list` shows them")]
    NotFound {
        /// The name.
        name: ChannelName,
    },
    /// A channel of that name is stored already (and replacing was not asked for).
    #[error(
        "channel `{name}` exists already; pass --update to replace its settings, or `tern channels remove {name}` first"
    )]
    Exists {
        /// The name.
        name: ChannelName,
    },
    /// The channel is configured at start-up, not stored.
    #[error("channel `{name}` is configured by {}, not stored: change it there", defined_by.describe())]
    Configured {
        /// The name.
        name: ChannelName,
        /// Where it is configured.
        defined_by: ChannelSource,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a channel is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSource {
    /// `tern serve`'s flags (the `default` channel).
    Flags,
    /// `tern.toml`'s `[channels.NAME]`.
    ConfigFile,
    /// The store (`tern channels add`, the admin API, the console).
    Stored,
    /// Tern itself: the `console` channel of the console's test conversations.
    Builtin,
}

impl ChannelSource {
    /// Where, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Flags => {
                "`tern serve`'s flags (--channel-token or TERN_CHANNEL_TOKEN, else channel.token in the data directory; --webhook-url)"
            }
            Self::ConfigFile => "tern.toml ([channels.NAME])",
            Self::Stored => "the store",
            Self::Builtin => {
                "Tern itself (the console's Try it chat: only the console's own pages use it, and its replies stay there)"
            }
        }
    }
}

/// A channel's settings as a front end gives them, before the rules are checked.
#[derive(Default)]
pub struct ChannelDraft {
    /// Its kind.
    pub kind: Option<ChannelKind>,
    /// Bearer tokens.
    pub tokens: Vec<SecretString>,
    /// Standard Webhooks secrets (`whsec_…`), as written.
    pub signing_secrets: Vec<SecretString>,
    /// Where replies are posted (http or https).
    pub webhook_url: Option<String>,
    /// The secret replies are signed with (`whsec_…`), as written.
    pub webhook_secret: Option<SecretString>,
    /// A platform's webhook secret (Telegram: setWebhook's `secret_token`).
    pub secret_token: Option<SecretString>,
    /// A platform's bot token (Telegram).
    pub bot_token: Option<SecretString>,
    /// A platform API's base URL (its default when `None`: tests and regional endpoints set it).
    pub api_base: Option<String>,
    /// The secret a platform signs its requests with (WhatsApp: the Meta app secret).
    pub app_secret: Option<SecretString>,
    /// The token of a platform's verification handshake (WhatsApp).
    pub verify_token: Option<SecretString>,
    /// The business phone number's id (WhatsApp).
    pub phone_number_id: Option<String>,
    /// The integration that authenticates the replies (WhatsApp), by name.
    pub integration: Option<String>,
    /// A platform account's token (Twilio's auth token).
    pub auth_token: Option<SecretString>,
    /// The platform account's id (Twilio's Account SID).
    pub account_sid: Option<String>,
    /// Where replies are sent from (Twilio).
    pub from: Option<String>,
    /// The app's signing secret (Slack).
    pub signing_secret: Option<SecretString>,
    /// The origins whose pages may use a web chat (`https://example.com`), as written.
    pub origins: Vec<String>,
    /// A web chat's session key to keep (the stored one, when its settings are replaced), so
    /// that the visitors' sessions stay valid; a new one is made when `None`.
    pub session_key: Option<crate::web_chat::SessionKey>,
}

impl fmt::Debug for ChannelDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelDraft")
            .field("kind", &self.kind)
            .field("tokens", &self.tokens.len())
            .field("signing_secrets", &self.signing_secrets.len())
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "[set]"))
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "[redacted]"))
            .field("secret_token", &self.secret_token.as_ref().map(|_| "[redacted]"))
            .field("bot_token", &self.bot_token.as_ref().map(|_| "[redacted]"))
            .field("api_base", &self.api_base)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "[redacted]"))
            .field("verify_token", &self.verify_token.as_ref().map(|_| "[redacted]"))
            .field("phone_number_id", &self.phone_number_id)
            .field("integration", &self.integration)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "[redacted]"))
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .field("signing_secret", &self.signing_secret.as_ref().map(|_| "[redacted]"))
            .field("origins", &self.origins)
            .field("session_key", &self.session_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ChannelDraft {
    /// The channel called `name`, or every rule it breaks: a name that is a channel name; a kind;
    /// at least one bearer token or signing secret unless the channel is `open`
    /// (`--insecure-open-channel`); tokens of [`MIN_TOKEN_CHARS`] to [`MAX_TOKEN_CHARS`]
    /// printable characters; secrets read by [`WebhookSecret::parse`]; at most
    /// [`MAX_CREDENTIALS`] of each; an http(s) webhook URL with a host, at most
    /// [`MAX_URL_BYTES`]; a webhook secret with a webhook URL, and only with one (deliveries are
    /// always signed).
    ///
    /// # Errors
    /// Each [`Problem`].
    pub fn check(self, name: &str, open: bool) -> Result<Channel, Vec<Problem>> {
        let mut problems = Vec::new();
        let name = ChannelName::new(name).map_err(|e| problems.push(Problem::at(Field::Name, e.to_string()))).ok();
        if self.kind.is_none() {
            problems.push(Problem::at(
                Field::Kind,
                "the kind is required: `generic` (a channel that posts Tern's JSON), `telegram` (a Telegram bot), `whatsapp` (a WhatsApp Business number), `twilio` (SMS through Twilio), `slack` (a Slack app) or `web` (a chat widget on web pages)",
            ));
        }
        if self.kind == Some(ChannelKind::Web) {
            let web = web_settings::check(self, &mut problems);
            return match (name, web) {
                (Some(name), Some(web)) if problems.is_empty() => Ok(Channel {
                    name,
                    incarnation: None,
                    kind: ChannelKind::Web,
                    inbound: InboundAuth::default(),
                    delivery: Delivery::default(),
                    platform: None,
                    web: Some(web),
                }),
                _ => Err(problems),
            };
        }
        if let Some(kind) = self.kind.filter(|k| *k != ChannelKind::Generic) {
            let platform = platform_settings::check(kind, &self, &mut problems);
            return match (name, platform) {
                (Some(name), Some(platform)) if problems.is_empty() => Ok(Channel {
                    name,
                    incarnation: None,
                    kind,
                    inbound: InboundAuth::default(),
                    delivery: Delivery::default(),
                    platform: Some(platform),
                    web: None,
                }),
                _ => Err(problems),
            };
        }
        platform_settings::none_for_generic(&self, &mut problems);
        if self.tokens.is_empty() && self.signing_secrets.is_empty() && !open {
            problems.push(Problem::at(
                Field::Tokens,
                "a channel needs a bearer token or a signing secret (or both), so that only it can post messages",
            ));
        }
        if self.tokens.len() > MAX_CREDENTIALS {
            problems.push(Problem::at(Field::Tokens, format!("at most {MAX_CREDENTIALS} tokens")));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            let t = token.expose_secret();
            let chars = t.chars().count();
            let nth = i + 1;
            if !(MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&chars) {
                problems.push(Problem::at(
                    Field::Tokens,
                    format!(
                        "token {nth} has {chars} characters; a token has {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} (generate one with `openssl rand -hex 24`)"
                    ),
                ));
            } else if t.chars().any(|c| !c.is_ascii_graphic()) {
                problems.push(Problem::at(
                    Field::Tokens,
                    format!("token {nth} has a space or a character that is not printable ASCII; it must fit in an Authorization header"),
                ));
            }
        }
        if self.signing_secrets.len() > MAX_CREDENTIALS {
            problems.push(Problem::at(Field::SigningSecrets, format!("at most {MAX_CREDENTIALS} signing secrets")));
        }
        let mut signing_secrets = Vec::new();
        for (i, s) in self.signing_secrets.iter().enumerate() {
            match WebhookSecret::parse(s.expose_secret()) {
                Ok(secret) => signing_secrets.push(secret),
                Err(e) => problems.push(Problem::at(Field::SigningSecrets, format!("signing secret {}: {e}", i + 1))),
            }
        }
        let webhook_url = self
            .webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .and_then(|u| check_webhook_url(u).map_err(|m| problems.push(Problem::at(Field::WebhookUrl, m))).ok());
        let webhook_secret = self.webhook_secret.as_ref().and_then(|s| {
            WebhookSecret::parse(s.expose_secret())
                .map_err(|e| problems.push(Problem::at(Field::WebhookSecret, e.to_string())))
                .ok()
        });
        let has_url = self.webhook_url.as_deref().is_some_and(|u| !u.trim().is_empty());
        if has_url && self.webhook_secret.is_none() {
            problems.push(Problem::at(
                Field::WebhookSecret,
                "replies are always signed (Standard Webhooks), so a webhook URL needs the secret its receiver verifies them with: `whsec_` and 24 to 64 random bytes in base64 (e.g. `whsec_` followed by the output of `openssl rand -base64 32`)",
            ));
        }
        if webhook_secret.is_some() && !has_url {
            problems.push(Problem::at(
                Field::WebhookSecret,
                "a webhook secret signs the replies posted to the webhook URL; give the webhook URL too",
            ));
        }
        match (name, self.kind) {
            (Some(name), Some(kind)) if problems.is_empty() => Ok(Channel {
                name,
                incarnation: None,
                kind,
                inbound: InboundAuth { tokens: self.tokens, signing_secrets, open },
                delivery: Delivery { webhook_url, webhook_secret },
                platform: None,
                web: None,
            }),
            _ => Err(problems),
        }
    }
}

/// A webhook URL: absolute, http or https, with a host, at most [`MAX_URL_BYTES`].
fn check_webhook_url(text: &str) -> Result<url::Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("the webhook URL is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = url::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}); write it in full, e.g. https://chat.example.com/tern-replies"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the webhook URL must be http or https, not `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the webhook URL has no host".into());
    }
    Ok(url)
}

/// Registers every secret value of `channel` with the masker: tokens, signing and webhook
/// secrets (written out and as their base64 key), and a password in the webhook URL.
pub fn remember_secrets(channel: &Channel) {
    for t in channel.inbound.tokens.iter().chain(channel.platform.iter().flat_map(|p| p.secrets())) {
        known::remember(t);
    }
    for s in channel.inbound.signing_secrets.iter().chain(&channel.delivery.webhook_secret) {
        let written = s.to_whsec();
        known::remember_str(&written);
        if let Some(key) = written.strip_prefix(crate::standard_webhooks::SECRET_PREFIX) {
            known::remember_str(key);
        }
    }
    if let Some(password) = channel.delivery.webhook_url.as_ref().and_then(url::Url::password) {
        known::remember_str(password);
        if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
            known::remember_str(&decoded);
        }
    }
}

/// What may be shown of a channel: which credentials are set (never their values) and the
/// webhook URL as [`display_url`](crate::http::display_url) shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelSummary {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ChannelKind,
    /// Where it is defined.
    pub source: ChannelSource,
    /// How many bearer tokens it accepts.
    pub tokens: usize,
    /// How many signing secrets it accepts.
    pub signing_secrets: usize,
    /// Where replies are posted, with credentials in it masked.
    pub webhook_url: Option<String>,
    /// Whether replies are signed with a channel secret.
    pub webhook_secret_set: bool,
    /// Whether it accepts messages without credentials (`--insecure-open-channel`).
    pub open: bool,
    /// A platform channel's API base URL (`None` for a generic channel).
    pub api_base: Option<String>,
    /// Whether a Telegram channel's secret token is set.
    pub secret_token_set: bool,
    /// Whether a Telegram channel's bot token is set.
    pub bot_token_set: bool,
    /// Whether a WhatsApp channel's app secret is set.
    pub app_secret_set: bool,
    /// Whether a WhatsApp channel's verify token is set.
    pub verify_token_set: bool,
    /// A WhatsApp channel's phone number id.
    pub phone_number_id: Option<String>,
    /// The integration that authenticates a platform channel's replies (WhatsApp).
    pub integration: Option<String>,
    /// Whether a Twilio channel's auth token is set.
    pub auth_token_set: bool,
    /// A Twilio channel's Account SID.
    pub account_sid: Option<String>,
    /// Where a Twilio channel's replies come from.
    pub from: Option<String>,
    /// Whether a Slack channel's signing secret is set.
    pub signing_secret_set: bool,
    /// The origins whose pages may use a web chat (empty for every other kind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// When it was first saved (stored channels), Unix seconds.
    pub created_at: Option<i64>,
    /// When it was last saved (stored channels), Unix seconds.
    pub updated_at: Option<i64>,
}

impl ChannelSummary {
    /// What may be shown of a platform channel's settings, in order, as `(label, value)` (the
    /// label in lower case but for names such as `API base`; a front end capitalizes it as it
    /// shows labels): which secrets are set (never their values), the ids, the integration and
    /// the API base. Empty for a generic channel.
    pub fn platform_facts(&self) -> Vec<(&'static str, String)> {
        let set = |b: bool| if b { "set" } else { "not set" }.to_string();
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut facts = match self.kind {
            ChannelKind::Generic => return Vec::new(),
            ChannelKind::Web => return vec![("allowed origins", self.origins.join(", "))],
            ChannelKind::Telegram => {
                vec![("secret token", set(self.secret_token_set)), ("bot token", set(self.bot_token_set))]
            }
            ChannelKind::Whatsapp => vec![
                ("app secret", set(self.app_secret_set)),
                ("verify token", set(self.verify_token_set)),
                ("phone number id", or_dash(&self.phone_number_id)),
            ],
            ChannelKind::Twilio => vec![
                ("auth token", set(self.auth_token_set)),
                ("account SID", or_dash(&self.account_sid)),
                ("from", or_dash(&self.from)),
            ],
            ChannelKind::Slack => vec![("signing secret", set(self.signing_secret_set))],
        };
        if let Some(integration) = &self.integration {
            facts.push(("integration", format!("{integration} (its token sends the replies)")));
        }
        facts.push(("API base", or_dash(&self.api_base)));
        facts
    }

    fn of(channel: &Channel, source: ChannelSource, times: Option<(i64, i64)>) -> Self {
        Self {
            name: channel.name.to_string(),
            kind: channel.kind,
            source,
            tokens: channel.inbound.tokens.len(),
            signing_secrets: channel.inbound.signing_secrets.len(),
            webhook_url: channel.delivery.webhook_url.as_ref().map(crate::http::display_url),
            webhook_secret_set: channel.delivery.webhook_secret.is_some(),
            open: channel.inbound.open,
            api_base: channel.platform.as_ref().map(|p| crate::http::display_url(p.api_base())),
            secret_token_set: matches!(channel.platform, Some(Platform::Telegram(_))),
            bot_token_set: matches!(channel.platform, Some(Platform::Telegram(_))),
            app_secret_set: matches!(channel.platform, Some(Platform::WhatsApp(_))),
            verify_token_set: matches!(channel.platform, Some(Platform::WhatsApp(_))),
            phone_number_id: match &channel.platform {
                Some(Platform::WhatsApp(w)) => Some(w.phone_number_id.clone()),
                _ => None,
            },
            integration: channel.platform.as_ref().and_then(Platform::integration).map(ToString::to_string),
            auth_token_set: matches!(channel.platform, Some(Platform::Twilio(_))),
            account_sid: match &channel.platform {
                Some(Platform::Twilio(t)) => Some(t.account_sid.clone()),
                _ => None,
            },
            from: match &channel.platform {
                Some(Platform::Twilio(t)) => Some(t.from.clone()),
                _ => None,
            },
            signing_secret_set: matches!(channel.platform, Some(Platform::Slack(_))),
            origins: channel.web.iter().flat_map(|w| w.origins.iter().map(ToString::to_string)).collect(),
            created_at: times.map(|t| t.0),
            updated_at: times.map(|t| t.1),
        }
    }
}

/// One cached lookup: the channel (or none) and when it was read, in ms.
type Cached = (Option<Arc<Channel>>, i64);

#[derive(Default)]
struct Cache {
    entries: HashMap<ChannelName, Cached>,
    /// Bumped by every save and remove, so that a lookup that read the store before a change
    /// does not cache what it read.
    generation: u64,
}

/// The channels service (see the module documentation).
pub struct Channels {
    store: Arc<dyn ChannelStore>,
    configured: HashMap<ChannelName, (Arc<Channel>, ChannelSource)>,
    open: BTreeSet<ChannelName>,
    cache: Mutex<Cache>,
    clock: Arc<dyn Clock>,
    /// Values no channel may have as a bearer token (the admin token: whoever holds a
    /// channel's token must not hold the admin API too).
    reserved: Vec<SecretString>,
    /// Whether webhook URLs may point into private networks (`--allow-private-network`): a URL
    /// the outbound guard would refuse is refused when a channel is saved.
    allow_private_network: bool,
    /// Saves one at a time, so that two saves cannot both pass the check that no other channel
    /// has their credentials (another process saving at once is found at the next start:
    /// [`Channels::stored_conflicts`]).
    saving: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl Channels {
    /// The service over `store`, with the channels `configured` at start-up (each with where it
    /// comes from; a later one replaces an earlier one of the same name), the built-in
    /// `console` channel ([`CONSOLE_CHANNEL`](crate::channel::CONSOLE_CHANNEL)) and the channels
    /// that accept messages without credentials (`open`).
    pub fn new(
        store: Arc<dyn ChannelStore>,
        configured: impl IntoIterator<Item = (Channel, ChannelSource)>,
        open: BTreeSet<ChannelName>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // The console's Try it: a web chat of Tern's own pages, with a key of this process (its
        // sessions end with it).
        let console = Channel {
            name: ChannelName::console_channel(),
            incarnation: None,
            kind: ChannelKind::Web,
            inbound: InboundAuth::default(),
            delivery: Delivery::default(),
            platform: None,
            web: Some(crate::web_chat::WebChat {
                origins: Vec::new(),
                session_key: crate::web_chat::SessionKey::generate(),
                same_origin: true,
            }),
        };
        let configured = std::iter::once((console, ChannelSource::Builtin))
            .chain(configured)
            .map(|(mut c, source)| {
                // The console's channel is never open: only the signed-in console posts to it.
                c.inbound.open = source != ChannelSource::Builtin && open.contains(&c.name);
                remember_secrets(&c);
                (c.name.clone(), (Arc::new(c), source))
            })
            .collect();
        Self {
            store,
            configured,
            open,
            cache: Mutex::default(),
            clock,
            reserved: Vec::new(),
            allow_private_network: false,
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// The same service accepting webhook URLs in private networks when
    /// `allow_private_network` (`--allow-private-network`, for local development); without it,
    /// a webhook URL on a loopback, private or link-local address is refused when saved, as
    /// every delivery to it would be.
    #[must_use]
    pub fn allowing_private_network(mut self, allow_private_network: bool) -> Self {
        self.allow_private_network = allow_private_network;
        self
    }

    /// The same service refusing `tokens` as any saved channel's bearer token (the admin
    /// token), with a problem at `tokens`.
    #[must_use]
    pub fn reserving(mut self, tokens: impl IntoIterator<Item = SecretString>) -> Self {
        self.reserved.extend(tokens);
        self
    }

    /// The first channel configured at start-up (flags, `tern.toml`) that breaks a rule only
    /// the service can check: its bearer token is reserved ([`Channels::reserving`]), it shares
    /// a token or a signing secret with another configured channel, or its webhook URL is one
    /// the outbound guard refuses; with the problem: such a configuration is refused.
    pub async fn configured_problem(&self) -> Option<(ChannelName, Problem)> {
        let mut configured: Vec<&Channel> = self.configured.values().map(|(c, _)| c.as_ref()).collect();
        configured.sort_by(|a, b| a.name.cmp(&b.name));
        for c in &configured {
            let problem = match self.reserved_token(c).or_else(|| shared_credentials(c, &configured).into_iter().next())
            {
                Some(p) => Some(p),
                None => self.refused_webhook(c).await,
            };
            if let Some(p) = problem {
                return Some((c.name.clone(), p));
            }
        }
        None
    }

    /// The problem of a channel whose webhook URL (or platform API) the outbound guard
    /// refuses.
    async fn refused_webhook(&self, channel: &Channel) -> Option<Problem> {
        let (field, url) = match (&channel.delivery.webhook_url, &channel.platform) {
            (Some(url), _) => (Field::WebhookUrl, url),
            (None, Some(platform)) => (Field::ApiBase, platform.api_base()),
            (None, None) => return None,
        };
        let reason = crate::http::guard::refusal(url, self.allow_private_network).await?;
        Some(Problem::at(
            field,
            format!("Tern would refuse to deliver replies to {}: {reason}", crate::http::display_url(url)),
        ))
    }

    /// The problem of a channel that uses a reserved value as a bearer token.
    fn reserved_token(&self, channel: &Channel) -> Option<Problem> {
        let reused =
            channel.inbound.tokens.iter().any(|t| crate::channel_auth::is_one_of(t.expose_secret(), &self.reserved));
        reused.then(|| {
            Problem::at(
                Field::Tokens,
                "this token is the admin token: whoever holds a channel's token would hold the admin API too; give the channel a token of its own",
            )
        })
    }

    /// How many names the lookup cache holds now (at most [`CACHE_MAX`]).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    /// The channels that accept messages without credentials.
    pub fn open_channels(&self) -> &BTreeSet<ChannelName> {
        &self.open
    }

    /// Where `name` is configured, when it is not a stored channel (`default` is always
    /// configured: by flags).
    fn configured_source(&self, name: &ChannelName) -> Option<ChannelSource> {
        self.configured.get(name).map(|(_, s)| *s).or_else(|| name.is_default().then_some(ChannelSource::Flags))
    }

    fn invalidate(&self, name: &ChannelName) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.entries.remove(name);
        cache.generation += 1;
    }

    /// Checks `draft` ([`ChannelDraft::check`]) and stores it as channel `name`; a stored
    /// channel of that name is replaced when `replace`, else refused.
    ///
    /// # Errors
    /// [`ChannelError::Invalid`] (every problem), [`ChannelError::Configured`] (`default` or a
    /// `tern.toml` channel), [`ChannelError::Exists`], [`ChannelError::Store`].
    pub async fn save(&self, name: &str, draft: ChannelDraft, replace: bool) -> Result<ChannelSummary, ChannelError> {
        let _one_at_a_time = self.saving.lock().await;
        if let Ok(n) = ChannelName::new(name) {
            if let Some(source) = self.configured_source(&n) {
                return Err(ChannelError::Configured { name: n, defined_by: source });
            }
            if !replace && self.store.get_channel(&n).await?.is_some() {
                return Err(ChannelError::Exists { name: n });
            }
        }
        let open = ChannelName::new(name).is_ok_and(|n| self.open.contains(&n));
        let mut draft = draft;
        // Replacing a web chat's settings keeps its session key: the visitors stay signed in.
        if replace
            && draft.kind == Some(ChannelKind::Web)
            && draft.session_key.is_none()
            && let Ok(n) = ChannelName::new(name)
            && let Some(stored) = self.store.get_channel(&n).await?
        {
            draft.session_key = stored.channel.web.map(|w| w.session_key);
        }
        let channel =
            draft.check(name, open).map_err(|problems| ChannelError::Invalid { name: name.to_string(), problems })?;
        if let Some(problem) = self.reserved_token(&channel) {
            return Err(ChannelError::Invalid { name: name.to_string(), problems: vec![problem] });
        }
        let stored = self.store.list_channels().await?;
        let others: Vec<&Channel> = self
            .configured
            .values()
            .map(|(c, _)| c.as_ref())
            .chain(stored.iter().map(|s| &s.channel).filter(|c| !self.configured.contains_key(&c.name)))
            .collect();
        let mut problems = shared_credentials(&channel, &others);
        problems.extend(self.refused_webhook(&channel).await);
        if !problems.is_empty() {
            return Err(ChannelError::Invalid { name: name.to_string(), problems });
        }
        remember_secrets(&channel);
        self.store.put_channel(&channel).await?;
        self.invalidate(&channel.name);
        let stored = self.store.get_channel(&channel.name).await?;
        let times = stored.as_ref().map(|s| (s.created_at, s.updated_at));
        Ok(ChannelSummary::of(&channel, ChannelSource::Stored, times))
    }

    /// Removes the stored channel `name`.
    ///
    /// # Errors
    /// [`ChannelError::Configured`] (`default`, a `tern.toml` channel), [`ChannelError::NotFound`],
    /// [`ChannelError::Store`].
    pub async fn remove(&self, name: &ChannelName) -> Result<(), ChannelError> {
        if let Some(source) = self.configured_source(name) {
            return Err(ChannelError::Configured { name: name.clone(), defined_by: source });
        }
        let removed = self.store.remove_channel(name).await?;
        self.invalidate(name);
        if removed { Ok(()) } else { Err(ChannelError::NotFound { name: name.clone() }) }
    }

    /// The stored channels that break a rule only the whole set of channels can check — a
    /// credential shared with another channel, the admin token as a token, a destination this
    /// server's outbound guard refuses (an address literal or a loopback name; no lookup) —
    /// because two
    /// processes saved at once, or a process saved without knowing the other channels (a
    /// `tern.toml` it did not read, the admin token of another environment). Each with its
    /// problem, for `tern serve` to warn about at start-up: they stay in service (the admin
    /// API that mends them needs the server), and the admin token never authenticates a
    /// channel whatever is stored ([`ChannelDirectory::channel`] leaves it out).
    ///
    /// # Errors
    /// [`ChannelError::Store`].
    pub async fn stored_conflicts(&self) -> Result<Vec<(ChannelName, Problem)>, ChannelError> {
        let stored: Vec<Channel> = self
            .store
            .list_channels()
            .await?
            .into_iter()
            .map(|s| s.channel)
            .filter(|c| !self.configured.contains_key(&c.name))
            .collect();
        let all: Vec<&Channel> = self.configured.values().map(|(c, _)| c.as_ref()).chain(stored.iter()).collect();
        let mut out = Vec::new();
        for c in &stored {
            for p in self.reserved_token(c).into_iter().chain(shared_credentials(c, &all)) {
                out.push((c.name.clone(), p));
            }
            // Where its replies go, as far as it can be told without a name lookup: a setting
            // saved with --allow-private-network by another command, served without it.
            let (field, url) = match (&c.delivery.webhook_url, &c.platform) {
                (Some(url), _) => (Field::WebhookUrl, url),
                (None, Some(platform)) => (Field::ApiBase, platform.api_base()),
                (None, None) => continue,
            };
            if let Some(reason) = crate::http::guard::static_refusal(url, self.allow_private_network) {
                let message = format!(
                    "every reply would be refused: Tern would refuse to deliver to {}: {reason}",
                    crate::http::display_url(url)
                );
                out.push((c.name.clone(), Problem::at(field, message)));
            }
        }
        Ok(out)
    }

    fn with_open(&self, mut channel: Channel) -> Channel {
        channel.inbound.open = self.open.contains(&channel.name);
        let before = channel.inbound.tokens.len();
        channel.inbound.tokens.retain(|t| !crate::channel_auth::is_one_of(t.expose_secret(), &self.reserved));
        if channel.inbound.tokens.len() != before {
            tracing::warn!(channel = %channel.name, "a stored channel has the admin token as a bearer token; it is not accepted as the channel's (give the channel a token of its own)");
        }
        remember_secrets(&channel);
        channel
    }

    /// Every channel: the configured ones, then the stored ones, by name.
    ///
    /// # Errors
    /// [`ChannelError::Store`].
    pub async fn list(&self) -> Result<Vec<ChannelSummary>, ChannelError> {
        let mut out: Vec<ChannelSummary> =
            self.configured.values().map(|(c, source)| ChannelSummary::of(c, *source, None)).collect();
        for StoredChannel { channel, created_at, updated_at } in self.store.list_channels().await? {
            if self.configured.contains_key(&channel.name) {
                continue;
            }
            out.push(ChannelSummary::of(
                &self.with_open(channel),
                ChannelSource::Stored,
                Some((created_at, updated_at)),
            ));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The channel `name`, as it may be shown.
    ///
    /// # Errors
    /// [`ChannelError::NotFound`], [`ChannelError::Store`].
    pub async fn get(&self, name: &ChannelName) -> Result<ChannelSummary, ChannelError> {
        if let Some((c, source)) = self.configured.get(name) {
            return Ok(ChannelSummary::of(c, *source, None));
        }
        match self.store.get_channel(name).await? {
            Some(StoredChannel { channel, created_at, updated_at }) => {
                Ok(ChannelSummary::of(&self.with_open(channel), ChannelSource::Stored, Some((created_at, updated_at))))
            }
            None => Err(ChannelError::NotFound { name: name.clone() }),
        }
    }
}

#[async_trait::async_trait]
impl ChannelDirectory for Channels {
    async fn channel(&self, name: &ChannelName) -> Result<Option<Arc<Channel>>, StoreError> {
        if let Some((c, _)) = self.configured.get(name) {
            return Ok(Some(c.clone()));
        }
        let now = self.clock.now_ms();
        let generation = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((hit, at)) = cache.entries.get(name)
                && now.saturating_sub(*at) < CACHE_TTL_MS
            {
                return Ok(hit.clone());
            }
            cache.generation
        };
        let found = self.store.get_channel(name).await?.map(|s| Arc::new(self.with_open(s.channel)));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation == generation {
            if cache.entries.len() >= CACHE_MAX && !cache.entries.contains_key(name) {
                cache.entries.retain(|_, (_, at)| now.saturating_sub(*at) < CACHE_TTL_MS);
                // Still full of fresh names: the oldest goes, not all of them (a flood of
                // unknown names would otherwise send every lookup to the store at once).
                if cache.entries.len() >= CACHE_MAX
                    && let Some(oldest) = cache.entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone())
                {
                    cache.entries.remove(&oldest);
                }
            }
            cache.entries.insert(name.clone(), (found.clone(), now));
        }
        Ok(found)
    }
}

mod platform_settings;
mod shared;
mod web_settings;
use shared::shared_credentials;
#[cfg(test)]
mod tests;
