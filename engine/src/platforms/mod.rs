//! Messaging platforms as channel kinds: what each one needs to take its updates at
//! `/v1/channels/{name}/webhook` and to send replies through its API. A platform channel does
//! not use the generic kind's bearer tokens, signatures or webhook URL: the platform proves its
//! requests its own way, and replies go to the platform's API from the durable outbox.
//!
//! One module per platform, each with the same parts: its settings (unprintable secrets), the
//! check of an inbound request's headers, the parsing of its payload into messages, and the
//! requests that send a reply, with how to read the platform's answers.

pub mod telegram;

/// A platform channel's settings.
#[derive(Clone, Debug)]
pub enum Platform {
    /// The Telegram Bot API.
    Telegram(telegram::Telegram),
}

impl Platform {
    /// The channel kind it is.
    pub fn kind(&self) -> crate::channel::ChannelKind {
        match self {
            Self::Telegram(_) => crate::channel::ChannelKind::Telegram,
        }
    }

    /// Every secret value of the settings, to register with the masker and to compare with
    /// other channels' (a credential names one channel).
    pub fn secrets(&self) -> Vec<&secrecy::SecretString> {
        match self {
            Self::Telegram(t) => vec![&t.secret_token, &t.bot_token],
        }
    }

    /// The platform API's base URL, as it may be shown.
    pub fn api_base(&self) -> &url::Url {
        match self {
            Self::Telegram(t) => &t.api_base,
        }
    }
}
