//! A credential names one channel: no secret value of a channel may be another channel's,
//! whatever its role (a bearer token, a signing secret, the secret replies are signed with, a
//! platform's token), and no channel lists the same value twice. Otherwise a request or a
//! signature made for one channel would be accepted by another (a signature covers the body,
//! not the URL it is posted to), and whoever receives one channel's signed replies could sign
//! messages as another.
//!
//! A webhook secret may be another channel's webhook secret (one receiver may take several
//! channels' replies), never another channel's inbound credential.
//!
//! Values are compared as text in constant time: tokens as written, `whsec_` secrets both
//! written out and as their key alone (the same key is the same secret with or without the
//! prefix). The problems name the other channel and the field, never the value.

use secrecy::{ExposeSecret, SecretString};

use super::{Field, Problem};
use crate::channel::Channel;

/// Every secret value of `channel` with the field it is at.
fn secret_values(channel: &Channel) -> Vec<(Field, SecretString)> {
    let mut out: Vec<(Field, SecretString)> = Vec::new();
    for t in &channel.inbound.tokens {
        out.push((Field::Tokens, t.clone()));
    }
    let secrets = channel.inbound.signing_secrets.iter().map(|s| (Field::SigningSecrets, s));
    for (field, s) in secrets.chain(channel.delivery.webhook_secret.iter().map(|s| (Field::WebhookSecret, s))) {
        let written = s.to_whsec();
        if let Some(key) = written.strip_prefix(crate::standard_webhooks::SECRET_PREFIX) {
            out.push((field, SecretString::from(key.to_string())));
        }
        out.push((field, SecretString::from(written)));
    }
    match &channel.platform {
        Some(crate::platforms::Platform::Telegram(t)) => {
            out.push((Field::SecretToken, t.secret_token.clone()));
            out.push((Field::BotToken, t.bot_token.clone()));
        }
        Some(crate::platforms::Platform::WhatsApp(w)) => {
            out.push((Field::AppSecret, w.app_secret.clone()));
            out.push((Field::VerifyToken, w.verify_token.clone()));
        }
        Some(crate::platforms::Platform::Twilio(t)) => out.push((Field::AuthToken, t.auth_token.clone())),
        Some(crate::platforms::Platform::Slack(s)) => out.push((Field::SigningSecret, s.signing_secret.clone())),
        None => {}
    }
    out
}

/// The problems of `channel` sharing a secret value with one of `others` (a channel of the
/// same name is the one being replaced, not another), or listing one twice.
pub(super) fn shared_credentials(channel: &Channel, others: &[&Channel]) -> Vec<Problem> {
    let mine = secret_values(channel);
    let mut problems: Vec<Problem> = Vec::new();
    let push = |problems: &mut Vec<Problem>, p: Problem| {
        if !problems.iter().any(|q| q.field == p.field && q.message == p.message) {
            problems.push(p);
        }
    };
    for other in others.iter().filter(|o| o.name != channel.name) {
        let theirs = secret_values(other);
        for (field, value) in &mine {
            // One receiver may take several channels' replies with one secret: a webhook secret
            // may be another channel's webhook secret, but no inbound credential of any. One
            // Twilio account's numbers may be several channels: its signatures cover the URL,
            // whose path names the channel, so one made for a channel passes no other.
            let Some((their_field, _)) = theirs.iter().find(|(f, v)| {
                let may_share = matches!(
                    (*field, *f),
                    (Field::WebhookSecret, Field::WebhookSecret) | (Field::AuthToken, Field::AuthToken)
                );
                !may_share && crate::channel_auth::is_one_of(value.expose_secret(), std::slice::from_ref(v))
            }) else {
                continue;
            };
            let instead = if *field == Field::BotToken {
                "a bot is one channel: make another bot with @BotFather for another channel"
            } else if *field == Field::AppSecret {
                "a Meta app posts to one callback URL, so it is one channel: one WhatsApp channel takes the notifications of the app's number"
            } else {
                "give each channel values of its own (e.g. `openssl rand -hex 32`, or `whsec_` followed by `openssl rand -base64 32` for a secret)"
            };
            push(
                &mut problems,
                Problem::at(
                    *field,
                    format!(
                        "this {} is also channel `{}`'s {}: a credential names one channel, so that what is made for one is never accepted by another; {instead}",
                        field.label().to_lowercase(),
                        other.name,
                        their_field.label().to_lowercase()
                    ),
                ),
            );
        }
    }
    for (i, (field, value)) in mine.iter().enumerate() {
        let repeated = mine[..i]
            .iter()
            .any(|(f, v)| f == field && crate::channel_auth::is_one_of(value.expose_secret(), std::slice::from_ref(v)));
        if repeated {
            push(
                &mut problems,
                Problem::at(*field, format!("the same {} is given twice", field.label().to_lowercase())),
            );
        }
    }
    problems
}
