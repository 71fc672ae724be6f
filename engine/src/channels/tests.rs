#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

use secrecy::SecretString;

use super::*;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn fields(problems: &[Problem]) -> Vec<Field> {
    problems.iter().map(|p| p.field).collect()
}

#[test]
fn a_channel_with_a_token_or_a_signing_secret_is_valid() {
    let c = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("0123456789abcdef0123")],
        webhook_url: Some("https://user:pw-123456789@chat.example.com/replies".into()),
        webhook_secret: Some(secret(WHSEC)),
        ..Default::default()
    }
    .check("support", false)
    .unwrap();
    assert_eq!(c.name.as_str(), "support");
    assert_eq!(c.inbound.tokens.len(), 1);
    assert!(!c.inbound.open);
    assert_eq!(c.delivery.webhook_url.unwrap().host_str(), Some("chat.example.com"));
    let c =
        ChannelDraft { kind: Some(ChannelKind::Generic), signing_secrets: vec![secret(WHSEC)], ..Default::default() }
            .check("signed", false)
            .unwrap();
    assert_eq!(c.inbound.signing_secrets[0].to_whsec(), WHSEC);
}

#[test]
fn a_channel_without_credentials_is_refused_unless_opened_insecurely() {
    let draft = || ChannelDraft { kind: Some(ChannelKind::Generic), ..Default::default() };
    let problems = draft().check("bare", false).unwrap_err();
    assert_eq!(fields(&problems), [Field::Tokens]);
    assert!(problems[0].message.contains("bearer token or a signing secret"), "{}", problems[0]);
    assert_eq!(problems[0].to_string().split(':').next(), Some("--token-env"));
    let open = draft().check("bare", true).unwrap();
    assert!(open.inbound.open);
}

#[test]
fn every_broken_rule_is_named_at_its_field_at_once() {
    let problems = ChannelDraft {
        kind: None,
        secret_token: None,
        bot_token: None,
        api_base: None,
        tokens: vec![secret("short"), secret("has a space in it, sadly")],
        signing_secrets: vec![secret("whsec_not base64!")],
        webhook_url: Some("ftp://files.example.com/".into()),
        webhook_secret: Some(secret("whsec_AAAA")),
        ..ChannelDraft::default()
    }
    .check("9lives", false)
    .unwrap_err();
    assert_eq!(
        fields(&problems),
        [
            Field::Name,
            Field::Kind,
            Field::Tokens,
            Field::Tokens,
            Field::SigningSecrets,
            Field::WebhookUrl,
            Field::WebhookSecret
        ],
        "{problems:?}"
    );
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(text[2].contains("token 1 has 5 characters"), "{}", text[2]);
    assert!(text[3].contains("token 2 has a space"), "{}", text[3]);
    assert!(text[5].contains("http or https, not `ftp`"), "{}", text[5]);
    assert!(text[6].starts_with("--webhook-secret-env: "), "{}", text[6]);
    // No message repeats a secret value.
    for t in &text {
        assert!(!t.contains("short") && !t.contains("sadly") && !t.contains("AAAA"), "{t}");
    }
}

#[test]
fn a_webhook_secret_needs_a_webhook_url() {
    let problems = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("0123456789abcdef0123")],
        webhook_secret: Some(secret(WHSEC)),
        ..Default::default()
    }
    .check("support", false)
    .unwrap_err();
    assert_eq!(fields(&problems), [Field::WebhookSecret]);
    assert!(problems[0].message.contains("give the webhook URL too"));
}

#[test]
fn the_draft_debug_shows_no_secret() {
    let draft = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("0123456789abcdef-visible?")],
        webhook_url: Some("https://u:pass-visible@x.example/".into()),
        ..Default::default()
    };
    let debug = format!("{draft:?}");
    assert!(!debug.contains("visible"), "{debug}");
}

#[test]
fn generated_tokens_are_long_unique_and_masked() {
    let a = generate_token();
    let b = generate_token();
    assert_eq!(a.expose_secret().len(), 48);
    assert_ne!(a.expose_secret(), b.expose_secret());
    let line = format!("token {}", a.expose_secret());
    assert_eq!(known::mask(&line), "token [redacted]");
}

#[test]
fn every_secret_of_a_channel_is_masked() {
    let hook = WebhookSecret::generate();
    let signing = WebhookSecret::generate();
    let channel = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("masked-token-0123456789")],
        signing_secrets: vec![secret(&signing.to_whsec())],
        webhook_url: Some("https://bot:p%40ss-word-123@chat.example.com/r".into()),
        webhook_secret: Some(secret(&hook.to_whsec())),
        ..Default::default()
    }
    .check("masked", false)
    .unwrap();
    remember_secrets(&channel);
    for value in [
        "masked-token-0123456789".to_string(),
        signing.to_whsec(),
        hook.to_whsec()[6..].to_string(),
        "p%40ss-word-123".into(),
        "p@ss-word-123".into(),
    ] {
        assert_eq!(known::mask(&format!("<{value}>")), "<[redacted]>", "{value}");
    }
}

/// Deliveries are always signed: a webhook URL without the secret to sign with would make a
/// channel whose replies are never delivered, so it is refused when it is saved.
#[test]
fn a_webhook_url_needs_a_webhook_secret() {
    let problems = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("0123456789abcdef0123")],
        webhook_url: Some("https://chat.example.com/replies".into()),
        ..Default::default()
    }
    .check("support", false)
    .unwrap_err();
    assert_eq!(fields(&problems), [Field::WebhookSecret]);
    assert!(problems[0].message.contains("always signed"), "{}", problems[0]);
}

/// Channel names are lower case, so `Support` is not a look-alike of `support`.
#[test]
fn channel_names_with_upper_case_letters_are_refused() {
    let draft = || ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("0123456789abcdef0123")],
        ..Default::default()
    };
    for name in ["Default", "Support", "SALES"] {
        let problems = draft().check(name, false).unwrap_err();
        assert_eq!(fields(&problems), [Field::Name], "{name}");
        assert!(problems[0].message.contains("lower case"), "{}", problems[0]);
    }
}

const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

fn telegram_draft() -> ChannelDraft {
    ChannelDraft {
        kind: Some(ChannelKind::Telegram),
        secret_token: Some(secret("tg-secret-0123456789")),
        bot_token: Some(secret(BOT_TOKEN)),
        ..Default::default()
    }
}

#[test]
fn a_telegram_channel_needs_its_tokens_and_takes_none_of_the_generic_settings() {
    let channel = telegram_draft().check("bot", false).unwrap();
    assert_eq!(channel.kind, ChannelKind::Telegram);
    let Some(crate::platforms::Platform::Telegram(t)) = &channel.platform else { panic!("{channel:?}") };
    assert_eq!(t.api_base.as_str(), "https://api.telegram.org/");
    // Its tokens are masked once the channel is known.
    remember_secrets(&channel);
    assert_eq!(known::mask(&format!("/bot{BOT_TOKEN}/sendMessage")), "/bot[redacted]/sendMessage");

    let problems = ChannelDraft {
        kind: Some(ChannelKind::Telegram),
        tokens: vec![secret("a-generic-token-0123456789")],
        webhook_url: Some("https://chat.example.com/r".into()),
        secret_token: Some(secret("has spaces in it")),
        bot_token: None,
        api_base: Some("ftp://api.example.com".into()),
        ..Default::default()
    }
    .check("bot", false)
    .unwrap_err();
    let fields: Vec<Field> = problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [Field::Tokens, Field::WebhookUrl, Field::SecretToken, Field::BotToken, Field::ApiBase],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("a telegram channel takes its messages from the platform"), "{problems:?}");
    assert!(!format!("{problems:?}").contains("a-generic-token"), "no value is echoed");

    // A generic channel takes none of a platform's settings.
    let problems = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("a-generic-token-0123456789")],
        bot_token: Some(secret(BOT_TOKEN)),
        ..Default::default()
    }
    .check("site", false)
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, Field::BotToken);
}

fn whatsapp_draft() -> ChannelDraft {
    ChannelDraft {
        kind: Some(ChannelKind::Whatsapp),
        app_secret: Some(secret("6c0ffee0ddba11a5f00dfeedc0de4b1d")),
        verify_token: Some(secret("wa-verify-token-0123456789")),
        phone_number_id: Some(" 106540352242922 ".into()),
        integration: Some("meta".into()),
        ..Default::default()
    }
}

#[test]
fn a_whatsapp_channel_needs_its_secrets_number_and_integration_and_no_other_platforms_settings() {
    let channel = whatsapp_draft().check("wa", false).unwrap();
    let Some(crate::platforms::Platform::WhatsApp(w)) = &channel.platform else { panic!("{channel:?}") };
    assert_eq!((w.phone_number_id.as_str(), w.integration.as_str()), ("106540352242922", "meta"));
    assert_eq!(w.api_base.as_str(), "https://graph.facebook.com/v23.0");
    let summary = ChannelSummary::of(&channel, ChannelSource::Stored, None);
    assert!(summary.app_secret_set && summary.verify_token_set && !summary.bot_token_set);
    assert_eq!(summary.integration.as_deref(), Some("meta"));

    // Every missing or wrong setting at its field, at once; another platform's settings too.
    let problems = ChannelDraft {
        kind: Some(ChannelKind::Whatsapp),
        app_secret: Some(secret("short")),
        phone_number_id: Some("+1 650 555 1234".into()),
        integration: Some("not a name".into()),
        bot_token: Some(secret(BOT_TOKEN)),
        ..Default::default()
    }
    .check("wa", false)
    .unwrap_err();
    let fields: Vec<Field> = problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [Field::BotToken, Field::AppSecret, Field::VerifyToken, Field::PhoneNumberId, Field::Integration],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("a whatsapp channel has no bot token"), "{problems:?}");
    assert!(problems[3].message.contains("not the phone number itself"), "{problems:?}");
    assert!(!format!("{problems:?}").contains("short"), "no value is echoed");

    // A Telegram channel takes none of WhatsApp's settings, a generic one none of either.
    let problems =
        ChannelDraft { integration: Some("meta".into()), ..telegram_draft() }.check("bot", false).unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), [Field::Integration]);
    let problems = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: vec![secret("a-generic-token-0123456789")],
        verify_token: Some(secret("wa-verify-token-0123456789")),
        ..Default::default()
    }
    .check("site", false)
    .unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), [Field::VerifyToken]);
}
