//! Where log lines go and how they look: standard error, every known secret masked
//! ([`MaskedStderr`](super::masked_log::MaskedStderr)), as text or as one JSON object per line
//! (`--log-format json`, for log pipelines).
//!
//! The default level depends on the command: `tern serve` logs its start-up summary and
//! warnings (failed runs, failed refreshes, integrations that need re-authorization) at
//! `info`; the other commands print what they have to say themselves and log only errors.
//! `RUST_LOG` (e.g. `RUST_LOG=debug` or `RUST_LOG=tern_engine=debug`) overrides both.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// The filter when `RUST_LOG` is not set: `info` for Tern's own crates and `warn` for the
/// rest when `verbose` (the server), `error` otherwise.
pub fn default_filter(verbose: bool) -> &'static str {
    if verbose { "warn,tern=info,tern_engine=info,tern_steps=info,tern_plugins=info" } else { "error" }
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, verbose: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(verbose)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(super::masked_log::MaskedStderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
    }
}
