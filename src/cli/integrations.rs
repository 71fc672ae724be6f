//! `tern integrations add|list|show|authorize|remove`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde_json::{Value, json};
use tern_engine::IntegrationName;
use tern_engine::tokens::TokenOwner;
use tern_integrations::config::{ClientAuth, IntegrationConfig, KeyIn, Kind, Profile, RateLimit, parse_endpoint};
use tern_integrations::{AuthError, CallbackParams, Draft, Integrations, Reachability, SaveError, SaveOptions};
use tern_store::{IntegrationStatus, Readiness, Store};

use super::context::Shared;
use super::secret_input::read_secret;
use crate::humanize::{relative_s, time_s};

#[derive(Debug, Args)]
pub struct IntegrationsArgs {
    #[command(subcommand)]
    command: IntegrationsCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    AuthorizationCode,
    ClientCredentials,
    Static,
    Basic,
    ApiKey,
    JwtBearer,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyInArg {
    Header,
    Query,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClientAuthArg {
    Basic,
    Body,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The integration's name, used in flows as `"integration": "NAME"`.
    name: IntegrationName,
    /// Provider preset: teamleader, zoho, google, microsoft, github, intercom, slack, hubspot,
    /// salesforce (`--data-center sandbox` for sandboxes), google-service-account (with
    /// `--key-file`).
    #[arg(long, value_parser = Profile::parse)]
    profile: Option<Profile>,
    /// Data center for multi-DC providers (Zoho: us, eu, in, au, cn, jp, ca, sa; Intercom: us, eu, au;
    /// Salesforce: production, sandbox).
    #[arg(long)]
    data_center: Option<String>,
    /// How the integration authenticates: authorization-code (the default: a person signs in),
    /// client-credentials, static, basic, api-key or jwt-bearer. A profile of one kind
    /// (google-service-account) sets it.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// The OAuth client id.
    #[arg(long)]
    client_id: Option<String>,
    /// Read the client secret from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "client_secret_file")]
    client_secret_env: Option<String>,
    /// Read the client secret from this file.
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
    /// Read the client secret from standard input.
    #[arg(long, conflicts_with_all = ["client_secret_env", "client_secret_file"])]
    client_secret_stdin: bool,
    /// Scopes, separated by spaces or commas.
    #[arg(long, default_value = "")]
    scopes: String,
    /// The authorization endpoint.
    #[arg(long, value_parser = parse_endpoint)]
    authorization_url: Option<url::Url>,
    /// The token endpoint.
    #[arg(long, value_parser = parse_endpoint)]
    token_url: Option<url::Url>,
    /// An origin the token may be sent to (repeat for several).
    #[arg(long = "api-origin", value_name = "ORIGIN")]
    api_origins: Vec<String>,
    /// Client authentication at the token endpoint.
    #[arg(long, value_enum)]
    client_auth: Option<ClientAuthArg>,
    /// An extra authorization parameter KEY=VALUE (repeat for several).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// Statuses that mean "token rejected" (default 401).
    #[arg(long, value_delimiter = ',')]
    refresh_on_status: Vec<u16>,
    /// For `static`: the secret holding the key (see `tern secrets set`).
    #[arg(long)]
    static_secret: Option<String>,
    /// For `static`: the header to send it in (default Authorization, as a Bearer token).
    #[arg(long)]
    static_header: Option<String>,
    /// For `basic`: the user name (no `:`).
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// For `basic`: read the password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["password_file", "password_stdin"])]
    password_env: Option<String>,
    /// For `basic`: read the password from this file.
    #[arg(long, value_name = "PATH", conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// For `basic`: read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// For `api-key`: read the key from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["key_file", "key_stdin"])]
    key_env: Option<String>,
    /// For `api-key`: read the key from this file. For `jwt-bearer`: the service account's
    /// JSON key file (Google's format: its `client_email`, `private_key`, `private_key_id` and
    /// `token_uri` are used), or an RSA private key in PEM with --client-id and --token-url.
    #[arg(long, value_name = "PATH", conflicts_with = "key_stdin")]
    key_file: Option<PathBuf>,
    /// For `api-key`: read the key from standard input.
    #[arg(long)]
    key_stdin: bool,
    /// For `api-key`: send the key in a header (default) or in a query parameter.
    #[arg(long, value_enum)]
    key_in: Option<KeyInArg>,
    /// For `api-key`: the header or query parameter the key goes in (`X-API-Key`, `api_key`).
    #[arg(long, value_name = "NAME")]
    key_name: Option<String>,
    /// For `jwt-bearer`: the user the service account acts for (the `sub` claim; Google's
    /// domain-wide delegation).
    #[arg(long, value_name = "EMAIL")]
    subject: Option<String>,
    /// Any kind: the most requests to the API per second or minute (`5/s`, `100/min`, with an
    /// optional burst: `5/s burst 10`); more wait their turn, up to their step's deadline.
    /// Shared by the instances of a PostgreSQL store.
    #[arg(long, value_name = "RATE", value_parser = RateLimit::parse)]
    rate_limit: Option<RateLimit>,
    /// With --rate-limit: the most requests at once (default: a second's worth).
    #[arg(long, value_name = "N", requires = "rate_limit")]
    rate_burst: Option<u32>,
    /// Any kind: a client certificate (PEM file: the certificate, then any intermediates)
    /// presented to the API origins (mutual TLS); with --client-key.
    #[arg(long, value_name = "PEM")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM file); stored encrypted.
    #[arg(long, value_name = "PEM")]
    client_key: Option<PathBuf>,
    /// Any kind: a private CA (PEM file) trusted for the API origins besides the public ones.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Where the account identifier is in the integration's events (`account.id`, `$.team_id`).
    #[arg(long)]
    event_identifier: Option<String>,
    /// Where the account identifier is, captured at authorization: a path into the
    /// --identity-url answer when given, else into the token response.
    #[arg(long)]
    account_field: Option<String>,
    /// A URL on an API origin fetched with the new token right after authorization, whose JSON
    /// holds the account identifier (for example `https://api.example.com/v1/me`).
    #[arg(long, value_parser = parse_endpoint)]
    identity_url: Option<url::Url>,
    /// The secret (see `tern secrets set`) holding the `whsec_…` key the integration's events
    /// are signed with (Standard Webhooks); events without a valid signature are refused.
    #[arg(long, value_name = "NAME")]
    events_secret: Option<String>,
    /// Replace an existing integration of the same name (its tokens are kept).
    #[arg(long)]
    update: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

#[derive(Debug, Subcommand)]
enum IntegrationsCommand {
    /// Add an integration and print the callback URL to register at the provider.
    Add(Box<AddArgs>),
    /// List integrations with their status.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one integration (never its secrets) and its callback URL.
    Show {
        /// The integration.
        name: IntegrationName,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Authorize an integration in a browser (authorization code + PKCE).
    Authorize {
        /// The integration.
        name: IntegrationName,
        /// Do not try to open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// How long to wait for the callback, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Check an integration end to end, like `gh auth status`: who it is authorized as,
    /// scopes, token expiry, last refresh, and one live call (the identity URL). Exits 1 when
    /// the integration cannot be used.
    Test {
        /// The integration.
        name: IntegrationName,
    },
    /// Remove an integration and its tokens.
    Remove {
        /// The integration.
        name: IntegrationName,
    },
}

pub async fn integrations(shared: &Shared, args: IntegrationsArgs) -> anyhow::Result<ExitCode> {
    let store = shared.open_store().await?;
    let secrets = shared.secrets(Some(&*store)).await?;
    let service = shared.integrations(store.clone(), secrets)?;
    match args.command {
        IntegrationsCommand::Add(a) => {
            add(&service, *a, (!shared.public_url_given).then_some(&shared.public_url)).await
        }
        IntegrationsCommand::List { json } => list(&*store, json).await,
        IntegrationsCommand::Show { name, json } => {
            show(&service, &name, json, (!shared.public_url_given).then_some(&shared.public_url)).await
        }
        IntegrationsCommand::Authorize { name, no_browser, timeout } => {
            authorize(service, &name, no_browser, Duration::from_secs(timeout)).await
        }
        IntegrationsCommand::Test { name } => test(&service, &name).await,
        IntegrationsCommand::Remove { name } => {
            anyhow::ensure!(service.remove(&name).await?, "no integration named `{name}`");
            println!("integration `{name}` removed with its tokens");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Said next to a callback URL built from the default public URL.
pub(crate) fn default_public_url_note(public_url: &url::Url) -> String {
    format!(
        "(from the default public URL {public_url}, `tern serve`'s default address; if it listens elsewhere or behind a proxy, give the same --public-url or TERN_PUBLIC_URL to both commands)"
    )
}

/// `default_public_url` is the public URL when it was left at its default (said next to the
/// callback URL, which is built from it).
async fn add(service: &Integrations, a: AddArgs, default_public_url: Option<&url::Url>) -> anyhow::Result<ExitCode> {
    let kind = match a.kind {
        Some(KindArg::AuthorizationCode) => Kind::AuthorizationCode,
        Some(KindArg::ClientCredentials) => Kind::ClientCredentials,
        Some(KindArg::Static) => Kind::Static,
        Some(KindArg::Basic) => Kind::Basic,
        Some(KindArg::ApiKey) => Kind::ApiKey,
        Some(KindArg::JwtBearer) => Kind::JwtBearer,
        None => a.profile.and_then(|p| p.spec().kind).unwrap_or_default(),
    };
    let mut config = IntegrationConfig {
        kind,
        client_id: a.client_id,
        scopes: IntegrationConfig::split_scopes(&a.scopes),
        authorization_url: a.authorization_url,
        token_url: a.token_url,
        api_origins: a.api_origins,
        extra_authorize_params: a.params.into_iter().collect::<BTreeMap<_, _>>(),
        profile: a.profile,
        data_center: a.data_center,
        static_secret: a.static_secret,
        static_header: a.static_header,
        event_identifier: a.event_identifier,
        account_field: a.account_field,
        identity_url: a.identity_url,
        events_secret: a.events_secret,
        username: a.username,
        key_in: a.key_in.map(|k| match k {
            KeyInArg::Header => KeyIn::Header,
            KeyInArg::Query => KeyIn::Query,
        }),
        key_name: a.key_name,
        subject: a.subject,
        rate_limit: match (a.rate_limit, a.rate_burst) {
            (Some(r), Some(b)) if r.burst.is_some_and(|rb| rb != b) => anyhow::bail!(
                "--rate-limit `{r}` and --rate-burst {b} give two bursts; give the burst once (`--rate-limit \"{} burst {b}\"`)",
                RateLimit { burst: None, ..r }
            ),
            (r, b) => r.map(|r| RateLimit { burst: b.or(r.burst), ..r }),
        },
        client_cert: a.client_cert.as_deref().map(|p| read_pem(p, "client certificate")).transpose()?,
        ca_cert: a.ca_cert.as_deref().map(|p| read_pem(p, "CA certificate")).transpose()?,
        ..IntegrationConfig::default()
    };
    let client_key = a.client_key.as_deref().map(|p| read_pem(p, "client key").map(SecretString::from)).transpose()?;
    if !a.refresh_on_status.is_empty() {
        config.refresh_on_status = a.refresh_on_status;
    }
    let client_auth = a.client_auth.map(|ca| match ca {
        ClientAuthArg::Basic => ClientAuth::Basic,
        ClientAuthArg::Body => ClientAuth::Body,
    });
    let given = |env: &Option<String>, file: &Option<PathBuf>, stdin: bool| env.is_some() || file.is_some() || stdin;
    let client_secret_given = given(&a.client_secret_env, &a.client_secret_file, a.client_secret_stdin);
    let password_given = given(&a.password_env, &a.password_file, a.password_stdin);
    let key_given = given(&a.key_env, &a.key_file, a.key_stdin);
    // Each kind reads its own secret's options; another kind's are a mistake worth saying.
    let (own, others): (&str, &[(bool, &str)]) = match kind {
        Kind::Basic => ("--password-env", &[(client_secret_given, "--client-secret-*"), (key_given, "--key-*")]),
        Kind::ApiKey | Kind::JwtBearer => {
            ("--key-env/--key-file", &[(client_secret_given, "--client-secret-*"), (password_given, "--password-*")])
        }
        _ => ("--client-secret-env", &[(password_given, "--password-*"), (key_given, "--key-*")]),
    };
    if let Some((_, wrong)) = others.iter().find(|(g, _)| *g) {
        let default = if a.kind.is_none() { " (the default kind; give --kind)" } else { "" };
        anyhow::bail!(
            "{wrong} is not read for an integration of kind {}{default}; give its secret with {own}",
            kind.as_str()
        );
    }
    let client_secret = match kind {
        Kind::Basic if password_given => {
            Some(read_secret(a.password_env.as_deref(), a.password_file.as_ref(), "password")?)
        }
        Kind::ApiKey if key_given => Some(read_secret(a.key_env.as_deref(), a.key_file.as_ref(), "API key")?),
        Kind::JwtBearer if key_given => {
            let text = read_secret(a.key_env.as_deref(), a.key_file.as_ref(), "service account key")?;
            Some(tern_integrations::jwt::key_material(text, &mut config)?)
        }
        _ if client_secret_given => {
            Some(read_secret(a.client_secret_env.as_deref(), a.client_secret_file.as_ref(), "client secret")?)
        }
        _ => None,
    };
    // Endpoints Tern would refuse are flagged now, not after a person has signed in and
    // consented, but saved anyway: `tern serve` may run with --allow-private-network where this
    // command does not.
    let options = SaveOptions { replace: a.update, reachability: Reachability::Warn };
    let saved = match service.save(&a.name, Draft { config, client_auth, client_secret, client_key }, options).await {
        Ok(saved) => saved,
        Err(SaveError::Exists { integration }) => {
            anyhow::bail!("integration `{integration}` already exists; pass --update to change it, or remove it first")
        }
        // Problems are worded with this command's options (their `Display`).
        Err(SaveError::Invalid { integration, problems }) => {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!("integration `{integration}` is not complete:\n  - {}", problems.join("\n  - "))
        }
        Err(e) => return Err(e.into()),
    };
    for problem in &saved.warnings {
        eprintln!("warning: {problem}");
    }
    if let Some(cert) = &saved.record.config.client_cert
        && let Ok(f) = tern_engine::http::tls::certificate_facts(cert)
    {
        let now = service.store().clock().now_s();
        if f.expires_soon(now) {
            let when = if f.not_after <= now { "has expired" } else { "expires soon" };
            eprintln!("warning: the client certificate {when}: {}", certificate_line(cert, true, now));
        }
    }
    let kind = saved.record.config.kind;
    println!("integration `{}` saved ({}).", a.name, kind.as_str());
    if kind == Kind::AuthorizationCode {
        println!("Register this callback URL at the provider:\n  {}", service.callback_url());
        if let Some(public_url) = default_public_url {
            println!("{}", default_public_url_note(public_url));
        }
        println!("Then run: tern integrations authorize {}", a.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// A client certificate as `show` and `test` say it: its subject and expiry, and a warning
/// when it expires within [`EXPIRY_WARNING_SECS`](tern_engine::http::tls::EXPIRY_WARNING_SECS).
fn certificate_line(cert: &str, key_set: bool, now: i64) -> String {
    match tern_engine::http::tls::certificate_facts(cert) {
        Ok(f) => {
            let when = if f.not_after <= now { "expired" } else { "expires" };
            let warn = if f.expires_soon(now) {
                " — WARNING: renew it (--client-cert and --client-key with --update)"
            } else {
                ""
            };
            let key = if key_set { "" } else { " (its key is not stored)" };
            format!("{}, {when} {} ({}){key}{warn}", f.subject, time_s(f.not_after), relative_s(f.not_after, now))
        }
        Err(e) => e.to_string(),
    }
}

/// A PEM file's text (`what` names it in the error).
fn read_pem(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    // A certificate chain is a few kilobytes; 256 KiB leaves room for long ones.
    let text = super::secret_input::read_bounded(path, what, 256 * 1024)?;
    anyhow::ensure!(
        text.contains("-----BEGIN "),
        "{} is not a PEM file (no `-----BEGIN …-----` line) for the {what}",
        path.display()
    );
    Ok(text)
}

async fn list(store: &dyn Store, as_json: bool) -> anyhow::Result<ExitCode> {
    let all = store.list_integrations().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no integrations; add one with `tern integrations add NAME --profile …`");
    }
    for r in all {
        println!(
            "{:<20} {:<19} {:<22} {}",
            r.name.as_str(),
            r.config.kind.as_str(),
            r.status_word(),
            r.config.api_origins.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `default_public_url` as for [`add`].
async fn show(
    service: &Integrations,
    name: &IntegrationName,
    as_json: bool,
    default_public_url: Option<&url::Url>,
) -> anyhow::Result<ExitCode> {
    let store = service.store();
    let rec = store.get_integration(name).await?.with_context(|| format!("no integration named `{name}`"))?;
    let token = store.get_token(name, &TokenOwner::Workspace).await?;
    let now = store.clock().now_s();
    let token_info = token.map(|t| {
        json!({
            "expires_in_secs": t.expires_at.map(|e| e - now),
            "has_refresh_token": t.refresh_token.is_some(),
            "scopes": t.scopes,
            "metadata": t.metadata,
            "version": t.version,
        })
    });
    let out = json!({
        "integration": rec,
        "callback_url": service.callback_url().as_str(),
        "token": token_info,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &rec.config;
    let opt = |u: &Option<url::Url>| u.as_ref().map_or("-".to_string(), url::Url::to_string);
    println!("name:              {}", rec.name);
    println!("kind:              {}", c.kind.as_str());
    println!(
        "status:            {}{}",
        rec.status_word(),
        rec.status_message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
    );
    if let Some(p) = c.profile {
        println!(
            "profile:           {}{}",
            p.as_str(),
            c.data_center.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
        );
    }
    if let Some(user) = &c.username {
        println!("user name:         {user}");
    }
    if c.kind == Kind::ApiKey {
        let key_in = if c.key_in == Some(KeyIn::Query) { "query parameter" } else { "header" };
        println!("API key in:        {key_in} {}", c.key_name.as_deref().unwrap_or("-"));
    }
    if c.kind.uses_tokens() || c.client_id.is_some() {
        println!("client id:         {}", c.client_id.as_deref().unwrap_or("-"));
    }
    if let Some(subject) = &c.subject {
        println!("subject:           {subject}");
    }
    println!("{:<19}{}", format!("{}:", c.kind.secret_name()), if rec.client_secret_set { "set" } else { "not set" });
    if c.kind.uses_tokens() {
        println!("scopes:            {}", c.scopes.join(&c.scope_delimiter));
        println!("authorization URL: {}", opt(&c.authorization_url));
        println!("token URL:         {}", opt(&c.token_url));
    }
    println!("API origins:       {}", c.api_origins.join(", "));
    if let Some(rate) = &c.rate_limit {
        let scope = if store.shared_bucket().is_some() { "shared by the instances" } else { "per process" };
        println!("rate limit:        {rate} ({scope})");
    }
    if let Some(cert) = &c.client_cert {
        println!("client cert:       {}", certificate_line(cert, rec.client_key_set, now));
    }
    if c.ca_cert.is_some() {
        println!("private CA:        set (trusted for the API origins)");
    }
    if matches!(c.kind, Kind::AuthorizationCode | Kind::ClientCredentials) {
        println!("client auth:       {}", serde_json::to_value(c.client_auth)?.as_str().unwrap_or(""));
    }
    if c.kind.needs_authorization() {
        println!("callback URL:      {}", service.callback_url());
        if let Some(public_url) = default_public_url {
            println!("                   {}", default_public_url_note(public_url));
        }
    }
    match &out["token"] {
        // Passwords and keys are sent as they are: there is no token to show.
        _ if !c.kind.uses_tokens() => {}
        Value::Null => println!("token:             none"),
        t => println!(
            "token:             {}, refresh token {}{}",
            t["expires_in_secs"].as_i64().map_or("never expires".to_string(), |s| format!("expires in {s} s")),
            if t["has_refresh_token"] == true { "stored" } else { "none" },
            // The stored token outlives a revoked grant: say it cannot be used.
            if rec.status == IntegrationStatus::NeedsReauthorization {
                " (unusable: the provider revoked the grant; authorize again)"
            } else {
                ""
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `tern integrations test NAME`.
async fn test(service: &Integrations, name: &IntegrationName) -> anyhow::Result<ExitCode> {
    let report = service.test(name).await?;
    let now = service.store().clock().now_s();
    let rec = &report.record;
    // The headline is the verdict: "Ready" only when the test found nothing wrong.
    let cert_expired = rec
        .config
        .client_cert
        .as_deref()
        .and_then(|c| tern_engine::http::tls::certificate_facts(c).ok())
        .is_some_and(|f| f.not_after <= now);
    let failed =
        cert_expired || report.token_error.is_some() || report.live.as_ref().is_some_and(|l| l.error.is_some());
    let status = match rec.readiness() {
        Readiness::Ready(_) if failed => "Cannot be used (the problem is below)",
        Readiness::Ready(w) | Readiness::NeedsAction(w) => w,
    };
    println!("integration {name}: {status}");
    if let Some(m) = &rec.status_message {
        println!("  why:           {}", super::terminal::safe(m));
    }
    println!("  kind:          {}", rec.config.kind.as_str());
    if let Some(cert) = &rec.config.client_cert {
        println!("  client cert:   {}", certificate_line(cert, rec.client_key_set, now));
    }
    let account =
        report.live.as_ref().and_then(|l| l.account.clone()).or_else(|| report.token.as_ref()?.account.clone());
    if let Some(a) = account {
        println!("  account:       {}", super::terminal::safe(&a));
    }
    match &report.token {
        None => println!("  token:         none"),
        Some(t) => {
            let scopes = t.scopes.as_ref().map_or_else(|| rec.config.scopes.join(" "), |s| s.join(" "));
            println!("  scopes:        {}", super::terminal::safe(if scopes.is_empty() { "-" } else { &scopes }));
            let expiry = match t.expires_at {
                None => "does not expire".to_string(),
                Some(e) if e <= now => format!("expired at {} ({})", time_s(e), relative_s(e, now)),
                Some(e) => format!("expires at {} ({})", time_s(e), relative_s(e, now)),
            };
            println!("  token:         {expiry}; refresh token {}", if t.refreshable { "stored" } else { "none" });
            println!("  last refresh:  {} ({})", time_s(t.obtained_at), relative_s(t.obtained_at.min(now), now));
        }
    }
    let mut usable = report.token_error.is_none();
    if cert_expired {
        println!(
            "  problem:       the client certificate has expired; renew it (--client-cert and --client-key with --update)"
        );
    }
    if let Some(e) = &report.token_error {
        println!("  problem:       {}", super::terminal::safe(&e.to_string()));
    }
    match &report.live {
        Some(l) => {
            let outcome = match (l.status, &l.error) {
                (Some(s), None) => format!("{s} OK"),
                (Some(_), Some(e)) | (None, Some(e)) => {
                    usable = false;
                    e.clone()
                }
                (None, None) => "no answer".into(),
            };
            println!("  live call:     GET {} → {}", l.url, super::terminal::safe(&outcome));
        }
        None if usable => println!("  live call:     none (no --identity-url); try one with `tern api {name} PATH`"),
        None => {}
    }
    let ready = matches!(rec.readiness(), Readiness::Ready(_));
    Ok(if usable && ready { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAILED) })
}

use crate::server::pages::{ALL_SET, callback_page};

async fn authorize(
    service: Arc<Integrations>,
    name: &IntegrationName,
    no_browser: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let before = service.store().get_token(name, &TokenOwner::Workspace).await?.map(|t| t.version);
    let start = service.begin(name, TokenOwner::Workspace).await?;
    let callback = start.redirect_uri.clone();
    let host = callback.host_str().context("the public URL has no host")?.to_string();
    let port = callback.port_or_known_default().context("the public URL has no port")?;
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // Most likely `tern serve` on this data directory: its callback completes the
            // authorization (the pending state is in the shared store). Wait for the token.
            let console = callback.join("/").map(|u| u.to_string()).unwrap_or_default();
            println!(
                "The callback address {host}:{port} is taken, most likely by `tern serve`, which completes the authorization."
            );
            println!(
                "Open this URL in a browser to authorize `{name}` (or use Authorize in the console at {console}):"
            );
            println!("{}", start.url);
            std::io::Write::flush(&mut std::io::stdout()).ok();
            if !no_browser {
                open_browser(start.url.as_str());
            }
            let waited = tokio::time::timeout(timeout, async {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match service.store().get_token(name, &TokenOwner::Workspace).await {
                        Ok(Some(t)) if Some(t.version) != before => return Ok(t),
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
            })
            .await;
            return match waited {
                Ok(Ok(token)) => authorized(name, &token),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(no_callback(name, timeout, &callback, true)),
            };
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot listen on {host}:{port} for the callback; set --public-url to an address of this machine"
            )));
        }
    };
    println!("Open this URL in a browser to authorize `{name}`:");
    println!("{}", start.url);
    std::io::Write::flush(&mut std::io::stdout()).ok();
    if !no_browser {
        open_browser(start.url.as_str());
    }
    eprintln!("waiting for the callback on {callback} …");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(), String>>(1);
    let path = callback.path().to_string();
    let handler_service = service.clone();
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move |q: axum::extract::Query<CallbackParams>| {
            let service = handler_service.clone();
            let tx = tx.clone();
            async move {
                let result = service.complete(&q.0).await;
                // A callback with a forged or stale state is answered but does not end the wait:
                // anyone can send one, and the real one may still come.
                let ends_wait = !matches!(result, Err(AuthError::UnknownState | AuthError::MissingState));
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                let page = callback_page(&result);
                if ends_wait {
                    let _ = tx.send(result).await;
                } else {
                    tracing::warn!("ignored a callback with an unknown state");
                }
                page
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let outcome = tokio::time::timeout(timeout, rx.recv()).await;
    // Let the browser receive its page before the server stops.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    match outcome {
        Ok(Some(Ok(()))) => match service.store().get_token(name, &TokenOwner::Workspace).await? {
            Some(token) => authorized(name, &token),
            None => {
                println!("{ALL_SET}");
                Ok(ExitCode::SUCCESS)
            }
        },
        Ok(Some(Err(e))) => Err(super::Failed(format!("authorization of `{name}` failed: {e}")).into()),
        _ => Err(no_callback(name, timeout, &callback, false)),
    }
}

/// The success line, with the account when Tern knows it.
fn authorized(name: &IntegrationName, token: &tern_store::TokenRecord) -> anyhow::Result<ExitCode> {
    println!("{ALL_SET}");
    match token.metadata.get(tern_integrations::ACCOUNT_ID).and_then(Value::as_str) {
        Some(account) => println!("`{name}` is authorized as {account}."),
        None => println!(
            "`{name}` is authorized (`tern integrations test {name}` shows the account when it has an identity URL)."
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What to say when no callback came: the usual causes, with the exact redirect URI.
fn no_callback(name: &IntegrationName, timeout: Duration, callback: &url::Url, via_server: bool) -> anyhow::Error {
    let mut why = format!(
        "no callback for `{name}` arrived within {} s. Usually the provider does not have the redirect URI registered: register exactly {callback} in the provider's app settings, then run the command again.",
        timeout.as_secs()
    );
    if via_server {
        why.push_str(" Also check that the server holding that address is `tern serve` with this same data directory.");
    } else {
        why.push_str(" Also check that your browser can reach that address (the --public-url).");
    }
    super::Failed(why).into()
}

fn open_browser(url: &str) {
    for cmd in ["xdg-open", "open"] {
        if std::process::Command::new(cmd)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
}
