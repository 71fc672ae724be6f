//! `tern serve`: load the flows, open the store, serve the conversation API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;
use tern_engine::channel::{Channel, ChannelDirectory, ChannelKind, ChannelName, Delivery, InboundAuth};
use tern_engine::conversation::{ConversationOptions, ConversationStore, Conversations, OutboxPolicy, Retention};
use tern_engine::flow_set::{FileOutcome, load_files};
use tern_engine::http::Outbound;
use tern_engine::standard_webhooks::WebhookSecret;
use tern_engine::{Engine, FlowSet, LoadOptions, RunLimits};
use tokio::sync::mpsc;

use super::context::Shared;
use crate::server::{AppState, InvalidFlow, app};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The directory of flow files (`*.json`).
    #[arg(long, default_value = "flows/examples", env = "TERN_FLOWS", value_name = "DIR")]
    flows: PathBuf,
    /// The address to listen on, `IP:PORT` (`localhost:PORT` is 127.0.0.1; loopback by default;
    /// port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", env = "TERN_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Skip invalid flows with a warning instead of refusing to start.
    #[arg(long, env = "TERN_SKIP_INVALID", value_parser = clap::builder::FalseyValueParser::new())]
    skip_invalid: bool,
    /// Reload the flows when a file in the directory changes (SIGHUP always reloads).
    #[arg(long, env = "TERN_WATCH", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    watch: bool,
    /// How long a paused run waits for the contact's next message, in seconds.
    #[arg(long, default_value_t = 86_400, env = "TERN_PAUSE_TTL")]
    pause_ttl: i64,
    /// Most requests handled at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 1024, env = "TERN_MAX_CONCURRENCY")]
    max_concurrency: usize,
    /// Longest time one request may take, in seconds.
    #[arg(long, default_value_t = 60, env = "TERN_REQUEST_TIMEOUT")]
    request_timeout: u64,
    /// Longest time a client may take to send a request's headers, in seconds.
    #[arg(long, default_value_t = 10, env = "TERN_HEADER_READ_TIMEOUT")]
    header_read_timeout: u64,
    /// Also post every run's replies of the `default` channel here (`{"conversation_id",
    /// "run_id", "status", "replies"}`), signed with the Standard Webhooks scheme; needed for
    /// replies to runs resumed by a contact's login. Deliveries are stored and retried with
    /// backoff (12 attempts over about an hour), with the same `webhook-id` on every attempt.
    #[arg(long, env = "TERN_WEBHOOK_URL")]
    webhook_url: Option<url::Url>,
    /// The secret deliveries to `--webhook-url` are signed with (`whsec_` and 24 to 64 bytes
    /// in base64). Without it, one is generated on first start and kept in the data directory
    /// as `webhook.secret`; give that value to the receiver.
    #[arg(long, env = "TERN_WEBHOOK_SECRET", value_name = "WHSEC", value_parser = parse_webhook_secret, hide_env_values = true)]
    webhook_secret: Option<WebhookSecret>,
    /// How long one delivery attempt may take, in seconds (at most 30, half the time a claimed
    /// delivery is held: an attempt always ends before its delivery could be sent again).
    #[arg(long, default_value_t = 10, env = "TERN_WEBHOOK_TIMEOUT", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=30))]
    webhook_timeout: u64,
    /// The bearer token of the `default` channel (the `/v1/conversations/…` routes), at least 16
    /// characters; without it, a token generated on first start and kept in `channel.token` in
    /// the data directory.
    #[arg(long, env = "TERN_CHANNEL_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = parse_channel_token)]
    channel_token: Option<SecretString>,
    /// Accept messages WITHOUT credentials on these channels (comma-separated names): anyone
    /// who can reach the server can then start runs on them. Only for a demo or a closed
    /// network; a warning is logged at start-up and shown on every console page.
    #[arg(long, env = "TERN_INSECURE_OPEN_CHANNEL", value_delimiter = ',', value_name = "NAME")]
    insecure_open_channel: Vec<tern_engine::channel::ChannelName>,
    /// Reverse proxies in front of `tern serve` (comma-separated IP addresses): for their
    /// requests, a web chat visitor's address (the key of the per-address limits) is the last
    /// address of `X-Forwarded-For` that is not one of them. Without it, every visitor behind a
    /// proxy has the proxy's address.
    #[arg(long, env = "TERN_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    trusted_proxy: Vec<std::net::IpAddr>,
    /// Send connection events (an integration authorized, a failed token refresh, one that
    /// needs to be authorized again, a client certificate near its expiry) as signed webhooks
    /// to this generic channel's webhook URL (`tern channels add ops --webhook-url URL`).
    #[arg(long, env = "TERN_CONNECTION_EVENTS_CHANNEL", value_name = "CHANNEL")]
    connection_events_channel: Option<ChannelName>,
    /// How long a message request waits for its run before answering 202 with the URL of the
    /// answer (the run goes on), in seconds.
    #[arg(long, default_value_t = 25, env = "TERN_REPLY_WAIT", value_name = "SECS")]
    reply_wait: u64,
    /// Most messages queued or running at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 4096, env = "TERN_MAX_IN_FLIGHT")]
    max_in_flight: usize,
    /// How long run history is kept (e.g. `30d`, `12h`).
    #[arg(long, default_value = "30d", env = "TERN_HISTORY_RETENTION", value_name = "AGE")]
    history_retention: humantime::Duration,
    /// Most runs kept in history (the oldest go first).
    #[arg(long, default_value_t = 100_000, env = "TERN_HISTORY_MAX_RUNS", value_name = "N")]
    history_max_runs: u64,
    /// How long a message id is remembered, so that a repeat is answered from memory (e.g.
    /// `1d`); at most 1,000,000 ids are kept.
    #[arg(long, default_value = "1d", env = "TERN_DEDUPE_WINDOW", value_name = "AGE")]
    dedupe_window: humantime::Duration,
    /// How often retention runs (it also runs at start-up), e.g. `1m`.
    #[arg(long, default_value = "1m", env = "TERN_PRUNE_INTERVAL", value_name = "INTERVAL")]
    prune_interval: humantime::Duration,
    #[command(flatten)]
    error_reply: super::ErrorReplyArgs,
    /// A Standard Webhooks secret (`whsec_…`) the `default` channel may sign its requests with
    /// instead of sending the token; several, comma-separated, during a rotation.
    #[arg(long, env = "TERN_CHANNEL_SECRET", value_name = "WHSEC", hide_env_values = true, value_delimiter = ',', value_parser = parse_channel_secret)]
    channel_secret: Vec<tern_engine::standard_webhooks::WebhookSecret>,
}

/// Why a `--listen` address is refused.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `localhost:` followed by something that is not a port.
    #[error("`{0}` is not a port (0 to 65535)")]
    Port(String),
    /// Neither `IP:PORT` nor `localhost:PORT`.
    #[error("`{0}` is not IP:PORT; e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080 (all interfaces) or localhost:8080")]
    Address(String),
}

/// Reads `--listen`: `IP:PORT`, or `localhost:PORT` for 127.0.0.1 (no other name is looked up:
/// where a server listens should not depend on DNS).
fn parse_listen(s: &str) -> Result<SocketAddr, ListenError> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    match s.strip_prefix("localhost:").or_else(|| s.strip_prefix("LOCALHOST:")) {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| ListenError::Port(port.to_string())),
        None => Err(ListenError::Address(s.to_string())),
    }
}

/// Reads a `--channel-secret`.
fn parse_channel_secret(s: &str) -> Result<tern_engine::standard_webhooks::WebhookSecret, String> {
    tern_engine::standard_webhooks::WebhookSecret::parse(s).map_err(|e| e.to_string())
}

/// Reads `--channel-token`: at least 16 characters, no whitespace.
fn parse_channel_token(s: &str) -> Result<SecretString, String> {
    if s.chars().count() < 16 || s.chars().any(char::is_whitespace) {
        return Err(
            "the channel token must be at least 16 characters without spaces (e.g. `openssl rand -hex 24`)".into()
        );
    }
    Ok(SecretString::from(s.to_string()))
}

impl ServeArgs {
    fn conversation_options(&self, channels: Arc<dyn ChannelDirectory>) -> ConversationOptions {
        let ms = |d: &humantime::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        ConversationOptions {
            pause_ttl: std::time::Duration::from_secs(u64::try_from(self.pause_ttl.max(1)).unwrap_or(1)),
            channels,
            outbox: OutboxPolicy {
                timeout: std::time::Duration::from_secs(self.webhook_timeout),
                ..OutboxPolicy::default()
            },
            max_in_flight: self.max_in_flight.max(1),
            retention: Retention {
                history_max_age_ms: ms(&self.history_retention),
                history_max_runs: self.history_max_runs,
                dedupe_window_ms: ms(&self.dedupe_window),
                ..Retention::default()
            },
            prune_every: (*self.prune_interval).max(std::time::Duration::from_secs(1)),
            error_reply: self.error_reply.text(),
            ..ConversationOptions::default()
        }
    }
}

pub async fn serve(shared: &Shared, args: ServeArgs) -> anyhow::Result<ExitCode> {
    shared.checked_public_url()?;
    // Bound first: the public URL follows the address actually bound (port 0 included).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (public_url, warning) = shared.public_url_for_listen(addr);
    if let Some(warning) = warning {
        tracing::warn!(listen = %format!("http://{addr}"), public_url = %public_url, "{warning}");
    }
    let shared = &Shared { public_url, ..shared.clone() };
    shared.checked_public_url()?;
    let store = shared.open_store().await?;
    let secrets = shared.secrets(Some(&*store)).await?;
    let metrics = Arc::new(crate::server::Metrics::default());
    let (reports, reported) = tern_integrations::alerts::Reports::new();
    let observer = {
        let metrics = metrics.clone();
        let reports = args.connection_events_channel.is_some().then_some(reports);
        Arc::new(move |outcome: &tern_integrations::TokenOutcome<'_>| {
            metrics.token(outcome.integration.as_str(), outcome.event.as_str());
            if let Some(reports) = &reports {
                reports.observe(outcome);
            }
        })
    };
    let integrations = Arc::new(
        tern_integrations::Integrations::new(store.clone(), shared.http()?, shared.public_url.clone(), secrets.clone())
            .with_observer(observer),
    );
    if !args.flows.is_dir() {
        anyhow::bail!(
            "the flows directory {} {}; give the directory of your flow files with --flows DIR (or TERN_FLOWS)",
            args.flows.display(),
            if args.flows.exists() { "is not a directory" } else { "does not exist" }
        );
    }
    let (registry, plugins) = super::registry_and_plugins(shared).await?;
    let registry = Arc::new(registry);
    let (flows, invalid) = load_dir(&args.flows, &registry, &*store, shared.allow_private_network).await?;
    let broken = invalid.len();
    if broken > 0 && !args.skip_invalid {
        anyhow::bail!(
            "{broken} flow(s) in {} are invalid; fix them or start with --skip-invalid",
            args.flows.display()
        );
    }
    if broken > 0 {
        tracing::warn!(
            skipped = broken,
            "skipped invalid flow(s) (--skip-invalid); the console's Flows page lists them"
        );
    }
    let admin_token = admin_token(shared)?;
    tern_engine::secrets::known::remember(&admin_token);
    let channels = channels(shared, &args, store.clone(), &admin_token).await?;
    for secret in &args.channel_secret {
        tern_engine::secrets::known::remember_str(&secret.to_whsec());
    }
    let (stop_events, events_stopped) = tokio::sync::watch::channel(false);
    if let Some(channel) = &args.connection_events_channel {
        let events = tern_integrations::alerts::ConnectionEvents::new(
            store.clone(),
            channels.clone(),
            channel.clone(),
            shared.public_url.clone(),
            tern_engine::clock::system(),
        );
        events.destination().await.context("--connection-events-channel")?;
        tracing::info!(channel = %channel, "connection events go to this channel's webhook");
        tokio::spawn(events.run(store.clone(), reported, events_stopped));
    }
    let engine = Engine {
        registry,
        outbound: Outbound::new(shared.http()?, Some(integrations.clone())),
        secrets: secrets.clone(),
        limits: RunLimits::default(),
    };
    let observer = {
        let metrics = metrics.clone();
        Arc::new(move |r: &tern_engine::RunResult| metrics.observe(r)) as tern_engine::conversation::RunObserver
    };
    let conversations =
        Conversations::start(engine, store.clone(), args.conversation_options(channels.clone()), Some(observer));
    conversations.set_flow_set(flows);
    let state = Arc::new(AppState {
        conversations: conversations.clone(),
        store,
        integrations,
        channels: channels.clone(),
        channel_service: channels,
        secrets,
        admin_token,
        metrics,
        sessions: Default::default(),
        secure_cookies: shared.public_url.scheme() == "https",
        invalid_flows: std::sync::RwLock::new(invalid),
        max_concurrency: args.max_concurrency.max(1),
        request_timeout: std::time::Duration::from_secs(args.request_timeout.max(1)),
        reply_wait: std::time::Duration::from_secs(args.reply_wait.max(1)),
        readiness: Default::default(),
        public_url: shared.public_url.clone(),
        web: crate::server::web_chat::WebEdge {
            trusted_proxies: args.trusted_proxy.clone(),
            ..crate::server::web_chat::WebEdge::default()
        },
        plugins,
    });
    // Messages acknowledged before a crash and not answered yet.
    conversations.recover().await?;
    tokio::spawn(refresh_secrets(state.clone()));
    tokio::spawn(crate::server::health::watch(state.clone()));
    let (reload_tx, reload_rx) = mpsc::channel(8);
    tokio::spawn(reload_loop(
        state.clone(),
        args.flows.clone(),
        (args.skip_invalid, shared.allow_private_network),
        reload_rx,
    ));
    #[cfg(unix)]
    tokio::spawn(on_sighup(reload_tx.clone()));
    let _watcher = if args.watch { Some(watch(&args.flows, reload_tx)?) } else { None };
    println!("listening on http://{addr}");
    std::io::Write::flush(&mut std::io::stdout()).ok();
    startup_summary(shared, &state, addr, broken).await;
    crate::server::listen::serve(
        listener,
        app(state),
        std::time::Duration::from_secs(args.header_read_timeout.max(1)),
        shutdown(),
    )
    .await;
    // Runs still going finish, history and answers are committed, then the process ends.
    stop_events.send_replace(true);
    conversations.shutdown(std::time::Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

/// The channels service: the `default` channel from the flags, the channels of `tern.toml`, the
/// stored channels, and the channels opened insecurely (each warned about, loudly).
async fn channels(
    shared: &Shared,
    args: &ServeArgs,
    store: Arc<dyn tern_store::Backend>,
    admin: &SecretString,
) -> anyhow::Result<Arc<tern_engine::channels::Channels>> {
    use tern_engine::channels::{ChannelSource, Channels};
    let token = shared.kept_token(
        args.channel_token.clone(),
        "--channel-token (TERN_CHANNEL_TOKEN)",
        CHANNEL_TOKEN_FILE,
        "default channel's bearer token (for POST /v1/conversations/{id}/messages)",
    )?;
    let default = default_channel(
        Some(token),
        args.channel_secret.clone(),
        args.webhook_url.clone(),
        default_webhook_secret(shared, args)?,
    );
    let open: std::collections::BTreeSet<_> = args.insecure_open_channel.iter().cloned().collect();
    let configured: Vec<_> =
        std::iter::once((default, ChannelSource::Flags)).chain(shared.file_channels.channels(&open)?).collect();
    // A `tern.toml` channel takes the place of a stored one of the same name: said at start-up,
    // since the stored one's credentials stop working.
    for (c, source) in &configured {
        if *source == ChannelSource::ConfigFile
            && tern_engine::channel::ChannelStore::get_channel(&*store, &c.name).await?.is_some()
        {
            eprintln!(
                "WARNING: channel `{}` of tern.toml hides the stored channel of the same name: the stored channel's credentials and webhook are not used while [channels.{}] is in tern.toml",
                c.name, c.name
            );
            tracing::warn!(channel = %c.name, "a tern.toml channel hides the stored channel of the same name");
        }
    }
    let channels = Channels::new(store, configured, open.clone(), tern_engine::clock::system())
        .reserving([admin.clone()])
        .allowing_private_network(shared.allow_private_network);
    if let Some((name, problem)) = channels.configured_problem().await {
        anyhow::bail!("channel `{name}` (tern.toml or flags): {}", problem.message);
    }
    for (name, problem) in channels.stored_conflicts().await? {
        eprintln!(
            "WARNING: stored channel `{name}`: {} (fix it with `tern channels add {name} --update …` or PUT /v1/channels/{name})",
            problem.message
        );
        tracing::warn!(channel = %name, problem = %problem.message, "a stored channel breaks a rule of the channel set");
    }
    for name in &open {
        let known = tern_engine::channel::ChannelDirectory::channel(&channels, name).await?.is_some();
        eprintln!(
            "WARNING: channel `{name}` is OPEN (--insecure-open-channel): anyone who can reach this server can post messages to it and start runs, without any credential{}",
            if known { "" } else { " (no such channel yet: it is open as soon as it is added)" }
        );
        tracing::warn!(
            channel = %name,
            exists = known,
            "channel accepts messages without credentials (--insecure-open-channel): anyone who can reach the server can start runs on it"
        );
    }
    Ok(Arc::new(channels))
}

/// The start-up summary at `info` (what an operator checks first), and a warning for each
/// integration that cannot be used until a person acts.
async fn startup_summary(shared: &Shared, state: &AppState, addr: std::net::SocketAddr, skipped: usize) {
    use tern_engine::Trigger;
    let flows = state.conversations.flows();
    let count = |f: &dyn Fn(&Trigger) -> bool| flows.iter().filter(|l| l.flow.trigger.as_ref().is_some_and(f)).count();
    let on_messages = count(&|t| matches!(t, Trigger::Message { .. }));
    let on_events = count(&|t| matches!(t, Trigger::IntegrationEvent { .. }));
    let error_flows = count(&|t| matches!(t, Trigger::Error));
    let console = shared.public_url.join("/").map(|u| u.to_string()).unwrap_or_default();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %format!("http://{addr}"),
        public_url = %shared.public_url,
        console = %console,
        store = %state.store.location(),
        flows = flows.len(),
        on_messages,
        on_events,
        error_flows,
        skipped_invalid = skipped,
        "tern serve started"
    );
    let default = tern_engine::channel::ChannelName::default_channel();
    if let Ok(Some(channel)) = state.channels.channel(&default).await {
        tracing::info!(
            tokens = channel.inbound.tokens.len(),
            webhook_url = %channel.delivery.webhook_url.as_ref().map(tern_engine::http::display_url).unwrap_or_else(|| "-".into()),
            "channel `default` (POST /v1/conversations/{{id}}/messages)"
        );
    }
    // Every platform channel and where its platform posts (the URL to give it); every web chat
    // and the tag for its pages, with this server's public URL.
    if let Ok(all) = state.channel_service.list().await {
        for c in all.iter().filter(|c| c.kind == tern_engine::channel::ChannelKind::Web && !c.origins.is_empty()) {
            tracing::info!(
                origins = %c.origins.join(" "),
                tag = %tern_engine::web_chat::snippet(shared.public_url.as_str(), &c.name),
                "channel `{}` is a web chat: put the tag on the pages of its origins",
                c.name
            );
        }
        for c in all.iter().filter(|c| c.api_base.is_some()) {
            tracing::info!(
                kind = c.kind.as_str(),
                webhook = %format!("{}/v1/channels/{}/webhook", shared.public_url.as_str().trim_end_matches('/'), c.name),
                api_base = %c.api_base.as_deref().unwrap_or_default(),
                "channel `{}` takes its platform's updates",
                c.name
            );
            let Ok(name) = tern_engine::channel::ChannelName::new(c.name.clone()) else { continue };
            if let Ok(Some(channel)) = state.channels.channel(&name).await
                && let Some(w) = super::channels::integration_warning(&*state.store, &channel).await
            {
                tracing::warn!("{w}");
            }
        }
    }
    match tern_store::Store::list_integrations(&*state.store).await {
        Ok(list) => {
            let added: std::collections::BTreeSet<&str> = list.iter().map(|r| r.name.as_str()).collect();
            for l in flows.iter() {
                for name in l.flow.integrations.iter().filter(|n| !added.contains(n.as_str())) {
                    tracing::warn!(
                        flow = %l.flow.id,
                        integration = %name,
                        "flow uses an integration that is not added: its steps fail until it is (`tern integrations add {}` or the console)",
                        name
                    );
                }
            }
            let now = state.store.clock().now_s();
            for r in list {
                if let Some(facts) =
                    r.config.client_cert.as_deref().and_then(|c| tern_engine::http::tls::certificate_facts(c).ok())
                    && facts.expires_soon(now)
                {
                    tracing::warn!(
                        integration = %r.name,
                        subject = %facts.subject,
                        expires_in_days = facts.not_after.saturating_sub(now) / 86_400,
                        "the integration's client certificate expires soon (or has expired): renew it with `tern integrations add {} --update --client-cert … --client-key …`",
                        r.name
                    );
                }
                match r.status {
                    tern_store::IntegrationStatus::Authorized => {}
                    tern_store::IntegrationStatus::NeedsReauthorization => tracing::warn!(
                        integration = %r.name,
                        reason = r.status_message.as_deref().unwrap_or(""),
                        "integration needs re-authorization: flows that use it fail until `tern integrations authorize {}` or the console's Authorize button",
                        r.name
                    ),
                    tern_store::IntegrationStatus::Incomplete if !r.config.kind.needs_authorization() => {}
                    tern_store::IntegrationStatus::Incomplete => tracing::warn!(
                        integration = %r.name,
                        "integration was never authorized: run `tern integrations authorize {}` or use the console's Authorize button",
                        r.name
                    ),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the integrations"),
    }
}

/// `TERN_ADMIN_TOKEN`, or a token kept in `admin.token` in the data directory (created 0600).
/// Reads `--webhook-secret` (the value is never echoed in the error).
fn parse_webhook_secret(s: &str) -> Result<WebhookSecret, String> {
    WebhookSecret::parse(s).map_err(|e| format!("{e} (--webhook-secret / TERN_WEBHOOK_SECRET)"))
}

/// The `default` channel's webhook secret: `--webhook-secret`, or the kept `webhook.secret`
/// when replies go to `--webhook-url` (registered with the masker, as the URL's credentials).
fn default_webhook_secret(shared: &Shared, args: &ServeArgs) -> anyhow::Result<Option<WebhookSecret>> {
    let Some(url) = &args.webhook_url else { return Ok(None) };
    tern_engine::http::remember_url_secrets(url);
    tracing::info!(url = %tern_engine::http::display_url(url), "replies of the default channel are delivered to the webhook, signed (Standard Webhooks)");
    let secret = match &args.webhook_secret {
        Some(secret) => secret.clone(),
        None => kept_webhook_secret(shared)?,
    };
    tern_engine::secrets::known::remember_str(&secret.to_whsec());
    Ok(Some(secret))
}

/// The webhook secret kept in the data directory (`webhook.secret`, created on first use,
/// readable by its owner only).
fn kept_webhook_secret(shared: &Shared) -> anyhow::Result<WebhookSecret> {
    let path = shared.data_dir().join("webhook.secret");
    if let Some(t) = tern_store::crypto::read_private_file(&path)? {
        return WebhookSecret::parse(&t).with_context(|| format!("{} is not a webhook secret", path.display()));
    }
    let secret = WebhookSecret::generate();
    tern_store::crypto::write_key_file(&path, &secret.to_whsec())?;
    tracing::info!(file = %path.display(), "created the webhook signing secret (give it to the receiver of --webhook-url to verify deliveries)");
    Ok(secret)
}

fn admin_token(shared: &Shared) -> anyhow::Result<SecretString> {
    let given = std::env::var("TERN_ADMIN_TOKEN").ok().map(SecretString::from);
    shared.kept_token(
        given,
        "TERN_ADMIN_TOKEN",
        "admin.token",
        "admin token (for the console's sign-in and the admin API)",
    )
}

/// The file in the data directory that keeps the `default` channel's generated token.
pub const CHANNEL_TOKEN_FILE: &str = "channel.token";

/// The `default` channel (the `/v1/conversations/…` routes): its bearer token and where its
/// replies go, from `tern serve`'s flags.
pub fn default_channel(
    token: Option<SecretString>,
    signing_secrets: Vec<WebhookSecret>,
    webhook_url: Option<url::Url>,
    webhook_secret: Option<WebhookSecret>,
) -> Channel {
    Channel {
        name: ChannelName::default_channel(),
        incarnation: None,
        kind: ChannelKind::Generic,
        inbound: InboundAuth { tokens: token.into_iter().collect(), signing_secrets, ..Default::default() },
        delivery: Delivery { webhook_url, webhook_secret },
        platform: None,
        web: None,
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// How often the server re-reads stored secrets, so that `tern secrets set` (another process)
/// reaches it; the admin API updates them at once.
const SECRETS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads the stored secrets every [`SECRETS_REFRESH`].
async fn refresh_secrets(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(SECRETS_REFRESH).await;
        match tern_store::Store::all_secrets(&*state.store).await {
            Ok(all) => state.secrets.replace_stored(all),
            Err(e) => tracing::warn!(error = %e, "could not re-read the stored secrets"),
        }
        match super::context::undecryptable_secrets(&*state.store).await {
            Ok(names) => state.secrets.set_undecryptable(names),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not re-read the stored secrets"),
        }
    }
}

/// A flow file's diagnostics as warnings in the log (`file:line:col: error[code] at /pointer:
/// message`), so that `--log-format json` keeps standard error all JSON.
fn log_diagnostics(path: &std::path::Path, diags: &[tern_engine::Diagnostic]) {
    for d in diags {
        tracing::warn!("{}:{d}", path.display());
    }
}

/// Loads every flow in a directory and stores each version (paused runs are pinned to it);
/// returns the valid ones as a [`FlowSet`] and the invalid ones with their diagnostics (also
/// logged).
async fn load_dir(
    dir: &std::path::Path,
    registry: &tern_engine::Registry,
    store: &dyn ConversationStore,
    allow_private_network: bool,
) -> anyhow::Result<(FlowSet, Vec<InvalidFlow>)> {
    let mut flows = Vec::new();
    let mut broken = Vec::new();
    let mut invalid = |path: &std::path::Path, diags: &[tern_engine::Diagnostic]| {
        log_diagnostics(path, diags);
        broken.push(InvalidFlow {
            file: path.display().to_string(),
            problems: diags.iter().map(ToString::to_string).collect(),
        });
    };
    let opts = LoadOptions { allow_private_network, ..LoadOptions::new(registry) };
    for file in load_files(&[dir.to_path_buf()], &opts)? {
        let path = &file.path;
        match file.outcome {
            FileOutcome::Loaded { source, flow } => {
                log_diagnostics(path, &flow.flow.warnings);
                store.put_flow_version(&flow.hash, flow.flow.id.as_str(), &source).await?;
                flows.push(flow);
            }
            // Not loaded: with --skip-invalid the first error flow stays the one.
            FileOutcome::SecondErrorFlow { problem, .. } => invalid(path, &[problem]),
            FileOutcome::Invalid(diags) => invalid(path, &diags),
            FileOutcome::Unreadable(e) => return Err(e.into()),
        }
    }
    Ok((FlowSet::new(flows), broken))
}

/// Reloads the flows whenever `requests` fires (SIGHUP, a change in the directory). New
/// conversations use the new versions; paused runs keep the version they started with. A
/// directory with invalid flows is refused as a whole (unless --skip-invalid), keeping the flows
/// already loaded. `(skip_invalid, allow_private_network)` are the flags of `tern serve`.
async fn reload_loop(
    state: Arc<AppState>,
    dir: PathBuf,
    (skip_invalid, allow_private_network): (bool, bool),
    mut requests: mpsc::Receiver<&'static str>,
) {
    while let Some(why) = requests.recv().await {
        // Editors write a file in several steps: wait for the burst to end.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        while requests.try_recv().is_ok() {}
        match load_dir(&dir, &state.conversations.engine().registry, &*state.store, allow_private_network).await {
            Ok((flows, invalid)) if invalid.is_empty() || skip_invalid => {
                let n = flows.len();
                state.conversations.set_flow_set(flows);
                *state.invalid_flows.write().unwrap_or_else(|p| p.into_inner()) = invalid;
                tracing::info!(flows = n, dir = %dir.display(), reason = why, "reloaded the flows");
            }
            Ok((_, invalid)) => {
                tracing::warn!(
                    invalid = invalid.len(),
                    reason = why,
                    "reload refused: invalid flow(s); keeping the flows already loaded"
                );
                *state.invalid_flows.write().unwrap_or_else(|p| p.into_inner()) = invalid;
            }
            Err(e) => {
                tracing::warn!(reason = why, error = %format!("{e:#}"), "reload failed; keeping the flows already loaded")
            }
        }
    }
}

/// Sends a reload request on every SIGHUP.
#[cfg(unix)]
async fn on_sighup(tx: mpsc::Sender<&'static str>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let _ = tx.try_send("SIGHUP");
    }
}

/// Watches the flow directory; the watcher must be kept alive for as long as it should report.
fn watch(dir: &std::path::Path, tx: mpsc::Sender<&'static str>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && (e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove())
            && e.paths.iter().any(|p| p.extension().is_some_and(|x| x == "json"))
        {
            let _ = tx.try_send("file change");
        }
    })
    .context("cannot watch the flow directory")?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod listen_tests {
    use super::parse_listen;

    #[test]
    fn listen_takes_ip_port_and_localhost() {
        assert_eq!(parse_listen("127.0.0.1:8181").unwrap().to_string(), "127.0.0.1:8181");
        assert_eq!(parse_listen("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert_eq!(parse_listen("localhost:8181").unwrap().to_string(), "127.0.0.1:8181");
        assert!(parse_listen("localhost:http").unwrap_err().to_string().contains("not a port"));
        let e = parse_listen("example.com:80").unwrap_err().to_string();
        assert!(e.contains("is not IP:PORT") && e.contains("localhost:8080"), "{e}");
    }
}
