//! `tern keys rotate`: re-encrypt every stored secret under a new master key.
//!
//! With the key file: a new key is written to `master.key.next` first; the store is opened
//! with the new key as current and the old one still readable, every secret column is
//! re-encrypted in one transaction, and only then does the new key replace `master.key` (the
//! old one is kept as `master.key.previous`). Killed at any point, the next start finds a
//! keyring that reads everything, and running the command again finishes the rotation.
//!
//! With `TERN_MASTER_KEY`: set the new key there and the old one in
//! `TERN_MASTER_KEY_PREVIOUS`, run `tern keys rotate`, then drop the previous key.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tern_store::crypto::{self, MasterKey};

use super::context::Shared;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypt everything under a new master key.
    Rotate,
}

pub async fn keys(shared: &Shared, args: KeysArgs) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate = args.command;
    let dir = shared.data_dir();
    let env_mode = std::env::var(crypto::MASTER_KEY_ENV).is_ok();
    let next = dir.join(crypto::NEXT_KEY_FILE);
    if env_mode {
        anyhow::ensure!(
            std::env::var(crypto::PREVIOUS_KEY_ENV).is_ok(),
            "with {} set, put the new key there and the current one in {}, then run this again",
            crypto::MASTER_KEY_ENV,
            crypto::PREVIOUS_KEY_ENV
        );
    } else {
        anyhow::ensure!(
            !shared.store_location()?.is_shared(),
            "a PostgreSQL store is rotated with keys in the environment: put the new key in {} and the current one in {} (on every instance, restarted), then run this again",
            crypto::MASTER_KEY_ENV,
            crypto::PREVIOUS_KEY_ENV
        );
        anyhow::ensure!(shared.has_store(), "no store in {} to rotate", dir.display());
        if !next.exists() {
            let (_, text) = MasterKey::generate();
            crypto::write_key_file(&next, &text)?;
        }
    }
    let store = shared.open_store().await?;
    let count = store.reencrypt_all().await?;
    drop(store);
    if !env_mode {
        let key = dir.join(crypto::KEY_FILE);
        let previous = dir.join(format!("{}.previous", crypto::KEY_FILE));
        if key.exists() {
            std::fs::rename(&key, &previous)
                .with_context(|| format!("cannot keep the old key as {}", previous.display()))?;
        }
        std::fs::rename(&next, &key).with_context(|| format!("cannot install the new key at {}", key.display()))?;
        println!("re-encrypted {count} value(s) under a new master key in {}", key.display());
        println!(
            "the old key is kept in {} for backups made before now; delete it when they are gone",
            previous.display()
        );
    } else if shared.store_location()?.is_shared() {
        // Instances still running with only the old key cannot read what was re-encrypted.
        println!(
            "re-encrypted {count} value(s) under the key in {}; every instance must already run with it (and the old one in {}): then restart them without {}",
            crypto::MASTER_KEY_ENV,
            crypto::PREVIOUS_KEY_ENV,
            crypto::PREVIOUS_KEY_ENV
        );
    } else {
        println!(
            "re-encrypted {count} value(s) under the key in {}; unset {} now",
            crypto::MASTER_KEY_ENV,
            crypto::PREVIOUS_KEY_ENV
        );
    }
    Ok(ExitCode::SUCCESS)
}
