//! `tern channels add|list|show|remove`: a thin adapter over
//! [`Channels`](tern_engine::channels::Channels), which holds the rules.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use tern_engine::channel::{ChannelKind, ChannelName};
use tern_engine::channels::{ChannelDraft, ChannelError, ChannelSource, ChannelSummary, Channels};

use super::context::Shared;
use super::secret_input::read_secret;

#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    command: ChannelsCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    /// Posts Tern's own JSON and takes replies at a webhook URL.
    Generic,
    /// A Telegram bot: Telegram posts updates to /v1/channels/NAME/webhook; replies go
    /// through the Bot API (--secret-token-env, --bot-token-env).
    Telegram,
    /// A WhatsApp Business number (Cloud API): Meta posts notifications to
    /// /v1/channels/NAME/webhook; replies go through the Cloud API with an integration's
    /// token (--app-secret-env, --verify-token-env, --phone-number-id, --integration).
    Whatsapp,
    /// SMS (or WhatsApp) through Twilio: Twilio posts incoming messages to
    /// /v1/channels/NAME/webhook; replies go through its Messages API (--auth-token-env,
    /// --account-sid, --from).
    Twilio,
    /// A Slack app: Slack posts events and button presses to /v1/channels/NAME/webhook;
    /// replies go with chat.postMessage and an integration's bot token (--signing-secret-env,
    /// --integration).
    Slack,
    /// A chat widget on web pages: one `<script>` tag on the pages of the allowed origins
    /// (--origin); visitors' sessions are signed by Tern, replies stream to the page.
    Web,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The channel's name: its messages are posted to `/v1/channels/NAME/conversations/…`.
    name: String,
    /// What kind of platform the channel is.
    #[arg(long, value_enum, default_value = "generic")]
    kind: KindArg,
    /// Read a bearer token from this environment variable (repeat for several, during a
    /// rotation). With neither a token nor a secret, a token is generated and shown once.
    #[arg(long = "token-env", value_name = "VAR")]
    token_env: Vec<String>,
    /// Read a Standard Webhooks signing secret (`whsec_…`) from this environment variable
    /// (repeat for several).
    #[arg(long = "secret-env", value_name = "VAR")]
    secret_env: Vec<String>,
    /// Where the channel's replies are posted (http or https).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// Read the secret replies are signed with (`whsec_…`) from this environment variable.
    /// With a webhook URL and without this, a secret is generated and shown once.
    #[arg(long, value_name = "VAR")]
    webhook_secret_env: Option<String>,
    /// Telegram: read the webhook's secret token (setWebhook's `secret_token`, 1 to 256
    /// characters of letters, digits, `_` and `-`) from this environment variable.
    #[arg(long, value_name = "VAR")]
    secret_token_env: Option<String>,
    /// Telegram: read the bot token (from @BotFather) from this environment variable.
    #[arg(long, value_name = "VAR")]
    bot_token_env: Option<String>,
    /// A platform's API base URL (default: the platform's own, e.g. https://api.telegram.org,
    /// https://graph.facebook.com/v23.0; for tests and regional endpoints).
    #[arg(long, value_name = "URL")]
    api_base: Option<String>,
    /// WhatsApp: read the Meta app's secret (App settings > Basic), which signs every
    /// notification, from this environment variable.
    #[arg(long, value_name = "VAR")]
    app_secret_env: Option<String>,
    /// WhatsApp: read the verify token (typed into the app dashboard with the callback URL)
    /// from this environment variable.
    #[arg(long, value_name = "VAR")]
    verify_token_env: Option<String>,
    /// WhatsApp: the id of the business phone number replies are sent from (WhatsApp > API
    /// Setup in the app dashboard).
    #[arg(long, value_name = "ID")]
    phone_number_id: Option<String>,
    /// WhatsApp and Slack: the integration whose token sends the replies (WhatsApp: a system
    /// user's token, e.g. `--kind static` with `--api-origin https://graph.facebook.com`;
    /// Slack: an integration of `--profile slack`).
    #[arg(long, value_name = "INTEGRATION")]
    integration: Option<String>,
    /// Twilio: read the account's auth token (Twilio Console > Account info) from this
    /// environment variable.
    #[arg(long, value_name = "VAR")]
    auth_token_env: Option<String>,
    /// Twilio: the Account SID (`AC…`).
    #[arg(long, value_name = "SID")]
    account_sid: Option<String>,
    /// Twilio: where replies come from: a Twilio number (`+15017122661`), a `whatsapp:+…`
    /// sender, or a Messaging Service SID (`MG…`).
    #[arg(long, value_name = "SENDER")]
    from: Option<String>,
    /// Slack: read the app's signing secret (Basic Information > App Credentials) from this
    /// environment variable.
    #[arg(long, value_name = "VAR")]
    signing_secret_env: Option<String>,
    /// Web: the origin of the pages that embed the chat (`https://www.example.com`; repeat for
    /// several). Pages of other origins get nothing.
    #[arg(long = "origin", value_name = "ORIGIN")]
    origins: Vec<String>,
    /// Replace the settings of a channel of the same name.
    #[arg(long)]
    update: bool,
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Add a channel (its credentials from environment variables, never the command line).
    Add(Box<AddArgs>),
    /// List the channels: which credentials each has (never their values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one channel: its kind, which credentials are set (never their values) and its
    /// webhook URL (credentials in it masked).
    Show {
        /// The channel.
        name: ChannelName,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored channel (`default` is configured by `tern serve`'s flags).
    Remove {
        /// The channel.
        name: ChannelName,
    },
    /// Check a platform channel from here: its credentials against the platform's API
    /// (nothing is sent to anyone), its webhook URL as the platform will reach it, and what to
    /// paste where in the platform's console. Exits 1 when a check fails.
    Test {
        /// The channel.
        name: ChannelName,
    },
}

/// The service as this process sees it: the stored channels, and `default` with what of
/// `tern serve`'s settings this process can see (`TERN_CHANNEL_TOKEN`, else `channel.token` if
/// it was created; `TERN_CHANNEL_SECRET`; `TERN_WEBHOOK_URL`). What `tern serve` was given on
/// its own command line is not visible here, and is said so.
pub(crate) async fn service(shared: &Shared) -> anyhow::Result<Channels> {
    let store = shared.open_store().await?;
    let token = std::env::var("TERN_CHANNEL_TOKEN")
        .ok()
        .map(SecretString::from)
        .map_or_else(|| shared.existing_token(super::serve::CHANNEL_TOKEN_FILE), |t| Ok(Some(t)))?;
    let signing = std::env::var("TERN_CHANNEL_SECRET")
        .ok()
        .map(|v| v.split(',').filter_map(|s| tern_engine::standard_webhooks::WebhookSecret::parse(s).ok()).collect())
        .unwrap_or_default();
    let webhook_url = std::env::var("TERN_WEBHOOK_URL").ok().and_then(|u| url::Url::parse(&u).ok());
    let default = super::serve::default_channel(token, signing, webhook_url, None);
    let configured = std::iter::once((default, ChannelSource::Flags))
        .chain(shared.file_channels.channels_here()?)
        .collect::<Vec<_>>();
    // The admin token, where this command can know it (the variable, or the data directory's
    // file): no channel may use it as its token.
    let admin = std::env::var("TERN_ADMIN_TOKEN")
        .ok()
        .map(SecretString::from)
        .map_or_else(|| shared.existing_token("admin.token"), |t| Ok(Some(t)))?;
    Ok(Channels::new(
        store as Arc<dyn tern_engine::channel::ChannelStore>,
        configured,
        Default::default(),
        tern_engine::clock::system(),
    )
    .reserving(admin)
    .allowing_private_network(shared.allow_private_network))
}

pub async fn channels(shared: &Shared, args: ChannelsArgs) -> anyhow::Result<ExitCode> {
    let channels = service(shared).await?;
    match args.command {
        ChannelsCommand::Add(a) => {
            let store = shared.open_store().await.ok();
            add(&channels, *a, &shared.public_url, store).await?;
            if !shared.public_url_given {
                println!("{}", super::integrations::default_public_url_note(&shared.public_url));
            }
        }
        ChannelsCommand::List { json } => {
            let all = channels.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let rows: Vec<[String; 5]> = all
                    .iter()
                    .map(|c| {
                        [
                            c.name.to_string(),
                            c.kind.as_str().to_string(),
                            source_word(c.source).to_string(),
                            credentials(c),
                            c.webhook_url.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!("{}", super::table::table(["NAME", "KIND", "DEFINED BY", "CREDENTIALS", "WEBHOOK"], &rows));
            }
        }
        ChannelsCommand::Show { name, json } => {
            let c = channels.get(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print_channel(&c);
                if c.kind == ChannelKind::Web {
                    println!(
                        "tag:             {}",
                        tern_engine::web_chat::snippet(shared.public_url.as_str(), &c.name)
                    );
                }
            }
        }
        ChannelsCommand::Remove { name } => {
            channels.remove(&name).await?;
            println!("channel `{name}` removed; `tern serve` refuses its messages within 5 seconds");
        }
        ChannelsCommand::Test { name } => return test(shared, &channels, &name).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tern channels test NAME` of a web chat: the widget answers at the address of its tag.
async fn test_web(shared: &Shared, summary: &ChannelSummary) -> anyhow::Result<ExitCode> {
    let name = &summary.name;
    let widget = shared
        .public_url
        .join(&format!("/v1/channels/{name}/web/widget.js"))
        .map_err(|e| anyhow::anyhow!("the public URL: {e}"))?;
    println!("origins:     {} (only their pages get answers)", summary.origins.join(", "));
    let reached = shared
        .http()?
        .send_raw(
            reqwest::Method::GET,
            widget.clone(),
            Default::default(),
            Vec::new(),
            std::time::Duration::from_secs(10),
            false,
        )
        .await;
    let failed = match reached {
        Ok(r) if r.status.is_success() => {
            println!("widget:      {widget} (answered from here)");
            false
        }
        Ok(r) => {
            println!(
                "widget:      {widget} answered {} from here; is this `tern serve`, started after the channel was added?",
                r.status.as_u16()
            );
            true
        }
        Err(e) => {
            println!(
                "widget:      {widget} is not reachable from here ({}); start `tern serve`, or give --public-url the address browsers reach it at",
                tern_engine::secrets::known::mask(&e.to_string())
            );
            true
        }
    };
    next_steps(summary, &shared.public_url, &Vars::default());
    Ok(if failed { ExitCode::from(super::EXIT_FAILED) } else { ExitCode::SUCCESS })
}

/// `tern channels test NAME`.
async fn test(shared: &Shared, channels: &Channels, name: &ChannelName) -> anyhow::Result<ExitCode> {
    use tern_engine::channel::ChannelDirectory as _;
    let summary = channels.get(name).await?;
    let channel = channels.channel(name).await?.ok_or_else(|| anyhow::anyhow!("there is no channel `{name}`"))?;
    if channel.web.is_some() {
        return test_web(shared, &summary).await;
    }
    let Some(platform) = &channel.platform else {
        println!("channel `{name}` is generic: there is no platform to check it with.");
        next_steps(&summary, &shared.public_url, &Vars::default());
        return Ok(ExitCode::SUCCESS);
    };
    let mut failed = false;
    let probe = platform.probe(std::time::Duration::from_secs(10));
    let answer = match platform.integration() {
        Some(integration) => {
            let store = shared.open_store().await?;
            let secrets = shared.secrets(Some(&*store)).await?;
            let call = tern_integrations::ApiCall {
                method: probe.method,
                target: probe.url.to_string(),
                body: None,
                headers: Vec::new(),
                timeout: Some(probe.timeout),
            };
            shared.integrations(store, secrets)?.call(integration, &call).await.map_err(|e| e.to_string())
        }
        None => shared.http()?.send(&probe, platform.credential().as_ref()).await.map_err(|e| e.to_string()),
    };
    match answer.map(|r| platform.probe_outcome(r.status.as_u16(), &r.body)) {
        Ok(Ok(who)) => println!("credentials: accepted by the {} API: {who}", platform.title()),
        Ok(Err(refused)) => {
            failed = true;
            println!("credentials: NOT accepted: {refused}");
        }
        Err(why) => {
            failed = true;
            println!("credentials: NOT checked: {}", tern_engine::secrets::known::mask(&why));
        }
    }
    let webhook = format!("{}/v1/channels/{name}/webhook", shared.public_url.as_str().trim_end_matches('/'));
    if shared.public_url.scheme() != "https" {
        failed = true;
        println!(
            "webhook:     {webhook} is not https: platforms post only to https. Give --public-url (or TERN_PUBLIC_URL) the https address they reach `tern serve` at"
        );
    } else {
        let health = shared.public_url.join("/healthz").map_err(|e| anyhow::anyhow!("the public URL: {e}"))?;
        let reached = shared
            .http()?
            .send_raw(
                reqwest::Method::GET,
                health,
                Default::default(),
                Vec::new(),
                std::time::Duration::from_secs(10),
                false,
            )
            .await;
        match reached {
            Ok(r) if r.status.is_success() => {
                println!("webhook:     {webhook} (reachable from here: /healthz answered)")
            }
            Ok(r) => {
                failed = true;
                println!(
                    "webhook:     {webhook}: /healthz answered {} from here; is `tern serve` behind that address?",
                    r.status.as_u16()
                );
            }
            Err(e) => {
                failed = true;
                println!(
                    "webhook:     {webhook} is not reachable from here ({}); start `tern serve`, or check the address",
                    tern_engine::secrets::known::mask(&e.to_string())
                );
            }
        }
    }
    next_steps(&summary, &shared.public_url, &Vars::default());
    Ok(if failed { ExitCode::from(super::EXIT_FAILED) } else { ExitCode::SUCCESS })
}

/// Where the server is reached from the internet, for the webhook URL a platform is told:
/// the public URL when it is https, else a placeholder to fill in.
fn public_base(public_url: &url::Url) -> String {
    if public_url.scheme() == "https" {
        public_url.as_str().trim_end_matches('/').to_string()
    } else {
        "https://YOUR-PUBLIC-HOST".into()
    }
}

async fn add(
    channels: &Channels,
    a: AddArgs,
    public_url: &url::Url,
    store: Option<Arc<dyn tern_store::Backend>>,
) -> anyhow::Result<()> {
    let read_all = |vars: &[String], what: &str| -> anyhow::Result<Vec<SecretString>> {
        vars.iter().map(|v| read_secret(Some(v), None, what)).collect()
    };
    let mut tokens = read_all(&a.token_env, "bearer token")?;
    let signing_secrets = read_all(&a.secret_env, "signing secret")?;
    let mut webhook_secret =
        a.webhook_secret_env.as_deref().map(|v| read_secret(Some(v), None, "webhook secret")).transpose()?;
    // Replies are always signed: a generic channel's webhook URL without a secret gets a new
    // one, shown once.
    let generated_webhook_secret = (matches!(a.kind, KindArg::Generic)
        && webhook_secret.is_none()
        && a.webhook_url.as_deref().is_some_and(|u| !u.trim().is_empty()))
    .then(|| SecretString::from(tern_engine::standard_webhooks::WebhookSecret::generate().to_whsec()));
    if generated_webhook_secret.is_some() {
        webhook_secret.clone_from(&generated_webhook_secret);
    }
    let kind = match a.kind {
        KindArg::Generic => ChannelKind::Generic,
        KindArg::Telegram => ChannelKind::Telegram,
        KindArg::Whatsapp => ChannelKind::Whatsapp,
        KindArg::Twilio => ChannelKind::Twilio,
        KindArg::Slack => ChannelKind::Slack,
        KindArg::Web => ChannelKind::Web,
    };
    let generated = (kind == ChannelKind::Generic && tokens.is_empty() && signing_secrets.is_empty())
        .then(tern_engine::channels::generate_token);
    tokens.extend(generated.clone());
    let read_one =
        |var: &Option<String>, what: &str| var.as_deref().map(|v| read_secret(Some(v), None, what)).transpose();
    let secret_token = read_one(&a.secret_token_env, "secret token")?;
    let bot_token = read_one(&a.bot_token_env, "bot token")?;
    let app_secret = read_one(&a.app_secret_env, "app secret")?;
    let verify_token = read_one(&a.verify_token_env, "verify token")?;
    let auth_token = read_one(&a.auth_token_env, "auth token")?;
    let signing_secret = read_one(&a.signing_secret_env, "signing secret")?;
    let vars = Vars {
        secret_token: a.secret_token_env.clone(),
        bot_token: a.bot_token_env.clone(),
        verify_token: a.verify_token_env.clone(),
    };
    let draft = ChannelDraft {
        kind: Some(kind),
        tokens,
        signing_secrets,
        webhook_url: a.webhook_url,
        webhook_secret,
        secret_token,
        bot_token,
        api_base: a.api_base,
        app_secret,
        verify_token,
        phone_number_id: a.phone_number_id,
        integration: a.integration,
        auth_token,
        account_sid: a.account_sid,
        from: a.from,
        signing_secret,
        origins: a.origins,
        session_key: None,
    };
    let saved = match channels.save(&a.name, draft, a.update).await {
        Ok(saved) => saved,
        Err(ChannelError::Invalid { name, problems }) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!("channel `{name}` was not saved:\n  - {}", lines.join("\n  - "))
        }
        Err(e) => return Err(e.into()),
    };
    println!("channel `{}` saved ({}, {}).", saved.name, saved.kind.as_str(), credentials(&saved));
    if let Some(token) = generated {
        println!("Its bearer token (shown once, not again: keep it in the channel's settings now):");
        println!("  {}", token.expose_secret());
    }
    if let Some(secret) = generated_webhook_secret {
        println!(
            "The secret its replies are signed with (Standard Webhooks; shown once, not again: give it to the receiver at the webhook URL now):"
        );
        println!("  {}", secret.expose_secret());
    }
    next_steps(&saved, public_url, &vars);
    use tern_engine::channel::ChannelDirectory as _;
    if let Some(store) = store
        && let Ok(name) = ChannelName::new(saved.name.clone())
        && let Ok(Some(channel)) = channels.channel(&name).await
        && let Some(w) = integration_warning(&*store, &channel).await
    {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// What would stop a platform channel's replies that the channel's own rules cannot see (they
/// are checked without I/O): its integration missing, or not allowed to send its token to the
/// platform API's origin. `None` when nothing is wrong, or the channel uses no integration.
pub(crate) async fn integration_warning(
    store: &dyn tern_store::Store,
    channel: &tern_engine::channel::Channel,
) -> Option<String> {
    let platform = channel.platform.as_ref()?;
    let integration = platform.integration()?;
    let origin = platform.api_base().origin();
    let shown = origin.ascii_serialization();
    let name = &channel.name;
    match store.get_integration(integration).await {
        Err(e) => Some(format!("channel `{name}`: integration `{integration}` could not be read: {e}")),
        Ok(None) => Some(format!(
            "channel `{name}`: integration `{integration}` does not exist, so replies cannot be sent (they are retried, then dropped); add it, with --api-origin {shown}"
        )),
        Ok(Some(r)) if !r.config.origins().contains(&origin) => Some(format!(
            "channel `{name}`: integration `{integration}` does not list {shown} as an API origin, so its token is never sent there and replies fail; add the origin (`tern integrations add {integration} --update … --api-origin {shown}`)"
        )),
        Ok(Some(_)) => None,
    }
}

/// The variables `add` read the platform's secrets from, to name them in what to do next
/// (unknown to `test`: the usual names are shown).
#[derive(Default)]
struct Vars {
    secret_token: Option<String>,
    bot_token: Option<String>,
    verify_token: Option<String>,
}

/// What to do after a channel is saved: where its messages go, and for a platform channel what
/// to give the platform.
fn next_steps(saved: &ChannelSummary, public_url: &url::Url, vars: &Vars) {
    let host = public_base(public_url);
    let webhook = format!("{host}/v1/channels/{}/webhook", saved.name);
    let var = |v: &Option<String>, fallback: &str| v.clone().unwrap_or_else(|| fallback.to_string());
    match saved.kind {
        ChannelKind::Telegram => {
            let api = saved.api_base.as_deref().unwrap_or(tern_engine::platforms::telegram::DEFAULT_API_BASE);
            println!(
                "Telegram posts its updates to {webhook}; register that URL and the secret token once with the Bot API:"
            );
            println!(
                "  curl -sS \"{}/bot${}/setWebhook\" -d url={webhook} -d \"secret_token=${}\"",
                api.trim_end_matches('/'),
                var(&vars.bot_token, "TELEGRAM_BOT_TOKEN"),
                var(&vars.secret_token, "TELEGRAM_SECRET_TOKEN")
            );
            println!("Replies are sent with sendMessage from the outbox (retried; a restart loses none).");
        }
        ChannelKind::Whatsapp => {
            println!("In the Meta app dashboard, under WhatsApp > Configuration, set the webhook:");
            println!("  Callback URL: {webhook}");
            println!("  Verify token: the value of ${}", var(&vars.verify_token, "WHATSAPP_VERIFY_TOKEN"));
            println!(
                "and subscribe to the `messages` field. Meta checks the URL with a GET that `tern serve` answers."
            );
            println!(
                "Replies are sent from the outbox (retried; a restart loses none) with the token of integration `{}`, which must list {} as an API origin.",
                saved.integration.as_deref().unwrap_or_default(),
                saved
                    .api_base
                    .as_deref()
                    .and_then(|b| url::Url::parse(b).ok())
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default()
            );
        }
        ChannelKind::Twilio => {
            println!(
                "In the Twilio Console, under the number's Messaging configuration, set \"A message comes in\" to:"
            );
            println!("  Webhook, HTTP POST: {webhook}");
            println!(
                "Twilio signs each request over that exact URL: `tern serve` must be given the same public URL (--public-url or TERN_PUBLIC_URL)."
            );
            println!("Replies are sent with the Messages API from the outbox (retried; a restart loses none).");
        }
        ChannelKind::Slack => {
            println!(
                "In the Slack app's settings, set this URL as the Request URL of Event Subscriptions (subscribe to the bot events message.im, and message.channels for channels) and of Interactivity:"
            );
            println!("  {webhook}");
            println!("Slack checks it with a url_verification challenge that `tern serve` answers.");
            println!(
                "Replies are sent with chat.postMessage from the outbox (retried; a restart loses none) with the bot token of integration `{}`.",
                saved.integration.as_deref().unwrap_or_default()
            );
        }
        ChannelKind::Web => {
            println!("Put this tag on the pages of {} to show the chat:", saved.origins.join(", "));
            println!("  {}", tern_engine::web_chat::snippet(public_url.as_str(), &saved.name));
            println!(
                "(data-title sets the chat's title, data-avatar an image; the look follows the CSS variables --tern-accent, --tern-font and others on .tern-chat)"
            );
            let https_pages = saved.origins.iter().any(|o| o.starts_with("https://"));
            if https_pages && !public_url.scheme().eq_ignore_ascii_case("https") {
                println!(
                    "Pages served over https need the server at an https address too: give --public-url (or TERN_PUBLIC_URL) with the address visitors' browsers reach it at."
                );
            }
            return;
        }
        ChannelKind::Generic => {
            println!(
                "It posts messages to /v1/channels/{}/conversations/{{id}}/messages with `Authorization: Bearer <token>` or a Standard Webhooks signature.",
                saved.name
            );
            return;
        }
    }
    if host.contains("YOUR-PUBLIC-HOST") {
        println!(
            "(give --public-url or TERN_PUBLIC_URL, the https address the platform reaches this server at, to see it here)"
        );
    }
}

fn source_word(source: ChannelSource) -> &'static str {
    match source {
        ChannelSource::Flags => "flags",
        ChannelSource::ConfigFile => "tern.toml",
        ChannelSource::Stored => "store",
        ChannelSource::Builtin => "tern",
    }
}

/// Which credentials are set, never their values: `1 token, 2 signing secrets`.
fn credentials(c: &ChannelSummary) -> String {
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if c.tokens > 0 {
        parts.push(plural(c.tokens, "token"));
    }
    if c.signing_secrets > 0 {
        parts.push(plural(c.signing_secrets, "signing secret"));
    }
    if c.open {
        parts.push("OPEN (no credentials needed)".into());
    }
    if c.secret_token_set {
        parts.push("secret token, bot token".into());
    }
    if c.app_secret_set {
        parts.push("app secret, verify token".into());
    }
    if c.auth_token_set {
        parts.push("auth token".into());
    }
    if c.signing_secret_set {
        parts.push("signing secret".into());
    }
    if !c.origins.is_empty() {
        parts.push(format!("origins {}", c.origins.join(", ")));
    }
    if parts.is_empty() { unseen_or_none(c).into() } else { parts.join(", ") }
}

/// What to say of a channel that shows no credentials here: the `default` channel's come from
/// `tern serve`'s own flags or environment, which this process may not see (it reads
/// TERN_CHANNEL_TOKEN, TERN_CHANNEL_SECRET and the kept channel.token), and `tern serve`
/// never runs it without one.
fn unseen_or_none(c: &ChannelSummary) -> &'static str {
    match c.source {
        ChannelSource::Flags => "set by `tern serve` (not visible here)",
        ChannelSource::Builtin => "none (the console's test conversations)",
        _ => "none",
    }
}

fn print_channel(c: &ChannelSummary) {
    println!("name:            {}", c.name);
    println!("kind:            {}", c.kind.as_str());
    println!("defined by:      {}", c.source.describe());
    if c.kind == ChannelKind::Web {
        if c.origins.is_empty() {
            println!("origins:         none: only Tern's own pages (the console's Try it)");
        } else {
            println!("origins:         {}", c.origins.join(", "));
        }
        println!("routes:          /v1/channels/{}/web/… (the widget and its visitors' sessions)", c.name);
    } else if c.api_base.is_some() {
        println!("webhook:         POST /v1/channels/{}/webhook (the platform posts its updates there)", c.name);
        for (label, value) in c.platform_facts() {
            println!("{:<17}{value}", format!("{label}:"));
        }
    } else if c.tokens == 0 && c.signing_secrets == 0 && !c.open {
        println!("credentials:     {}", unseen_or_none(c));
    } else {
        println!("bearer tokens:   {}", if c.tokens == 0 { "none".to_string() } else { format!("{} set", c.tokens) });
        println!(
            "signing secrets: {}",
            if c.signing_secrets == 0 { "none".to_string() } else { format!("{} set", c.signing_secrets) }
        );
    }
    if c.api_base.is_none() && c.kind != ChannelKind::Web {
        println!("webhook URL:     {}", c.webhook_url.as_deref().unwrap_or("-"));
        println!("webhook secret:  {}", if c.webhook_secret_set { "set" } else { "not set" });
    }
    if c.open {
        println!("WARNING:         open: accepts messages without credentials (--insecure-open-channel)");
    }
    if let (Some(created), Some(updated)) = (c.created_at, c.updated_at) {
        println!("created:         {}", crate::humanize::time_s(created));
        println!("updated:         {}", crate::humanize::time_s(updated));
    }
}
