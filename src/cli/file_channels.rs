//! `tern.toml`'s `[channels.NAME]` tables: channels configured in the file rather than stored.
//! Their settings are `tern channels add`'s, by the same names, and their secrets come from
//! environment variables named in the file, never from the file itself:
//!
//! ```toml
//! [channels.support]
//! kind = "generic"                         # the default
//! token_env = "SUPPORT_TOKEN"              # or a list, during a rotation
//! secret_env = ["SUPPORT_SIGNING"]         # Standard Webhooks secrets (`whsec_…`)
//! webhook_url = "https://chat.example.com/replies"
//! webhook_secret_env = "SUPPORT_HOOK_SECRET"
//!
//! [channels.telegram]
//! kind = "telegram"
//! secret_token_env = "TELEGRAM_SECRET_TOKEN"  # setWebhook's secret_token
//! bot_token_env = "TELEGRAM_BOT_TOKEN"
//! # api_base = "https://api.telegram.org"   # the default
//!
//! [channels.whatsapp]
//! kind = "whatsapp"
//! app_secret_env = "WHATSAPP_APP_SECRET"      # the Meta app's secret
//! verify_token_env = "WHATSAPP_VERIFY_TOKEN"
//! phone_number_id = "106540352242922"
//! integration = "meta"                        # its token sends the replies
//! # api_base = "https://graph.facebook.com/v23.0"   # the default
//!
//! [channels.sms]
//! kind = "twilio"
//! auth_token_env = "TWILIO_AUTH_TOKEN"
//! account_sid = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
//! from = "+15017122661"                       # or "whatsapp:+…", or a Messaging Service "MG…"
//!
//! [channels.slack]
//! kind = "slack"
//! signing_secret_env = "SLACK_SIGNING_SECRET"
//! integration = "slack"                       # its bot token sends the replies
//! ```
//!
//! The file is read once ([`FileChannels::parse`], at argument parsing: every problem of every
//! table at once), and each channel is built when a command needs it
//! ([`FileChannels::channels`]: the variables read, then the rules of
//! [`ChannelDraft::check`], the one owner of the rules). A file channel cannot be saved over or
//! removed through the admin API, the console or `tern channels`; `default` and `console` are
//! not file channels.

use std::collections::BTreeSet;

use tern_engine::channel::{CONSOLE_CHANNEL, Channel, ChannelKind, ChannelName, DEFAULT_CHANNEL};
use tern_engine::channels::{ChannelDraft, ChannelSource};

use super::secret_input::read_secret;

/// The keys of a `[channels.NAME]` table.
const KEYS: &[&str] = &[
    "kind",
    "token_env",
    "secret_env",
    "webhook_url",
    "webhook_secret_env",
    "secret_token_env",
    "bot_token_env",
    "api_base",
    "app_secret_env",
    "verify_token_env",
    "phone_number_id",
    "integration",
    "auth_token_env",
    "account_sid",
    "from",
    "signing_secret_env",
];

/// One `[channels.NAME]` table, as written (the names of variables, not their values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileChannel {
    name: String,
    kind: Option<ChannelKind>,
    token_env: Vec<String>,
    secret_env: Vec<String>,
    webhook_url: Option<String>,
    webhook_secret_env: Option<String>,
    secret_token_env: Option<String>,
    bot_token_env: Option<String>,
    api_base: Option<String>,
    app_secret_env: Option<String>,
    verify_token_env: Option<String>,
    phone_number_id: Option<String>,
    integration: Option<String>,
    auth_token_env: Option<String>,
    account_sid: Option<String>,
    from: Option<String>,
    signing_secret_env: Option<String>,
}

/// The `[channels.NAME]` tables of `tern.toml`, in the file's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileChannels(Vec<FileChannel>);

impl FileChannels {
    /// Reads the `channels` value of the file; each problem (a message naming
    /// `channels.NAME.key`) goes to `problems`.
    pub fn parse(value: &toml::Value, problems: &mut Vec<String>) -> Self {
        let Some(tables) = value.as_table() else {
            problems.push("`channels` must hold one table per channel (`[channels.NAME]`)".into());
            return Self::default();
        };
        let mut out = Vec::new();
        for (name, table) in tables {
            let at = format!("channels.{name}");
            if name == DEFAULT_CHANNEL || name == CONSOLE_CHANNEL {
                problems.push(format!(
                    "`[{at}]`: `{name}` is not configured here ({})",
                    if name == DEFAULT_CHANNEL {
                        "the `default` channel takes `tern serve`'s --channel-token, --channel-secret and --webhook-url, also in `[serve]`"
                    } else {
                        "`console` is the console's own channel"
                    }
                ));
                continue;
            }
            if let Err(e) = ChannelName::new(name.as_str()) {
                problems.push(format!("`[{at}]`: {e}"));
                continue;
            }
            let Some(table) = table.as_table() else {
                problems.push(format!("`{at}` must be a table (`[{at}]`)"));
                continue;
            };
            out.push(parse_one(name, &at, table, problems));
        }
        Self(out)
    }

    /// The channels, their secrets read from the environment and their rules checked (`open`:
    /// the channels of `--insecure-open-channel`), for `tern serve`.
    ///
    /// # Errors
    /// Every problem of every channel at once: a variable that is not set, or a rule of
    /// [`ChannelDraft::check`], each at its key.
    pub fn channels(&self, open: &BTreeSet<ChannelName>) -> anyhow::Result<Vec<(Channel, ChannelSource)>> {
        self.read(open, true)
    }

    /// The channels as a command other than `tern serve` sees them (`tern channels list`, …):
    /// a variable that is not set in this shell is said on stderr and the channel is shown
    /// without that credential, instead of failing the command (only `tern serve` needs the
    /// values).
    ///
    /// # Errors
    /// A rule of [`ChannelDraft::check`] broken by what is set.
    pub fn channels_here(&self) -> anyhow::Result<Vec<(Channel, ChannelSource)>> {
        self.read(&BTreeSet::new(), false)
    }

    fn read(&self, open: &BTreeSet<ChannelName>, strict: bool) -> anyhow::Result<Vec<(Channel, ChannelSource)>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for c in &self.0 {
            let at = format!("[channels.{}]", c.name);
            let mut missing = Vec::new();
            let mut read = |vars: &[String], key: &str, what: &str| {
                vars.iter()
                    .filter_map(|v| {
                        read_secret(Some(v), None, what).map_err(|e| missing.push(format!("{at} {key}: {e}"))).ok()
                    })
                    .collect::<Vec<_>>()
            };
            let tokens = read(&c.token_env, "token_env", "bearer token");
            let signing_secrets = read(&c.secret_env, "secret_env", "signing secret");
            let webhook_secret =
                read(c.webhook_secret_env.as_slice(), "webhook_secret_env", "webhook secret").into_iter().next();
            let secret_token =
                read(c.secret_token_env.as_slice(), "secret_token_env", "secret token").into_iter().next();
            let bot_token = read(c.bot_token_env.as_slice(), "bot_token_env", "bot token").into_iter().next();
            let app_secret = read(c.app_secret_env.as_slice(), "app_secret_env", "app secret").into_iter().next();
            let verify_token =
                read(c.verify_token_env.as_slice(), "verify_token_env", "verify token").into_iter().next();
            let auth_token = read(c.auth_token_env.as_slice(), "auth_token_env", "auth token").into_iter().next();
            let signing_secret =
                read(c.signing_secret_env.as_slice(), "signing_secret_env", "signing secret").into_iter().next();
            let kind = c.kind.unwrap_or(ChannelKind::Generic);
            let draft = ChannelDraft {
                kind: Some(kind),
                tokens,
                signing_secrets,
                webhook_url: c.webhook_url.clone(),
                webhook_secret,
                secret_token,
                bot_token,
                api_base: c.api_base.clone(),
                app_secret,
                verify_token,
                phone_number_id: c.phone_number_id.clone(),
                integration: c.integration.clone(),
                auth_token,
                account_sid: c.account_sid.clone(),
                from: c.from.clone(),
                signing_secret,
                origins: Vec::new(),
                session_key: None,
            };
            if !missing.is_empty() {
                // The rules are checked once every value is there: what follows from a missing
                // one ("needs a token") would only repeat it.
                if strict {
                    problems.extend(missing);
                } else {
                    for m in &missing {
                        eprintln!("note: {m}; the channel is shown without it here (`tern serve` needs it)");
                    }
                    if let Ok(name) = ChannelName::new(c.name.as_str()) {
                        out.push((as_written(name, c, kind, draft), ChannelSource::ConfigFile));
                    }
                }
                continue;
            }
            let is_open = ChannelName::new(c.name.as_str()).is_ok_and(|n| open.contains(&n));
            match draft.check(&c.name, is_open) {
                Ok(channel) => out.push((channel, ChannelSource::ConfigFile)),
                Err(rules) => problems.extend(rules.iter().map(|p| {
                    let key = p.field.flag().trim_start_matches("--").replace('-', "_");
                    format!("{at} {key}: {}", p.message)
                })),
            }
        }
        anyhow::ensure!(problems.is_empty(), "the channels of tern.toml are not valid:\n  {}", problems.join("\n  "));
        Ok(out)
    }
}

/// A channel of the file with the credentials this shell has, unchecked (for display only).
fn as_written(name: ChannelName, c: &FileChannel, kind: ChannelKind, draft: ChannelDraft) -> Channel {
    Channel {
        name,
        incarnation: None,
        kind,
        inbound: tern_engine::channel::InboundAuth {
            tokens: draft.tokens,
            signing_secrets: draft
                .signing_secrets
                .iter()
                .filter_map(|s| {
                    tern_engine::standard_webhooks::WebhookSecret::parse(secrecy::ExposeSecret::expose_secret(s)).ok()
                })
                .collect(),
            open: false,
        },
        delivery: tern_engine::channel::Delivery {
            webhook_url: c.webhook_url.as_deref().and_then(|u| url::Url::parse(u).ok()),
            webhook_secret: draft.webhook_secret.and_then(|s| {
                tern_engine::standard_webhooks::WebhookSecret::parse(secrecy::ExposeSecret::expose_secret(&s)).ok()
            }),
        },
        platform: None,
        web: None,
    }
}

fn parse_one(name: &str, at: &str, table: &toml::Table, problems: &mut Vec<String>) -> FileChannel {
    let mut c = FileChannel { name: name.to_string(), ..FileChannel::default() };
    for (key, value) in table {
        let shown = format!("{at}.{key}");
        match key.as_str() {
            "kind" => match value.as_str() {
                Some("generic") => c.kind = Some(ChannelKind::Generic),
                Some("telegram") => c.kind = Some(ChannelKind::Telegram),
                Some("whatsapp") => c.kind = Some(ChannelKind::Whatsapp),
                Some("twilio") => c.kind = Some(ChannelKind::Twilio),
                Some("slack") => c.kind = Some(ChannelKind::Slack),
                Some("web") => problems.push(format!(
                    "`{shown}`: a web chat cannot be configured in tern.toml, since the key that signs its visitors' sessions must be the same on every start and every instance; add it with `tern channels add {name} --kind web --origin https://…` (it is stored, key included)"
                )),
                _ => problems.push(format!(
                    "`{shown}` must be \"generic\" (a channel that posts Tern's JSON), \"telegram\" (a Telegram bot), \"whatsapp\" (a WhatsApp Business number), \"twilio\" (SMS through Twilio) or \"slack\" (a Slack app)"
                )),
            },
            "secret_token_env" | "bot_token_env" | "app_secret_env" | "verify_token_env" | "auth_token_env"
            | "signing_secret_env" => {
                match names(value, &shown, problems).as_slice() {
                    [var] => {
                        let slot = match key.as_str() {
                            "secret_token_env" => &mut c.secret_token_env,
                            "bot_token_env" => &mut c.bot_token_env,
                            "app_secret_env" => &mut c.app_secret_env,
                            "auth_token_env" => &mut c.auth_token_env,
                            "signing_secret_env" => &mut c.signing_secret_env,
                            _ => &mut c.verify_token_env,
                        };
                        *slot = Some(var.clone());
                    }
                    [] => {}
                    _ => problems.push(format!("`{shown}` takes one environment variable's name")),
                }
            }
            "api_base" | "phone_number_id" | "integration" | "account_sid" | "from" => match value.as_str() {
                Some(text) => {
                    let slot = match key.as_str() {
                        "api_base" => &mut c.api_base,
                        "phone_number_id" => &mut c.phone_number_id,
                        "account_sid" => &mut c.account_sid,
                        "from" => &mut c.from,
                        _ => &mut c.integration,
                    };
                    *slot = Some(text.to_string());
                }
                None if key == "api_base" => problems.push(format!("`{shown}` must be a URL in a string")),
                None => problems.push(format!("`{shown}` must be a string")),
            },
            "token_env" => c.token_env = names(value, &shown, problems),
            "secret_env" => c.secret_env = names(value, &shown, problems),
            "webhook_secret_env" => match value.as_str() {
                Some(var) => c.webhook_secret_env = Some(var.to_string()),
                None => problems.push(format!("`{shown}` must be the name of an environment variable")),
            },
            "webhook_url" => match value.as_str() {
                Some(url) => c.webhook_url = Some(url.to_string()),
                None => problems.push(format!("`{shown}` must be a URL in a string")),
            },
            other => problems.push(super::config_file::unknown_key(&shown, other, KEYS)),
        }
    }
    c
}

/// One variable name or a list of them. The values are never in the file: a key that holds
/// what looks like a secret rather than a variable's name is said so.
fn names(value: &toml::Value, shown: &str, problems: &mut Vec<String>) -> Vec<String> {
    let list: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for item in list {
        match item.as_str() {
            Some(var)
                if var.len() <= 64
                    && var.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                    && var.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                out.push(var.to_string());
            }
            _ => problems.push(format!(
                "`{shown}` takes the names of environment variables (capitals, digits and `_`, e.g. `SUPPORT_TOKEN`), never a secret value itself"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (FileChannels, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let channels = FileChannels::parse(&table["channels"], &mut problems);
        (channels, problems)
    }

    #[test]
    fn tables_are_read_and_every_problem_is_named_at_its_key() {
        let (channels, problems) = parse(
            r#"
[channels.support]
token_env = "SUPPORT_TOKEN"
secret_env = ["A", "B"]
webhook_url = "https://chat.example.com/r"
webhook_secret_env = "HOOK"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(channels.0[0].token_env, ["SUPPORT_TOKEN"]);
        assert_eq!(channels.0[0].secret_env, ["A", "B"]);

        let (_, problems) = parse(
            r#"
[channels.default]
token_env = "X"
[channels.Support]
token_env = "X"
[channels.sales]
kind = "irc"
tokens_env = "X"
token_env = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
webhook_url = 5
"#,
        );
        let text = problems.join("\n");
        for part in [
            "`[channels.default]`: `default` is not configured here",
            "`[channels.Support]`: channel name `Support` has upper-case letters",
            "`channels.sales.kind` must be \"generic\"",
            "unknown key `channels.sales.tokens_env` (did you mean `token_env`?)",
            "`channels.sales.token_env` takes the names of environment variables",
            "`channels.sales.webhook_url` must be a URL in a string",
        ] {
            assert!(text.contains(part), "{part} in\n{text}");
        }
        assert!(!text.contains("MfKQ9r8"), "a secret written in the file is not repeated: {text}");
    }

    #[test]
    fn the_channels_are_built_with_the_rules_of_every_front_end() {
        let (channels, problems) = parse(
            r#"
[channels.nokey]
token_env = "TERN_TEST_FILE_CHANNEL_UNSET_VARIABLE"
[channels.bare]
webhook_url = "ftp://x.example/"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let err = format!("{:#}", channels.channels(&BTreeSet::new()).unwrap_err());
        for part in [
            "[channels.nokey] token_env: environment variable TERN_TEST_FILE_CHANNEL_UNSET_VARIABLE",
            "[channels.bare] token_env: a channel needs a bearer token or a signing secret",
            "[channels.bare] webhook_url: the webhook URL must be http or https",
            "[channels.bare] webhook_secret_env: replies are always signed",
        ] {
            assert!(err.contains(part), "{part} in\n{err}");
        }
        // A missing variable is said once, without what would follow from it.
        assert!(!err.contains("[channels.nokey] token_env: a channel needs"), "{err}");
        assert!(!err.contains("not set: environment variable not found"), "{err}");
    }

    /// Commands other than `tern serve` show a channel whose variables are not set in their
    /// shell, without those credentials, instead of failing.
    #[test]
    fn other_commands_show_a_channel_whose_variables_are_not_set_here() {
        let (channels, _) = parse(
            r#"
[channels.helpdesk]
token_env = "TERN_TEST_FILE_CHANNEL_UNSET_VARIABLE"
webhook_url = "https://chat.example.com/r"
"#,
        );
        let here = channels.channels_here().unwrap();
        assert_eq!(here.len(), 1);
        assert_eq!(here[0].0.name.as_str(), "helpdesk");
        assert!(here[0].0.inbound.tokens.is_empty());
        assert_eq!(here[0].1, ChannelSource::ConfigFile);
        assert!(channels.channels(&BTreeSet::new()).is_err(), "tern serve still needs it");
    }
}
