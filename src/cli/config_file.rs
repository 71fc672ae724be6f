//! `tern.toml`: the same options as the command line, in a file.
//!
//! Precedence, highest first: a command-line flag, its environment variable, the file, the
//! built-in default. The file's keys are the long flag names with `_` for `-`: shared options at
//! the top level, `tern serve`'s in a `[serve]` table:
//!
//! ```toml
//! data_dir = "/var/lib/tern"
//! # (channels: `[channels.NAME]` tables, see `file_channels`)
//! public_url = "https://tern.example.com"
//!
//! [serve]
//! listen = "127.0.0.1:8080"
//! flows = "/etc/tern/flows"
//! max_concurrency = 512
//! ```
//!
//! The file is `--config FILE` / `TERN_CONFIG`, else `./tern.toml` when it exists. Rather than a
//! second description of every option, the file is turned into command-line arguments for the
//! options the user did not already give on the command line or in the environment, and parsed
//! by the same clap definitions, so validation, help text and defaults have one source.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory as _};

/// Subcommands whose options the file may set, as `[table]` names.
const SECTIONS: &[&str] = &["serve"];

/// Where the file is: `--config`/`TERN_CONFIG`, or `./tern.toml` when present.
fn locate(matches: &ArgMatches) -> Option<(PathBuf, bool)> {
    if let Some(p) = matches.get_one::<PathBuf>("config") {
        return Some((p.clone(), true));
    }
    let default = PathBuf::from("tern.toml");
    default.is_file().then_some((default, false))
}

/// Parses the command line, merging `tern.toml` under it.
pub fn parse_args(argv: Vec<OsString>) -> anyhow::Result<super::Cli> {
    use clap::FromArgMatches as _;
    let command = super::Cli::command();
    let matches = match command.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    for warning in secret_flag_warnings(&command, &matches) {
        eprintln!("warning: {warning}");
    }
    let Some((path, explicit)) = locate(&matches) else {
        return super::Cli::from_arg_matches(&matches)
            .map(|cli| with_sources(cli, &matches))
            .map_err(anyhow::Error::from);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read the configuration file {}", path.display())),
    };
    // Saved with a byte order mark (Notepad does) it reads the same (tern_engine::json).
    let text = tern_engine::json::without_bom_str(&text);
    let mut table: toml::Table = toml::from_str(text).map_err(|e| not_toml(&path, text, &e))?;
    // `[channels.NAME]` tables are channels, not options.
    let mut problems = Vec::new();
    let channels = table
        .remove("channels")
        .map(|v| super::file_channels::FileChannels::parse(&v, &mut problems))
        .unwrap_or_default();
    if !problems.is_empty() {
        bail!("{}:\n  {}", path.display(), problems.join("\n  "));
    }
    let with_channels = |mut cli: super::Cli| {
        cli.shared.file_channels = channels.clone();
        cli
    };
    let extra = arguments(&command, &matches, &table, &path)?;
    if extra.is_empty() {
        return super::Cli::from_arg_matches(&matches)
            .map(|cli| with_sources(with_channels(cli), &matches))
            .map_err(anyhow::Error::from);
    }
    // Before a `--` that ends the options, if there is one.
    let mut full = argv;
    let at = full.iter().position(|a| a == "--").unwrap_or(full.len());
    full.splice(at..at, extra);
    let matches = match command.try_get_matches_from(full) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("note: options from {} were added to the command line", path.display());
            e.exit()
        }
    };
    super::Cli::from_arg_matches(&matches)
        .map(|cli| with_sources(with_channels(cli), &matches))
        .map_err(anyhow::Error::from)
}

/// Records which defaults were left as they are (see [`super::context::Shared::public_url_given`]).
fn with_sources(mut cli: super::Cli, matches: &ArgMatches) -> super::Cli {
    cli.shared.public_url_given =
        matches.value_source("public_url").is_some_and(|source| source != ValueSource::DefaultValue);
    cli
}

/// The arguments the file contributes: one `--flag value` per key the user did not set.
fn arguments(
    command: &Command,
    matches: &ArgMatches,
    table: &toml::Table,
    path: &Path,
) -> anyhow::Result<Vec<OsString>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let active = matches.subcommand_name();
    for (key, value) in table {
        if SECTIONS.contains(&key.as_str()) {
            let Some(section) = value.as_table() else {
                problems.push(format!("`{key}` must be a table (`[{key}]`)"));
                continue;
            };
            let Some(sub) = command.find_subcommand(key) else { continue };
            // Options of other subcommands are checked but only used by their own.
            let sub_matches = (active == Some(key.as_str())).then(|| matches.subcommand_matches(key)).flatten();
            for (k, v) in section {
                add(sub, sub_matches, &format!("{key}.{k}"), k, v, &mut out, &mut problems);
            }
        } else {
            add(command, Some(matches), key, key, value, &mut out, &mut problems);
        }
    }
    if !problems.is_empty() {
        bail!("{}:\n  {}", path.display(), problems.join("\n  "));
    }
    Ok(out)
}

fn add(
    command: &Command,
    matches: Option<&ArgMatches>,
    shown: &str,
    key: &str,
    value: &toml::Value,
    out: &mut Vec<OsString>,
    problems: &mut Vec<String>,
) {
    let long = key.replace('_', "-");
    let arg = command.get_arguments().find(|a| a.get_long() == Some(long.as_str()) && !a.is_positional());
    let Some(arg) = arg.filter(|a| a.get_id() != "config") else {
        let known: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "config" && *l != "help" && *l != "version")
            .map(|l| l.replace('-', "_"))
            .collect();
        problems.push(unknown_key(shown, key, &known));
        return;
    };
    let Some(matches) = matches else { return };
    let given = matches.value_source(arg.get_id().as_str());
    if matches!(given, Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
        return;
    }
    let flag = OsString::from(format!("--{long}"));
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
            if *b {
                out.push(flag);
            }
        }
        (ArgAction::SetTrue, other) => {
            problems.push(format!("`{shown}` must be true or false, not a {}", other.type_str()))
        }
        (_, toml::Value::String(s)) => out.extend([flag, s.into()]),
        (_, toml::Value::Integer(i)) => out.extend([flag, i.to_string().into()]),
        (_, toml::Value::Float(f)) => out.extend([flag, f.to_string().into()]),
        (_, toml::Value::Boolean(b)) => out.extend([flag, b.to_string().into()]),
        (_, other) => problems.push(format!("`{shown}` must be a string or a number, not a {}", other.type_str())),
    }
}

/// The problem of an unknown key of `tern.toml` (`shown` with its table, `key` alone): the
/// nearest known key as a "did you mean" (the product's one typo rule,
/// [`tern_engine::diagnostics::nearest`]), else every known key.
pub(crate) fn unknown_key(shown: &str, key: &str, known: &[impl AsRef<str>]) -> String {
    let hint = tern_engine::diagnostics::nearest(key, known.iter().map(AsRef::as_ref))
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_else(|| {
            let all: Vec<&str> = known.iter().map(AsRef::as_ref).collect();
            format!("; known keys here: {}", all.join(", "))
        });
    format!("unknown key `{shown}`{hint}")
}

#[cfg(test)]
#[path = "config_file_tests.rs"]
mod tests;

/// A TOML syntax error, by line and column, without the offending line: the file may hold a
/// secret (`database_url` with its password), and the parser would quote it.
fn not_toml(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(":{line}:{column}")
    });
    anyhow::anyhow!("{}{} is not valid TOML: {}", path.display(), at.unwrap_or_default(), e.message().trim())
}

/// A warning for each option that holds a secret (those whose environment value help hides)
/// and was given on the command line, where every local user can read it (`ps`,
/// `/proc/PID/cmdline`): its environment variable keeps it out of sight.
fn secret_flag_warnings(command: &Command, matches: &ArgMatches) -> Vec<String> {
    let mut out = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if !arg.is_hide_env_values_set() || matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = arg.get_long().map_or_else(|| id.to_string(), |l| format!("--{l}"));
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(format!(
            "{flag} was given on the command line, where other users of this machine can read it (ps, /proc); set {env} in the environment instead"
        ));
    }
    if let Some((name, sub)) = matches.subcommand()
        && let Some(sub_command) = command.find_subcommand(name)
    {
        out.extend(secret_flag_warnings(sub_command, sub));
    }
    out
}
