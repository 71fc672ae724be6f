//! `tern secrets set|list|remove`: named secrets for `{{secrets.NAME}}`, stored encrypted.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::Shared;
use super::secret_input::{SecretInput, read_secret};

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Store a secret (value from --from-env, --from-file or standard input; never argv).
    Set {
        /// The name used in templates as `{{secrets.NAME}}`.
        name: String,
        #[command(flatten)]
        input: SecretInput,
    },
    /// List secret names (values are never shown).
    List,
    /// Remove a secret.
    Remove {
        /// The name.
        name: String,
    },
}

fn check_name(name: &str) -> anyhow::Result<()> {
    tern_engine::secrets::check_secret_name(name).map_err(anyhow::Error::from)
}

pub async fn secrets(shared: &Shared, args: SecretsArgs) -> anyhow::Result<ExitCode> {
    let store = shared.open_store().await?;
    match args.command {
        SecretsCommand::Set { name, input } => {
            check_name(&name)?;
            let value =
                read_secret(input.from_env.as_deref(), input.from_file.as_ref(), &format!("value of secret {name}"))?;
            tern_store::Store::put_secret(&*store, &name, &value).await?;
            println!("secret `{name}` stored; use it as {{{{secrets.{name}}}}}");
        }
        SecretsCommand::List => {
            let list = tern_store::Store::list_secrets(&*store).await?;
            if list.is_empty() {
                println!("no secrets; add one with `tern secrets set NAME`");
            }
            for s in list {
                if s.decrypts {
                    println!("{}", s.name);
                } else {
                    // Marked on its line; the diagnosis and what to do go to standard error.
                    println!("{}\t(does not decrypt)", s.name);
                    eprintln!("warning: {}", tern_engine::secrets::unreadable_secret(&s.name));
                }
            }
        }
        SecretsCommand::Remove { name } => {
            if !tern_store::Store::remove_secret(&*store, &name).await? {
                anyhow::bail!("no secret named `{name}`");
            }
            println!("secret `{name}` removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
