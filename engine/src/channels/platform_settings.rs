//! The rules of a platform channel's settings ([`ChannelDraft::check`] for every kind but
//! `generic`): the platform's own credentials are required and checked, and the generic kind's
//! settings (bearer tokens, signing secrets, a webhook URL) are refused, since the platform
//! proves its requests its own way and replies go to its API. A generic channel, the other way
//! round, takes none of a platform's settings.

use secrecy::ExposeSecret;

use super::{ChannelDraft, Field, MAX_URL_BYTES, Problem};
use crate::channel::ChannelKind;
use crate::ids::IntegrationName;
use crate::platforms::{Platform, slack, telegram, twilio, whatsapp};

/// The settings of a `kind` channel from `draft`, each broken rule pushed to `problems`.
pub(super) fn check(kind: ChannelKind, draft: &ChannelDraft, problems: &mut Vec<Problem>) -> Option<Platform> {
    let name = kind.as_str();
    refuse_given(&given_generic_fields(draft), problems, |label| {
        format!(
            "a {name} channel takes its messages from the platform at /v1/channels/NAME/webhook and sends replies through the platform's API: it has no {label}; leave it out"
        )
    });
    // The settings of another kind of platform.
    let own = own_fields(kind);
    let given = given_platform_fields(draft);
    let foreign: Vec<(Field, bool)> = given.iter().map(|(f, g)| (*f, *g && !own.contains(f))).collect();
    refuse_given(&foreign, problems, |label| format!("a {name} channel has no {label}; leave it out"));
    match kind {
        ChannelKind::Generic => None,
        ChannelKind::Telegram => telegram_settings(draft, problems).map(Platform::Telegram),
        ChannelKind::Whatsapp => whatsapp_settings(draft, problems).map(Platform::WhatsApp),
        ChannelKind::Twilio => twilio_settings(draft, problems).map(Platform::Twilio),
        ChannelKind::Slack => slack_settings(draft, problems).map(Platform::Slack),
        // Checked by web_settings, never here.
        ChannelKind::Web => None,
    }
}

/// The platform fields a `kind` channel has.
fn own_fields(kind: ChannelKind) -> &'static [Field] {
    match kind {
        ChannelKind::Generic => &[],
        ChannelKind::Telegram => &[Field::SecretToken, Field::BotToken, Field::ApiBase],
        ChannelKind::Whatsapp => {
            &[Field::AppSecret, Field::VerifyToken, Field::PhoneNumberId, Field::Integration, Field::ApiBase]
        }
        ChannelKind::Twilio => &[Field::AuthToken, Field::AccountSid, Field::From, Field::ApiBase],
        ChannelKind::Slack => &[Field::SigningSecret, Field::Integration, Field::ApiBase],
        ChannelKind::Web => &[Field::Origins],
    }
}

/// Each setting of a generic channel in `draft`, and whether it is given.
pub(super) fn given_generic_fields(draft: &ChannelDraft) -> [(Field, bool); 4] {
    [
        (Field::Tokens, !draft.tokens.is_empty()),
        (Field::SigningSecrets, !draft.signing_secrets.is_empty()),
        (Field::WebhookUrl, draft.webhook_url.as_deref().is_some_and(|u| !u.trim().is_empty())),
        (Field::WebhookSecret, draft.webhook_secret.is_some()),
    ]
}

/// Each platform field of `draft` (a web chat's among them), and whether it is given.
pub(super) fn given_platform_fields(draft: &ChannelDraft) -> [(Field, bool); 12] {
    [
        (Field::SecretToken, draft.secret_token.is_some()),
        (Field::BotToken, draft.bot_token.is_some()),
        (Field::ApiBase, draft.api_base.is_some()),
        (Field::AppSecret, draft.app_secret.is_some()),
        (Field::VerifyToken, draft.verify_token.is_some()),
        (Field::PhoneNumberId, draft.phone_number_id.is_some()),
        (Field::Integration, draft.integration.is_some()),
        (Field::AuthToken, draft.auth_token.is_some()),
        (Field::AccountSid, draft.account_sid.is_some()),
        (Field::From, draft.from.is_some()),
        (Field::SigningSecret, draft.signing_secret.is_some()),
        (Field::Origins, !draft.origins.is_empty()),
    ]
}

/// A generic channel's draft with a platform's settings: each is a problem.
pub(super) fn none_for_generic(draft: &ChannelDraft, problems: &mut Vec<Problem>) {
    refuse_given(&given_platform_fields(draft), problems, |label| {
        format!(
            "only a platform or web channel (`--kind telegram`, `whatsapp`, `twilio`, `slack` or `web`) has {}{label}; a generic channel has bearer tokens or signing secrets",
            if label.ends_with('s') { "" } else { "a " }
        )
    });
}

/// A problem at each field that is given, in words made from its label.
pub(super) fn refuse_given(fields: &[(Field, bool)], problems: &mut Vec<Problem>, message: impl Fn(&str) -> String) {
    for (field, given) in fields {
        if *given {
            problems.push(Problem::at(*field, message(&field.label().to_lowercase())));
        }
    }
}

fn telegram_settings(draft: &ChannelDraft, problems: &mut Vec<Problem>) -> Option<telegram::Telegram> {
    let secret_token = token(
        draft.secret_token.as_ref(),
        Field::SecretToken,
        "a Telegram channel needs the secret token Telegram sends with every update (the `secret_token` of setWebhook): make one with `openssl rand -hex 32`",
        telegram::check_secret_token,
        problems,
    );
    let bot_token = token(
        draft.bot_token.as_ref(),
        Field::BotToken,
        "a Telegram channel needs the bot's token from @BotFather",
        telegram::check_bot_token,
        problems,
    );
    let api_base = api_base(draft.api_base.as_deref(), telegram::DEFAULT_API_BASE, problems);
    Some(telegram::Telegram { secret_token: secret_token?, bot_token: bot_token?, api_base: api_base? })
}

fn whatsapp_settings(draft: &ChannelDraft, problems: &mut Vec<Problem>) -> Option<whatsapp::WhatsApp> {
    let app_secret = token(
        draft.app_secret.as_ref(),
        Field::AppSecret,
        "a WhatsApp channel needs the Meta app's secret, which signs every notification (App settings > Basic > App secret)",
        whatsapp::check_app_secret,
        problems,
    );
    let verify_token = token(
        draft.verify_token.as_ref(),
        Field::VerifyToken,
        "a WhatsApp channel needs a verify token, typed into the app dashboard with the callback URL: make one with `openssl rand -hex 32`",
        whatsapp::check_verify_token,
        problems,
    );
    let phone_number_id = text(
        draft.phone_number_id.as_deref(),
        Field::PhoneNumberId,
        "a WhatsApp channel needs the id of the phone number it answers from (WhatsApp > API Setup in the app dashboard)",
        whatsapp::check_phone_number_id,
        problems,
    );
    let integration = integration(
        draft,
        "a WhatsApp channel sends replies with the token of an integration: add one for graph.facebook.com (e.g. `tern integrations add meta --kind static --static-secret META_TOKEN --api-origin https://graph.facebook.com`) and name it",
        problems,
    );
    let api_base = api_base(draft.api_base.as_deref(), whatsapp::DEFAULT_API_BASE, problems);
    Some(whatsapp::WhatsApp {
        app_secret: app_secret?,
        verify_token: verify_token?,
        phone_number_id: phone_number_id?,
        integration: integration?,
        api_base: api_base?,
    })
}

fn twilio_settings(draft: &ChannelDraft, problems: &mut Vec<Problem>) -> Option<twilio::Twilio> {
    let auth_token = token(
        draft.auth_token.as_ref(),
        Field::AuthToken,
        "a Twilio channel needs the account's auth token, which signs every webhook and authenticates the replies (Twilio Console > Account info)",
        twilio::check_auth_token,
        problems,
    );
    let account_sid = text(
        draft.account_sid.as_deref(),
        Field::AccountSid,
        "a Twilio channel needs the Account SID (`AC…`, Twilio Console > Account info)",
        twilio::check_account_sid,
        problems,
    );
    let from = text(
        draft.from.as_deref(),
        Field::From,
        "a Twilio channel needs the number its replies come from (`+15017122661`), a `whatsapp:+…` sender or a Messaging Service SID (`MG…`)",
        twilio::check_from,
        problems,
    );
    let api_base = api_base(draft.api_base.as_deref(), twilio::DEFAULT_API_BASE, problems);
    Some(twilio::Twilio { account_sid: account_sid?, auth_token: auth_token?, from: from?, api_base: api_base? })
}

fn slack_settings(draft: &ChannelDraft, problems: &mut Vec<Problem>) -> Option<slack::Slack> {
    let signing_secret = token(
        draft.signing_secret.as_ref(),
        Field::SigningSecret,
        "a Slack channel needs the app's signing secret, which signs every request (Basic Information > App Credentials)",
        slack::check_signing_secret,
        problems,
    );
    let integration = integration(
        draft,
        "a Slack channel sends replies with the bot token of an integration: add one with `tern integrations add slack --profile slack --client-id … --client-secret-env … --scopes chat:write,im:history`, authorize it, and name it",
        problems,
    );
    let api_base = api_base(draft.api_base.as_deref(), slack::DEFAULT_API_BASE, problems);
    Some(slack::Slack { signing_secret: signing_secret?, integration: integration?, api_base: api_base? })
}

/// The required integration name; `missing` says what to do when it is not given.
fn integration(draft: &ChannelDraft, missing: &str, problems: &mut Vec<Problem>) -> Option<IntegrationName> {
    match draft.integration.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push(Problem::at(Field::Integration, missing));
            None
        }
        Some(name) => {
            IntegrationName::new(name).map_err(|e| problems.push(Problem::at(Field::Integration, e.to_string()))).ok()
        }
    }
}

/// A required setting at `field` that is not secret: trimmed and checked by `rule`; `missing`
/// says what to do when it is not given.
fn text(
    given: Option<&str>,
    field: Field,
    missing: &str,
    rule: fn(&str) -> Result<(), &'static str>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match given.map(str::trim).filter(|t| !t.is_empty()) {
        None => {
            problems.push(Problem::at(field, missing));
            None
        }
        Some(t) => rule(t).map(|()| t.to_string()).map_err(|e| problems.push(Problem::at(field, e))).ok(),
    }
}

/// A required token at `field`: trimmed and checked by `rule`; `missing` says what to do when
/// it is not given.
fn token(
    given: Option<&secrecy::SecretString>,
    field: Field,
    missing: &str,
    rule: fn(&str) -> Result<(), &'static str>,
    problems: &mut Vec<Problem>,
) -> Option<secrecy::SecretString> {
    let Some(t) = given else {
        problems.push(Problem::at(field, missing));
        return None;
    };
    let t = t.expose_secret().trim();
    match rule(t) {
        Ok(()) => Some(secrecy::SecretString::from(t.to_string())),
        Err(e) => {
            problems.push(Problem::at(field, e));
            None
        }
    }
}

/// The API base: `given` (http or https, with a host, no query or fragment, at most
/// [`MAX_URL_BYTES`]) or the platform's default.
fn api_base(given: Option<&str>, default: &str, problems: &mut Vec<Problem>) -> Option<url::Url> {
    let text = given.map(str::trim).filter(|t| !t.is_empty()).unwrap_or(default);
    let refuse = |problems: &mut Vec<Problem>, why: String| {
        problems.push(Problem::at(Field::ApiBase, why));
        None
    };
    if text.len() > MAX_URL_BYTES {
        return refuse(problems, format!("the API base URL is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return refuse(problems, format!("not a URL ({e}); write it in full, e.g. {default}")),
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return refuse(problems, format!("the API base URL must be http or https with a host, e.g. {default}"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return refuse(problems, "the API base URL takes no credentials, query or fragment".into());
    }
    Some(url)
}
