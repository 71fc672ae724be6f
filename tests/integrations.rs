//! OAuth integrations end to end: `tern integrations add` and `authorize` against the test
//! authorization server (the browser is played by an HTTP client), then flows that use the
//! token, expiry, refresh, rotation, 401 retry, invalid_grant, origin binding, lenient token
//! responses and single-flight refresh under 1000 concurrent runs in one and two processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tern_engine::clock::{Clock, ManualClock, SystemClock};
use tern_engine::http::{HttpClient, HttpPolicy};
use tern_engine::secrets::NoSecrets;
use tern_engine::{IntegrationName, TokenOwner, TokenSource};
use tern_integrations::config::IntegrationConfig;
use tern_integrations::{AuthError, CallbackParams, Integrations, STATE_TTL_SECS};
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::{SqliteStore, Store};

use crate::support::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};
use crate::support::oidc::{OIDC_SECRET, OidcProvider};
use crate::support::{Flows, Run, free_port, fresh_data_dir, tern};

struct Env {
    auth: AuthServer,
    data: PathBuf,
    public_url: String,
    flows: Flows,
    /// Everything every command printed, for the secret scanner.
    outputs: std::cell::RefCell<Vec<String>>,
    /// Readers of `authorize` commands' standard output and error.
    pending_stdout: std::cell::RefCell<Vec<std::thread::JoinHandle<(String, String)>>>,
}

impl Env {
    fn new() -> Self {
        Self {
            auth: AuthServer::start(),
            data: fresh_data_dir(),
            public_url: format!("http://127.0.0.1:{}", free_port()),
            flows: Flows::new(),
            outputs: Default::default(),
            pending_stdout: Default::default(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = tern();
        c.env("TERN_DATA_DIR", &self.data)
            .env("TERN_PUBLIC_URL", &self.public_url)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            // Debug logs on, so that the secret scanner reads every log line too.
            .env("RUST_LOG", "debug")
            .env("CS", CLIENT_SECRET);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let r = Run { output: self.cmd().args(args).output().unwrap() };
        self.outputs.borrow_mut().push(format!("{}{}", r.stdout(), r.stderr()));
        r
    }

    fn add(&self, extra: &[&str]) -> Run {
        let auth = self.auth.url();
        let mut args = vec![
            "integrations".to_string(),
            "add".into(),
            "crm".into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-env".into(),
            "CS".into(),
            "--authorization-url".into(),
            format!("{auth}/authorize"),
            "--token-url".into(),
            format!("{auth}/token"),
            "--api-origin".into(),
            auth.clone(),
            "--scopes".into(),
            "contacts offline".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs)
    }

    /// Starts `tern integrations authorize NAME` and returns it with the URL it printed; the
    /// rest of its standard output is collected by a thread in `pending_stdout`.
    fn spawn_authorize(&self, name: &str) -> (std::process::Child, String) {
        let mut child = self
            .cmd()
            .args(["integrations", "authorize", name, "--no-browser", "--timeout", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let url = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "authorize printed no URL: {printed}");
            printed.push_str(&line);
            if line.starts_with("http") {
                break line.trim().to_string();
            }
        };
        // Keep draining both pipes in the background so the child never blocks on them.
        let mut stderr = child.stderr.take().unwrap();
        let mut rest = printed;
        let handle = std::thread::spawn(move || {
            let err = std::thread::spawn(move || {
                let mut e = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut e);
                e
            });
            let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
            (rest, err.join().unwrap_or_default())
        });
        self.pending_stdout.borrow_mut().push(handle);
        (child, url)
    }

    /// Runs `tern integrations authorize crm`, plays the browser, returns (command, callback page).
    fn authorize(&self) -> (Run, String) {
        let (child, url) = self.spawn_authorize("crm");
        let page = browser(&url);
        let mut child = child;
        let status = child.wait().unwrap();
        let (stdout, stderr) = self.pending_stdout.borrow_mut().pop().and_then(|h| h.join().ok()).unwrap_or_default();
        let run =
            Run { output: std::process::Output { status, stdout: stdout.into_bytes(), stderr: stderr.into_bytes() } };
        self.outputs.borrow_mut().push(format!("{}{}{page}", run.stdout(), run.stderr()));
        (run, page)
    }

    fn flow(&self, origin: &str) -> PathBuf {
        self.flows.write("crm", &json!({
            "version": 1, "id": "crm", "variables": {"id": "c1a2"},
            "steps": [
                {"id": "lookup", "type": "fetch_variables", "integration": "crm",
                 "request": {"method": "POST", "url": format!("{origin}/api/contacts.info"), "body": {"id": "{{id}}"}},
                 "variables": {"last_name": "data.last_name"}},
                {"id": "greet", "type": "send_message", "text": "Hello {{last_name}}"}
            ]
        }))
    }

    fn run_flow(&self, extra: &[&str]) -> Run {
        let path = self.flow(&self.auth.url());
        let mut args = vec!["run", path.to_str().unwrap(), "-m", "hi"];
        args.extend(extra);
        self.run(&args)
    }

    fn show(&self) -> Value {
        serde_json::from_str(&self.run(&["integrations", "show", "crm", "--json"]).stdout()).unwrap()
    }

    /// The secret scanner: no client secret, code, verifier or token in anything printed, nor
    /// in plaintext in the data directory.
    fn assert_no_secrets_leaked(&self) {
        let outputs = self.outputs.borrow().join("\n");
        let mut files = Vec::new();
        for e in std::fs::read_dir(&self.data).unwrap() {
            files.extend(std::fs::read(e.unwrap().path()).unwrap_or_default());
        }
        for secret in self.auth.secrets() {
            assert!(!outputs.contains(&secret), "{secret} leaked into command output");
            assert!(!files.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} stored in plaintext");
        }
    }
}

/// Plays the browser: follows the provider's redirect to Tern's callback and returns the page.
fn browser(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let resp = client.get(url).send().await.unwrap();
        let location = resp.headers().get("location").expect("provider redirects").to_str().unwrap().to_string();
        client.get(location).send().await.unwrap().text().await.unwrap()
    })
}

#[test]
fn add_authorize_and_fetch_with_injected_token() {
    let env = Env::new();
    let r = env.add(&[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let callback = format!("{}/oauth/callback", env.public_url);
    assert!(r.stdout().contains(&callback), "add prints the callback URL: {}", r.stdout());
    let before = env.show();
    assert_eq!(before["integration"]["status"], "incomplete");
    assert_eq!(before["integration"]["client_secret_set"], true);

    // Not authorized yet: a clear error that says what to do.
    let r = env.run_flow(&[]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("tern integrations authorize crm"), "{}", r.stderr());

    let (auth, page) = env.authorize();
    assert_eq!(auth.code(), 0, "{}\n{}", auth.stdout(), auth.stderr());
    assert!(auth.stdout().contains("All set! Your authorization is complete!"));
    assert!(page.contains("All set! Your authorization is complete!"), "{page}");
    assert_eq!(env.auth.redirect_uris(), vec![callback], "exact redirect URI");
    let shown = env.show();
    assert_eq!(shown["integration"]["status"], "authorized");
    assert_eq!(shown["token"]["has_refresh_token"], true);

    let r = env.run_flow(&[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Hello Bachman\n");
    let headers = env.auth.api_auth_headers();
    assert!(headers.last().unwrap().starts_with("Bearer at_"), "{headers:?}");
    assert_eq!(env.auth.token_requests("refresh_token"), 0);
    env.assert_no_secrets_leaked();
}

#[test]
fn expiring_token_is_refreshed_and_rotated() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    let r = env.run_flow(&[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(env.auth.token_requests("refresh_token"), 0, "a fresh token is used as it is");
    for i in 1..=2 {
        // The stored token expires (when exactly a token counts as expiring is timed with a
        // manual clock in `expiring_token_refresh_follows_the_clock`).
        expire_stored_token(&env, "crm");
        let r = env.run_flow(&[]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        // Each refresh used the refresh token the previous one returned (the server rejects
        // a rotated-out one), so rotation was stored before use.
        assert_eq!(env.auth.token_requests("refresh_token"), i);
    }
    env.assert_no_secrets_leaked();
}

#[test]
fn unauthorized_response_refreshes_once_and_retries() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    env.auth.revoke_access_tokens();
    let r = env.run_flow(&["--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(env.auth.token_requests("refresh_token"), 1);
    let headers = env.auth.api_auth_headers();
    assert_eq!(headers.len(), 2, "the request, then one retry");
    assert_ne!(headers[0], headers[1], "the retry carries the new token");
    // The step's trace (run history, the console's run page) says the token was refreshed.
    let out = r.json();
    let lookup = out["trace"].as_array().unwrap().iter().find(|t| t["step"] == "lookup").unwrap().clone();
    assert!(lookup["detail"]["response"]["token_refreshed"].as_str().unwrap().contains("refreshed"), "{lookup}");
}

#[test]
fn invalid_grant_latches_without_a_retry_storm() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    env.auth.revoke_access_tokens();
    env.auth.revoke_refresh_tokens();
    let r = env.run_flow(&[]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr().contains("needs to be authorized again") && r.stderr().contains("tern integrations authorize crm"),
        "{}",
        r.stderr()
    );
    assert_eq!(env.show()["integration"]["status"], "needs_reauthorization");
    let shown = env.run(&["integrations", "show", "crm"]).stdout();
    assert!(shown.contains("(unusable: the provider revoked the grant; authorize again)"), "{shown}");
    for _ in 0..3 {
        assert_eq!(env.run_flow(&[]).code(), 1);
    }
    assert_eq!(env.auth.token_requests("refresh_token"), 1, "no retry storm");
    // Authorizing again recovers.
    assert_eq!(env.authorize().0.code(), 0);
    assert_eq!(env.run_flow(&[]).code(), 0);
}

#[test]
fn token_is_never_sent_to_another_origin() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    let other = format!("http://localhost:{}", env.auth.addr.port());
    let path = env.flow(&other);
    let r = env.run(&["run", path.to_str().unwrap(), "-m", "hi"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr().contains("[token-origin]") && r.stderr().contains("may not be sent to http://localhost"),
        "{}",
        r.stderr()
    );
    assert!(env.auth.api_auth_headers().is_empty(), "nothing reached the API");
}

#[test]
fn forged_state_is_ignored_and_provider_errors_are_escaped() {
    let env = Env::new();
    env.add(&[]);
    // A forged callback is rejected before any token request, and the real one still works.
    let (mut child, url) = env.spawn_authorize("crm");
    let forged = format!("{}/oauth/callback?code=stolen&state=forged", env.public_url);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let page = rt.block_on(async { reqwest::get(&forged).await.unwrap().text().await.unwrap() });
    assert!(page.contains("unknown or was already used"), "{page}");
    assert_eq!(env.auth.token_requests("authorization_code"), 0);
    let page = browser(&url);
    assert!(page.contains("All set"), "{page}");
    assert!(child.wait().unwrap().success());

    // The provider's error is shown, escaped.
    env.auth.set(|f| f.deny = Some("access_denied".into()));
    let (r, page) = env.authorize();
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("access_denied"), "{}", r.stderr());
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"), "{page}");
}

#[test]
fn lenient_token_responses_are_accepted() {
    let env = Env::new();
    env.auth.set(|f| {
        f.form_encoded = true;
        f.expires_in_as_string = true;
        f.lowercase_token_type = true;
    });
    env.add(&["--client-auth", "body"]);
    assert_eq!(env.authorize().0.code(), 0);
    let r = env.run_flow(&[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let shown = env.show();
    assert!(shown["token"]["expires_in_secs"].as_i64().unwrap() > 3500);
    // No expires_in at all (GitHub, Intercom): the token never expires, no refresh.
    env.auth.set(|f| {
        f.form_encoded = false;
        f.omit_expires_in = true;
    });
    assert_eq!(env.authorize().0.code(), 0);
    assert!(env.show()["token"]["expires_in_secs"].is_null());
    assert_eq!(env.run_flow(&[]).code(), 0);
    assert_eq!(env.auth.token_requests("refresh_token"), 0);
}

#[test]
fn thousand_concurrent_runs_cause_one_refresh() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    env.auth.set(|f| f.token_delay = std::time::Duration::from_millis(300));
    expire_stored_token(&env, "crm");
    let r = env.run_flow(&["--repeat", "1000", "--json"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.json()["completed"], 1000);
    assert_eq!(env.auth.token_requests("refresh_token"), 1, "one process");

    // Two processes on the same store, every run rejected with 401: one refresh between them.
    env.auth.revoke_access_tokens();
    let path = env.flow(&env.auth.url());
    let spawn = || {
        env.cmd()
            .args(["run", path.to_str().unwrap(), "-m", "hi", "--repeat", "500", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Drain both processes at once: with debug logs on, a process whose output is not read
    // blocks on a full pipe, possibly while holding the store's lock the other one waits for.
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        std::thread::spawn(move || a.wait_with_output().unwrap()),
        std::thread::spawn(move || b.wait_with_output().unwrap()),
    );
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(env.auth.token_requests("refresh_token"), 2, "one more refresh for both processes together");
}

#[test]
fn service_accounts_and_static_keys() {
    let env = Env::new();
    let auth = env.auth.url();
    let args = crate::support::oauth::client_credentials_add("crm", &auth);
    let r = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code(), 0, "{}", r.stderr());
    for _ in 0..2 {
        let r = env.run_flow(&[]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
    }
    assert_eq!(env.auth.token_requests("client_credentials"), 1, "the token is cached in the store until it expires");

    // A static API key from a stored secret, sent only to its origin.
    let api = crate::support::TestApi::start();
    let mut set = env.cmd();
    let out = set
        .args(["secrets", "set", "ECHO_KEY", "--from-env", "KEYVAL"])
        .env("KEYVAL", "sk_static_0123456789")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = env.run(&[
        "integrations",
        "add",
        "echo",
        "--kind",
        "static",
        "--static-secret",
        "ECHO_KEY",
        "--static-header",
        "X-Api-Key",
        "--api-origin",
        &api.url(),
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let path = env.flows.write("echo", &json!({"version": 1, "id": "echo", "steps": [
        {"id": "call", "type": "http_request", "integration": "echo", "request": {"url": format!("{}/anything", api.url())}}
    ]}));
    let r = env.run(&["run", path.to_str().unwrap(), "-m", "go"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(api.requests()[0].header("x-api-key"), Some("sk_static_0123456789"));
    let listed = env.run(&["secrets", "list"]).stdout();
    assert!(listed.contains("ECHO_KEY") && !listed.contains("sk_static"), "{listed}");
    assert!(!env.outputs.borrow().join("").contains("sk_static_0123456789"));
}

#[test]
fn demo_runs_the_whole_mission() {
    let r = crate::support::run(["demo"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    let out = r.stdout();
    assert!(out.contains("All set! Your authorization is complete!"), "{out}");
    assert_eq!(out.matches("tern: Hello Erlich Bachman!").count(), 2, "{out}");
    assert!(out.contains("token requests: 1 × refresh_token"), "{out}");
}

#[test]
fn keys_rotate_reencrypts_and_survives_interruption() {
    let env = Env::new();
    env.add(&[]);
    assert_eq!(env.authorize().0.code(), 0);
    let key_file = env.data.join("master.key");
    let before = std::fs::read_to_string(&key_file).unwrap();

    let r = env.run(&["keys", "rotate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(before, after, "a new key is installed");
    assert!(env.data.join("master.key.previous").exists());
    assert_eq!(env.run_flow(&[]).code(), 0, "the token decrypts under the new key");

    // Simulate a crash right after `master.key.next` was written.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask 077; head -c 32 /dev/urandom | base64 > {}", env.data.join("master.key.next").display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(env.run_flow(&[]).code(), 0, "works mid-rotation");
    let r = env.run(&["keys", "rotate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(!env.data.join("master.key.next").exists());
    assert_eq!(env.run_flow(&[]).code(), 0);

    // A wrong key fails closed, naming what to do.
    let r = Run {
        output: env
            .cmd()
            .env("TERN_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .args(["integrations", "list"])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("does not match") && r.stderr().contains("TERN_MASTER_KEY"), "{}", r.stderr());
    env.assert_no_secrets_leaked();
}

/// Plays a person at oidc-provider's login and consent pages: follows redirects, keeps cookies,
/// submits the forms, and stops at Tern's callback, which it calls. Returns Tern's page.
pub(crate) fn oidc_browser(start: &str, callback_prefix: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut cookies: std::collections::BTreeMap<String, String> = Default::default();
        let mut url = url::Url::parse(start).unwrap();
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..20 {
            if url.as_str().starts_with(callback_prefix) {
                return client.get(url.as_str()).send().await.unwrap().text().await.unwrap();
            }
            let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let req = match form.take() {
                Some(fields) => client.post(url.as_str()).form(&fields),
                None => client.get(url.as_str()),
            };
            let resp = req.header("cookie", cookie).send().await.unwrap();
            for c in resp.headers().get_all("set-cookie") {
                let pair = c.to_str().unwrap().split(';').next().unwrap().to_string();
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.to_string(), v.to_string());
                }
            }
            if resp.status().is_redirection() {
                url = url.join(resp.headers()["location"].to_str().unwrap()).unwrap();
                continue;
            }
            let html = resp.text().await.unwrap();
            let action = html
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("no form in {html}"));
            url = url.join(&action.replace("&amp;", "&")).unwrap();
            form = Some(if html.contains("name=\"login\"") {
                vec![
                    ("prompt".into(), "login".into()),
                    ("login".into(), "erlich".into()),
                    ("password".into(), "any".into()),
                ]
            } else {
                vec![("prompt".into(), "consent".into())]
            });
        }
        panic!("the login did not reach Tern's callback");
    })
}

#[test]
fn interop_with_a_real_oidc_server() {
    if !crate::support::tools::available("interop_with_a_real_oidc_server", &[&crate::support::tools::NODE]) {
        return;
    }
    let env = Env::new();
    let callback = format!("{}/oauth/callback", env.public_url);
    let oidc = OidcProvider::start(&callback);
    let iss = &oidc.issuer;
    let r = Run {
        output: env
            .cmd()
            .env("OIDC_SECRET", OIDC_SECRET)
            .args([
                "integrations",
                "add",
                "oidc",
                "--client-id",
                "tern-interop",
                "--client-secret-env",
                "OIDC_SECRET",
                "--authorization-url",
                &format!("{iss}/auth"),
                "--token-url",
                &format!("{iss}/token"),
                "--api-origin",
                iss,
                "--scopes",
                "openid offline_access",
                "--param",
                "prompt=consent",
            ])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0, "{}", r.stderr());

    let (mut child, url) = env.spawn_authorize("oidc");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let page = oidc_browser(&url, &callback);
    assert!(page.contains("All set! Your authorization is complete!"), "{page}");
    let status = child.wait().unwrap();
    let (_, stderr) = env.pending_stdout.borrow_mut().pop().and_then(|h| h.join().ok()).unwrap_or_default();
    assert!(status.success(), "{stderr}");

    // A flow reads the bearer-protected userinfo endpoint.
    let flow = env.flows.write(
        "me",
        &json!({"version": 1, "id": "me", "steps": [
            {"id": "me", "type": "fetch_variables", "integration": "oidc",
             "request": {"url": format!("{iss}/me")}, "variables": {"last_name": "family_name", "sub": "sub"}},
            {"id": "say", "type": "send_message", "text": "Hello {{last_name}} ({{sub}})"}
        ]}),
    );
    let run = |env: &Env| env.run(&["run", flow.to_str().unwrap(), "-m", "hi"]);
    let r = run(&env);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Hello Bachman (erlich)\n");

    // The stored token expires: Tern refreshes before using it, and stores the rotated refresh
    // token.
    let before = stored_refresh_token(&env);
    expire_stored_token(&env, "oidc");
    let r = run(&env);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let after = stored_refresh_token(&env);
    assert_ne!(before, after, "oidc-provider rotated the refresh token and Tern stored the new one");
    expire_stored_token(&env, "oidc");
    assert_eq!(run(&env).code(), 0, "a second refresh uses the rotated token");
    assert_ne!(stored_refresh_token(&env), after, "rotated again");

    // The old refresh token is now rejected by the server.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{iss}/token"))
            .basic_auth("tern-interop", Some(OIDC_SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", before.as_str())])
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status.0, 400, "{}", status.1);
    assert!(status.1.contains("invalid_grant"), "{}", status.1);
}

/// Runs `f` on the engine's store in the environment's data directory (the test has the key
/// file), as an operator's tool would.
fn with_store<T>(env: &Env, f: impl AsyncFnOnce(&SqliteStore) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let key = tern_store::crypto::read_key_file(&env.data.join("master.key")).unwrap();
        let store = SqliteStore::open(&env.data.join("tern.db"), Keyring::new(key)).await.unwrap();
        f(&store).await
    })
}

/// Reads the stored refresh token of the `oidc` integration.
fn stored_refresh_token(env: &Env) -> String {
    with_store(env, async |store| {
        let name = IntegrationName::new("oidc").unwrap();
        let token = store.get_token(&name, &TokenOwner::Workspace).await.unwrap().unwrap();
        token.refresh_token.unwrap().expose_secret().to_string()
    })
}

/// Makes the stored workspace token of integration `name` expired (a second ago, after an
/// hour's life) instead of waiting for it to expire.
fn expire_stored_token(env: &Env, name: &str) {
    with_store(env, async |store| {
        let name = IntegrationName::new(name).unwrap();
        let mut token = store.get_token(&name, &TokenOwner::Workspace).await.unwrap().unwrap();
        let now = store.clock().now_s();
        token.obtained_at = now - 3601;
        token.expires_at = Some(now - 1);
        store.put_token(&name, &TokenOwner::Workspace, &token).await.unwrap();
    })
}

/// A store on a manual clock in a temporary directory, the integrations service over it, and
/// the test authorization server's `crm` integration added (not authorized yet).
struct InProcess {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    service: Integrations,
}

impl InProcess {
    async fn new(auth: &AuthServer) -> Self {
        // On a whole second, so that "n seconds later" is exact in Unix seconds too.
        let clock = Arc::new(ManualClock::new(SystemClock.now_s() * 1000));
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let store = SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store.with_clock(clock.clone()));
        let a = auth.url();
        let config = IntegrationConfig {
            client_id: Some(CLIENT_ID.into()),
            authorization_url: Some(format!("{a}/authorize").parse().unwrap()),
            token_url: Some(format!("{a}/token").parse().unwrap()),
            api_origins: vec![a.clone()],
            scopes: vec!["contacts".into(), "offline".into()],
            ..IntegrationConfig::default()
        };
        let secret = SecretString::from(CLIENT_SECRET.to_string());
        store.put_integration(&crm(), &config, Some(&secret)).await.unwrap();
        let http = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).unwrap();
        let public = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
        let service = Integrations::new(store.clone(), http, public, Arc::new(NoSecrets));
        Self { _dir: dir, clock, store, service }
    }

    /// Plays the browser up to the callback: the authorization server redirects with a code
    /// and the state, which are returned as the callback's query.
    async fn consent(&self) -> CallbackParams {
        let start = self.service.begin(&crm(), TokenOwner::Workspace).await.unwrap();
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = browser.get(start.url.as_str()).send().await.unwrap();
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
        CallbackParams { code: query.get("code").cloned(), state: query.get("state").cloned(), ..Default::default() }
    }

    async fn bearer(&self) -> String {
        let grant = self.service.grant(&crm(), &TokenOwner::Workspace).await.unwrap();
        match &grant.credential {
            tern_engine::Credential::Header { value, .. } => value.to_str().unwrap().to_string(),
            other => panic!("not a header credential: {other:?}"),
        }
    }
}

fn crm() -> IntegrationName {
    IntegrationName::new("crm").unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// When a token counts as expiring, on a manual clock instead of sleeps: four-second tokens
/// are refreshed when two seconds are left (the skew is capped at half the lifetime, so
/// short-lived tokens are not refreshed on every use), each refresh with the refresh token the
/// previous one returned (the server rejects a rotated-out one), and every new token works.
#[test]
fn expiring_token_refresh_follows_the_clock() {
    let auth = AuthServer::start();
    auth.set(|f| f.expires_in = 4);
    rt().block_on(async {
        let t = InProcess::new(&auth).await;
        t.service.complete(&t.consent().await).await.unwrap();
        let first = t.bearer().await;
        let api = format!("{}/api/contacts.info", auth.url());
        let works = async |bearer: &str| {
            let r = reqwest::Client::new()
                .post(&api)
                .header("authorization", bearer)
                .json(&json!({"id": "c1a2"}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        };
        assert_eq!(works(&first).await, 200);
        t.clock.advance(Duration::from_secs(1));
        assert_eq!(t.bearer().await, first, "three seconds left: used as it is");
        assert_eq!(auth.token_requests("refresh_token"), 0);
        for i in 1..=2 {
            t.clock.advance(Duration::from_secs(1));
            let fresh = t.bearer().await;
            assert_eq!(auth.token_requests("refresh_token"), i, "two seconds left: refreshed");
            assert_ne!(fresh, first);
            assert_eq!(works(&fresh).await, 200);
            assert_eq!(t.bearer().await, fresh, "the new token is used until it is expiring in turn");
            t.clock.advance(Duration::from_secs(1));
        }
        let stored = t.store.get_token(&crm(), &TokenOwner::Workspace).await.unwrap().unwrap();
        assert_eq!(stored.obtained_at, t.clock.now_s() - 1, "stamped by the manual clock");
        assert_eq!(stored.expires_at, Some(stored.obtained_at + 4));
    });
}

/// An authorization whose state is older than its ten minutes is refused at the callback,
/// on a manual clock.
#[test]
fn authorization_state_expires_on_the_clock() {
    let auth = AuthServer::start();
    rt().block_on(async {
        let t = InProcess::new(&auth).await;
        let callback = t.consent().await;
        t.clock.advance(Duration::from_secs(u64::try_from(STATE_TTL_SECS).unwrap() + 1));
        let err = t.service.complete(&callback).await.unwrap_err();
        assert!(matches!(err, AuthError::Expired), "{err}");
        assert_eq!(auth.token_requests("authorization_code"), 0, "the code was not exchanged");
        // In time, the same steps succeed.
        let callback = t.consent().await;
        t.clock.advance(Duration::from_secs(u64::try_from(STATE_TTL_SECS).unwrap() - 1));
        t.service.complete(&callback).await.unwrap();
        assert_eq!(auth.token_requests("authorization_code"), 1);
    });
}

#[test]
fn api_and_test_commands_use_the_token_like_a_flow() {
    let env = Env::new();
    let auth = env.auth.url();
    let r = env.add(&[
        "--identity-url",
        &format!("{auth}/api/users.me"),
        "--account-field",
        "data.account.id",
        "--event-identifier",
        "account.id",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());

    // Never authorized: `test` says so and exits 1.
    let t = env.run(&["integrations", "test", "crm"]);
    assert_eq!(t.code(), 1, "{}", t.stdout());
    assert!(t.stdout().contains("integration crm: Incomplete (never authorized)"), "{}", t.stdout());
    assert!(t.stdout().contains("tern integrations authorize crm"), "{}", t.stdout());

    assert_eq!(env.authorize().0.code(), 0);
    let t = env.run(&["integrations", "test", "crm"]);
    assert_eq!(t.code(), 0, "{}\n{}", t.stdout(), t.stderr());
    let out = t.stdout();
    for part in [
        "integration crm: Authorized",
        "account:       acct-77",
        "scopes:        contacts",
        "refresh token stored",
        "last refresh:",
        &format!("live call:     GET {auth}/api/users.me → 200 OK"),
    ] {
        assert!(out.contains(part), "{part} in:\n{out}");
    }

    // `tern api`: a path under the API origin, a JSON body, the answer printed as JSON.
    let a = env.run(&["api", "crm", "/api/contacts.info", "-d", r#"{"id": "c1a2"}"#]);
    assert_eq!(a.code(), 0, "{}", a.stderr());
    let body: Value = serde_json::from_str(&a.stdout()).unwrap();
    assert_eq!(body["data"]["last_name"], "Bachman");
    // A revoked access token is refreshed once and the call retried, as in a flow.
    env.auth.revoke_access_tokens();
    let a = env.run(&["api", "crm", &format!("{auth}/api/users.me"), "-i"]);
    assert_eq!(a.code(), 0, "{}", a.stderr());
    assert!(a.stdout().starts_with("200 OK\n"), "{}", a.stdout());
    assert_eq!(env.auth.token_requests("refresh_token"), 1);
    // An answer that is not 2xx is printed, and the exit code is 1.
    let a = env.run(&["api", "crm", "/api/contacts.info", "-X", "post", "-d", r#"{"id": "nobody"}"#]);
    assert_eq!(a.code(), 1);
    assert!(a.stdout().contains("Not found") && a.stderr().contains("answered 404"), "{}\n{}", a.stdout(), a.stderr());
    // An API that echoes the credential: masked in what `tern api` prints.
    let a = env.run(&["api", "crm", "/api/echo-headers", "-i"]);
    assert_eq!(a.code(), 1, "it answers 400");
    assert!(a.stdout().contains("\"echo\": \"Bearer [redacted]\""), "{}", a.stdout());
    // The token never goes to another origin; mistakes are explained.
    let a = env.run(&["api", "crm", "http://127.0.0.1:9/steal"]);
    assert_eq!(a.code(), 1);
    assert!(a.stderr().contains("http://127.0.0.1:9"), "{}", a.stderr());
    for (args, says) in [
        (vec!["api", "crm", "contacts"], "is not a path (`/v1/me`) or an http(s) URL"),
        (vec!["api", "crm", "/x", "-d", "{nope"], "-d is not JSON"),
        (vec!["api", "crm", "/x", "-H", "no colon"], "header `no colon` is not `Name: value`"),
        (vec!["api", "crm", "/x", "-X", "BREW"], "`BREW` is not one of GET, POST"),
        (vec!["api", "crm", "/x", "-H", "Host: evil.example"], "header `host` is set by Tern"),
        (vec!["api", "nope", "/x"], "no integration named `nope`"),
    ] {
        let a = env.run(&args);
        assert_ne!(a.code(), 0, "{args:?}");
        assert!(a.stderr().contains(says), "{args:?}: {}", a.stderr());
    }

    // The grant dies: `test` shows it as soon as the refresh fails.
    env.auth.revoke_access_tokens();
    env.auth.revoke_refresh_tokens();
    expire_stored_token(&env, "crm");
    let t = env.run(&["integrations", "test", "crm"]);
    assert_eq!(t.code(), 1);
    assert!(t.stdout().contains("integration crm: Needs re-authorization"), "{}", t.stdout());
    assert!(t.stdout().contains("invalid_grant"), "{}", t.stdout());
    env.assert_no_secrets_leaked();
}

#[test]
fn a_token_url_tern_would_refuse_is_flagged_when_the_integration_is_added() {
    let data = fresh_data_dir();
    for (i, token_url) in
        ["http://127.0.0.1:9/token", "http://localhost:9/token", "https://10.1.2.3/token"].iter().enumerate()
    {
        let add = |allow: bool| {
            let mut cmd = tern();
            cmd.env("TERN_DATA_DIR", &data).env("CS", CLIENT_SECRET);
            if allow {
                cmd.env("TERN_ALLOW_PRIVATE_NETWORK", "1");
            }
            Run {
                output: cmd
                    .args(["integrations", "add", &format!("local{i}"), "--update", "--client-id", CLIENT_ID])
                    .args(["--client-secret-env", "CS", "--authorization-url", "https://auth.example/authorize"])
                    .args(["--token-url", token_url, "--api-origin", "https://api.example"])
                    .output()
                    .unwrap(),
            }
        };
        let r = add(false);
        assert_eq!(r.code(), 0, "{token_url}: {}", r.stderr());
        assert!(r.stderr().contains(&format!("warning: Tern would refuse to call {token_url}")), "{}", r.stderr());
        assert!(r.stderr().contains("--allow-private-network"), "{}", r.stderr());
        // Where private networks are allowed, there is nothing to flag.
        let r = add(true);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert!(!r.stderr().contains("warning:"), "{}", r.stderr());
    }
    // A URL without its scheme is explained in words, not the parser's.
    let r = Run {
        output: tern()
            .env("TERN_DATA_DIR", &data)
            .args(["integrations", "add", "x", "--client-id", CLIENT_ID, "--token-url", "auth.example.com/token"])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("`auth.example.com/token` is not a whole URL; write it with its scheme"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("relative URL without a base"), "{}", r.stderr());
    // A public name is not flagged.
    let r = Run {
        output: tern()
            .env("TERN_DATA_DIR", &data)
            .env("CS", CLIENT_SECRET)
            .args(["integrations", "add", "public", "--client-id", CLIENT_ID, "--client-secret-env", "CS"])
            .args([
                "--authorization-url",
                "https://auth.example/authorize",
                "--token-url",
                "https://93.184.215.14/token",
            ])
            .args(["--api-origin", "https://api.example"])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(!r.stderr().contains("warning:"), "{}", r.stderr());
}

#[test]
fn authorize_hands_over_to_a_running_server_and_explains_a_missing_callback() {
    let env = Env::new();
    env.add(&[]);
    // `tern serve` owns the public URL: `authorize` gives the link and waits for the token the
    // server's callback stores.
    let flows = tempfile::tempdir().unwrap();
    let listen = env.public_url.trim_start_matches("http://").to_string();
    let mut serve = env.cmd();
    serve.env("TERN_ADMIN_TOKEN", "admin-token-for-tests-0123456789").args([
        "serve",
        "--listen",
        &listen,
        "--flows",
        flows.path().to_str().unwrap(),
    ]);
    let _server = crate::serve::Server::spawn(serve);
    let (child, url) = env.spawn_authorize("crm");
    browser(&url);
    let mut child = child;
    let status = child.wait().unwrap();
    let (stdout, stderr) = env.pending_stdout.borrow_mut().pop().and_then(|h| h.join().ok()).unwrap_or_default();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("most likely by `tern serve`"), "{stdout}");
    assert!(stdout.contains("All set! Your authorization is complete!"), "{stdout}");
    assert_eq!(env.show()["integration"]["status"], "authorized");

    // Nobody comes back: the message names the redirect URI to register.
    let r = env.run(&["integrations", "authorize", "crm", "--no-browser", "--timeout", "1"]);
    assert_eq!(r.code(), 1);
    let callback = format!("{}/oauth/callback", env.public_url);
    assert!(r.stderr().contains(&format!("register exactly {callback}")), "{}", r.stderr());
}
