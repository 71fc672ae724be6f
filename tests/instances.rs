//! Three `tern serve` processes on one PostgreSQL database (README "Running several
//! instances"), against panva's oidc-provider with rotating refresh tokens:
//!
//! 1. 1000 conversations at once, spread over the three, on an expired token: every one is
//!    answered with data from the provider, after exactly one token request (a second refresh
//!    with the same refresh token would make the provider revoke the grant);
//! 2. 200 conversations × 10 messages, each message sent to the next instance round-robin:
//!    every reply comes in order, and history holds each message once; one instance is killed
//!    with `kill -9` in the middle, and the channel re-sends what it had not been answered to
//!    another instance: nothing acknowledged is lost, nothing is processed twice;
//! 3. two messages of one conversation sent at the same moment to two instances, with a slow
//!    call in the flow: they are handled one after the other (the second resumes from where
//!    the first left the run), not both from the same paused state.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tern_store::testing::PgTestDb;

use crate::integrations::oidc_browser;
use crate::serve::{ADMIN, Server, rt};
use crate::support::oidc::{OIDC_SECRET, OidcProvider};
use crate::support::{Flows, TestApi, free_port, fresh_data_dir, tern, tools};

/// The flows every instance loads: `hi` reads the provider's userinfo with the integration's
/// token; `start` begins a conversation that echoes every later message.
fn flows(issuer: &str, api: &TestApi) -> Flows {
    let flows = Flows::new();
    flows.write(
        "chain",
        &json!({"version": 1, "id": "chain", "trigger": {"type": "message", "match": {"regex": "^chain$"}}, "steps": [
            {"id": "init", "type": "set_variables", "variables": {"prev": "none"}},
            {"id": "wait", "type": "ask", "text": "ready", "save_as": "m"},
            {"id": "slow", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{}/tickets?delay_ms=300", api.url())},
             "variables": {"ticket": "id"}},
            {"id": "say", "type": "send_message", "text": "got {{m}} after {{prev}}"},
            {"id": "remember", "type": "set_variables", "variables": {"prev": "{{m}}"}, "next": "wait"}
        ]}),
    );
    flows.write(
        "me",
        &json!({"version": 1, "id": "me", "trigger": {"type": "message", "match": {"regex": "^hi$"}}, "steps": [
            {"id": "me", "type": "fetch_variables", "integration": "oidc",
             "request": {"url": format!("{issuer}/me")}, "variables": {"last_name": "family_name"}},
            {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
        ]}),
    );
    flows.write(
        "echo",
        &json!({"version": 1, "id": "echo", "trigger": {"type": "message", "match": {"regex": "^start$"}}, "steps": [
            {"id": "wait", "type": "ask", "text": "ready", "save_as": "m"},
            {"id": "say", "type": "send_message", "text": "got {{m}}", "next": "wait"}
        ]}),
    );
    flows
}

fn serve(db: &PgTestDb, key: &str, flows: &Path) -> Server {
    serve_logged(db, key, flows, None)
}

/// A `tern serve` instance on `db`, its warnings and errors in `log` when given.
pub(crate) fn serve_logged(db: &PgTestDb, key: &str, flows: &Path, log: Option<&Path>) -> Server {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_DATABASE_URL", db.raw_url())
        .env("TERN_MASTER_KEY", key)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()]);
    match log {
        Some(log) => {
            cmd.env("RUST_LOG", "warn").stderr(std::fs::File::create(log).unwrap());
            Server::spawn_keeping_stderr(cmd)
        }
        None => Server::spawn(cmd),
    }
}

/// Adds the `oidc` integration and authorizes it through the CLI (the browser played over
/// HTTP), all stored in the PostgreSQL database.
fn authorize(db: &PgTestDb, key: &str, oidc: &OidcProvider, public_url: &str) {
    let iss = &oidc.issuer;
    let cmd = || {
        let mut c = tern();
        c.env("TERN_DATA_DIR", fresh_data_dir())
            .env("TERN_DATABASE_URL", db.raw_url())
            .env("TERN_MASTER_KEY", key)
            .env("TERN_PUBLIC_URL", public_url)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("OIDC_SECRET", OIDC_SECRET);
        c
    };
    let out = cmd()
        .args(["integrations", "add", "oidc", "--client-id", "tern-interop", "--client-secret-env", "OIDC_SECRET"])
        .args(["--authorization-url", &format!("{iss}/auth"), "--token-url", &format!("{iss}/token")])
        .args(["--api-origin", iss, "--scopes", "openid offline_access", "--param", "prompt=consent"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = cmd()
        .args(["integrations", "authorize", "oidc", "--no-browser", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "authorize printed no URL");
        if line.starts_with("http") {
            break line.trim().to_string();
        }
    };
    let page = oidc_browser(&url, &format!("{public_url}/oauth/callback"));
    assert!(page.contains("All set!"), "{page}");
    std::thread::spawn(move || std::io::Read::read_to_end(&mut stdout, &mut Vec::new()));
    assert!(child.wait().unwrap().success());
}

/// Posts a message to the instances, starting with `first`, and moves on to the next one
/// when an instance is gone or busy (the channel's re-send, same message id). Returns the
/// answer and how many sends it took.
async fn send(client: &reqwest::Client, urls: &[String], first: usize, conversation: &str, body: Value) -> Value {
    for attempt in 0..60 {
        let url = &urls[(first + attempt) % urls.len()];
        let sent = client
            .post(format!("{url}/v1/conversations/{conversation}/messages"))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => return r.json().await.unwrap(),
            // Still running (202) or busy (503): send the same message again shortly.
            Ok(r) if r.status() == 202 || r.status() == 503 => {}
            Ok(r) => panic!("{conversation}: {} {}", r.status(), r.text().await.unwrap_or_default()),
            // The instance is gone: the channel tries another one.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100 + 50 * attempt as u64)).await;
    }
    panic!("{conversation}: no instance answered {body}");
}

#[test]
fn three_instances_share_one_postgres_database() {
    if !tools::available("three_instances_share_one_postgres_database", &[&tools::NODE]) {
        return;
    }
    let rt = rt();
    let db = rt.block_on(PgTestDb::create());
    let key = {
        let (_, text) = tern_store::crypto::MasterKey::generate();
        text.to_string()
    };
    let public_url = format!("http://127.0.0.1:{}", free_port());
    // Access tokens live 10 minutes here, so that every refresh the test sees is the one of
    // the expired token.
    let oidc = OidcProvider::start_with_access_ttl(&format!("{public_url}/oauth/callback"), 600);
    authorize(&db, &key, &oidc, &public_url);
    let api = TestApi::start();
    let flows = flows(&oidc.issuer, &api);
    let mut servers: Vec<Server> = (0..3).map(|_| serve(&db, &key, flows.dir.path())).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();

    rt.block_on(async {
        // 1. The stored token expired an hour ago; 1000 conversations need it at once.
        let pool = sqlx::PgPool::connect(&db.raw_url()).await.unwrap();
        sqlx::query(
            "UPDATE tokens SET expires_at = extract(epoch FROM now())::bigint - 1,
               obtained_at = extract(epoch FROM now())::bigint - 3601 WHERE integration = 'oidc'",
        )
        .execute(&pool)
        .await
        .unwrap();
        let before = oidc.token_requests().await;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let urls = Arc::new(urls);
        let mut tasks = Vec::new();
        for i in 0..1000usize {
            let (client, urls) = (client.clone(), urls.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({"text": "hi", "message_id": format!("hi-{i}")});
                send(&client, &urls, i % 3, &format!("token-{i}"), body).await
            }));
        }
        for t in tasks {
            let answer = t.await.unwrap();
            assert_eq!(answer["replies"][0]["text"], "Hello Bachman", "{answer}");
        }
        assert_eq!(oidc.token_requests().await - before, 1, "one refresh for the three instances");
        let status: String =
            sqlx::query_scalar("SELECT status FROM integrations WHERE name = 'oidc'").fetch_one(&pool).await.unwrap();
        assert_eq!(status, "authorized");

        // 2. 200 conversations × 10 messages, round-robin over the instances; instance 1 is
        // killed once 600 messages are answered.
        let answered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for c in 0..200usize {
            let (client, urls, answered) = (client.clone(), urls.clone(), answered.clone());
            tasks.push(tokio::spawn(async move {
                let conversation = format!("chat-{c}");
                let first = send(&client, &urls, c, &conversation, json!({"text": "start", "message_id": "m-0"})).await;
                assert_eq!(first["replies"][0]["text"], "ready", "{first}");
                for i in 1..=10usize {
                    let body = json!({"text": format!("m{i}"), "message_id": format!("m-{i}")});
                    let a = send(&client, &urls, c + i, &conversation, body).await;
                    assert_eq!(a["replies"][0]["text"], format!("got m{i}"), "{conversation}: {a}");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                first["run_id"].as_str().unwrap().to_string()
            }));
        }
        while answered.load(Ordering::Relaxed) < 600 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        servers[1].kill9();
        let mut runs = Vec::new();
        for t in tasks {
            runs.push(t.await.unwrap());
        }
        // History: every conversation's run has its first activation and ten resumes, each
        // message once, in order.
        for (c, run_id) in runs.iter().enumerate() {
            let run: Value = client
                .get(format!("{}/v1/runs/{run_id}", urls[0]))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let messages: Vec<&str> =
                run["segments"].as_array().unwrap().iter().map(|s| s["message_id"].as_str().unwrap()).collect();
            let expected: Vec<String> = (0..=10).map(|i| format!("m-{i}")).collect();
            assert_eq!(messages, expected, "chat-{c}: each message once, in order");
        }
        // 3. Two messages of one conversation at once, on the two instances left.
        let live = Arc::new(vec![urls[0].clone(), urls[2].clone()]);
        for c in 0..5usize {
            let conversation = format!("race-{c}");
            let a = send(&client, &live, 0, &conversation, json!({"text": "chain", "message_id": "start"})).await;
            assert_eq!(a["replies"][0]["text"], "ready", "{a}");
            let (x, y) = tokio::join!(
                send(&client, &live, 0, &conversation, json!({"text": "x", "message_id": "x"})),
                send(&client, &live, 1, &conversation, json!({"text": "y", "message_id": "y"}))
            );
            let mut replies = [x["replies"][0]["text"].as_str().unwrap(), y["replies"][0]["text"].as_str().unwrap()];
            replies.sort_unstable();
            assert!(
                replies == ["got x after none", "got y after x"] || replies == ["got x after y", "got y after none"],
                "{conversation}: one after the other, not both from the same state: {replies:?}"
            );
        }

        // Nothing is left accepted and unanswered.
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(&pool).await.unwrap();
        assert_eq!(left, 0);
        pool.close().await;
    });
    drop(servers);
    rt.block_on(db.drop_db());
}

/// The database URL's password never shows: not in `--help` (the variable is set), not in the
/// error when the server cannot be reached or refuses the password, not in the start-up log.
#[test]
fn the_database_password_never_shows() {
    const PASSWORD: &str = "Sup3r-Secret-Db-Passw0rd";
    // Nothing listens on port 1.
    let unreachable = format!("postgres://tern:{PASSWORD}@127.0.0.1:1/tern");
    let help = tern().env("TERN_DATABASE_URL", &unreachable).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--database-url"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    let out = tern()
        .env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_DATABASE_URL", &unreachable)
        .args(["secrets", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(err.contains("postgres://tern:***@127.0.0.1:1/tern"), "says which database: {err}");
    // Not a postgres URL: explained, not echoed.
    let out = tern()
        .env("TERN_DATA_DIR", fresh_data_dir())
        .args(["secrets", "list", "--database-url", &format!("mysql://root:{PASSWORD}@db/x")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("only postgres://") && !err.contains(PASSWORD), "{err}");
    // A wrong password for the test server's role.
    let rt = rt();
    let db = rt.block_on(PgTestDb::create());
    let mut url = url::Url::parse(&db.raw_url()).unwrap();
    url.set_username("tern_no_such_role").unwrap();
    url.set_password(Some(PASSWORD)).unwrap();
    let out = tern()
        .env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_DATABASE_URL", url.as_str())
        .args(["integrations", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains(PASSWORD), "{err}");
    // No key: a shared database needs the same one on every instance; none is made up.
    let data = fresh_data_dir();
    let out = tern()
        .env("TERN_DATA_DIR", &data)
        .env("TERN_DATABASE_URL", db.raw_url())
        .args(["secrets", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("set TERN_MASTER_KEY to that key on every instance"), "{err}");
    assert!(!data.join("master.key").exists(), "no key file for a shared database");
    // The start-up log of a server on the database names it without the password.
    let mut url = url::Url::parse(&db.raw_url()).unwrap();
    url.set_password(Some(PASSWORD)).unwrap(); // trust authentication ignores it
    let flows = Flows::new();
    let mut cmd = tern();
    let (_, key) = tern_store::crypto::MasterKey::generate();
    cmd.env("TERN_DATA_DIR", fresh_data_dir())
        .env("TERN_DATABASE_URL", url.as_str())
        .env("TERN_MASTER_KEY", key.as_str())
        .env("RUST_LOG", "debug")
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    // The start-up summary may follow the address: read the log until it names the store.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log.contains(":***@127.0.0.1") && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(log.contains(":***@127.0.0.1"), "the log names the database: {log}");
    assert!(!log.contains(PASSWORD), "{log}");
    rt.block_on(db.drop_db());
}

/// A channel's message id that looks like one Tern makes up (`tern-…`) would never be
/// deduplicated: it is refused, with the reason.
#[test]
fn a_channel_message_id_with_the_generated_prefix_is_refused() {
    let flows = Flows::new();
    flows.write(
        "echo",
        &json!({"version": 1, "id": "echo", "steps": [{"id": "say", "type": "send_message", "text": "hi"}]}),
    );
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", fresh_data_dir()).env("TERN_ADMIN_TOKEN", ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch",
        "false",
        "--flows",
        flows.dir.path().to_str().unwrap(),
    ]);
    let server = Server::spawn(cmd);
    rt().block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/conversations/c/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "x", "message_id": "tern-abc"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("reserved"), "{body}");
    });
}

/// `tern keys rotate` on a PostgreSQL store: with the new key and the old one in the
/// environment it re-encrypts everything and says what every instance needs; afterwards the
/// new key alone reads the store and the old one is refused.
#[test]
fn keys_rotate_on_postgres() {
    let rt = rt();
    let db = rt.block_on(PgTestDb::create());
    let (_, old) = tern_store::crypto::MasterKey::generate();
    let (_, new) = tern_store::crypto::MasterKey::generate();
    let cmd = |keys: &[(&str, &str)], args: &[&str]| {
        let mut c = tern();
        c.env("TERN_DATA_DIR", fresh_data_dir()).env("TERN_DATABASE_URL", db.raw_url()).args(args);
        for (k, v) in keys {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let set = cmd(
        &[("TERN_MASTER_KEY", old.as_str()), ("SECRET", "rotated-value-1")],
        &["secrets", "set", "S", "--from-env", "SECRET"],
    );
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let no_env = cmd(&[], &["keys", "rotate"]);
    assert!(!no_env.status.success());
    assert!(String::from_utf8_lossy(&no_env.stderr).contains("TERN_MASTER_KEY"));
    let rotated =
        cmd(&[("TERN_MASTER_KEY", new.as_str()), ("TERN_MASTER_KEY_PREVIOUS", old.as_str())], &["keys", "rotate"]);
    let out = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(out.contains("every instance"), "{out}");
    let listed = cmd(&[("TERN_MASTER_KEY", new.as_str())], &["secrets", "list"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains('S'));
    let refused = cmd(&[("TERN_MASTER_KEY", old.as_str())], &["secrets", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not match the store"));
    rt.block_on(db.drop_db());
}

/// Two instances on one database share an integration's rate limit: 8 a second (burst 2) is
/// the rate of both together. The API refuses more than 12 requests in any second, so two
/// buckets of their own (up to 20 in the first second) would be refused; 40 conversations
/// over the two instances are all answered and the API never refuses one.
#[test]
fn two_instances_share_an_integrations_rate_limit() {
    use crate::support::credentials::{self, CredentialApi};
    let rt = rt();
    let db = rt.block_on(PgTestDb::create());
    let key = {
        let (_, text) = tern_store::crypto::MasterKey::generate();
        text.to_string()
    };
    let api = CredentialApi::start();
    // `tern integrations add NAME --kind basic … EXTRA` against the API, stored in the database.
    let add = |name: &str, extra: &[&str]| {
        let out = tern()
            .env("TERN_DATA_DIR", fresh_data_dir())
            .env("TERN_DATABASE_URL", db.raw_url())
            .env("TERN_MASTER_KEY", &key)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("ERP_PASSWORD", credentials::PASSWORD)
            .args(["integrations", "add", name, "--kind", "basic", "--username", credentials::USERNAME])
            .args(["--password-env", "ERP_PASSWORD", "--api-origin", &api.url()])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    add("erp", &["--rate-limit", "8/s burst 2"]);
    // The same API without a limit: its requests never touch the shared bucket.
    add("plain", &[]);
    let flows = Flows::new();
    flows.write(
        "plain",
        &json!({"version": 1, "id": "plain", "trigger": {"type": "message", "match": {"keywords": ["plain"]}, "priority": 5}, "steps": [
            {"id": "lookup", "type": "fetch_variables", "integration": "plain",
             "request": {"url": format!("{}/basic/me", api.url())}, "variables": {"name": "data.name"}},
            {"id": "say", "type": "send_message", "text": "{{name}}"}
        ]}),
    );
    flows.write(
        "who",
        &json!({"version": 1, "id": "who", "trigger": {"type": "message"}, "steps": [
            {"id": "lookup", "type": "fetch_variables", "integration": "erp",
             "request": {"url": format!("{}/strict/me", api.url())}, "variables": {"name": "data.name"}},
            {"id": "say", "type": "send_message", "text": "{{name}}"}
        ]}),
    );
    let servers: Vec<Server> = (0..2).map(|_| serve(&db, &key, flows.dir.path())).collect();
    let urls = Arc::new(servers.iter().map(|s| s.url.clone()).collect::<Vec<_>>());
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut tasks = Vec::new();
        for i in 0..40usize {
            let (client, urls) = (client.clone(), urls.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({"text": "hi", "message_id": format!("m-{i}")});
                send(&client, &urls, i % 2, &format!("rate-{i}"), body).await
            }));
        }
        for t in tasks {
            let answer = t.await.unwrap();
            assert_eq!(answer["replies"][0]["text"], "Ada Lovelace", "{answer}");
        }
        let answer = send(&client, &urls, 0, "plain-1", json!({"text": "plain", "message_id": "p-1"})).await;
        assert_eq!(answer["replies"][0]["text"], "Ada Lovelace", "{answer}");
    });
    assert_eq!(api.strict_refused(), 0, "the two instances kept to one limit together");
    // Read once the instances are gone (and their connections with them): the suite runs other
    // multi-instance tests on the same server at the same time.
    drop(servers);
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect(&db.raw_url())
            .await
            .unwrap();
        let buckets: Vec<String> = sqlx::query_scalar("SELECT name FROM rate_buckets").fetch_all(&pool).await.unwrap();
        assert_eq!(buckets, ["erp"], "only the limited integration's requests use the database's bucket");
        pool.close().await;
    });
    rt.block_on(db.drop_db());
}
