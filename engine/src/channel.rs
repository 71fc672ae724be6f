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

impl ChannelName {
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
}

impl ChannelKind {
    /// The name used in JSON, the store and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
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

/// A channel.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Its name.
    pub name: ChannelName,
    /// Its kind.
    pub kind: ChannelKind,
    /// How its requests are authenticated.
    pub inbound: InboundAuth,
    /// Where its replies go.
    pub delivery: Delivery,
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
