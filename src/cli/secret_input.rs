//! Reading a secret value without it ever being a command-line argument: from an environment
//! variable, a file, or standard input (one line; not echoed when it is a terminal is left to
//! the terminal — use a file or variable for scripts).

use std::io::{BufRead, IsTerminal, Write};
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
        std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} from {}", path.display()))?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("{what}: ");
            std::io::stderr().flush().ok();
        }
        let mut line = String::new();
        stdin.lock().read_line(&mut line).with_context(|| format!("cannot read the {what} from standard input"))?;
        line
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!value.is_empty(), "the {what} is empty");
    Ok(SecretString::from(value))
}
