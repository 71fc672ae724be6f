//! Deliveries to the channel's webhook (issue 22), end to end over real HTTP on 127.0.0.1:
//! every delivery verifies with the Standard Webhooks reference libraries (Python and npm
//! `standardwebhooks`, pinned and installed by `scripts/test`), one hung receiver does not hold
//! back other conversations' replies, a delivery that times out on Tern's side is sent again
//! with the same id, and credentials in the webhook URL never reach the log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, post, rt};
use crate::support::{free_port, fresh_data_dir, repo, tern};

/// A flow that answers every message.
fn echo_flows() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let flow = json!({"version": 1, "id": "echo", "trigger": {"type": "message", "match": {"regex": ".*"}},
        "steps": [{"id": "say", "type": "send_message", "text": "echo {{message.text}}"}]});
    std::fs::write(dir.path().join("echo.json"), flow.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

pub(crate) fn serve_cmd(data: &Path, flows: &Path, extra: &[&str]) -> Command {
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env_remove("TERN_WEBHOOK_SECRET")
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .args(extra);
    cmd
}

/// A receiver process that verifies with a reference library; its report lines arrive on `lines`.
pub(crate) struct Receiver {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(mut cmd: Command, secret: &str) -> Self {
        let mut child = cmd
            .env("WEBHOOK_SECRET", secret)
            .current_dir(repo().join("tests/webhooks"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(first.starts_with("listening on "), "receiver: {first}");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str::<Value>(&line).unwrap_or(json!({"unreadable": line})));
            }
        });
        Self { child, lines }
    }

    pub(crate) fn next(&self) -> Value {
        self.lines.recv_timeout(Duration::from_secs(30)).expect("the receiver reported a request within 30 s")
    }
}

/// The Python reference library in the virtual environment `scripts/test` makes.
pub(crate) fn python_receiver(port: u16, secret: &str) -> Option<Receiver> {
    let python = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tern-standardwebhooks/bin/python"));
    let Some(python) = python.filter(|p| p.is_file()) else {
        let message = "the Python receiver needs `standardwebhooks` in ~/.cache/tern-standardwebhooks (`scripts/test` installs it)";
        assert!(std::env::var_os("TERN_TEST_REQUIRE_TOOLS").is_none_or(|v| v != "1"), "{message}");
        eprintln!("\nSKIPPED {message}.\n");
        return None;
    };
    let mut cmd = Command::new(python);
    cmd.arg("receiver.py").arg(port.to_string());
    Some(Receiver::start(cmd, secret))
}

/// The npm reference library in `tests/webhooks` (installed with `npm ci` when missing).
fn node_receiver(port: u16, secret: &str) -> Option<Receiver> {
    if !crate::support::tools::available("the npm receiver", &[&crate::support::tools::NODE]) {
        return None;
    }
    static NPM: Mutex<()> = Mutex::new(());
    let dir = repo().join("tests/webhooks");
    {
        let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
        if !dir.join("node_modules/standardwebhooks").exists() {
            let out = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).output().unwrap();
            assert!(out.status.success(), "npm ci: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let mut cmd = Command::new("node");
    cmd.arg("receiver.mjs").arg(port.to_string());
    Some(Receiver::start(cmd, secret))
}

/// Posts a forged delivery (signed with another secret) straight to the receiver: it must refuse it,
/// or the test would prove nothing.
async fn forged_is_refused(port: u16, receiver: &Receiver) {
    let other = tern_engine::standard_webhooks::WebhookSecret::generate();
    let body = br#"{"conversation_id":"forged"}"#;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut req = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/hook")).body(body.to_vec());
    for (name, value) in other.headers("msg_forged", now, body) {
        req = req.header(name, value);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    let report = receiver.next();
    assert_eq!(report["verified"], false, "{report}");
}

#[test]
fn deliveries_verify_with_the_python_and_npm_reference_libraries() {
    let (_keep, flows) = echo_flows();
    let rt = rt();
    let client = reqwest::Client::new();

    // Python, with the secret given by --webhook-secret.
    let secret = tern_engine::standard_webhooks::WebhookSecret::generate().to_whsec();
    let port = free_port();
    if let Some(receiver) = python_receiver(port, &secret) {
        let hook = format!("http://127.0.0.1:{port}/hook");
        let server =
            Server::spawn(serve_cmd(&fresh_data_dir(), &flows, &["--webhook-url", &hook, "--webhook-secret", &secret]));
        rt.block_on(async {
            let (status, answer) = post(&client, &server.url, "c-py", json!({"text": "hi", "message_id": "m-1"})).await;
            assert_eq!(status, 200, "{answer}");
            let report = receiver.next();
            assert_eq!(report["verified"], true, "{report}");
            assert!(report["id"].as_str().unwrap().starts_with("msg_"), "{report}");
            assert_eq!(report["body"]["conversation_id"], "c-py");
            assert_eq!(report["body"]["replies"][0]["text"], "echo hi");
            assert_eq!(report["body"]["run_id"], answer["run_id"]);
            forged_is_refused(port, &receiver).await;
        });
    }

    // npm, with the secret Tern generated and kept in the data directory (no --webhook-secret).
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let data = fresh_data_dir();
    let server = Server::spawn(serve_cmd(&data, &flows, &["--webhook-url", &hook]));
    let kept = std::fs::read_to_string(data.join("webhook.secret")).expect("the generated secret is kept");
    let kept = kept.trim();
    assert!(kept.starts_with("whsec_"), "{kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("webhook.secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    if let Some(receiver) = node_receiver(port, kept) {
        rt.block_on(async {
            let (status, answer) = post(&client, &server.url, "c-js", json!({"text": "hello"})).await;
            assert_eq!(status, 200, "{answer}");
            // Attempts made before the receiver listened were refused by the network and retried.
            let report = receiver.next();
            assert_eq!(report["verified"], true, "{report}");
            assert_eq!(report["body"]["conversation_id"], "c-js");
            assert_eq!(report["body"]["replies"][0]["text"], "echo hello");
            forged_is_refused(port, &receiver).await;
        });
    }
}

/// What an in-test receiver saw.
#[derive(Default)]
struct Seen {
    /// `(conversation_id, webhook-id)` in the order requests arrived.
    arrivals: Vec<(String, String)>,
    /// Whether the hung request was released because everything else had arrived.
    released_early: Option<bool>,
}

/// Starts an axum receiver on 127.0.0.1 whose handler is `handle`; returns its URL.
fn axum_receiver<H, F>(handle: H) -> String
where
    H: Fn(axum::http::HeaderMap, Value) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = axum::http::StatusCode> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let handle = handle.clone();
                    async move { handle(headers, body).await }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/hook", rx.recv().unwrap())
}

fn header(headers: &axum::http::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_hung_receiver_does_not_hold_back_other_conversations_replies() {
    const OTHERS: usize = 10;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let all_arrived = Arc::new(tokio::sync::Notify::new());
    let hook = {
        let seen = seen.clone();
        let all_arrived = all_arrived.clone();
        axum_receiver(move |headers, body| {
            let seen = seen.clone();
            let all_arrived = all_arrived.clone();
            async move {
                let conversation = body["conversation_id"].as_str().unwrap_or_default().to_string();
                let others = {
                    let mut s = seen.lock().unwrap();
                    s.arrivals.push((conversation.clone(), header(&headers, "webhook-id")));
                    s.arrivals.iter().filter(|(c, _)| c != "hung").count()
                };
                if others == OTHERS {
                    all_arrived.notify_one();
                }
                if conversation == "hung" && seen.lock().unwrap().released_early.is_none() {
                    // Hangs until the ten others arrived, at most 10 s (Tern's attempt timeout).
                    let early = tokio::time::timeout(Duration::from_secs(10), all_arrived.notified()).await.is_ok();
                    seen.lock().unwrap().released_early = Some(early);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        })
    };
    let (_keep, flows) = echo_flows();
    let server = Server::spawn(serve_cmd(&fresh_data_dir(), &flows, &["--webhook-url", &hook]));
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let (status, _) = post(&client, &server.url, "hung", json!({"text": "first"})).await;
        assert_eq!(status, 200);
    });
    wait_until("the hung delivery's arrival", || !seen.lock().unwrap().arrivals.is_empty());
    rt.block_on(async {
        let client = reqwest::Client::new();
        let posts = (0..OTHERS).map(|i| {
            let client = client.clone();
            let url = server.url.clone();
            async move { post(&client, &url, &format!("other-{i}"), json!({"text": format!("n{i}")})).await.0 }
        });
        let statuses = futures_util::future::join_all(posts).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    });
    wait_until("the hung request's release", || seen.lock().unwrap().released_early.is_some());
    let s = seen.lock().unwrap();
    assert_eq!(
        s.released_early,
        Some(true),
        "the ten other conversations' replies arrived while the first delivery was still hanging: {:?}",
        s.arrivals
    );
    let others: Vec<&str> = s.arrivals.iter().map(|(c, _)| c.as_str()).filter(|c| *c != "hung").collect();
    assert_eq!(others.len(), OTHERS, "{:?}", s.arrivals);
    assert_eq!(s.arrivals[0].0, "hung");
}

#[test]
fn a_delivery_that_timed_out_is_sent_again_with_the_same_id_once_per_attempt() {
    // Per delivery: the first attempt outlasts Tern's 1 s timeout, the second is refused (500),
    // the third accepted.
    let attempts: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let hook = {
        let attempts = attempts.clone();
        axum_receiver(move |headers, body| {
            let attempts = attempts.clone();
            async move {
                let n = {
                    let mut a = attempts.lock().unwrap();
                    a.push((header(&headers, "webhook-id"), header(&headers, "webhook-signature"), body));
                    a.len()
                };
                match n {
                    1 => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        axum::http::StatusCode::NO_CONTENT
                    }
                    2 => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    _ => axum::http::StatusCode::NO_CONTENT,
                }
            }
        })
    };
    let secret = tern_engine::standard_webhooks::WebhookSecret::generate();
    let (_keep, flows) = echo_flows();
    let server = Server::spawn(serve_cmd(
        &fresh_data_dir(),
        &flows,
        &["--webhook-url", &hook, "--webhook-secret", &secret.to_whsec(), "--webhook-timeout", "1"],
    ));
    rt().block_on(async {
        let (status, _) = post(&reqwest::Client::new(), &server.url, "flaky", json!({"text": "x"})).await;
        assert_eq!(status, 200);
    });
    wait_until("three attempts", || attempts.lock().unwrap().len() >= 3);
    // Nothing more comes once the receiver accepted it: a fourth attempt would come within
    // about 4 s (backoff 1 s, 2 s, 4 s with ±20 % jitter).
    std::thread::sleep(Duration::from_secs(6));
    let a = attempts.lock().unwrap();
    assert_eq!(a.len(), 3, "one request per attempt: {:?}", a.iter().map(|(id, _, _)| id).collect::<Vec<_>>());
    assert!(a.iter().all(|(id, _, _)| *id == a[0].0 && id.starts_with("msg_")), "the same webhook-id on every attempt");
    assert!(a.iter().all(|(_, _, body)| *body == a[0].2), "the same body");
    assert_ne!(a[0].1, "", "signed");
}

#[test]
fn a_failed_delivery_warning_does_not_show_credentials_in_the_webhook_url() {
    let hook = axum_receiver(|_, _| async { axum::http::StatusCode::SERVICE_UNAVAILABLE });
    let port = hook.trim_start_matches("http://127.0.0.1:").trim_end_matches("/hook");
    let url =
        format!("http://tern:pa55w0rd-in-the-url@127.0.0.1:{port}/hooks/tok3n1n7h3p4th42/in?sig=qu3ry-s3cr3t-value");
    let (_keep, flows) = echo_flows();
    let data = fresh_data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let log_path = data.with_extension("stderr.log");
    let mut cmd = serve_cmd(&data, &flows, &["--webhook-url", &url]);
    cmd.stderr(std::fs::File::create(&log_path).unwrap());
    let server = Server::spawn_keeping_stderr(cmd);
    rt().block_on(async {
        let (status, _) = post(&reqwest::Client::new(), &server.url, "c-1", json!({"text": "x"})).await;
        assert_eq!(status, 200);
    });
    let log = || std::fs::read_to_string(&log_path).unwrap();
    wait_until("a failed-delivery warning", || log().contains("the delivery failed; retrying"));
    let log = log();
    for secret in ["pa55w0rd-in-the-url", "tok3n1n7h3p4th42", "qu3ry-s3cr3t-value"] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
    assert!(log.contains(&format!("http://***@127.0.0.1:{port}/hooks/***/in?…")), "the URL is shown masked:\n{log}");
}
