//! [`ChannelStore`] on SQL: the `channels` table. The name and kind are clear columns (to list
//! and look up); everything else of a channel — bearer tokens, signing secrets, the webhook URL
//! (which may hold a password) and its secret — is one JSON value encrypted like every other
//! secret column ([`Sealer::seal`], bound to `("channels", name, "config")`). The incarnation
//! ([`Incarnation`]) is made by the first save of a name and kept by later saves.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use tern_engine::IntegrationName;
use tern_engine::channel::{
    Channel, ChannelKind, ChannelName, ChannelStore, Delivery, InboundAuth, Incarnation, StoredChannel,
};
use tern_engine::platforms::Platform;
use tern_engine::platforms::slack::Slack;
use tern_engine::platforms::telegram::Telegram;
use tern_engine::platforms::twilio::Twilio;
use tern_engine::platforms::whatsapp::WhatsApp;
use tern_engine::standard_webhooks::WebhookSecret;
use tern_engine::web_chat::{Origin, SessionKey, WebChat};

use super::{Flavor, SqlStore};
use crate::StoreError;

/// The encrypted part of a channel, as stored (version 1 of the format).
#[derive(Serialize, Deserialize)]
struct SealedConfig {
    tokens: Vec<String>,
    signing_secrets: Vec<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    /// A Telegram channel's settings (absent for every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    telegram: Option<SealedTelegram>,
    /// A WhatsApp channel's settings (absent for every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    whatsapp: Option<SealedWhatsApp>,
    /// A Twilio channel's settings (absent for every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    twilio: Option<SealedTwilio>,
    /// A Slack channel's settings (absent for every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slack: Option<SealedSlack>,
    /// A web channel's settings (absent for every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    web: Option<SealedWeb>,
}

/// A web channel's settings, as stored (inside the encrypted config).
#[derive(Serialize, Deserialize)]
struct SealedWeb {
    origins: Vec<String>,
    /// 64 hex digits.
    session_key: String,
}

/// A Slack channel's settings, as stored (inside the encrypted config).
#[derive(Serialize, Deserialize)]
struct SealedSlack {
    signing_secret: String,
    integration: String,
    api_base: String,
}

/// A Twilio channel's settings, as stored (inside the encrypted config).
#[derive(Serialize, Deserialize)]
struct SealedTwilio {
    account_sid: String,
    auth_token: String,
    from: String,
    api_base: String,
}

/// A WhatsApp channel's settings, as stored (inside the encrypted config).
#[derive(Serialize, Deserialize)]
struct SealedWhatsApp {
    app_secret: String,
    verify_token: String,
    phone_number_id: String,
    integration: String,
    api_base: String,
}

/// A Telegram channel's settings, as stored (inside the encrypted config).
#[derive(Serialize, Deserialize)]
struct SealedTelegram {
    secret_token: String,
    bot_token: String,
    api_base: String,
}

impl SealedConfig {
    fn of(channel: &Channel) -> Self {
        Self {
            tokens: channel.inbound.tokens.iter().map(|t| t.expose_secret().to_string()).collect(),
            signing_secrets: channel.inbound.signing_secrets.iter().map(WebhookSecret::to_whsec).collect(),
            webhook_url: channel.delivery.webhook_url.as_ref().map(ToString::to_string),
            webhook_secret: channel.delivery.webhook_secret.as_ref().map(WebhookSecret::to_whsec),
            telegram: match &channel.platform {
                Some(Platform::Telegram(t)) => Some(SealedTelegram {
                    secret_token: t.secret_token.expose_secret().to_string(),
                    bot_token: t.bot_token.expose_secret().to_string(),
                    api_base: t.api_base.to_string(),
                }),
                _ => None,
            },
            whatsapp: match &channel.platform {
                Some(Platform::WhatsApp(w)) => Some(SealedWhatsApp {
                    app_secret: w.app_secret.expose_secret().to_string(),
                    verify_token: w.verify_token.expose_secret().to_string(),
                    phone_number_id: w.phone_number_id.clone(),
                    integration: w.integration.to_string(),
                    api_base: w.api_base.to_string(),
                }),
                _ => None,
            },
            slack: match &channel.platform {
                Some(Platform::Slack(s)) => Some(SealedSlack {
                    signing_secret: s.signing_secret.expose_secret().to_string(),
                    integration: s.integration.to_string(),
                    api_base: s.api_base.to_string(),
                }),
                _ => None,
            },
            twilio: match &channel.platform {
                Some(Platform::Twilio(t)) => Some(SealedTwilio {
                    account_sid: t.account_sid.clone(),
                    auth_token: t.auth_token.expose_secret().to_string(),
                    from: t.from.clone(),
                    api_base: t.api_base.to_string(),
                }),
                _ => None,
            },
            web: channel.web.as_ref().map(|w| SealedWeb {
                origins: w.origins.iter().map(ToString::to_string).collect(),
                session_key: w.session_key.expose_hex().to_string(),
            }),
        }
    }

    #[allow(clippy::type_complexity)] // the parts of a channel, each its own type
    fn into_parts(self, name: &str) -> Result<(InboundAuth, Delivery, Option<Platform>, Option<WebChat>), StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("channel `{name}`"), reason };
        let secret = |s: &str| WebhookSecret::parse(s).map_err(|e| corrupt(e.to_string()));
        let telegram_secrets = self.telegram.iter().flat_map(|t| [&t.secret_token, &t.bot_token]);
        let whatsapp_secrets = self.whatsapp.iter().flat_map(|w| [&w.app_secret, &w.verify_token]);
        let twilio_secrets = self.twilio.iter().map(|t| &t.auth_token);
        let slack_secrets = self.slack.iter().map(|s| &s.signing_secret);
        let platform_secrets = telegram_secrets.chain(whatsapp_secrets).chain(twilio_secrets).chain(slack_secrets);
        for value in self.tokens.iter().chain(&self.signing_secrets).chain(&self.webhook_secret).chain(platform_secrets)
        {
            tern_engine::secrets::known::remember_str(value);
        }
        let web = match self.web {
            None => None,
            Some(w) => Some(WebChat {
                origins: w
                    .origins
                    .iter()
                    .map(|o| Origin::parse(o).map_err(|e| corrupt(format!("origin: {e}"))))
                    .collect::<Result<_, _>>()?,
                session_key: SessionKey::parse(&w.session_key).map_err(|e| corrupt(e.to_string()))?,
                same_origin: false,
            }),
        };
        let api_base = |u: &str| url::Url::parse(u).map_err(|e| corrupt(format!("API base: {e}")));
        let integration = |name: String| IntegrationName::new(name).map_err(|e| corrupt(format!("integration: {e}")));
        let platform = match (self.telegram, self.whatsapp, self.twilio, self.slack) {
            (None, None, None, None) => None,
            (Some(t), None, None, None) => Some(Platform::Telegram(Telegram {
                secret_token: SecretString::from(t.secret_token),
                bot_token: SecretString::from(t.bot_token),
                api_base: api_base(&t.api_base)?,
            })),
            (None, Some(w), None, None) => Some(Platform::WhatsApp(WhatsApp {
                app_secret: SecretString::from(w.app_secret),
                verify_token: SecretString::from(w.verify_token),
                phone_number_id: w.phone_number_id,
                integration: integration(w.integration)?,
                api_base: api_base(&w.api_base)?,
            })),
            (None, None, None, Some(s)) => Some(Platform::Slack(Slack {
                signing_secret: SecretString::from(s.signing_secret),
                integration: integration(s.integration)?,
                api_base: api_base(&s.api_base)?,
            })),
            (None, None, Some(t), None) => Some(Platform::Twilio(Twilio {
                account_sid: t.account_sid,
                auth_token: SecretString::from(t.auth_token),
                from: t.from,
                api_base: api_base(&t.api_base)?,
            })),
            _ => return Err(corrupt("it has the settings of two platforms".into())),
        };
        let inbound = InboundAuth {
            tokens: self.tokens.into_iter().map(SecretString::from).collect(),
            signing_secrets: self.signing_secrets.iter().map(|s| secret(s)).collect::<Result<_, _>>()?,
            open: false,
        };
        let delivery = Delivery {
            webhook_url: self
                .webhook_url
                .map(|u| url::Url::parse(&u))
                .transpose()
                .map_err(|e| corrupt(format!("webhook URL: {e}")))?,
            webhook_secret: self.webhook_secret.as_deref().map(secret).transpose()?,
        };
        Ok((inbound, delivery, platform, web))
    }
}

impl<F: Flavor> SqlStore<F> {
    fn channel_of(&self, r: &AnyRow) -> Result<StoredChannel, StoreError> {
        let name: String = r.get("name");
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("channel `{name}`"), reason };
        let kind: String = r.get("kind");
        let kind = match kind.as_str() {
            "generic" => ChannelKind::Generic,
            "telegram" => ChannelKind::Telegram,
            "whatsapp" => ChannelKind::Whatsapp,
            "twilio" => ChannelKind::Twilio,
            "slack" => ChannelKind::Slack,
            "web" => ChannelKind::Web,
            other => return Err(corrupt(format!("unknown kind `{other}`"))),
        };
        let incarnation: String = r.get("incarnation");
        let blob: Vec<u8> = r.get("config");
        let sealed: SealedConfig = self.sealer.open_json("channels", &name, "config", &blob)?;
        let (inbound, delivery, platform, web) = sealed.into_parts(&name)?;
        let settings_kind = match (&platform, &web) {
            (Some(p), None) => p.kind(),
            (None, Some(_)) => ChannelKind::Web,
            (None, None) => ChannelKind::Generic,
            (Some(_), Some(_)) => return Err(corrupt("it has the settings of a platform and of a web chat".into())),
        };
        if settings_kind != kind {
            return Err(corrupt(format!("its settings are not those of a {} channel", kind.as_str())));
        }
        Ok(StoredChannel {
            channel: Channel {
                name: ChannelName::new(name.clone()).map_err(|e| corrupt(e.to_string()))?,
                incarnation: Incarnation::parse(&incarnation),
                kind,
                inbound,
                delivery,
                platform,
                web,
            },
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        })
    }
}

#[async_trait]
impl<F: Flavor> ChannelStore for SqlStore<F> {
    async fn put_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        let name = channel.name.as_str();
        let blob = self.sealer.seal("channels", name, "config", &SealedConfig::of(channel))?;
        sqlx::query(
            "INSERT INTO channels (name, kind, config, created_at, updated_at, incarnation) VALUES ($1, $2, $3, $4, $4, $5)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, config = excluded.config,
               updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(channel.kind.as_str())
        .bind(blob)
        .bind(self.now_s())
        .bind(Incarnation::generate().as_str().to_string())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn get_channel(&self, name: &ChannelName) -> Result<Option<StoredChannel>, StoreError> {
        let row =
            sqlx::query("SELECT name, kind, config, created_at, updated_at, incarnation FROM channels WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        row.as_ref().map(|r| self.channel_of(r)).transpose()
    }

    async fn list_channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        let rows =
            sqlx::query("SELECT name, kind, config, created_at, updated_at, incarnation FROM channels ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
        rows.iter().map(|r| self.channel_of(r)).collect()
    }

    async fn remove_channel(&self, name: &ChannelName) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM channels WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(r.rows_affected() > 0)
    }
}
