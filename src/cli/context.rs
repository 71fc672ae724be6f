//! What every subcommand shares: the data directory with the store and its master key, the
//! public URL, and the outbound HTTP policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use tern_engine::http::{HttpClient, HttpPolicy};
use tern_engine::secrets::{LayeredSecrets, SecretSource};
use tern_integrations::Integrations;
use tern_store::crypto::{self, Keyring, MasterKey};
use tern_store::{Backend, DatabaseUrl, Store, StoreLocation};

/// Options shared by every subcommand.
#[derive(Clone, Debug, Args)]
pub struct Shared {
    /// A `tern.toml` with defaults for these options (see the README); `./tern.toml` is read
    /// when it exists. Command-line flags and environment variables win over the file.
    #[arg(long, global = true, env = "TERN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where Tern keeps its SQLite store and master key file.
    #[arg(long, global = true, env = "TERN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database to keep everything in instead of SQLite in the data directory
    /// (`postgres://USER:PASSWORD@HOST:5432/DATABASE`); several `tern serve` instances can
    /// share it (README "Running several instances"). The password is never shown.
    #[arg(long, global = true, env = "TERN_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<RawDatabaseUrl>,
    /// The URL Tern is reachable at; the OAuth callback is `{public_url}/oauth/callback`.
    /// Default: for `tern serve` on a loopback address, that address (`--listen
    /// 127.0.0.1:8181` → `http://127.0.0.1:8181`); otherwise `http://127.0.0.1:8080`, where
    /// `tern serve` listens by default.
    #[arg(
        long,
        global = true,
        env = "TERN_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080",
        hide_default_value = true,
        value_name = "URL"
    )]
    pub public_url: url::Url,
    /// The directory of installed step plugins (`*.wasm`); `plugins` in the data directory by
    /// default.
    #[arg(long, global = true, env = "TERN_PLUGINS_DIR", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Accept a plain-http `--public-url` that is not a loopback address. Authorization codes
    /// and the admin login then travel in clear: only for a network you fully trust.
    #[arg(long, global = true, env = "TERN_INSECURE_PUBLIC_URL", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure_public_url: bool,
    /// Allow requests to private, loopback and link-local addresses (local development, tests).
    #[arg(long, global = true, env = "TERN_ALLOW_PRIVATE_NETWORK", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_private_network: bool,
    /// The channels of `tern.toml` (`[channels.NAME]`), set after parsing.
    #[arg(skip)]
    pub file_channels: super::file_channels::FileChannels,
    /// Whether `--public-url` was given (flag, environment or `tern.toml`) rather than left at
    /// its default, set after parsing: `tern serve` then derives it from where it listens.
    #[arg(skip)]
    pub public_url_given: bool,
}

/// `--database-url` as given. It is checked when the store is opened (by
/// [`tern_store::DatabaseUrl`], whose errors never repeat it), not by clap, whose errors would
/// quote it; `Debug` hides it.
#[derive(Clone)]
pub struct RawDatabaseUrl(String);

impl std::fmt::Debug for RawDatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawDatabaseUrl([redacted])")
    }
}

impl std::str::FromStr for RawDatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// The database file in a data directory.
pub const DB_FILE: &str = "tern.db";

impl Shared {
    /// The public URL `tern serve` uses when it listens at `listen`, and a warning when the two
    /// disagree. Without `--public-url`, a loopback `listen` is the public URL (`--listen
    /// 127.0.0.1:8181` gives callbacks and console links on 8181), and all interfaces
    /// (`0.0.0.0:8181`) give `http://127.0.0.1:8181`, with a warning that other machines need
    /// `--public-url`. A given public URL on a loopback host whose port (or loopback address)
    /// is not where the server listens is warned about: its callbacks would reach nobody.
    pub fn public_url_for_listen(&self, listen: std::net::SocketAddr) -> (url::Url, Option<String>) {
        let own = |ip: std::net::IpAddr| {
            let addr = std::net::SocketAddr::new(ip, listen.port());
            url::Url::parse(&format!("http://{addr}/")).ok()
        };
        let local = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        if !self.public_url_given {
            let ip = listen.ip();
            return match (ip.is_loopback(), ip.is_unspecified(), own(ip), own(local)) {
                (true, _, Some(url), _) => (url, None),
                (_, true, _, Some(url)) => {
                    let warning = format!(
                        "tern serve listens on all interfaces ({listen}) without --public-url: OAuth callbacks, console links and webhook URLs use {url}, which only this machine reaches. Give --public-url (or TERN_PUBLIC_URL) the address people and providers reach this server at."
                    );
                    (url, Some(warning))
                }
                _ => {
                    let warning = format!(
                        "tern serve listens on {listen} without --public-url: OAuth callbacks, console links and webhook URLs use {}, where this server does not listen. Give --public-url (or TERN_PUBLIC_URL) the address people and providers reach this server at.",
                        self.public_url
                    );
                    (self.public_url.clone(), Some(warning))
                }
            };
        }
        let url = &self.public_url;
        let loopback_host = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback().then_some(Some(std::net::IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback().then_some(Some(std::net::IpAddr::V6(ip))),
            Some(url::Host::Domain(_)) => is_loopback_host(url).then_some(None),
            None => None,
        };
        let Some(host_ip) = loopback_host else { return (url.clone(), None) };
        let same_port = url.port_or_known_default() == Some(listen.port());
        let reaches = listen.ip().is_unspecified()
            || match host_ip {
                Some(ip) => ip == listen.ip(),
                None => listen.ip().is_loopback(),
            };
        if same_port && reaches {
            return (url.clone(), None);
        }
        let warning = format!(
            "--public-url {url} is this machine, but tern serve listens on {listen}: OAuth callbacks and console links would reach nothing. Give --public-url http://{listen} (or leave it out on loopback)."
        );
        (url.clone(), Some(warning))
    }

    /// The data directory: `--data-dir`, `TERN_DATA_DIR`, or `$XDG_DATA_HOME/tern`
    /// (`~/.local/share/tern`).
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("tern")
    }

    /// The plugin directory.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir.clone().unwrap_or_else(|| self.data_dir().join("plugins"))
    }

    /// The WebAssembly runtime, with its compilation cache in the data directory.
    pub fn plugin_runtime(&self) -> anyhow::Result<tern_plugins::Runtime> {
        create_private_dir(&self.data_dir())?;
        let cache = self.data_dir().join("cache").join("wasm");
        Ok(tern_plugins::Runtime::new(tern_plugins::Limits::default(), Some(&cache))?)
    }

    /// Whether there is a store to read: a database URL is set, or the data directory has
    /// its SQLite file.
    pub fn has_store(&self) -> bool {
        self.database_url.as_ref().is_some_and(|u| !u.0.trim().is_empty()) || self.data_dir().join(DB_FILE).exists()
    }

    /// Where the store is: `--database-url`, else the SQLite file in the data directory.
    ///
    /// # Errors
    /// The URL is not a `postgres://` URL (the message never repeats it: it may hold a
    /// password).
    pub fn store_location(&self) -> anyhow::Result<StoreLocation> {
        match self.database_url.as_ref().map(|u| u.0.trim()).filter(|u| !u.is_empty()) {
            Some(url) => Ok(StoreLocation::Postgres(
                DatabaseUrl::parse(url).map_err(|e| anyhow::anyhow!("--database-url (TERN_DATABASE_URL): {e}"))?,
            )),
            None => Ok(StoreLocation::Sqlite(self.data_dir().join(DB_FILE))),
        }
    }

    /// A bearer token Tern hands out: `given` (a flag or its environment variable, named
    /// `given_name` in errors; at least 16 characters), else the one kept in `file` in the data
    /// directory, created (0600, 48 hex characters) on first use and logged as `what`. The
    /// admin token (`admin.token`) and the `default` channel's (`channel.token`) are kept this
    /// way. The value is registered with the masker.
    pub fn kept_token(
        &self,
        given: Option<SecretString>,
        given_name: &str,
        file: &str,
        what: &str,
    ) -> anyhow::Result<SecretString> {
        let token = if let Some(t) = given {
            anyhow::ensure!(
                t.expose_secret().len() >= tern_engine::channels::MIN_TOKEN_CHARS,
                "{given_name} must be at least {} characters",
                tern_engine::channels::MIN_TOKEN_CHARS
            );
            t
        } else if let Some(t) = self.existing_token(file)? {
            t
        } else {
            create_private_dir(&self.data_dir())?;
            let path = self.data_dir().join(file);
            let token = tern_engine::channels::generate_token();
            tern_store::crypto::write_key_file(&path, token.expose_secret())?;
            tracing::info!(file = %path.display(), "created the {what}");
            token
        };
        tern_engine::secrets::known::remember(&token);
        Ok(token)
    }

    /// The token kept in `file` in the data directory, if there is one (see
    /// [`Shared::kept_token`]); nothing is created.
    ///
    /// # Errors
    /// The file is readable by other users, or cannot be read.
    pub fn existing_token(&self, file: &str) -> anyhow::Result<Option<SecretString>> {
        let Some(text) = tern_store::crypto::read_private_file(&self.data_dir().join(file))? else { return Ok(None) };
        let token = SecretString::from(text.trim().to_string());
        tern_engine::secrets::known::remember(&token);
        Ok(Some(token))
    }

    /// The guarded HTTP client.
    pub fn http(&self) -> anyhow::Result<HttpClient> {
        Ok(HttpClient::new(HttpPolicy { allow_private_network: self.allow_private_network, ..HttpPolicy::default() })?)
    }

    /// Opens the store, creating the data directory, the database (or schema) and the key
    /// file on first use. A store that holds data without its key fails closed.
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn Backend>> {
        let dir = self.data_dir();
        create_private_dir(&dir)?;
        let location = self.store_location()?;
        let keys = load_keyring(&dir, &location).await?;
        Ok(tern_store::open(&location, keys).await?)
    }

    /// The public URL, checked: https, or http on a loopback address (`localhost`,
    /// 127.0.0.0/8, `[::1]`), or any http with `--insecure-public-url` (with a warning).
    /// It must not hold a user name or password (links and logs show it) or a query or
    /// fragment (paths are appended to it); the message never repeats such a URL.
    pub fn checked_public_url(&self) -> anyhow::Result<url::Url> {
        let url = &self.public_url;
        if !url.username().is_empty() || url.password().is_some() {
            anyhow::bail!(
                "--public-url must not hold a user name or password: it is shown in links, callbacks and logs. Give the bare address (https://HOST[:PORT][/PATH])"
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!(
                "--public-url must not have a query (`?…`) or fragment (`#…`): Tern appends paths such as /oauth/callback to it. Give https://HOST[:PORT][/PATH]"
            );
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(url) => {}
            "http" if self.insecure_public_url => {
                eprintln!(
                    "WARNING: --public-url {url} is plain http on a non-loopback address: OAuth authorization codes and the admin login will travel unencrypted. Use https in production."
                );
                tracing::warn!(public_url = %url, "insecure public URL accepted");
            }
            "http" => anyhow::bail!(
                "--public-url {url} is plain http on a non-loopback address: OAuth authorization codes and the admin login would travel unencrypted. Use an https URL (behind a TLS proxy), or pass --insecure-public-url if this network is fully trusted"
            ),
            other => anyhow::bail!("--public-url {url}: scheme `{other}` is not http or https"),
        }
        Ok(url.clone())
    }

    /// The integrations service over the store (refused when the public URL is unsafe, see
    /// [`Shared::checked_public_url`]).
    pub fn integrations(
        &self,
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretSource>,
    ) -> anyhow::Result<Arc<Integrations>> {
        self.checked_public_url()?;
        Ok(Arc::new(Integrations::new(store, self.http()?, self.public_url.clone(), secrets)))
    }

    /// `{{secrets.NAME}}`: the store's secrets, then `TERN_SECRET_<NAME>`.
    pub async fn secrets(&self, store: Option<&dyn Store>) -> anyhow::Result<Arc<LayeredSecrets>> {
        let Some(store) = store else {
            return Ok(Arc::new(LayeredSecrets::new(Vec::new())));
        };
        let stored: std::collections::HashMap<String, secrecy::SecretString> =
            store.all_secrets().await?.into_iter().collect();
        let undecryptable = undecryptable_secrets(store).await?;
        for name in &undecryptable {
            eprintln!(
                "warning: {}; flows and integrations that use it fail until then",
                tern_engine::secrets::unreadable_secret(name)
            );
        }
        let secrets = LayeredSecrets::new(stored);
        secrets.set_undecryptable(undecryptable);
        Ok(Arc::new(secrets))
    }
}

/// The names of the stored secrets that do not decrypt with the loaded keys.
///
/// # Errors
/// The store could not be read.
pub async fn undecryptable_secrets(store: &dyn Store) -> anyhow::Result<Vec<String>> {
    Ok(store.list_secrets().await?.into_iter().filter(|s| !s.decrypts).map(|s| s.name).collect())
}

/// Whether the URL's host is a loopback address or `localhost` (RFC 6761 §6.3).
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict data directory {}", dir.display()))?;
    }
    Ok(())
}

/// The keyring: `TERN_MASTER_KEY` or the key file (created on first use), plus the previous key
/// during a rotation (`TERN_MASTER_KEY_PREVIOUS`, or the file a rotation left behind).
pub async fn load_keyring(dir: &Path, location: &StoreLocation) -> anyhow::Result<Keyring> {
    let key_file = dir.join(crypto::KEY_FILE);
    let next_file = dir.join(crypto::NEXT_KEY_FILE);
    let mut older = Vec::new();
    let current = match std::env::var(crypto::MASTER_KEY_ENV) {
        Ok(text) => {
            tern_engine::secrets::known::remember_str(text.trim());
            MasterKey::from_base64(&text, crypto::MASTER_KEY_ENV)?
        }
        Err(_) if next_file.exists() => {
            // A rotation was interrupted after re-encrypting: the next key decrypts the rows it
            // wrote, the old one the rest.
            if key_file.exists() {
                older.push(crypto::read_key_file(&key_file)?);
            }
            crypto::read_key_file(&next_file)?
        }
        Err(_) if key_file.exists() => crypto::read_key_file(&key_file)?,
        Err(_) => {
            // A shared database needs the same key on every instance: a key file created here
            // would tie the database to this machine's data directory.
            if location.is_shared() {
                let state =
                    if location.is_initialized().await? { "holds data encrypted with a master key" } else { "is new" };
                anyhow::bail!(
                    "the PostgreSQL store at {} {state}: set {} to that key on every instance (generate one for a new store with `openssl rand -base64 32`); Tern creates no key file for a shared database",
                    location.shown(),
                    crypto::MASTER_KEY_ENV
                );
            }
            if location.is_initialized().await? {
                anyhow::bail!(tern_store::StoreError::MissingKey { location: location.shown() });
            }
            let (key, text) = MasterKey::generate();
            crypto::write_key_file(&key_file, &text)?;
            eprintln!(
                "note: created a new master key at {} (back it up; without it the store cannot be read)",
                key_file.display()
            );
            key
        }
    };
    if let Ok(text) = std::env::var(crypto::PREVIOUS_KEY_ENV) {
        tern_engine::secrets::known::remember_str(text.trim());
        older.push(MasterKey::from_base64(&text, crypto::PREVIOUS_KEY_ENV)?);
    }
    Ok(older.into_iter().fold(Keyring::new(current), Keyring::with_older))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(public_url: Option<&str>) -> Shared {
        Shared {
            config: None,
            data_dir: None,
            database_url: None,
            public_url: url::Url::parse(public_url.unwrap_or("http://127.0.0.1:8080")).unwrap(),
            plugins_dir: None,
            insecure_public_url: false,
            allow_private_network: false,
            file_channels: Default::default(),
            public_url_given: public_url.is_some(),
        }
    }

    fn for_listen(public_url: Option<&str>, listen: &str) -> (String, Option<String>) {
        let (url, warning) = shared(public_url).public_url_for_listen(listen.parse().unwrap());
        (url.to_string(), warning)
    }

    #[test]
    fn without_a_public_url_a_loopback_listen_address_is_the_public_url() {
        assert_eq!(for_listen(None, "127.0.0.1:8181"), ("http://127.0.0.1:8181/".into(), None));
        assert_eq!(for_listen(None, "127.0.0.1:8080"), ("http://127.0.0.1:8080/".into(), None));
        assert_eq!(for_listen(None, "[::1]:9000"), ("http://[::1]:9000/".into(), None));
        let (url, warning) = for_listen(None, "0.0.0.0:8181");
        assert_eq!(url, "http://127.0.0.1:8181/");
        assert!(warning.is_some_and(|w| w.contains("all interfaces") && w.contains("--public-url")));
        let (url, warning) = for_listen(None, "192.168.1.5:8181");
        assert_eq!(url, "http://127.0.0.1:8080/");
        assert!(warning.is_some_and(|w| w.contains("does not listen")));
    }

    #[test]
    fn a_public_url_with_credentials_a_query_or_a_fragment_is_refused_without_repeating_it() {
        for url in
            ["http://user:secretpw@127.0.0.1:8080/", "https://tern.example.com/?x=1", "https://tern.example.com/#f"]
        {
            let e = shared(Some(url)).checked_public_url().unwrap_err().to_string();
            assert!(!e.contains("secretpw") && !e.contains("x=1"), "{e}");
            assert!(e.contains("--public-url must not"), "{e}");
        }
        assert!(shared(Some("https://tern.example.com/tern/")).checked_public_url().is_ok());
    }

    #[test]
    fn a_given_public_url_on_this_machine_must_be_where_serve_listens() {
        for (public, listen) in [
            ("http://127.0.0.1:8181", "127.0.0.1:8181"),
            ("http://localhost:8181", "127.0.0.1:8181"),
            ("http://127.0.0.1:8181", "0.0.0.0:8181"),
            ("https://tern.example.com", "127.0.0.1:8181"),
            ("http://tern.internal:8080", "10.0.0.2:9000"),
        ] {
            let (url, warning) = for_listen(Some(public), listen);
            assert_eq!(url, url::Url::parse(public).unwrap().to_string());
            assert_eq!(warning, None, "{public} on {listen}");
        }
        for (public, listen) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8181"),
            ("http://localhost", "127.0.0.1:8181"),
            ("http://127.0.0.2:8181", "127.0.0.1:8181"),
            ("http://[::1]:8181", "127.0.0.1:8181"),
            ("http://localhost.:9999", "127.0.0.1:8181"),
            ("http://foo.localhost:9999", "127.0.0.1:8181"),
        ] {
            let (_, warning) = for_listen(Some(public), listen);
            assert!(warning.is_some_and(|w| w.contains("would reach nothing")), "{public} on {listen}");
        }
    }
}
