//! Security end to end (issue 12): secret values the process holds never leave it, whatever
//! path an API's echo takes (CLI output, serve answers, run history on disk, logs).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::oauth::{AuthServer, CLIENT_SECRET, client_credentials_add};
use crate::support::{Run, TestApi, fresh_data_dir, tern};

const STATIC_KEY: &str = "sk_static_echoed_0123456789";

/// Every secret in `secrets` that occurs in `haystack`.
fn leaked<'a>(haystack: &[u8], secrets: &'a [String]) -> Vec<&'a str> {
    secrets.iter().filter(|s| haystack.windows(s.len()).any(|w| w == s.as_bytes())).map(String::as_str).collect()
}

/// Every byte of every file in the data directory (the SQLite database, its WAL, key files
/// excluded: they hold the master key and the admin token by design).
fn data_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("tern.db") {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

struct Echoing {
    auth: AuthServer,
    api: TestApi,
    data: std::path::PathBuf,
    flows: tempfile::TempDir,
}

impl Echoing {
    /// A client-credentials integration `crm` and a static-key integration `echo`, both pointed
    /// at APIs that echo the credential in a 400 body, and a flow `leak` that calls both.
    fn new() -> Self {
        let env = Self {
            auth: AuthServer::start(),
            api: TestApi::start(),
            data: fresh_data_dir(),
            flows: tempfile::tempdir().unwrap(),
        };
        let a = env.auth.url();
        let args = client_credentials_add("crm", &a);
        let r = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let r = env.run(&["secrets", "set", "ECHO_KEY", "--from-env", "KEYVAL"]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let r = env.run(&[
            "integrations",
            "add",
            "echo",
            "--kind",
            "static",
            "--static-secret",
            "ECHO_KEY",
            "--api-origin",
            &env.api.url(),
        ]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let flow = json!({"version": 1, "id": "leak", "trigger": {"type": "message", "match": {"keywords": ["leak"]}},
        "steps": [
            {"id": "crm", "type": "http_request", "integration": "crm",
             "request": {"url": format!("{a}/api/echo-headers")},
             "accept_status": ["2xx", "4xx"], "save_response_as": "said"},
            {"id": "tell", "type": "send_message", "text": "the API said {{said.echo}}"},
            {"id": "key", "type": "http_request", "integration": "echo",
             "request": {"url": format!("{}/echo-headers", env.api.url())}}
        ]});
        std::fs::write(env.flows.path().join("leak.json"), flow.to_string()).unwrap();
        env
    }

    fn cmd(&self) -> Command {
        let mut c = tern();
        c.env("TERN_DATA_DIR", &self.data)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("RUST_LOG", "debug")
            .env("CS", CLIENT_SECRET)
            .env("KEYVAL", STATIC_KEY);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run { output: self.cmd().args(args).output().unwrap() }
    }

    /// The client secret, every token the server issued, the static key and the admin token.
    fn secrets(&self) -> Vec<String> {
        let mut s = self.auth.secrets();
        s.push(STATIC_KEY.into());
        s.push(ADMIN.into());
        s
    }
}

#[test]
fn credentials_echoed_by_an_api_are_masked_in_output_answers_history_and_logs() {
    let env = Echoing::new();
    let flow = env.flows.path().join("leak.json");

    // `tern run --json`: the run fails at `key`; `crm`'s echo went into a variable and a reply.
    let r = env.run(&["run", flow.to_str().unwrap(), "-m", "leak", "--json"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let out = r.json();
    assert_eq!(out["status"], "failed", "{out}");
    assert_eq!(out["error"]["step"], "key", "{out}");
    let issued = env.auth.secrets().len();
    assert!(issued >= 2, "the server issued an access token");
    let printed = format!("{}{}", r.stdout(), r.stderr());
    assert!(
        leaked(printed.as_bytes(), &env.secrets()).is_empty(),
        "leaked: {:?}\n{printed}",
        leaked(printed.as_bytes(), &env.secrets())
    );
    // The echoes did reach the output, masked.
    assert!(out["error"]["message"].as_str().unwrap().contains("[redacted]"), "{out}");
    assert!(out["replies"][0]["text"].as_str().unwrap().contains("Bearer [redacted]"), "{out}");
    assert!(r.stderr().contains("step failed") && r.stderr().contains("[redacted]"), "{}", r.stderr());

    // `tern serve`: the answer, `GET /v1/runs/{id}`, the runs table on disk and the log.
    let log_path = env.data.join("serve.log");
    let mut cmd = env.cmd();
    cmd.env("TERN_ADMIN_TOKEN", ADMIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--flows", env.flows.path().to_str().unwrap()])
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let client = reqwest::Client::new();
    let (answer, history) = rt().block_on(async {
        let resp = client
            .post(format!("{}/v1/conversations/c-leak/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": "leak"}))
            .send()
            .await
            .unwrap();
        let answer = resp.text().await.unwrap();
        let id = serde_json::from_str::<Value>(&answer).unwrap()["run_id"].as_str().unwrap().to_string();
        for _ in 0..200 {
            let resp = client.get(format!("{}/v1/runs/{id}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
            if resp.status().is_success() {
                return (answer, resp.text().await.unwrap());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the run never appeared in the history");
    });
    drop(server);
    let secrets = env.secrets();
    assert!(answer.contains("[redacted]"), "{answer}");
    assert!(leaked(answer.as_bytes(), &secrets).is_empty(), "answer leaks: {answer}");
    assert!(history.contains("[redacted]"), "{history}");
    assert!(leaked(history.as_bytes(), &secrets).is_empty(), "history leaks: {history}");
    let disk = data_files(&env.data);
    assert!(leaked(&disk, &secrets).is_empty(), "the data directory holds {:?} in plaintext", leaked(&disk, &secrets));
    let log = std::fs::read(&log_path).unwrap();
    assert!(String::from_utf8_lossy(&log).contains("step failed"), "{}", String::from_utf8_lossy(&log));
    assert!(leaked(&log, &secrets).is_empty(), "the log leaks {:?}", leaked(&log, &secrets));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn run_json(args: &[&str], env: &[(&str, &str)]) -> (Run, Value) {
    let mut cmd = tern();
    cmd.args(args).arg("--allow-private-network").arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r = Run { output: cmd.output().unwrap() };
    let v = serde_json::from_slice(&r.output.stdout).unwrap_or(Value::Null);
    (r, v)
}

#[test]
fn a_request_body_never_follows_a_redirect_to_another_origin() {
    let api = TestApi::start();
    let flows = crate::support::Flows::new();
    let card = "4111-1111-1111-1111";
    let flow = |name: &str, to: &str, method: &str| {
        flows.write(
            name,
            &json!({"version": 1, "id": name, "steps": [
                {"id": "pay", "type": "http_request",
                 "request": {"method": method, "url": format!("{}/redirect307?to={}", api.url(), urlencode(to)),
                             "body": {"card": "{{secrets.CARD}}"}}}
            ]}),
        )
    };
    let cross = format!("{}/collect", api.other_origin_url());
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let path = flow("cross", &cross, method);
        let (r, out) = run_json(&["run", path.to_str().unwrap(), "-m", "go"], &[("TERN_SECRET_CARD", card)]);
        assert_eq!(r.code(), 1, "{method}: {}", r.stderr());
        assert_eq!(out["error"]["code"], "redirect-body-cross-origin", "{method}: {out}");
        let message = out["error"]["message"].as_str().unwrap();
        assert!(message.contains("localhost") && message.contains("307"), "{message}");
    }
    assert!(api.requests().iter().all(|r| !r.uri.starts_with("/collect")), "the other origin got nothing");

    // The same origin keeps method and body.
    let path = flow("same", "/collect", "POST");
    let (r, out) = run_json(&["run", path.to_str().unwrap(), "-m", "go"], &[("TERN_SECRET_CARD", card)]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(out["status"], "completed", "{out}");
    let landed = api.requests().into_iter().find(|r| r.uri == "/collect").expect("the same origin got the body");
    assert_eq!((landed.method.as_str(), landed.json()), ("POST", json!({"card": card})));
}

#[test]
fn every_template_position_counts_against_one_request_limit() {
    let api = TestApi::start();
    let flows = crate::support::Flows::new();
    let flow =
        |name: &str, bytes: usize, body: Value| {
            flows.write(name, &json!({"version": 1, "id": name, "steps": [
            {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/big?bytes={bytes}", api.url())},
             "variables": {"big": "v"}},
            {"id": "send", "type": "http_request",
             "request": {"method": "POST", "url": format!("{}/sink", api.url()), "body": body}}
        ]}))
        };
    let twenty: serde_json::Map<String, Value> = (0..20).map(|i| (format!("f{i}"), json!("{{big}}"))).collect();
    let cases = [
        ("one-5mb", 5_000_000, json!({"card": "{{big}}"})),
        ("twenty-fields", 100_000, Value::Object(twenty)),
        ("two-600k", 600_000, json!({"a": "{{big}}", "b": ["{{big}}"]})),
        ("mixed", 600_000, json!({"a": "prefix {{big}}", "b": "{{big}}"})),
    ];
    for (name, bytes, body) in cases {
        let path = flow(name, bytes, body);
        let (r, out) = run_json(&["run", path.to_str().unwrap(), "-m", "go"], &[]);
        assert_eq!(r.code(), 1, "{name}: {}", r.stderr());
        assert_eq!(out["error"]["step"], "send", "{name}: {out}");
        assert_eq!(out["error"]["code"], "template", "{name}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains("{{big}}"), "{name}: {out}");
    }
    assert!(api.requests().iter().all(|r| r.uri != "/sink"), "nothing over the limit was sent");
    // Under the limit, one field of 900 kB goes out whole.
    let path = flow("under", 900_000, json!({"a": "{{big}}"}));
    let (r, _) = run_json(&["run", path.to_str().unwrap(), "-m", "go"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let sent = api.requests().into_iter().find(|r| r.uri == "/sink").expect("sent");
    assert_eq!(sent.json()["a"].as_str().map(str::len), Some(900_000));
}

#[test]
fn a_response_nested_too_deep_has_its_own_code() {
    let api = TestApi::start();
    let flows = crate::support::Flows::new();
    let path = flows.write(
        "deep",
        &json!({"version": 1, "id": "deep", "steps": [
            {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/deep?levels=500", api.url())},
             "variables": {"x": "$[0]"}}
        ]}),
    );
    let (r, out) = run_json(&["run", path.to_str().unwrap(), "-m", "go"], &[]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(out["error"]["code"], "response-too-deep", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("128"), "{out}");
}

#[test]
fn validate_checks_the_size_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    // A sparse 1 GiB file: reading it first would take a gigabyte of memory.
    std::fs::File::create(&path).unwrap().set_len(1 << 30).unwrap();
    let r = crate::support::run(["validate", path.to_str().unwrap()]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("error[too-large]") && r.stderr().contains("1073741824"), "{}", r.stderr());
    let r = crate::support::run(["run", path.to_str().unwrap(), "-m", "x"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("1073741824 bytes; the limit is 1048576"), "{}", r.stderr());
}

/// Waits for a command that must exit by itself (kills it and fails after 30 s).
fn exits_by_itself(mut cmd: Command) -> Run {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return Run { output: child.wait_with_output().unwrap() };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!(
        "the command kept running: {:?}",
        child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
}

#[test]
fn public_urls_must_be_https_or_loopback_and_authorization_urls_cannot_inject_parameters() {
    let data = fresh_data_dir();
    let flows = tempfile::tempdir().unwrap();
    let add = |name: &str, public: &str, auth_url: &str| {
        let mut c = tern();
        c.env("TERN_DATA_DIR", &data).env("CS", "client-secret-0123").args([
            "--public-url",
            public,
            "integrations",
            "add",
            name,
            "--client-id",
            "id",
            "--client-secret-env",
            "CS",
            "--authorization-url",
            auth_url,
            "--token-url",
            "https://as.example/token",
            "--api-origin",
            "https://api.example",
        ]);
        Run { output: c.output().unwrap() }
    };
    let injected = "https://as.example/authorize?response_type=token&redirect_uri=https%3A%2F%2Fevil.example&state=x&code_challenge=y";
    let r = add("crm", "https://tern.example", injected);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    for name in ["response_type", "redirect_uri", "state", "code_challenge"] {
        assert!(r.stderr().contains(&format!("sets `{name}`")), "{name}: {}", r.stderr());
    }
    let r = add("crm", "http://203.0.113.10", "https://as.example/authorize?tenant=t");
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("--insecure-public-url"), "{}", r.stderr());
    for (i, ok) in ["https://tern.example", "http://localhost:8080", "http://127.0.0.2:9000", "http://[::1]:8080"]
        .iter()
        .enumerate()
    {
        let r = add(&format!("crm{i}"), ok, "https://as.example/authorize?tenant=t");
        assert_eq!(r.code(), 0, "{ok}: {}", r.stderr());
    }

    // `tern serve` refuses the plain-http public URL, or takes it with a warning when told to.
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data).env("TERN_ADMIN_TOKEN", ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        flows.path().to_str().unwrap(),
        "--public-url",
        "http://203.0.113.10",
    ]);
    let r = exits_by_itself(cmd);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("plain http") && r.stderr().contains("--insecure-public-url"), "{}", r.stderr());
    let log = data.join("insecure.log");
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TERN_INSECURE_PUBLIC_URL", "1")
        .args(["serve", "--listen", "127.0.0.1:0", "--flows", flows.path().to_str().unwrap()])
        .args(["--public-url", "http://203.0.113.10"])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    assert!(std::fs::read_to_string(&log).unwrap().contains("WARNING"), "a loud warning");

    // The admin API refuses the injected parameters the same way.
    let (status, body) = rt().block_on(async {
        let r = reqwest::Client::new()
            .put(format!("{}/v1/integrations/crm", server.url))
            .bearer_auth(ADMIN)
            .json(&json!({"client_id": "id", "authorization_url": injected, "token_url": "https://as.example/token",
                          "api_origins": ["https://api.example"]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("`redirect_uri`") && body.contains("`response_type`"), "{body}");
}

#[test]
fn one_undecryptable_secret_fails_only_its_users() {
    let data = fresh_data_dir();
    let cmd = || {
        let mut c = tern();
        c.env("TERN_DATA_DIR", &data).env("GOOD", "good-secret-value-1").env("BAD", "bad-secret-value-22");
        c
    };
    for name in ["GOOD", "BAD"] {
        let out = cmd().args(["secrets", "set", name, "--from-env", name]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The row's ciphertext is damaged (a bad restore, a swapped row).
    rt().block_on(async {
        let url = format!("sqlite://{}", data.join("tern.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE secrets SET value = x'00112233445566778899aabbccddeeff00112233' WHERE name = 'BAD'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let flows = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = flows.path().join(format!("{name}.json"));
        std::fs::write(
            &path,
            json!({"version": 1, "id": name, "steps": [{"id": "say", "type": "send_message", "text": text}]})
                .to_string(),
        )
        .unwrap();
        path
    };
    let plain = write("plain", "hello");
    let good = write("good", "key {{secrets.GOOD}}");
    let bad = write("bad", "key {{secrets.BAD}}");

    let out = cmd().args(["integrations", "list"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the stored secret `BAD` does not decrypt"), "the bad secret is named: {stderr}");
    let out = cmd().args(["run", plain.to_str().unwrap(), "-m", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let out = cmd().args(["run", good.to_str().unwrap(), "-m", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "key [redacted]\n");
    let out = cmd().args(["run", bad.to_str().unwrap(), "-m", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secrets.BAD"), "{}", String::from_utf8_lossy(&out.stderr));

    // `tern serve` starts and answers.
    let mut serve = cmd();
    serve.env("TERN_ADMIN_TOKEN", ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        flows.path().to_str().unwrap(),
    ]);
    let server = Server::spawn(serve);
    let status =
        rt().block_on(async { reqwest::get(format!("{}/healthz", server.url)).await.unwrap().status().as_u16() });
    assert_eq!(status, 200);
}
