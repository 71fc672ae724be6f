//! Tern's shared test support, for the tests and benchmarks: the conversation service in
//! process with the built-in steps ([`service`]), a real HTTP API on 127.0.0.1:0 that records
//! every request it receives (and a scripted one, [`scripted`]), the OAuth 2.0 test server
//! ([`oauth`]), an API that checks Basic, API-key and JWT-bearer credentials ([`credentials`]), an
//! HTTPS API that requires a client certificate from its own CA ([`mtls`]), panva's
//! oidc-provider under Node ([`oidc`]), hand-written WebAssembly plugins
//! ([`wasm`]), the checks for tools from outside Cargo ([`tools`]), flow documents tests share
//! ([`fixtures`]), temporary flow files, and a runner for the `tern` binary.
//!
//! `env!("CARGO_BIN_EXE_tern")` is only defined while the root package's tests and benchmarks
//! compile, so they hand the binary's path in with [`set_bin`] before [`tern`] or [`run`] is
//! used (`tests/e2e.rs` does it in its `support` module).

// Test support: a panic is a failed test with its message.
#![allow(clippy::unwrap_used)]

pub mod credentials;
pub mod fixtures;
pub mod mtls;
pub mod oauth;
pub mod oidc;
pub mod scripted;
pub mod service;
pub mod slack;
pub mod telegram;
pub mod tools;
pub mod twilio;
pub mod wasm;
pub mod whatsapp;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query exactly as sent (percent-encoding preserved).
    pub uri: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct Shared {
    log: Arc<Mutex<Vec<Recorded>>>,
    /// Benchmarks turn recording off so the log does not grow without bound.
    quiet: bool,
    /// Tickets opened by `/tickets`.
    tickets: Arc<std::sync::atomic::AtomicUsize>,
    /// Responses `/slow` finished sending.
    slow_answered: Arc<std::sync::atomic::AtomicUsize>,
}

/// Serves `app` on 127.0.0.1 (a free port) on a thread and runtime of its own, for as long as
/// the test process runs; returns where it listens once it does.
pub fn serve_on_thread(app: Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("server started")
}

/// A Teamleader-like API plus endpoints for redirects, big and slow responses.
pub struct TestApi {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    slow_answered: Arc<std::sync::atomic::AtomicUsize>,
}

impl TestApi {
    /// Starts the server on its own thread and runtime.
    pub fn start() -> Self {
        Self::start_with(Shared::default())
    }

    /// Starts a server that does not record requests (for benchmarks).
    pub fn start_quiet() -> Self {
        Self::start_with(Shared { quiet: true, ..Shared::default() })
    }

    fn start_with(shared: Shared) -> Self {
        let log = shared.log.clone();
        let slow_answered = shared.slow_answered.clone();
        let addr = serve_on_thread(app(shared));
        Self { addr, log, slow_answered }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same server under another origin (`localhost` instead of `127.0.0.1`).
    pub fn other_origin_url(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }

    /// How many `/slow` responses the server has sent (it answers a minute after the request,
    /// so a client that finished before that gave up on its own).
    pub fn slow_answered(&self) -> usize {
        self.slow_answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn app(shared: Shared) -> Router {
    Router::new()
        .route("/contacts.info", post(contacts_info))
        .route("/redirect", any(redirect))
        .route("/loop", any(loop_redirect))
        .route("/gzip-bomb", any(gzip_bomb))
        .route("/slow", any(slow))
        .route("/html", any(html))
        .route("/tickets", post(tickets))
        .route("/echo-headers", any(echo_headers))
        .route("/redirect307", any(redirect_307))
        .route("/big", any(big))
        .route("/deep", any(deep))
        .route("/escapes", any(escapes))
        .fallback(echo)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(s): State<Shared>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if s.quiet {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    s.log.lock().expect("log").push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers.clone(),
        body: bytes.to_vec(),
    });
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

async fn contacts_info(body: Bytes) -> Response {
    let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("id").cloned());
    match id.as_ref().and_then(Value::as_str) {
        Some("c1a2") => axum::Json(json!({"data": {
            "id": "c1a2", "first_name": "Erlich", "last_name": "Bachman",
            "emails": [{"type": "primary", "email": "erlich@piedpiper.com"}]
        }}))
        .into_response(),
        Some("no-last-name") => axum::Json(json!({"data": {"id": "x", "first_name": "Solo"}})).into_response(),
        Some("html") => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/html")], "<html>oops</html>")
            .into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"errors": [{"status": 404, "title": "Not found"}]})))
            .into_response(),
    }
}

async fn echo(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    axum::Json(json!({"method": method.as_str(), "uri": uri.to_string(), "ok": true})).into_response()
}

/// Echoes every request header in a 400 error body (as many APIs do), credentials included.
async fn echo_headers(headers: HeaderMap) -> Response {
    let all: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "bad request", "headers": all}))).into_response()
}

async fn redirect(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// `307 Location: {to}`: the client must resend the method and body.
async fn redirect_307(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
}

/// A 500 whose body holds terminal escape sequences (a window title, clear screen), as a hostile
/// or broken API may send.
async fn escapes() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "\u{1b}]0;PWNED\u{7}\u{1b}[2Jcleared\r\n").into_response()
}

/// `{"v": "xxx…"}` with `bytes` characters.
async fn big(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let n = q.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(1024usize).min(20 << 20);
    axum::Json(json!({"v": "x".repeat(n)})).into_response()
}

/// JSON arrays nested `levels` deep.
async fn deep(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let n = q.get("levels").and_then(|b| b.parse().ok()).unwrap_or(10usize).min(100_000);
    let body = format!("{}{}", "[".repeat(n), "]".repeat(n));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn loop_redirect() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/loop")]).into_response()
}

/// 11 MiB of JSON whitespace, gzip-compressed to a few KiB.
async fn gzip_bomb() -> Response {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(b"{\"a\":").expect("gzip");
    enc.write_all(&vec![b' '; 11 * 1024 * 1024]).expect("gzip");
    enc.write_all(b"1}").expect("gzip");
    let body = enc.finish().expect("gzip");
    ([(header::CONTENT_TYPE, "application/json"), (header::CONTENT_ENCODING, "gzip")], body).into_response()
}

/// Answers a minute after the request: longer than any test waits, so a client that got an
/// outcome did not get it from here.
async fn slow(State(s): State<Shared>) -> Response {
    tokio::time::sleep(Duration::from_secs(60)).await;
    s.slow_answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    axum::Json(json!({"late": true})).into_response()
}

/// Opens a ticket (`{"id": "T-<n>"}`, n counting from 1 per server), after `?delay_ms=`
/// milliseconds.
async fn tickets(State(s): State<Shared>, Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let delay = q.get("delay_ms").and_then(|d| d.parse().ok()).unwrap_or(0);
    let n = s.tickets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    axum::Json(json!({"id": format!("T-{n}")})).into_response()
}

async fn html() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], "<!doctype html><p>hello</p>")
        .into_response()
}

/// A temporary directory holding flow files.
pub struct Flows {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl Default for Flows {
    fn default() -> Self {
        Self::new()
    }
}

impl Flows {
    /// A new, empty directory.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    /// Writes a flow and returns its path.
    pub fn write(&self, name: &str, flow: &Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(flow).expect("json")).expect("write flow");
        path
    }
}

/// A directory removed when the test process ends.
fn scratch_root() -> &'static std::path::Path {
    static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().expect("tempdir")).path()
}

/// A fresh, empty data directory.
pub fn fresh_data_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    scratch_root().join(format!("data-{n}"))
}

static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the `tern` binary [`tern`] and [`run`] start: pass `env!("CARGO_BIN_EXE_tern")`. The
/// first call wins; later calls with the same path are no-ops.
///
/// # Panics
/// When a different path was set before (two binaries in one test process is a mistake).
pub fn set_bin(path: impl Into<PathBuf>) {
    let path = path.into();
    let set = BIN.get_or_init(|| path.clone());
    assert_eq!(*set, path, "testkit::set_bin was given two different binaries");
}

/// The binary set with [`set_bin`].
///
/// # Panics
/// When none was set, with what to do.
pub fn bin() -> &'static std::path::Path {
    BIN.get()
        .map(PathBuf::as_path)
        .unwrap_or_else(|| panic!("call testkit::set_bin(env!(\"CARGO_BIN_EXE_tern\")) before starting the binary"))
}

/// The `default` channel's token of every server the tests start (`TERN_CHANNEL_TOKEN`, the
/// environment form of `tern serve --channel-token`): message requests send it as
/// `Authorization: Bearer …`.
pub const CHANNEL_TOKEN: &str = "testkit-channel-token-0123456789abcdef";

/// The `tern` binary (see [`set_bin`]), with a clean environment, its own empty data
/// directory (pass `--data-dir` to share one between commands) and the `default` channel's
/// token [`CHANNEL_TOKEN`] (`TERN_CHANNEL_TOKEN`; remove it to start a server without one).
pub fn tern() -> Command {
    let mut cmd = Command::new(bin());
    for var in
        ["TERN_ALLOW_PRIVATE_NETWORK", "RUST_LOG", "TERN_MASTER_KEY", "TERN_MASTER_KEY_PREVIOUS", "TERN_PUBLIC_URL"]
    {
        cmd.env_remove(var);
    }
    cmd.env("TERN_DATA_DIR", fresh_data_dir());
    cmd.env("TERN_CHANNEL_TOKEN", CHANNEL_TOKEN);
    cmd
}

/// The output of a finished command, with convenient accessors.
pub struct Run {
    /// What the process returned.
    pub output: Output,
}

impl Run {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Standard output as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout(), self.stderr()))
    }
}

/// Runs `tern` with arguments.
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Run { output: tern().args(args).output().expect("run tern") }
}

/// The repository root (the parent of this crate's directory).
pub fn repo() -> PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// What `sent` returns once it holds at least `n` items, or after `within` (what it holds
/// then): the local platform API fakes wait for replies so.
pub fn wait_for<T>(n: usize, within: std::time::Duration, sent: impl Fn() -> Vec<T>) -> Vec<T> {
    let until = std::time::Instant::now() + within;
    loop {
        let got = sent();
        if got.len() >= n || std::time::Instant::now() > until {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A port that was free a moment ago (for servers whose address must be known before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
