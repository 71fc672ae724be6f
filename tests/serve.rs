//! `tern serve` end to end: the message webhook, pause/resume across a restart, run history
//! behind the admin token, idempotent message ids, bad bodies, and 200 concurrent conversations
//! of 20 messages each.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::{Value, json};

use crate::support::{TestApi, free_port, fresh_data_dir, tern};

pub(crate) const ADMIN: &str = "admin-token-for-tests-0123456789";

pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the process with SIGKILL (`kill -9`): no shutdown, nothing flushed.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Spawns `cmd` (a `tern serve` command) and waits for its "listening on" line.
    pub(crate) fn spawn(mut cmd: std::process::Command) -> Self {
        cmd.stderr(Stdio::null());
        Self::spawn_keeping_stderr(cmd)
    }

    /// [`Server::spawn`] for a command whose standard error the caller has already directed.
    pub(crate) fn spawn_keeping_stderr(mut cmd: std::process::Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("no address: {line}")).to_string();
        Self { child, url }
    }

    pub(crate) fn start(data: &Path, flows: &Path) -> Self {
        Self::start_at(data, flows, "127.0.0.1:0", "http://127.0.0.1:8080")
    }

    pub(crate) fn start_at(data: &Path, flows: &Path, listen: &str, public_url: &str) -> Self {
        Self::start_with(data, flows, listen, public_url, None)
    }

    pub(crate) fn start_with(data: &Path, flows: &Path, listen: &str, public_url: &str, webhook: Option<&str>) -> Self {
        Self::start_args(data, flows, listen, public_url, webhook, &[])
    }

    fn start_args(
        data: &Path,
        flows: &Path,
        listen: &str,
        public_url: &str,
        webhook: Option<&str>,
        extra: &[&str],
    ) -> Self {
        let mut cmd = tern();
        if let Some(w) = webhook {
            cmd.env("TERN_WEBHOOK_URL", w);
        }
        cmd.env("TERN_DATA_DIR", data)
            .env("TERN_PUBLIC_URL", public_url)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("TERN_ADMIN_TOKEN", ADMIN)
            .args(["serve", "--listen", listen, "--flows", flows.to_str().unwrap()])
            .args(extra);
        Self::spawn(cmd)
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `GET base+path` with the admin token, as JSON.
pub(crate) async fn admin_get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client.get(format!("{base}{path}")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
}

pub(crate) async fn post(client: &reqwest::Client, base: &str, conv: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(format!("{base}/v1/conversations/{conv}/messages"))
        .bearer_auth(crate::support::CHANNEL_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

pub(crate) fn flows_dir(api: &TestApi) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tl = std::fs::read_to_string(crate::support::repo().join("flows/examples/teamleader-last-name.json"))
        .unwrap()
        .replace("https://api.focus.teamleader.eu", &api.url())
        .replace("\"integration\": \"teamleader\",", "");
    std::fs::write(dir.path().join("tl.json"), tl).unwrap();
    std::fs::write(
        dir.path().join("echo.json"),
        json!({"version": 1, "id": "echo", "trigger": {"type": "message", "match": {"regex": "^start$"}},
        "steps": [
          {"id": "wait", "type": "ask", "text": "ready", "save_as": "m"},
          {"id": "say", "type": "send_message", "text": "got {{m}}", "next": "wait"}
        ]})
        .to_string(),
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[test]
fn conversation_pauses_survives_restart_and_resumes() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let data = fresh_data_dir();
    let rt = rt();
    let client = reqwest::Client::new();
    let server = Server::start(&data, &flows);
    let (status, first) =
        rt.block_on(post(&client, &server.url, "c-1", json!({"text": "last name", "contact": {"id": "u1"}})));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "paused");
    assert_eq!(first["replies"][0]["text"], "What is your Teamleader contact ID?");
    drop(server); // killed between the question and the answer

    let server = Server::start(&data, &flows);
    let (status, second) = rt.block_on(post(&client, &server.url, "c-1", json!({"text": "c1a2"})));
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["replies"][0]["text"], "Hello Erlich Bachman!");
    assert_eq!(first["run_id"], second["run_id"], "the same run resumed");
    assert_eq!(api.requests()[0].json(), json!({"id": "c1a2"}));

    // Run history is behind the admin token.
    let run_url = format!("{}/v1/runs/{}", server.url, second["run_id"].as_str().unwrap());
    let (anon, authed) = rt.block_on(async {
        let anon = client.get(&run_url).send().await.unwrap().status().as_u16();
        // History is written in the background, a few milliseconds after the answer: wait for
        // the second activation's record (the first one's, "paused", may be there already).
        let mut last = Value::Null;
        for _ in 0..100 {
            let resp = client.get(&run_url).bearer_auth(ADMIN).send().await.unwrap();
            if resp.status().is_success() {
                last = resp.json().await.unwrap();
                if last["status"] == "completed" {
                    return (anon, last);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the completed run never appeared in the history; last seen: {last}");
    });
    assert_eq!(anon, 401);
    assert_eq!(authed["status"], "completed");
    // Both activations, across the restart: the question asked before the pause, then the
    // lookup after it.
    let segments = authed["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2, "{authed}");
    assert_eq!(segments[0]["replies"][0]["text"], "What is your Teamleader contact ID?");
    assert_eq!(segments[0]["message"], "last name");
    assert_eq!(segments[1]["message"], "c1a2");
    assert!(segments[1]["trace"].as_array().unwrap().iter().any(|t| t["step"] == "lookup"), "{authed}");
    assert_eq!(authed["contact_id"], "u1");
    // Nothing matched: no flow, no error.
    let (_, none) = rt.block_on(post(&client, &server.url, "c-2", json!({"text": "hello"})));
    assert_eq!(none["status"], "no_flow");
    let health: Value = rt
        .block_on(async { client.get(format!("{}/healthz", server.url)).send().await.unwrap().json().await.unwrap() });
    assert_eq!(health["status"], "ok");
    let metrics = rt
        .block_on(async { client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap() });
    // This process saw two messages: the answer (which completed the run) and "hello".
    assert!(metrics.contains("tern_messages_total 2"), "{metrics}");
    assert!(
        metrics.contains("tern_run_activations_total{flow=\"teamleader-last-name\",status=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tern_step_duration_seconds_bucket{"), "{metrics}");
}

#[test]
fn repeated_message_ids_are_processed_once_and_bad_bodies_are_explained() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let server = Server::start(&fresh_data_dir(), &flows);
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        post(&client, &server.url, "c", json!({"text": "last name", "message_id": "m1"})).await;
        let (_, a) = post(&client, &server.url, "c", json!({"text": "c1a2", "message_id": "m2"})).await;
        let (_, b) = post(&client, &server.url, "c", json!({"text": "c1a2", "message_id": "m2"})).await;
        assert_eq!(a, b, "the retry gets the first answer");
        assert_eq!(api.requests().len(), 1, "and the API was called once");

        let resp = client
            .post(format!("{}/v1/conversations/c/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .body("{not json")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("send {\"text\""), "{body}");
        let (status, body) = post(&client, &server.url, "c", json!({"txt": "x"})).await;
        assert_eq!(status, 422, "well-formed JSON of the wrong shape");
        assert!(body["error"].as_str().unwrap().contains("missing field `text`"), "{body}");
        let (status, body) = post(&client, &server.url, "c", json!({"text": 5})).await;
        assert_eq!(status, 422, "known fields keep their types: {body}");
        let big = "x".repeat(100 * 1024);
        let resp = client
            .post(format!("{}/v1/conversations/c/messages", server.url))
            .bearer_auth(crate::support::CHANNEL_TOKEN)
            .json(&json!({"text": big}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413, "the body limit is 64 KiB");
    });
}

#[test]
fn two_hundred_conversations_of_twenty_messages_keep_order() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let server = Server::start(&fresh_data_dir(), &flows);
    let rt = rt();
    let client = reqwest::Client::new();
    let base = server.url.clone();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..200 {
            let (client, base) = (client.clone(), base.clone());
            set.spawn(async move {
                let conv = format!("conv-{c}");
                let (_, r) = post(&client, &base, &conv, json!({"text": "start"})).await;
                assert_eq!(r["replies"][0]["text"], "ready");
                for i in 1..20 {
                    let (status, r) =
                        post(&client, &base, &conv, json!({"text": format!("{c}:{i}"), "message_id": format!("{i}")}))
                            .await;
                    assert_eq!(status, 200, "{r}");
                    let texts: Vec<&str> =
                        r["replies"].as_array().unwrap().iter().map(|x| x["text"].as_str().unwrap()).collect();
                    assert_eq!(texts, vec![format!("got {c}:{i}").as_str(), "ready"], "conversation {c} message {i}");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        // Concurrent messages to one conversation are processed one at a time, each exactly once.
        post(&client, &base, "burst", json!({"text": "start"})).await;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (client, base) = (client.clone(), base.clone());
            set.spawn(async move {
                post(&client, &base, "burst", json!({"text": format!("b{i}"), "message_id": format!("b{i}")})).await.1
            });
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            got.push(r.unwrap()["replies"][0]["text"].as_str().unwrap().to_string());
        }
        got.sort();
        let mut want: Vec<String> = (0..20).map(|i| format!("got b{i}")).collect();
        want.sort();
        assert_eq!(got, want);
    });
}

/// `tern integrations add crm` against the test authorization server at `auth`.
pub(crate) fn add_crm(data: &Path, public_url: &str, auth: &str, extra: &[&str]) {
    use crate::support::oauth::{CLIENT_ID, CLIENT_SECRET};
    let (authorize, token) = (format!("{auth}/authorize"), format!("{auth}/token"));
    let out = tern()
        .env("TERN_DATA_DIR", data)
        .env("TERN_PUBLIC_URL", public_url)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("CS", CLIENT_SECRET)
        .args(["integrations", "add", "crm", "--client-id", CLIENT_ID, "--client-secret-env", "CS"])
        .args(["--authorization-url", &authorize, "--token-url", &token, "--api-origin", auth])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Signs in to the console with the admin token; returns the session's `Cookie` header value.
pub(crate) async fn console_sign_in(client: &reqwest::Client, base: &str) -> String {
    let resp = client.post(format!("{base}/login")).form(&[("token", ADMIN), ("next", "/")]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303, "sign-in redirects");
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// A console page, signed in.
async fn admin_page(client: &reqwest::Client, url: &str, cookie: &str) -> String {
    client.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap()
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the page")
        .to_string()
}

#[test]
fn integrations_page_adds_and_authorizes_then_a_conversation_uses_it() {
    use crate::support::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};
    let auth = AuthServer::start();
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    std::fs::write(
        flows.join("crm.json"),
        json!({"version": 1, "id": "crm", "trigger": {"type": "message", "match": {"regex": "^crm$"}},
        "steps": [
          {"id": "lookup", "type": "fetch_variables", "integration": "crm",
           "request": {"method": "POST", "url": format!("{}/api/contacts.info", auth.url()), "body": {"id": "c1a2"}},
           "variables": {"last_name": "data.last_name"}},
          {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
        ]})
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::start_at(&fresh_data_dir(), &flows, &format!("127.0.0.1:{port}"), &base);
    assert_eq!(server.url, base);
    let rt = rt();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    rt.block_on(async {
        let anon = client.get(&base).send().await.unwrap();
        assert_eq!(anon.status().as_u16(), 303);
        assert_eq!(anon.headers()["location"], "/login?next=%2F");
        let cookie = console_sign_in(&client, &base).await;
        let page = admin_page(&client, &base, &cookie).await;
        assert!(page.contains(&format!(">{base}/oauth/callback<")), "the callback URL is shown: {page}");
        let csrf = csrf_of(&page);

        // A forged form is refused.
        let forged = client
            .post(format!("{base}/integrations"))
            .header("cookie", &cookie)
            .form(&[("csrf", "nope"), ("name", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status().as_u16(), 403);

        let a = auth.url();
        let form = [
            ("csrf", csrf.as_str()),
            ("name", "crm"),
            ("profile", ""),
            ("data_center", ""),
            ("kind", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scopes", "contacts"),
            ("authorization_url", &format!("{a}/authorize")),
            ("token_url", &format!("{a}/token")),
            ("api_origins", &a),
            ("client_auth", "basic"),
            ("params", ""),
        ];
        let saved =
            client.post(format!("{base}/integrations")).header("cookie", &cookie).form(&form).send().await.unwrap();
        assert_eq!(saved.status().as_u16(), 303);
        assert_eq!(saved.headers()["location"], "/?saved=crm");
        let page = admin_page(&client, &format!("{base}/?saved=crm"), &cookie).await;
        assert!(page.contains("id=\"status-crm\" data-status=\"incomplete\">Not authorized yet<"), "{page}");

        // Authorize: the button goes to the provider, the provider back to Tern, Tern to the page.
        let go = client
            .post(format!("{base}/integrations/crm/authorize"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(go.status().as_u16(), 303);
        let provider = go.headers()["location"].to_str().unwrap().to_string();
        assert!(
            provider.starts_with(&format!("{a}/authorize?")) && provider.contains("code_challenge_method=S256"),
            "{provider}"
        );
        let back = client.get(&provider).send().await.unwrap();
        let callback = back.headers()["location"].to_str().unwrap().to_string();
        assert!(callback.starts_with(&format!("{base}/oauth/callback?")), "{callback}");
        let done = client.get(&callback).send().await.unwrap();
        assert_eq!(done.status().as_u16(), 303);
        assert_eq!(done.headers()["location"], "/?authorized=crm");
        let page = admin_page(&client, &format!("{base}/?authorized=crm"), &cookie).await;
        assert!(
            page.contains("All set! Your authorization is complete! Integration <strong>crm</strong> is authorized."),
            "{page}"
        );
        assert!(page.contains("id=\"status-crm\" data-status=\"authorized\">Authorized<"), "{page}");
        assert!(!page.contains(CLIENT_SECRET), "the page never shows a secret");

        // A replayed callback is refused and reported on the page.
        let replay = client.get(&callback).send().await.unwrap();
        assert!(replay.headers()["location"].to_str().unwrap().contains("error="), "single-use state");

        // The admin API lists it without secrets.
        let listed = client
            .get(format!("{base}/v1/integrations"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(listed.contains("\"client_secret_set\":true") && !listed.contains(CLIENT_SECRET), "{listed}");

        // A conversation uses it.
        let (_, r) = post(&client, &base, "c-crm", json!({"text": "crm"})).await;
        assert_eq!(r["replies"][0]["text"], "Hello Bachman", "{r}");
    });
}

#[test]
fn contact_logs_in_inside_the_conversation() {
    use crate::support::oauth::AuthServer;
    let auth = AuthServer::start();
    let hook = TestApi::start();
    let (_keep, flows) = flows_dir(&hook);
    std::fs::write(
        flows.join("login.json"),
        json!({"version": 1, "id": "login", "trigger": {"type": "message", "match": {"regex": "^login$"}},
               "steps": [
                 {"id": "login", "type": "oauth_request", "integration": "crm", "text": "Please log in to the CRM:", "save_as": "login"},
                 {"id": "check", "type": "branch", "cases": [{"when": {"var": "login.success", "equals": false}, "next": "failed"}]},
                 {"id": "lookup", "type": "fetch_variables", "integration": "crm", "token": "contact",
                  "request": {"method": "POST", "url": format!("{}/api/contacts.info", auth.url()), "body": {"id": "c1a2"}},
                  "variables": {"last_name": "data.last_name"}},
                 {"id": "say", "type": "send_message", "text": "Hello {{last_name}} ({{login.success}})", "next": "end"},
                 {"id": "failed", "type": "send_message", "text": "Login failed"}
               ]})
        .to_string(),
    )
    .unwrap();
    let (data, port) = (fresh_data_dir(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let a = auth.url();
    add_crm(&data, &base, &a, &[]);
    let server =
        Server::start_with(&data, &flows, &format!("127.0.0.1:{port}"), &base, Some(&format!("{}/hook", hook.url())));

    let rt = rt();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    rt.block_on(async {
        let contact = json!({"id": "u-9"});
        let (_, r) = post(&client, &base, "chat-9", json!({"text": "login", "contact": contact})).await;
        assert_eq!(r["status"], "paused", "{r}");
        let text = r["replies"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("Please log in to the CRM:\n"), "{text}");
        // Writing instead of logging in gets a fresh link.
        let (_, r) = post(&client, &base, "chat-9", json!({"text": "what now?", "contact": contact})).await;
        let again = r["replies"][0]["text"].as_str().unwrap();
        assert!(again.starts_with("Please log in first:\n"), "{again}");
        let link = again.lines().nth(1).unwrap().to_string();
        assert!(link.starts_with(&format!("{a}/authorize?")) && link.contains("code_challenge_method=S256"));

        // The contact logs in: the provider sends them to Tern's callback, which resumes the run.
        let back = client.get(&link).send().await.unwrap();
        let callback = back.headers()["location"].to_str().unwrap().to_string();
        let page = client.get(&callback).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("All set! Your authorization is complete!"), "{page}");
        let delivered = async {
            for _ in 0..50 {
                if let Some(r) =
                    hook.requests().into_iter().find(|r| r.uri == "/hook" && r.json()["status"] == "completed")
                {
                    return r.json();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the resumed run's replies never reached the webhook: {:?}", hook.requests());
        }
        .await;
        assert_eq!(delivered["conversation_id"], "chat-9");
        assert_eq!(delivered["replies"][0]["text"], "Hello Bachman (true)", "{delivered}");
        // The contact's own token was used.
        assert!(auth.api_auth_headers().last().unwrap().starts_with("Bearer at_"));

        // Next time the contact is already logged in: no link.
        let (_, r) = post(&client, &base, "chat-10", json!({"text": "login", "contact": contact})).await;
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["replies"][0]["text"], "Hello Bachman (true)");

        // Another contact refuses at the provider: the run resumes with success false.
        auth.set(|f| f.deny = Some("access_denied".into()));
        let (_, r) = post(&client, &base, "chat-11", json!({"text": "login", "contact": {"id": "u-11"}})).await;
        let link = r["replies"][0]["text"].as_str().unwrap().lines().nth(1).unwrap().to_string();
        let back = client.get(&link).send().await.unwrap();
        let callback = back.headers()["location"].to_str().unwrap().to_string();
        let page = client.get(&callback).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("access_denied") && !page.contains("<script>"), "{page}");
        for _ in 0..50 {
            if hook.requests().iter().any(|r| {
                r.uri == "/hook"
                    && r.json()["conversation_id"] == "chat-11"
                    && r.json()["replies"][0]["text"] == "Login failed"
            }) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the failed login did not resume the run: {:?}", hook.requests());
    });
    drop(server);
}

#[test]
fn sighup_reloads_flows_and_paused_runs_keep_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let write = |version: &str| {
        std::fs::write(
            dir.path().join("greet.json"),
            json!({"version": 1, "id": "greet", "trigger": {"type": "message", "match": {"regex": "^hi$"}},
            "steps": [
              {"id": "q", "type": "ask", "text": format!("{version} question?"), "save_as": "a"},
              {"id": "s", "type": "send_message", "text": format!("{version} got {{{{a}}}}")}
            ]})
            .to_string(),
        )
        .unwrap();
    };
    write("v1");
    // Without the file watcher, so that only SIGHUP can reload; the log (JSON lines in a file)
    // says when a reload was done or refused.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows"])
        .arg(dir.path())
        .stderr(log.reopen().unwrap());
    let server = Server::spawn_keeping_stderr(cmd);
    // The messages of the reloads logged so far, in order.
    let reloads = || -> Vec<String> {
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|l| l["fields"]["message"].as_str().map(str::to_string))
            .filter(|m| m.starts_with("reload"))
            .collect()
    };
    // Waits until `n` reloads were logged (done or refused).
    let wait_for_reloads = |n: usize| {
        let reloads = &reloads;
        async move {
            for _ in 0..300 {
                let logged = reloads();
                if logged.len() >= n {
                    return logged;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{n} reload(s) were not logged: {:?}", reloads());
        }
    };
    let rt = rt();
    let client = reqwest::Client::new();
    let hup = || {
        let ok = std::process::Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    rt.block_on(async {
        let (_, r) = post(&client, &server.url, "old", json!({"text": "hi"})).await;
        assert_eq!(r["replies"][0]["text"], "v1 question?");
        write("v2");
        hup();
        let mut n = 0;
        let reloaded = loop {
            n += 1;
            let (_, r) = post(&client, &server.url, &format!("new-{n}"), json!({"text": "hi"})).await;
            if r["replies"][0]["text"] == "v2 question?" || n > 50 {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(reloaded["replies"][0]["text"], "v2 question?", "SIGHUP reloads the flows");
        let (_, r) = post(&client, &server.url, "old", json!({"text": "x"})).await;
        assert_eq!(r["replies"][0]["text"], "v1 got x", "a paused run keeps the version it started with");

        // A broken flow makes the reload refuse as a whole: the loaded flows stay, so the edit
        // made with it (v3) is not taken either.
        let first = wait_for_reloads(1).await;
        assert_eq!(first, ["reloaded the flows"]);
        write("v3");
        std::fs::write(dir.path().join("broken.json"), "{\"version\": 1, \"id\": \"b\", \"steps\": [").unwrap();
        hup();
        let outcome = wait_for_reloads(2).await;
        assert!(outcome[1].starts_with("reload refused"), "{outcome:?}");
        let (_, r) = post(&client, &server.url, "after-broken", json!({"text": "hi"})).await;
        assert_eq!(r["replies"][0]["text"], "v2 question?", "the refused reload changed nothing");
    });
}

#[test]
fn slow_headers_are_cut_off() {
    use std::io::{Read, Write};
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let server = Server::start_args(
        &fresh_data_dir(),
        &flows,
        "127.0.0.1:0",
        "http://127.0.0.1:8080",
        None,
        &["--header-read-timeout", "1"],
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/conversations/c/messages HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A guard against hanging forever, far longer than the server's one-second header timeout:
    // what is tested is that the server ends the connection itself (the client never does).
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 512];
    // The server answers 408 or just closes; either way it is the server that ends it.
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the server kept a connection with unfinished headers open: {e}"),
        }
    }
    // A normal request still works.
    let rt = rt();
    let (status, _) = rt.block_on(post(&reqwest::Client::new(), &server.url, "c", json!({"text": "hello"})));
    assert_eq!(status, 200);
}

#[test]
fn integration_events_are_routed_by_account_identifier() {
    use crate::support::oauth::AuthServer;
    let auth = AuthServer::start();
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    std::fs::write(
        flows.join("events.json"),
        json!({"version": 1, "id": "events", "trigger": {"type": "integration_event", "integration": "crm"},
               "steps": [{"id": "say", "type": "send_message", "text": "Event {{event.type}} for {{event.account.id}}"}]})
        .to_string(),
    )
    .unwrap();
    let (data, port) = (fresh_data_dir(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let a = auth.url();
    add_crm(
        &data,
        &base,
        &a,
        &["--event-identifier", "account.id", "--account-field", "account_id", "--events-secret", "CRM_EVENTS"],
    );
    // The integration's events are signed with its events secret (Standard Webhooks).
    let secret = tern_engine::standard_webhooks::WebhookSecret::generate();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_PUBLIC_URL", &base)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TERN_SECRET_CRM_EVENTS", secret.to_whsec())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--flows", flows.to_str().unwrap()]);
    let server = Server::spawn(cmd);
    let rt = rt();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let signed = |url: &str, event: Value| {
        let body = event.to_string();
        let id = format!("evt-{}", sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut req = client.post(url).header("content-type", "application/json").body(body.clone());
        for (k, v) in secret.headers(&id, i64::try_from(now).unwrap(), body.as_bytes()) {
            req = req.header(k, v);
        }
        req.send()
    };
    rt.block_on(async {
        let events = format!("{base}/v1/integrations/crm/events");
        // Before authorization no account identifier is known: rejected.
        let r = signed(&events, json!({"account": {"id": "acct-42"}, "type": "deal.won"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 404);

        // Authorize through the page (the token response carries account_id).
        authorize_crm(&client, &base).await;

        let r = signed(&events, json!({"account": {"id": "acct-42"}, "type": "deal.won"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["replies"][0]["text"], "Event deal.won for acct-42", "{body}");
        // A body that starts with a UTF-8 byte order mark (signed as sent) reads the same.
        let bom = format!("\u{feff}{}", json!({"account": {"id": "acct-42"}, "type": "deal.bom"}));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut req = client.post(&events).header("content-type", "application/json").body(bom.clone());
        for (k, v) in secret.headers("evt-bom", i64::try_from(now).unwrap(), bom.as_bytes()) {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["replies"][0]["text"], "Event deal.bom for acct-42", "{body}");

        let r = signed(&events, json!({"account": {"id": "acct-999"}, "type": "x"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "an unknown identifier is rejected, never guessed");
        let r = signed(&events, json!({"type": "x"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("no account identifier"), "{body}");
        // Unsigned, signed with another secret, or for an integration that does not exist: the
        // same 401, before the event is looked at.
        let unsigned =
            client.post(&events).json(&json!({"account": {"id": "acct-42"}, "type": "deal.won"})).send().await.unwrap();
        assert_eq!(unsigned.status().as_u16(), 401);
        let unsigned: Value = unsigned.json().await.unwrap();
        assert_eq!(unsigned["code"], "unauthorized", "{unsigned}");
        let r = signed(&format!("{base}/v1/integrations/nope/events"), json!({})).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), unsigned);
        let other = tern_engine::standard_webhooks::WebhookSecret::generate();
        let body = json!({"account": {"id": "acct-42"}, "type": "deal.won"}).to_string();
        let mut req = client.post(&events).header("content-type", "application/json").body(body.clone());
        for (k, v) in other.headers("evt-other", 1_900_000_000, body.as_bytes()) {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), unsigned);
    });
    drop(server);
}

/// Authorizes `crm` through the integrations page and the test provider.
pub(crate) async fn authorize_crm(client: &reqwest::Client, base: &str) {
    let cookie = console_sign_in(client, base).await;
    let csrf = csrf_of(&admin_page(client, base, &cookie).await);
    let go = client
        .post(format!("{base}/integrations/crm/authorize"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let provider = go.headers()["location"].to_str().unwrap().to_string();
    let back = client.get(&provider).send().await.unwrap();
    let done = client.get(back.headers()["location"].to_str().unwrap()).send().await.unwrap();
    assert_eq!(done.headers()["location"], "/?authorized=crm", "{:?}", done.headers());
}

#[test]
fn admin_api_manages_integrations_secrets_and_flows() {
    use crate::support::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};
    let auth = AuthServer::start();
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let a = auth.url();
    std::fs::write(
        flows.join("crm.json"),
        json!({"version": 1, "id": "crm", "trigger": {"type": "message", "match": {"keywords": ["crm"]}, "priority": 5},
        "steps": [
          {"id": "lookup", "type": "fetch_variables", "integration": "crm",
           "request": {"method": "POST", "url": format!("{a}/api/contacts.info"), "body": {"id": "c1a2"}},
           "variables": {"last_name": "data.last_name"}},
          {"id": "say", "type": "send_message", "text": "Hello {{last_name}} ({{secrets.GREETING_KEY}})"}
        ]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        flows.join("events.json"),
        json!({"version": 1, "id": "events", "trigger": {"type": "integration_event", "integration": "crm"},
               "steps": [{"id": "say", "type": "send_message", "text": "Event for {{event.account}}"}]})
        .to_string(),
    )
    .unwrap();
    let (data, port) = (fresh_data_dir(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::start_at(&data, &flows, &format!("127.0.0.1:{port}"), &base);
    let rt = rt();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    rt.block_on(async {
        let put = |path: &str, body: Value| client.put(format!("{base}{path}")).bearer_auth(ADMIN).json(&body).send();
        // Without the token: 401.
        let r = client.put(format!("{base}/v1/integrations/crm")).json(&json!({})).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);

        // Mistakes are explained with where they are.
        let r = put("/v1/integrations/crm", json!({"client_idd": "x"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("client_idd"), "{body}");
        let r =
            put("/v1/integrations/crm", json!({"client_id": "x", "token_url": format!("{a}/token")})).await.unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("API origin"), "{body}");
        let r = client
            .put(format!("{base}/v1/integrations/crm"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);

        // A complete integration whose account identifier comes from an identity request.
        let settings = json!({
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "authorization_url": format!("{a}/authorize"), "token_url": format!("{a}/token"),
            "api_origins": [a], "client_auth": "basic",
            "event_identifier": "account", "account_field": "data.account.id",
            "identity_url": format!("{a}/api/users.me"), "events_secret": "CRM_EVENTS",
        });
        let r = put("/v1/integrations/crm", settings).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("\"client_secret_set\":true") && !text.contains(CLIENT_SECRET), "write-only: {text}");

        // Secrets are write-only.
        let r = put("/v1/secrets/GREETING_KEY", json!({"value": "gk-secret-value-123"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let r = put("/v1/secrets/bad-name", json!({"value": "x"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let listed =
            client.get(format!("{base}/v1/secrets")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
        assert!(listed.contains("GREETING_KEY") && !listed.contains("gk-secret-value-123"), "{listed}");

        let flows: Value =
            client.get(format!("{base}/v1/flows")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        assert_eq!(flows["flows"][0]["id"], "crm", "highest priority first: {flows}");
        assert_eq!(flows["flows"][0]["integrations"], json!(["crm"]));

        authorize_crm(&client, &base).await;
        // The identity request's account id routes events, signed with the events secret the
        // admin API stored.
        let events_secret = tern_engine::standard_webhooks::WebhookSecret::generate();
        let r = put("/v1/secrets/CRM_EVENTS", json!({"value": events_secret.to_whsec()})).await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let events = format!("{base}/v1/integrations/crm/events");
        let signed = |id: &str, event: Value| {
            let body = event.to_string();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let mut req = client.post(&events).header("content-type", "application/json").body(body.clone());
            for (k, v) in events_secret.headers(id, i64::try_from(now).unwrap(), body.as_bytes()) {
                req = req.header(k, v);
            }
            req.send()
        };
        let r = signed("evt-1", json!({"account": "acct-77"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["replies"][0]["text"], "Event for acct-77", "{body}");
        let r = signed("evt-2", json!({"account": "acct-42"})).await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let r = client.post(&events).json(&json!({"account": "acct-77"})).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "unsigned");

        // The stored secret is used and masked in the reply; a token the provider no longer
        // accepts is refreshed (refresh before expiry is timed with a manual clock in
        // integrations::expiring_token_refresh_follows_the_clock).
        let (_, r) = post(&client, &base, "c-admin", json!({"text": "crm please"})).await;
        assert_eq!(r["replies"][0]["text"], "Hello Bachman ([redacted])", "{r}");
        auth.revoke_access_tokens();
        let (_, r) = post(&client, &base, "c-admin-2", json!({"text": "crm again"})).await;
        assert_eq!(r["replies"][0]["text"], "Hello Bachman ([redacted])", "{r}");
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains("tern_token_requests_total{integration=\"crm\",outcome=\"refreshed\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("tern_http_responses_total{step_type=\"fetch_variables\",status=\"200\"} 2"),
            "{metrics}"
        );

        // Removing.
        let r = client.delete(format!("{base}/v1/secrets/GREETING_KEY")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let r = client.delete(format!("{base}/v1/integrations/crm")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let r = client.delete(format!("{base}/v1/integrations/crm")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let (_, r) = post(&client, &base, "c-admin-3", json!({"text": "crm"})).await;
        assert_eq!(r["status"], "failed", "{r}");
    });
    drop(server);
}

#[test]
fn flow_files_are_watched_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            json!({"version": 1, "id": name, "trigger": {"type": "message", "match": {"regex": format!("^{name}$")}},
            "steps": [{"id": "s", "type": "send_message", "text": text}]})
            .to_string(),
        )
        .unwrap();
    };
    write("one", "first");
    let server = Server::start(&fresh_data_dir(), dir.path());
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let (_, r) = post(&client, &server.url, "w1", json!({"text": "one"})).await;
        assert_eq!(r["replies"][0]["text"], "first");
        write("one", "edited");
        write("two", "added");
        let mut n = 0;
        loop {
            n += 1;
            let (_, a) = post(&client, &server.url, &format!("w-a{n}"), json!({"text": "one"})).await;
            let (_, b) = post(&client, &server.url, &format!("w-b{n}"), json!({"text": "two"})).await;
            if a["replies"][0]["text"] == "edited" && b["replies"][0]["text"] == "added" {
                break;
            }
            assert!(n < 100, "the edited and added flows were not picked up: {a} {b}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        std::fs::remove_file(dir.path().join("two.json")).unwrap();
        let mut n = 0;
        loop {
            n += 1;
            let (_, b) = post(&client, &server.url, &format!("w-c{n}"), json!({"text": "two"})).await;
            if b["status"] == "no_flow" {
                break;
            }
            assert!(n < 100, "the removed flow still runs: {b}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn tern_toml_configures_serve_under_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("my-flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(
        flows.join("hi.json"),
        json!({"version": 1, "id": "hi", "trigger": {"type": "message"},
               "steps": [{"id": "s", "type": "send_message", "text": "from toml"}]})
        .to_string(),
    )
    .unwrap();
    let data = fresh_data_dir();
    std::fs::write(
        dir.path().join("tern.toml"),
        format!(
            "data_dir = {:?}\nallow_private_network = true\n\n[serve]\nflows = \"my-flows\"\nlisten = \"127.0.0.1:1\"\nmax_concurrency = 7\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // The file's listen address (port 1) would fail: the flag wins.
    let mut cmd = tern();
    cmd.current_dir(dir.path()).env_remove("TERN_DATA_DIR").env("TERN_ADMIN_TOKEN", ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    let server = Server::spawn(cmd);
    let (_, r) = rt().block_on(post(&reqwest::Client::new(), &server.url, "t1", json!({"text": "x"})));
    assert_eq!(r["replies"][0]["text"], "from toml", "flows from the file's directory: {r}");
    assert!(data.join("tern.db").exists(), "data_dir from the file");
    drop(server);

    // The environment wins over the file too; mistakes in the file are explained.
    std::fs::write(dir.path().join("bad.toml"), "[serve]\nmax_concurency = 3\nlisten = 5\n").unwrap();
    let out = tern().current_dir(dir.path()).args(["--config", "bad.toml", "serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `serve.max_concurency` (did you mean `max_concurrency`?)"), "{err}");
    let out = tern().current_dir(dir.path()).env("TERN_LISTEN", "not-an-address").args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-an-address"), "TERN_LISTEN is used over the file: {err}");
}

/// The default log of `tern serve`: a start-up summary and warnings, as JSON lines with
/// `--log-format json` (the test reads them from a file the server's standard error goes to).
#[test]
fn serve_logs_a_start_up_summary_and_warnings_as_json_lines() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    std::fs::write(
        flows.join("broken.json"),
        "{\"version\": 1, \"id\": \"broken\", \"steps\": [{\"id\": \"a\", \"type\": \"nope\"}]}",
    )
    .unwrap();
    let data = fresh_data_dir();
    // An integration that was never authorized: warned about at start-up.
    let add = crate::support::run([
        "--data-dir",
        data.to_str().unwrap(),
        "integrations",
        "add",
        "crm",
        "--profile",
        "teamleader",
        "--client-id",
        "id",
    ]);
    assert_eq!(add.code(), 0, "{}", add.stderr());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env_remove("RUST_LOG")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--skip-invalid", "--flows"])
        .arg(&flows)
        .stderr(log.reopen().unwrap());
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    let (_, a) = rt.block_on(post(&client, &server.url, "c-log", json!({"text": "last name"})));
    assert_eq!(a["status"], "paused", "{a}");
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(log.path()).unwrap();
        lines = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.iter().any(|l| l["fields"]["message"] == "tern serve started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "tern serve started")
        .unwrap_or_else(|| panic!("no start-up summary in {lines:?}"));
    assert_eq!(started["level"], "INFO");
    let f = &started["fields"];
    assert_eq!(f["listen"], server.url.as_str());
    assert_eq!(f["flows"], 2, "{f}");
    assert_eq!(f["skipped_invalid"], 1, "{f}");
    // Without --public-url, a loopback listen address is the public URL (port 0 included).
    assert_eq!(f["console"], format!("{}/", server.url));
    assert_eq!(f["public_url"], format!("{}/", server.url));
    assert!(!lines.iter().any(|l| l["fields"]["message"].as_str().unwrap_or("").contains("--public-url")), "{lines:?}");
    assert!(f["store"].as_str().unwrap().ends_with("tern.db"), "{f}");
    assert!(f["version"].is_string());
    let warned = lines.iter().any(|l| {
        l["level"] == "WARN"
            && l["fields"]["integration"] == "crm"
            && l["fields"]["message"].as_str().unwrap_or("").contains("never authorized")
    });
    assert!(warned, "a warning for the integration that was never authorized: {lines:?}");
    // Nothing but JSON on standard error.
    let text = std::fs::read_to_string(log.path()).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not JSON: {line}");
    }
}

/// `tern secrets set` is another process: a running server picks the secret up within a few
/// seconds, without a restart or the admin API.
#[test]
fn a_secret_set_from_the_command_line_reaches_a_running_server() {
    let api = TestApi::start();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("key.json"),
        json!({"version": 1, "id": "key", "trigger": {"type": "message", "match": {"regex": "^key$"}},
        "steps": [
          {"id": "call", "type": "http_request",
           "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()),
                       "headers": {"x-key": "{{secrets.CLI_KEY}}"}, "body": {"id": "c1a2"}}},
          {"id": "say", "type": "send_message", "text": "called"}
        ]})
        .to_string(),
    )
    .unwrap();
    let data = fresh_data_dir();
    let server = Server::start(&data, flows.path());
    let rt = rt();
    let client = reqwest::Client::new();
    let (_, before) = rt.block_on(post(&client, &server.url, "k-1", json!({"text": "key"})));
    assert_eq!(before["status"], "failed", "no secret yet: {before}");
    let set = tern()
        .env("TERN_DATA_DIR", &data)
        .env("K", "cli-secret-value-42")
        .args(["secrets", "set", "CLI_KEY", "--from-env", "K"])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let mut last = Value::Null;
    for i in 0..40 {
        let (_, a) = rt.block_on(post(&client, &server.url, &format!("k-2-{i}"), json!({"text": "key"})));
        if a["status"] == "completed" {
            last = a;
            break;
        }
        last = a;
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(last["status"], "completed", "the server never saw the secret: {last}");
    let sent = api.requests().last().unwrap().header("x-key").map(str::to_string);
    assert_eq!(sent.as_deref(), Some("cli-secret-value-42"));
}

/// A public URL that points at this machine but not where `tern serve` listens is warned
/// about at start-up (OAuth callbacks would reach nobody); one that agrees is not.
#[test]
fn a_public_url_that_is_not_where_serve_listens_is_warned_about() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let start = |public_url: Option<&str>, listen: &str| {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = tern();
        cmd.env("TERN_DATA_DIR", fresh_data_dir())
            .env("TERN_ADMIN_TOKEN", ADMIN)
            .env_remove("RUST_LOG")
            .env_remove("TERN_PUBLIC_URL")
            .args(["--log-format", "json", "serve", "--listen", listen, "--flows"])
            .arg(&flows)
            .stderr(log.reopen().unwrap());
        if let Some(url) = public_url {
            cmd.args(["--public-url", url]);
        }
        let server = Server::spawn_keeping_stderr(cmd);
        let mut started = None;
        for _ in 0..100 {
            let text = std::fs::read_to_string(log.path()).unwrap();
            let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            if lines.iter().any(|l| l["fields"]["message"] == "tern serve started") {
                started = Some(lines);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (server, started.expect("the server started"))
    };
    let warnings = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["level"] == "WARN")
            .filter_map(|l| l["fields"]["message"].as_str().map(str::to_string))
            .filter(|m| m.contains("--public-url"))
            .collect()
    };
    // The default port 8080 while the server listens elsewhere: warned, with the fix.
    let (server, lines) = start(Some("http://127.0.0.1:8080"), "127.0.0.1:0");
    let w = warnings(&lines);
    assert_eq!(w.len(), 1, "{lines:?}");
    assert!(w[0].contains("would reach nothing"), "{w:?}");
    assert!(w[0].contains(&format!("--public-url {}", server.url)), "the fix names the address: {w:?}");
    drop(server);
    // `localhost` on the port it listens on: fine.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_server, lines) = start(Some(&format!("http://localhost:{port}")), &listen);
    assert!(warnings(&lines).is_empty(), "{lines:?}");
    // A public https URL (behind a proxy) is never second-guessed.
    let (_server2, lines) = start(Some("https://tern.example.com"), "127.0.0.1:0");
    assert!(warnings(&lines).is_empty(), "{lines:?}");
}
