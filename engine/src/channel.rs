//! Channels: where messages come from and how replies go back. A channel is a named, stored
//! (encrypted at rest) configuration: its kind, how it proves that a request is its own
//! ([`InboundAuth`]) and where its replies are delivered ([`Delivery`]). The `default` channel
//! is the one of the `/v1/conversations/…` routes.
//!
//! These are the runtime types every part shares: the edge checks [`InboundAuth`], the outbox
//! sends to a channel's [`Delivery`], the stores and front ends (CLI, admin API, console,
//! `tern.toml`) save and show [`Channel`]s. Secret values are unprintable by construction
//! (`SecretString`, [`WebhookSecret`]).

use secrecy::SecretString;

pub use crate::ids::ChannelName;
use crate::standard_webhooks::WebhookSecret;

/// The name of the channel of the `/v1/conversations/…` routes.
pub const DEFAULT_CHANNEL: &str = "default";

/// The name of the channel of the console's test conversations (`try-…`): configured by Tern
/// itself, it has no credentials (no request reaches it from outside) and no webhook (test
/// replies are shown on the console, never delivered to a production receiver).
pub const CONSOLE_CHANNEL: &str = "console";

impl ChannelName {
    /// The `console` channel ([`CONSOLE_CHANNEL`]).
    pub fn console_channel() -> Self {
        Self::new(CONSOLE_CHANNEL).unwrap_or_else(|_| unreachable!("`console` is a valid channel name"))
    }

    /// The `default` channel.
    pub fn default_channel() -> Self {
        Self::new(DEFAULT_CHANNEL).unwrap_or_else(|_| unreachable!("`default` is a valid channel name"))
    }

    /// Whether this is the `default` channel.
    pub fn is_default(&self) -> bool {
        self.as_str() == DEFAULT_CHANNEL
    }
}

impl Default for ChannelName {
    fn default() -> Self {
        Self::default_channel()
    }
}

/// What kind of platform a channel talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Posts Tern's own JSON (`{"text", "contact", "message_id"}`) and takes replies at a
    /// webhook URL.
    Generic,
    /// A Telegram bot: updates at `/v1/channels/{name}/webhook`, replies through the Bot API
    /// ([`crate::platforms::telegram`]).
    Telegram,
    /// A WhatsApp Business number (Cloud API): notifications at `/v1/channels/{name}/webhook`,
    /// replies through the Cloud API ([`crate::platforms::whatsapp`]).
    Whatsapp,
    /// Twilio Programmable Messaging (SMS, and WhatsApp through Twilio): incoming messages at
    /// `/v1/channels/{name}/webhook`, replies through the Messages API
    /// ([`crate::platforms::twilio`]).
    Twilio,
    /// A Slack app: events and button presses at `/v1/channels/{name}/webhook`, replies with
    /// `chat.postMessage` ([`crate::platforms::slack`]).
    Slack,
    /// A web chat: the widget on the pages of the allowed origins posts the visitors' messages
    /// to `/v1/channels/{name}/web/…` and follows the replies as a stream
    /// ([`crate::web_chat`]).
    Web,
}

impl ChannelKind {
    /// The name used in JSON, the store and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Telegram => "telegram",
            Self::Whatsapp => "whatsapp",
            Self::Twilio => "twilio",
            Self::Slack => "slack",
            Self::Web => "web",
        }
    }
}

/// How a channel proves that a request is its own. A request passes with any one of the
/// tokens (`Authorization: Bearer …`) or a Standard Webhooks signature by any one of the
/// signing secrets; several of each are accepted during a rotation.
#[derive(Clone, Debug, Default)]
pub struct InboundAuth {
    /// Bearer tokens.
    pub tokens: Vec<SecretString>,
    /// Standard Webhooks secrets (`whsec_…`).
    pub signing_secrets: Vec<WebhookSecret>,
    /// Accept requests without credentials: only `--insecure-open-channel NAME` sets this.
    pub open: bool,
}

/// Where a channel's replies are delivered.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// The receiver's URL (a user:password or a token in it is masked wherever it is shown).
    pub webhook_url: Option<url::Url>,
    /// The secret every delivery is signed with (Standard Webhooks).
    pub webhook_secret: Option<WebhookSecret>,
}

/// Which life of a stored channel this is: 64 random bits, written as 16 lower-case hex
/// digits, made when a channel is first saved and kept when its settings are replaced. A channel
/// removed and added again under the same name is a new incarnation, and its conversations,
/// waiting runs, answers and deliveries are kept apart from the old one's
/// ([`ChannelRef`]): a new token never reads what the old channel's contacts were told.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Incarnation(std::sync::Arc<str>);

impl Incarnation {
    /// A new, random incarnation.
    pub fn generate() -> Self {
        let bits: u64 = rand::random();
        Self(format!("{bits:016x}").into())
    }

    /// An incarnation as written by [`Self::as_str`]: 16 lower-case hex digits; `None` for
    /// anything else (the empty text of a channel stored before incarnations existed among them).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| Self(text.into()))
    }

    /// The 16 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A channel as its conversations, replay records and deliveries name it: its name and, for a
/// stored channel, its [`Incarnation`]. Written `name` or `name@incarnation` (channel names have
/// no `@`), e.g. in the outbox's `channel` column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    /// The channel's name.
    pub name: ChannelName,
    /// Its incarnation: `None` for a configured channel (`default`, `tern.toml`) and for a
    /// channel stored before incarnations existed.
    pub incarnation: Option<Incarnation>,
}

impl ChannelRef {
    /// The channel `name` without an incarnation.
    pub fn named(name: ChannelName) -> Self {
        Self { name, incarnation: None }
    }

    /// `channel`'s reference.
    pub fn of(channel: &Channel) -> Self {
        Self { name: channel.name.clone(), incarnation: channel.incarnation.clone() }
    }

    /// Reads `name` or `name@incarnation`; `None` when either part is not valid.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once('@') {
            Some((name, incarnation)) => {
                Some(Self { name: ChannelName::new(name).ok()?, incarnation: Some(Incarnation::parse(incarnation)?) })
            }
            None => Some(Self::named(ChannelName::new(text).ok()?)),
        }
    }

    /// Whether `channel` is this one: the same name and the same incarnation (a channel removed
    /// and added again is not).
    pub fn is(&self, channel: &Channel) -> bool {
        self.name == channel.name && self.incarnation == channel.incarnation
    }
}

impl std::fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.incarnation {
            Some(i) => write!(f, "{}@{}", self.name, i.as_str()),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A channel.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Its name.
    pub name: ChannelName,
    /// Which life of the stored channel this is (`None` for a configured channel, and for a
    /// channel not saved yet: the store makes one when it first saves the channel).
    pub incarnation: Option<Incarnation>,
    /// Its kind.
    pub kind: ChannelKind,
    /// How its requests are authenticated.
    pub inbound: InboundAuth,
    /// Where its replies go.
    pub delivery: Delivery,
    /// A messaging platform's settings: `Some` exactly when [`Channel::kind`] is a platform's
    /// (checked where channels are made: [`crate::channels::ChannelDraft::check`], the stores).
    pub platform: Option<crate::platforms::Platform>,
    /// A web chat's settings: `Some` exactly when [`Channel::kind`] is
    /// [`ChannelKind::Web`].
    pub web: Option<crate::web_chat::WebChat>,
}

/// Where channels are looked up by name: the stored channels plus those configured by flags
/// and `tern.toml` (the `default` channel among them). The edge asks it for every request, the
/// outbox for every delivery; implementations keep lookups cheap (a bounded cache).
#[async_trait::async_trait]
pub trait ChannelDirectory: Send + Sync + std::fmt::Debug {
    /// The channel called `name`, if there is one.
    ///
    /// # Errors
    /// The store could not be read.
    async fn channel(&self, name: &ChannelName) -> Result<Option<std::sync::Arc<Channel>>, crate::storage::StoreError>;
}

/// A fixed set of channels (tests, and a server whose only channel is `default`).
#[derive(Debug, Default)]
pub struct FixedChannels {
    channels: std::collections::HashMap<ChannelName, std::sync::Arc<Channel>>,
}

impl FixedChannels {
    /// The set of `channels` (a later one replaces an earlier one of the same name).
    pub fn new(channels: impl IntoIterator<Item = Channel>) -> Self {
        Self { channels: channels.into_iter().map(|c| (c.name.clone(), std::sync::Arc::new(c))).collect() }
    }
}

#[async_trait::async_trait]
impl ChannelDirectory for FixedChannels {
    async fn channel(&self, name: &ChannelName) -> Result<Option<std::sync::Arc<Channel>>, crate::storage::StoreError> {
        Ok(self.channels.get(name).cloned())
    }
}

/// A channel as the store keeps it: the channel (its `open` flag is never stored: only
/// `--insecure-open-channel` sets it, at start-up) and when it was saved.
#[derive(Clone, Debug)]
pub struct StoredChannel {
    /// The channel.
    pub channel: Channel,
    /// When it was first saved, Unix seconds.
    pub created_at: i64,
    /// When it was last saved, Unix seconds.
    pub updated_at: i64,
}

/// Where channels are stored (`tern-store` implements it on SQLite and PostgreSQL). The whole
/// configuration but the name and kind (tokens, signing secrets, the webhook URL and its secret)
/// is one value encrypted at rest, bound to the table, the row and the column.
#[async_trait::async_trait]
pub trait ChannelStore: Send + Sync {
    /// Saves `channel`, replacing a channel of the same name (its `created_at` is kept).
    ///
    /// # Errors
    /// The store could not be written.
    async fn put_channel(&self, channel: &Channel) -> Result<(), crate::storage::StoreError>;

    /// The channel called `name`, if it is stored.
    ///
    /// # Errors
    /// The store could not be read, or the row does not decrypt.
    async fn get_channel(&self, name: &ChannelName) -> Result<Option<StoredChannel>, crate::storage::StoreError>;

    /// Every stored channel, by name.
    ///
    /// # Errors
    /// The store could not be read, or a row does not decrypt.
    async fn list_channels(&self) -> Result<Vec<StoredChannel>, crate::storage::StoreError>;

    /// Removes the channel called `name`; whether there was one.
    ///
    /// # Errors
    /// The store could not be written.
    async fn remove_channel(&self, name: &ChannelName) -> Result<bool, crate::storage::StoreError>;
}
