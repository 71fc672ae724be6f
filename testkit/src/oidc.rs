//! panva's oidc-provider under Node: the independent OAuth server of the interop and browser
//! tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::free_port;

/// panva's `oidc-provider` (an independent, certified OpenID Connect server from npm) running
/// under Node on 127.0.0.1, configured with PKCE required, rotating refresh tokens and
/// 3-second access tokens.
pub struct OidcProvider {
    child: std::process::Child,
    /// The issuer URL.
    pub issuer: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    /// How many token requests (authorization code and refresh) the server has answered.
    pub async fn token_requests(&self) -> u64 {
        let v: serde_json::Value = reqwest::get(format!("{}/__token_requests", self.issuer))
            .await
            .and_then(|r| r.error_for_status())
            .expect("the OIDC server answers its counter")
            .json()
            .await
            .expect("a JSON counter");
        v["count"].as_u64().unwrap_or(0)
    }
}

/// The client secret the server is configured with.
pub const OIDC_SECRET: &str = "oidc-interop-secret-7f3a9c";

fn oidc_dir() -> PathBuf {
    crate::repo().join("tests/oidc")
}

/// Installs the server's npm dependencies on first use (`scripts/test` does it up front).
fn ensure_node_modules() {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    if oidc_dir().join("node_modules/oidc-provider").exists() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(oidc_dir())
        .output()
        .expect("npm must be installed to run the interop tests (apt-get install nodejs npm)");
    assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl OidcProvider {
    /// Starts it (installing its npm packages on first use) with `redirect_uri` registered.
    pub fn start(redirect_uri: &str) -> Self {
        Self::start_with_access_ttl(redirect_uri, 3)
    }

    /// [`OidcProvider::start`] with access tokens that live `seconds`.
    pub fn start_with_access_ttl(redirect_uri: &str, seconds: u32) -> Self {
        ensure_node_modules();
        let port = free_port();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(oidc_dir())
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_SECRET", OIDC_SECRET)
            .env("ACCESS_TTL", seconds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed to run the interop tests");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("oidc-provider did not start: {line}"))
            .to_string();
        Self { child, issuer }
    }
}
