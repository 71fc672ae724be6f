//! Command-line interface: one module per subcommand.

mod api;
mod channels;
pub mod config_file;
pub mod context;
mod file_channels;
mod flows;
mod integrations;
mod keys;
pub mod logging;
pub mod masked_log;
mod openapi;
mod plugins;
mod run;
mod runs;
mod schema;
mod secret_input;
mod secrets;
mod serve;
mod table;
pub mod terminal;
mod test;
#[cfg(test)]
pub use serve::default_channel;
mod validate;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_engine::{CompiledFlow, Diagnostic, IntegrationName, LoadOptions, Registry, load_flow};

/// Exit code: the flow or command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error, including an invalid flow.
pub const EXIT_USAGE: u8 = 2;

const EXIT_CODES: &str =
    "Exit codes: 0 success, 1 the flow or command failed, 2 usage or configuration error (including an invalid flow).";

/// Tern: a flow engine for conversational automation with OAuth integrations.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    shared: context::Shared,
    /// How log lines on standard error look: `text`, or `json` (one object per line, for log
    /// pipelines). `RUST_LOG` sets the level (default: `info` for `tern serve`, errors only
    /// for the other commands).
    #[arg(long, global = true, env = "TERN_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Installs logging for this command (see [`logging`]).
    pub fn init_logging(&self) {
        logging::init(self.log_format, matches!(self.command, Command::Serve(_)));
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one flow in an in-memory conversation.
    Run(run::RunArgs),
    /// Check flow files and report every problem (file, JSON pointer, line:column, hint).
    Validate(validate::ValidateArgs),
    /// Run the flow tests (`*.test.json`: conversations with recorded API answers), or record
    /// their answers from the real APIs (`--record`).
    Test(test::TestArgs),
    /// Work with flow files: `graph` draws one (SVG, Graphviz DOT or Mermaid).
    Flows(flows::FlowsArgs),
    /// Print the JSON Schema of the flow format.
    Schema(schema::SchemaArgs),
    /// Print the OpenAPI 3.1 document of the server's HTTP API (served at `/openapi.json`).
    Openapi(openapi::OpenapiArgs),
    /// Manage OAuth integrations (add, list, show, test, authorize, remove).
    Integrations(integrations::IntegrationsArgs),
    /// Manage named secrets for `{{secrets.NAME}}`.
    Secrets(secrets::SecretsArgs),
    /// Manage channels: where messages come from and how replies go back (add, list, show,
    /// remove).
    Channels(channels::ChannelsArgs),
    /// Serve the flows: the conversation API (messages in, replies out), the channels'
    /// webhooks, the OAuth callback, and the operator console at the public URL (sign in with
    /// the admin token: `admin.token` in the data directory, or TERN_ADMIN_TOKEN).
    Serve(Box<serve::ServeArgs>),
    /// Browse run history recorded by `tern serve` (list, show).
    Runs(runs::RunsArgs),
    /// Call an integration's API with its token and print the answer (like `gh api`).
    Api(api::ApiArgs),
    /// Manage the master key (rotate).
    Keys(keys::KeysArgs),
    /// WebAssembly step plugins (new, build, check, install, list).
    Plugins(plugins::PluginsArgs),
    /// See Tern work in a minute, with no setup and no network: a local OAuth provider and a
    /// CRM-like API start on this machine, Tern authorizes an integration, runs the example
    /// flow, forces the token to expire and shows the refresh.
    Demo(crate::demo::DemoArgs),
}

/// The step types available to flows: the built-in ones and the plugins installed in the
/// plugin directory.
pub async fn registry(shared: &context::Shared) -> anyhow::Result<Registry> {
    Ok(registry_and_plugins(shared).await?.0)
}

/// [`registry`], and what each loaded plugin is (for the console's plugin page).
pub async fn registry_and_plugins(
    shared: &context::Shared,
) -> anyhow::Result<(Registry, Vec<tern_plugins::PluginSummary>)> {
    let mut registry = tern_steps::registry();
    let mut summaries = Vec::new();
    let dir = shared.plugins_dir();
    if tern_plugins::plugin_files(&dir)?.is_empty() {
        return Ok((registry, summaries));
    }
    let runtime = shared.plugin_runtime()?;
    let plugins = tern_plugins::load_dir(&runtime, &dir).await.map_err(plugin_errors)?;
    for plugin in plugins {
        let (name, path) = (plugin.info.name.clone(), plugin.path.clone());
        tracing::info!(step_type = %name, file = %path.display(), "plugin loaded");
        summaries.push(plugin.summary());
        registry.register(std::sync::Arc::new(tern_plugins::PluginStepType::new(plugin))).map_err(|_| {
            anyhow::anyhow!(
                "{}: step type `{name}` is already defined by a built-in step or another plugin; rename or remove it",
                path.display()
            )
        })?;
    }
    Ok((registry, summaries))
}

/// Every plugin that failed to load, one per line.
pub fn plugin_errors(errors: Vec<tern_plugins::PluginError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{} plugin(s) could not be loaded:\n  {}", errors.len(), lines.join("\n  "))
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(&cli.shared, args).await,
        Command::Validate(args) => validate::validate(&cli.shared, args).await,
        Command::Test(args) => test::test(&cli.shared, args).await,
        Command::Flows(args) => flows::flows(&cli.shared, args).await,
        Command::Schema(args) => schema::schema(&cli.shared, args).await,
        Command::Openapi(args) => openapi::openapi(args).await,
        Command::Integrations(args) => integrations::integrations(&cli.shared, args).await,
        Command::Secrets(args) => secrets::secrets(&cli.shared, args).await,
        Command::Channels(args) => channels::channels(&cli.shared, args).await,
        Command::Serve(args) => serve::serve(&cli.shared, *args).await,
        Command::Runs(args) => runs::runs(&cli.shared, args).await,
        Command::Api(args) => api::api(&cli.shared, args).await,
        Command::Keys(args) => keys::keys(&cli.shared, args).await,
        Command::Plugins(args) => plugins::plugins(&cli.shared, args).await,
        Command::Demo(args) => crate::demo::demo(args).await,
    }
}

/// Maps an error to its exit code.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Failed>().is_some() { EXIT_FAILED } else { EXIT_USAGE }
}

/// Marks an error as "the flow or command failed" (exit code 1).
#[derive(Debug)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// Prints diagnostics the way compilers do: `file:line:col: error[code] at /pointer: message`.
/// Most characters in a default error reply (`--error-reply`).
pub const MAX_ERROR_REPLY_CHARS: usize = 4096;

/// Why an `--error-reply` text is refused.
#[derive(Debug, thiserror::Error)]
pub enum ErrorReplyError {
    /// Blank.
    #[error("the default error reply is empty; give --no-error-reply to send none")]
    Empty,
    /// Longer than [`MAX_ERROR_REPLY_CHARS`].
    #[error("the default error reply has {chars} characters; at most {MAX_ERROR_REPLY_CHARS}")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// It holds a control character (other than a line break or tab) or an invisible or
    /// text-direction character, which would reach the contact as is.
    #[error(
        "the default error reply holds the character {0}, which would reach the contact as is; write plain text (line breaks are fine)"
    )]
    Hidden(String),
    /// It looks like a template, which it is not.
    #[error(
        "the default error reply is plain text, sent as is: `{{{{…}}}}` would reach the contact literally; use an error flow (trigger {{\"type\": \"error\"}}) to put the failure in the text"
    )]
    Template,
}

/// `--error-reply TEXT` and `--no-error-reply`, shared by `tern serve` and `tern run`.
#[derive(Clone, Debug, clap::Args)]
pub struct ErrorReplyArgs {
    /// A reply sent to the contact when a run fails, nothing in its flow caught the failure and
    /// no error flow answered (a flow whose trigger is `{"type": "error"}` is the error flow).
    /// Plain text (not a template), at most 4,096 characters.
    #[arg(long, env = "TERN_ERROR_REPLY", value_name = "TEXT", value_parser = parse_error_reply,
          default_value = tern_engine::conversation::DEFAULT_ERROR_REPLY)]
    error_reply: String,
    /// Send no reply when a run fails and nothing caught it (the contact then gets no answer:
    /// `tern run`, `tern runs show` and the console's run page say so). It wins over
    /// `--error-reply` wherever that is set.
    #[arg(long, env = "TERN_NO_ERROR_REPLY", value_parser = clap::builder::FalseyValueParser::new())]
    no_error_reply: bool,
}

impl ErrorReplyArgs {
    /// The reply to send, or `None` with `--no-error-reply`.
    pub fn text(&self) -> Option<String> {
        (!self.no_error_reply).then(|| self.error_reply.clone())
    }
}

/// Parses `--error-reply`: plain text (not a template), 1 to [`MAX_ERROR_REPLY_CHARS`]
/// characters.
///
/// # Errors
/// [`ErrorReplyError`] saying which rule the text breaks.
pub fn parse_error_reply(s: &str) -> Result<String, ErrorReplyError> {
    let chars = s.chars().count();
    if s.trim().is_empty() {
        return Err(ErrorReplyError::Empty);
    }
    if chars > MAX_ERROR_REPLY_CHARS {
        return Err(ErrorReplyError::TooLong { chars });
    }
    if s.contains("{{") {
        return Err(ErrorReplyError::Template);
    }
    if let Some(c) = s.chars().find(|c| (c.is_control() && *c != '\n' && *c != '\t') || tern_engine::is_hidden_char(*c))
    {
        return Err(ErrorReplyError::Hidden(format!("U+{:04X}", u32::from(c))));
    }
    Ok(s.to_string())
}

pub fn print_diagnostics(file: &Path, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        // A diagnostic quotes the flow file (paths, values): no control character of it
        // reaches the terminal.
        eprintln!("{}", terminal::safe(&format!("{}:{d}", file.display())));
    }
}

/// The integrations registered in the store, when the data directory has one, so that flows are
/// checked against them (`unknown-integration` with suggestions); `None` without a store, or
/// when the store cannot be opened (a note says so and the check is skipped).
pub async fn known_integrations(shared: &context::Shared) -> Option<BTreeSet<IntegrationName>> {
    if !shared.has_store() {
        return None;
    }
    let listed = async {
        let store = shared.open_store().await?;
        anyhow::Ok(tern_store::Store::list_integrations(&*store).await?)
    };
    match listed.await {
        Ok(records) => Some(records.into_iter().map(|r| r.name).collect()),
        Err(e) => {
            eprintln!("note: integrations are not checked: cannot read the store ({e})");
            None
        }
    }
}

/// Reads and compiles a flow file; on errors prints every diagnostic and fails with exit code 2.
/// `integrations` are the known ones, when a store is available; with `allow_private_network`
/// (the global flag) literal private hosts are not warned about.
pub fn load_file(
    path: &Path,
    registry: &Registry,
    integrations: Option<&BTreeSet<IntegrationName>>,
    allow_private_network: bool,
) -> anyhow::Result<CompiledFlow> {
    let opts = LoadOptions { integrations, allow_private_network, ..LoadOptions::new(registry) };
    let text = tern_engine::flow_set::read_flow(path, opts.limits.max_bytes)?;
    match load_flow(&text, &opts) {
        Ok(flow) => {
            print_diagnostics(path, &flow.warnings);
            Ok(flow)
        }
        Err(diags) => {
            print_diagnostics(path, &diags);
            let errors = diags.iter().filter(|d| d.is_error()).count();
            anyhow::bail!(
                "{}: the flow has {errors} error(s); run `tern validate {}` after fixing them",
                path.display(),
                path.display()
            )
        }
    }
}
