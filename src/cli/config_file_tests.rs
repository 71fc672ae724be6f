//! Precedence of `tern.toml` (flag > environment > file > default) and its errors, on the real
//! clap definitions of `tern`, in process.

use std::ffi::OsString;
use std::path::Path;

use clap::{Arg, ArgMatches, Command, CommandFactory as _};

use super::{arguments, secret_flag_warnings};
use crate::cli::Cli;

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("tern").chain(args.iter().copied()).map(OsString::from).collect()
}

fn table(text: &str) -> toml::Table {
    toml::from_str(text).expect("test TOML")
}

/// What `tern ARGS` means with `text` as the configuration file: the file's arguments merged in
/// the way `parse_args` merges them.
fn merged(args: &[&str], text: &str) -> anyhow::Result<ArgMatches> {
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(argv(args))?;
    let extra = arguments(&command, &matches, &table(text), Path::new("tern.toml"))?;
    let mut full = argv(args);
    full.extend(extra);
    Ok(command.try_get_matches_from(full)?)
}

fn serve_value(m: &ArgMatches, id: &str) -> Option<String> {
    let serve = m.subcommand_matches("serve").expect("serve");
    serve.get_raw(id).and_then(|mut v| v.next()).map(|v| v.to_string_lossy().into_owned())
}

#[test]
fn the_file_beats_the_default() {
    let m = merged(&["serve"], "[serve]\nlisten = \"0.0.0.0:9\"\nmax_concurrency = 512\n").unwrap();
    assert_eq!(serve_value(&m, "listen").as_deref(), Some("0.0.0.0:9"));
    assert_eq!(serve_value(&m, "max_concurrency").as_deref(), Some("512"));
}

#[test]
fn without_the_key_the_default_stays() {
    let m = merged(&["serve"], "[serve]\nmax_concurrency = 512\n").unwrap();
    let serve = m.subcommand_matches("serve").unwrap();
    assert_eq!(serve.value_source("listen"), Some(clap::parser::ValueSource::DefaultValue));
}

#[test]
fn a_flag_beats_the_file() {
    let m = merged(&["serve", "--listen", "127.0.0.1:1"], "[serve]\nlisten = \"0.0.0.0:9\"\n").unwrap();
    assert_eq!(serve_value(&m, "listen").as_deref(), Some("127.0.0.1:1"));
}

#[test]
fn a_shared_flag_beats_the_file_in_any_position() {
    let m =
        merged(&["serve", "--public-url", "https://flag.example"], "public_url = \"https://file.example\"\n").unwrap();
    let url = m.get_raw("public_url").and_then(|mut v| v.next()).unwrap();
    assert_eq!(url, "https://flag.example");
}

#[test]
fn an_environment_variable_beats_the_file() {
    // A command with an option read from `PATH`, which every process has: the environment is
    // the value's source, so the file adds nothing.
    assert!(std::env::var_os("PATH").is_some());
    let command = Command::new("t").arg(Arg::new("path").long("path").env("PATH"));
    let matches = command.clone().try_get_matches_from(["t"]).unwrap();
    let extra = arguments(&command, &matches, &table("path = \"/from/the/file\"\n"), Path::new("t.toml")).unwrap();
    assert!(extra.is_empty(), "{extra:?}");
    // Without the environment variable the file's value is used.
    let command = Command::new("t").arg(Arg::new("path").long("path").env("TERN_TEST_SURELY_UNSET_7C1F"));
    let matches = command.clone().try_get_matches_from(["t"]).unwrap();
    let extra = arguments(&command, &matches, &table("path = \"/from/the/file\"\n"), Path::new("t.toml")).unwrap();
    assert_eq!(extra, ["--path", "/from/the/file"]);
}

#[test]
fn booleans_are_flags_and_must_be_booleans() {
    let m = merged(&["schema"], "allow_private_network = true\n").unwrap();
    assert!(m.get_flag("allow_private_network"));
    let m = merged(&["schema"], "allow_private_network = false\n").unwrap();
    assert!(!m.get_flag("allow_private_network"));
    let e = merged(&["schema"], "allow_private_network = \"yes\"\n").unwrap_err().to_string();
    assert!(e.contains("`allow_private_network` must be true or false, not a string"), "{e}");
}

#[test]
fn unknown_keys_are_errors_with_the_nearest_name() {
    let e = merged(&["serve"], "[serve]\nlisen = \"0.0.0.0:9\"\n").unwrap_err().to_string();
    assert!(e.contains("tern.toml"), "{e}");
    assert!(e.contains("unknown key `serve.lisen` (did you mean `listen`?)"), "{e}");
    let e = merged(&["serve"], "zzzzzzzz = 1\n").unwrap_err().to_string();
    assert!(e.contains("unknown key `zzzzzzzz`; known keys here: "), "{e}");
    assert!(e.contains("data_dir"), "{e}");
    // `config` names the file itself; it cannot be set from inside it.
    let e = merged(&["serve"], "config = \"other.toml\"\n").unwrap_err().to_string();
    assert!(e.contains("unknown key `config`"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = merged(&["serve"], "nope = 1\n[serve]\nalso_nope = 2\nlisten = [1]\n").unwrap_err().to_string();
    assert!(e.contains("unknown key `nope`"), "{e}");
    assert!(e.contains("unknown key `serve.also_nope`"), "{e}");
    assert!(e.contains("`serve.listen` must be a string or a number, not a array"), "{e}");
}

#[test]
fn another_commands_section_is_checked_but_not_used() {
    let m = merged(&["schema"], "[serve]\nlisten = \"0.0.0.0:9\"\n").unwrap();
    assert_eq!(m.subcommand_name(), Some("schema"));
    let e = merged(&["schema"], "[serve]\nlistn = \"0.0.0.0:9\"\n").unwrap_err().to_string();
    assert!(e.contains("unknown key `serve.listn` (did you mean `listen`?)"), "{e}");
    let e = merged(&["schema"], "serve = 1\n").unwrap_err().to_string();
    assert!(e.contains("`serve` must be a table (`[serve]`)"), "{e}");
}

#[test]
fn parse_args_reads_the_file_named_by_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.toml");
    std::fs::write(&path, "[serve]\nlisten = \"0.0.0.0:9\"\n").unwrap();
    let p = path.to_str().unwrap();
    let cli = super::parse_args(argv(&["--config", p, "serve"])).unwrap();
    assert!(format!("{cli:?}").contains("listen: 0.0.0.0:9"), "{cli:?}");
    let cli = super::parse_args(argv(&["--config", p, "serve", "--listen", "127.0.0.1:1"])).unwrap();
    assert!(format!("{cli:?}").contains("listen: 127.0.0.1:1"), "{cli:?}");

    let missing = dir.path().join("missing.toml");
    let e = super::parse_args(argv(&["--config", missing.to_str().unwrap(), "serve"])).unwrap_err();
    assert!(format!("{e:#}").contains("cannot read the configuration file"), "{e:#}");
    std::fs::write(&path, "listen = \n").unwrap();
    let e = super::parse_args(argv(&["--config", p, "serve"])).unwrap_err();
    assert!(format!("{e:#}").contains("is not valid TOML"), "{e:#}");
}

/// A database URL in `tern.toml` never shows: not when the file has a syntax error on its line,
/// not in the parsed options' `Debug`.
#[test]
fn the_database_password_in_the_file_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.toml");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "database_url = \"postgres://tern:Toml-Secret-42@db/tern\n").unwrap();
    let e = format!("{:#}", super::parse_args(argv(&["--config", p, "serve"])).unwrap_err());
    assert!(e.contains("is not valid TOML") && e.contains(":1:"), "{e}");
    assert!(!e.contains("Toml-Secret-42"), "{e}");
    std::fs::write(&path, "database_url = \"postgres://tern:Toml-Secret-42@db/tern\"\n").unwrap();
    let cli = super::parse_args(argv(&["--config", p, "serve"])).unwrap();
    assert!(!format!("{cli:?}").contains("Toml-Secret-42"), "{cli:?}");
}

/// A secret given as a flag is visible to every local user: each such flag is warned about,
/// with the environment variable to use instead; the same value from the environment is not.
#[test]
fn secrets_on_the_command_line_are_warned_about() {
    let command = Cli::command();
    let token = "0123456789abcdef0123456789";
    let m = command.clone().try_get_matches_from(argv(&["serve", "--channel-token", token])).unwrap();
    let warnings = secret_flag_warnings(&command, &m);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("--channel-token was given on the command line"), "{warnings:?}");
    assert!(warnings[0].contains("set TERN_CHANNEL_TOKEN in the environment"), "{warnings:?}");
    assert!(!warnings[0].contains(token), "{warnings:?}");
    let m = command.clone().try_get_matches_from(argv(&["serve", "--listen", "127.0.0.1:0"])).unwrap();
    assert!(secret_flag_warnings(&command, &m).is_empty());
    // Every option whose environment value is hidden is one of these secrets.
    let serve = command.find_subcommand("serve").unwrap();
    let hidden: Vec<&str> =
        serve.get_arguments().filter(|a| a.is_hide_env_values_set()).filter_map(Arg::get_long).collect();
    for flag in ["channel-token", "channel-secret", "webhook-secret"] {
        assert!(hidden.contains(&flag), "{flag} is not treated as a secret: {hidden:?}");
    }
}

/// Whether `--public-url` counts as given, as `parse_args` records it.
fn public_url_given(args: &[&str], text: &str) -> bool {
    use clap::FromArgMatches as _;
    let m = merged(args, text).unwrap();
    super::with_sources(Cli::from_arg_matches(&m).unwrap(), &m).shared.public_url_given
}

#[test]
fn a_public_url_from_a_flag_or_the_file_counts_as_given_and_the_default_does_not() {
    assert!(!public_url_given(&["serve"], ""));
    assert!(public_url_given(&["serve", "--public-url", "https://flag.example"], ""));
    assert!(public_url_given(&["--public-url", "https://flag.example", "serve"], ""));
    assert!(public_url_given(&["serve"], "public_url = \"https://file.example\"\n"));
}
