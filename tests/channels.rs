//! `tern channels add|list|show|remove` end to end (issue 22), and what `tern serve` does with
//! channels: the `default` channel's generated `channel.token`, the admin API over real HTTP,
//! and the loud warning of `--insecure-open-channel`.

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::{Run, fresh_data_dir, tern};

const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOOK_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXdlYmhvb2stMDE=";
const TOKEN: &str = "support-token-from-env-0123456789";

fn channels(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", data).env_remove("TERN_CHANNEL_TOKEN").arg("channels").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run { output: cmd.output().unwrap() }
}

/// Every byte of the database files (not the key files).
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("tern.db") {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn add_generates_a_token_shown_once_and_list_show_remove_never_print_it() {
    let data = fresh_data_dir();
    let added = channels(&data, &[], &["add", "web", "--kind", "generic"]);
    assert_eq!(added.code(), 0, "{}", added.stderr());
    let out = added.stdout();
    assert!(out.contains("channel `web` saved (generic, 1 token)"), "{out}");
    assert!(out.contains("shown once"), "{out}");
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 48 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no generated token in {out}"))
        .to_string();

    let listed = channels(&data, &[], &["list"]);
    assert_eq!(listed.code(), 0, "{}", listed.stderr());
    let list = listed.stdout();
    assert!(list.lines().any(|l| l.starts_with("default ") && l.contains("flags")), "{list}");
    // This process cannot see what `tern serve` was given: it says so rather than "none".
    assert!(list.lines().any(|l| l.starts_with("default ") && l.contains("set by `tern serve`")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("web ") && l.contains("store") && l.contains("1 token")), "{list}");
    let default = channels(&data, &[], &["show", "default"]).stdout();
    assert!(default.contains("credentials:     set by `tern serve` (not visible here)"), "{default}");

    let shown = channels(&data, &[], &["show", "web"]);
    assert_eq!(shown.code(), 0, "{}", shown.stderr());
    let text = shown.stdout();
    assert!(text.contains("bearer tokens:   1 set"), "{text}");
    assert!(text.contains("webhook URL:     -"), "{text}");
    let json = channels(&data, &[], &["show", "web", "--json"]).json();
    assert_eq!(
        (json["name"].as_str(), json["tokens"].as_u64(), json["source"].as_str()),
        (Some("web"), Some(1), Some("stored"))
    );
    for output in [&list, &text, &json.to_string()] {
        assert!(!output.contains(&token), "the token was printed again: {output}");
    }
    assert!(!contains(&database_bytes(&data), &token), "the token is stored in plaintext");

    let removed = channels(&data, &[], &["remove", "web"]);
    assert_eq!(removed.code(), 0, "{}", removed.stderr());
    assert!(removed.stdout().contains("channel `web` removed"), "{}", removed.stdout());
    let gone = channels(&data, &[], &["show", "web"]);
    assert_eq!(gone.code(), 2);
    assert!(gone.stderr().contains("there is no channel `web`; `tern channels list` shows them"), "{}", gone.stderr());
}

#[test]
fn add_reads_every_credential_from_the_environment_and_show_masks_them() {
    let data = fresh_data_dir();
    let env = [("SUPPORT_TOKEN", TOKEN), ("SUPPORT_SECRET", SIGNING), ("HOOK_SECRET", HOOK_SECRET)];
    let added = channels(
        &data,
        &env,
        &[
            "add",
            "support",
            "--kind",
            "generic",
            "--token-env",
            "SUPPORT_TOKEN",
            "--secret-env",
            "SUPPORT_SECRET",
            "--webhook-url",
            "https://chat.example.com/tern/replies?key=q-secret-in-query",
            "--webhook-secret-env",
            "HOOK_SECRET",
        ],
    );
    assert_eq!(added.code(), 0, "{}", added.stderr());
    assert!(!added.stdout().contains("shown once"), "nothing generated: {}", added.stdout());
    let shown = channels(&data, &[], &["show", "support"]);
    let text = shown.stdout();
    assert!(text.contains("kind:            generic"), "{text}");
    assert!(text.contains("bearer tokens:   1 set"), "{text}");
    assert!(text.contains("signing secrets: 1 set"), "{text}");
    assert!(text.contains("webhook URL:     https://chat.example.com/tern/replies"), "{text}");
    assert!(text.contains("webhook secret:  set"), "{text}");
    let db = database_bytes(&data);
    for secret in [TOKEN, SIGNING, HOOK_SECRET, "q-secret-in-query"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
        assert!(!contains(&db, secret), "{secret} stored in plaintext");
    }
    // Again without --update: refused; with it: replaced.
    let again = channels(&data, &env, &["add", "support", "--token-env", "SUPPORT_TOKEN"]);
    assert_eq!(again.code(), 2);
    assert!(again.stderr().contains("exists already; pass --update"), "{}", again.stderr());
    let updated = channels(&data, &env, &["add", "support", "--token-env", "SUPPORT_TOKEN", "--update"]);
    assert_eq!(updated.code(), 0, "{}", updated.stderr());
    assert!(channels(&data, &[], &["show", "support"]).stdout().contains("signing secrets: none"));
}

#[test]
fn bad_channel_settings_are_refused_with_every_problem_at_its_option() {
    let data = fresh_data_dir();
    let bad = channels(
        &data,
        &[("SHORT", "short"), ("NOT_WHSEC", "whsec_!!notbase64")],
        &["add", "support", "--token-env", "SHORT", "--secret-env", "NOT_WHSEC", "--webhook-url", "ftp://x.example/"],
    );
    assert_eq!(bad.code(), 2);
    let err = bad.stderr();
    assert!(err.contains("channel `support` was not saved"), "{err}");
    assert!(err.contains("--token-env: token 1 has 5 characters"), "{err}");
    assert!(err.contains("--secret-env: signing secret 1: a webhook secret is `whsec_`"), "{err}");
    assert!(err.contains("--webhook-url: the webhook URL must be http or https, not `ftp`"), "{err}");
    assert!(!err.contains("notbase64"), "a secret value in an error: {err}");

    let unset = channels(&data, &[], &["add", "support", "--token-env", "NO_SUCH_VARIABLE_SET"]);
    assert_eq!(unset.code(), 2);
    assert!(
        unset.stderr().contains("environment variable NO_SUCH_VARIABLE_SET (for the bearer token) is not set"),
        "{}",
        unset.stderr()
    );

    let name = channels(&data, &[], &["add", "no/slash"]);
    assert_eq!(name.code(), 2);
    assert!(name.stderr().contains("NAME: channel name `no/slash` contains `/`"), "{}", name.stderr());

    let default = channels(&data, &[], &["remove", "default"]);
    assert_eq!(default.code(), 2);
    assert!(
        default.stderr().contains("channel `default` is configured by `tern serve`'s flags (--channel-token"),
        "{}",
        default.stderr()
    );
    let missing = channels(&data, &[], &["remove", "nobody"]);
    assert_eq!(missing.code(), 2);
    assert!(missing.stderr().contains("there is no channel `nobody`"), "{}", missing.stderr());
}

/// `tern serve` keeps the `default` channel's generated token in `channel.token` (0600, kept
/// across restarts, like `admin.token`), serves the channels admin API, and warns loudly about
/// an open channel.
#[test]
fn serve_keeps_the_default_token_serves_the_admin_api_and_warns_about_open_channels() {
    let data = fresh_data_dir();
    let flows = tempfile::tempdir().unwrap();
    let log = flows.path().join("serve.log");
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env_remove("TERN_CHANNEL_TOKEN")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TERN_INSECURE_OPEN_CHANNEL", "kiosk,lobby")
        .args(["serve", "--listen", "127.0.0.1:0", "--flows", flows.path().to_str().unwrap(), "--watch", "false"])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut server = Server::spawn_keeping_stderr(cmd);
    let token = std::fs::read_to_string(data.join("channel.token")).unwrap();
    assert_eq!(token.trim().len(), 48);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("channel.token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "channel.token is readable by others: {mode:o}");
    }
    let rt = rt();
    let client = reqwest::Client::new();
    let base = server.url.clone();
    rt.block_on(async {
        let put = |name: &str, body: Value| {
            client.put(format!("{base}/v1/channels/{name}")).bearer_auth(ADMIN).json(&body).send()
        };
        // Without the admin token: 401, nothing saved.
        let r = client.get(format!("{base}/v1/channels")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r =
            put("support", json!({"kind": "generic", "tokens": [TOKEN], "webhook_url": "https://chat.example.com/r", "webhook_secret": SIGNING}))
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
        let saved: Value = r.json().await.unwrap();
        assert_eq!((saved["tokens"].as_u64(), saved["source"].as_str()), (Some(1), Some("stored")));
        let r = put("kiosk", json!({"kind": "generic"})).await.unwrap();
        assert_eq!(r.status(), 200, "an open channel needs no credentials");
        let r = put("bare", json!({"kind": "generic", "webhook_url": "mailto:x@example.com"})).await.unwrap();
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        let fields: Vec<&str> =
            body["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["tokens", "webhook_url", "webhook_secret"], "{body}");
        let list: Value =
            client.get(format!("{base}/v1/channels")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let names: Vec<(&str, bool)> = list["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["open"].as_bool().unwrap()))
            .collect();
        assert_eq!(names, [("console", false), ("default", false), ("kiosk", true), ("support", false)]);
        assert!(!list.to_string().contains(TOKEN) && !list.to_string().contains(token.trim()));
        let r = client.delete(format!("{base}/v1/channels/default")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 409);
        let r = client.delete(format!("{base}/v1/channels/support")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 204);
    });
    server.kill9();
    let stderr = std::fs::read_to_string(&log).unwrap();
    for name in ["kiosk", "lobby"] {
        assert!(
            stderr.contains(&format!("WARNING: channel `{name}` is OPEN (--insecure-open-channel)")),
            "no warning for {name}: {stderr}"
        );
    }
    assert!(!stderr.contains(token.trim()) && !stderr.contains(TOKEN), "a token in the log: {stderr}");

    // The token is kept across restarts.
    let flows2 = flows.path().to_str().unwrap().to_string();
    let mut again = tern();
    again.env("TERN_DATA_DIR", &data).env_remove("TERN_CHANNEL_TOKEN").env("TERN_ADMIN_TOKEN", ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        &flows2,
        "--watch",
        "false",
    ]);
    let server = Server::spawn(again);
    assert_eq!(std::fs::read_to_string(data.join("channel.token")).unwrap(), token);
    drop(server);
}

/// A webhook URL without a webhook secret gets a generated secret, shown once (replies are
/// always signed); upper-case names are refused (no look-alikes of `support`).
#[test]
fn a_webhook_url_gets_a_generated_secret_and_names_are_lower_case() {
    let data = fresh_data_dir();
    let added = channels(&data, &[], &["add", "hooks", "--webhook-url", "https://chat.example.com/replies"]);
    assert_eq!(added.code(), 0, "{}", added.stderr());
    let out = added.stdout();
    assert!(out.contains("signed with"), "{out}");
    let secret = out.lines().map(str::trim).find(|l| l.starts_with("whsec_")).unwrap_or_else(|| panic!("{out}"));
    tern_engine::standard_webhooks::WebhookSecret::parse(secret).unwrap();
    let shown = channels(&data, &[], &["show", "hooks"]).stdout();
    assert!(shown.contains("webhook secret:  set") && !shown.contains(secret), "{shown}");

    let upper = channels(&data, &[], &["add", "Hooks"]);
    assert_eq!(upper.code(), 2);
    assert!(upper.stderr().contains("lower case (`hooks`)"), "{}", upper.stderr());
}
