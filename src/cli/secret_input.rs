//! Reading a secret value without it ever being a command-line argument: from an environment
//! variable, a file, or standard input (one line; not echoed when it is a terminal is left to
//! the terminal — use a file or variable for scripts).

use std::io::{BufRead, IsTerminal, Read as _, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;

/// Where a secret value comes from.
#[derive(Clone, Debug, Args)]
pub struct SecretInput {
    /// Read the value from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["from_file"])]
    pub from_env: Option<String>,
    /// Read the value from this file (trailing newline removed).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
}

/// The most bytes a secret (a password, a key, a service account's key file) may have: 64 KiB.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// A file's text, refused when it is longer than `max` bytes (read no further: a device or a
/// huge file cannot exhaust memory) or not UTF-8. `what` names it in the errors.
pub fn read_bounded(path: &std::path::Path, what: &str, max: usize) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    anyhow::ensure!(!file.metadata().is_ok_and(|m| m.is_dir()), "{} is a directory, not the {what}", path.display());
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    anyhow::ensure!(bytes.len() <= max, "{} is longer than {max} bytes: it is not the {what}", path.display());
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not text (UTF-8): it is not the {what}", path.display()))
}

/// Reads the secret from the chosen source, or from standard input. `what` names it in prompts
/// and errors.
pub fn read_secret(env: Option<&str>, file: Option<&PathBuf>, what: &str) -> anyhow::Result<SecretString> {
    let value = if let Some(var) = env {
        // A value given where the name of a variable goes is not echoed back: it may be the
        // secret itself.
        let is_name =
            !var.is_empty() && var.len() <= 128 && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        anyhow::ensure!(
            is_name,
            "the option for the {what} takes the NAME of an environment variable that holds it (e.g. `export BOT_TOKEN=…` then `--bot-token-env BOT_TOKEN`), not the value itself; what was given is not a variable name"
        );
        std::env::var(var).with_context(|| format!("environment variable {var} (for the {what}) is not set"))?
    } else if let Some(path) = file {
        read_bounded(path, what, MAX_SECRET_BYTES)?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("{what}: ");
            std::io::stderr().flush().ok();
        }
        let mut line = String::new();
        stdin
            .lock()
            .take(MAX_SECRET_BYTES as u64 + 1)
            .read_line(&mut line)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
        anyhow::ensure!(line.len() <= MAX_SECRET_BYTES, "the {what} is longer than {MAX_SECRET_BYTES} bytes");
        line
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!value.is_empty(), "the {what} is empty");
    Ok(SecretString::from(value))
}
