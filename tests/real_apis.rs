//! APIs as they really answer (issue 11), each against a scripted server on loopback: declared
//! charsets, byte order marks, empty bodies, repeated query parameters, token responses labelled
//! `text/plain`, empty JSONPath matches, integers beyond 64 bits; and the request features
//! designers expect: form, text and multipart bodies, retries, status-dependent mapping and
//! `| default:` in templates.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::{Flows, Recorded, Run, fresh_data_dir, run, tern};

/// One canned answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn answer(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Canned {
    Canned {
        status,
        headers: content_type.map(|ct| ("content-type", ct.to_string())).into_iter().collect(),
        body: body.into(),
    }
}

fn json_answer(body: Value) -> Canned {
    answer(200, Some("application/json"), body.to_string())
}

/// A server that answers each path from a script (the last answer repeats) and records every
/// request; unknown paths get 404.
struct Scripted {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
}

type Script = Arc<Mutex<HashMap<String, VecDeque<Canned>>>>;

impl Scripted {
    fn start(routes: Vec<(&str, Vec<Canned>)>) -> Self {
        let script: Script = Arc::new(Mutex::new(
            routes.into_iter().map(|(p, answers)| (p.to_string(), answers.into_iter().collect())).collect(),
        ));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let state = (script, log.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let app = Router::new().fallback(serve).with_state(state);
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("server started");
        Self { addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }
}

async fn serve(
    axum::extract::State((script, log)): axum::extract::State<(Script, Arc<Mutex<Vec<Recorded>>>)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log.lock().expect("log").push(Recorded {
        method: method.to_string(),
        uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers,
        body: body.to_vec(),
    });
    let canned = {
        let mut script = script.lock().expect("script");
        match script.get_mut(uri.path()) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        }
    };
    let Some(c) = canned else {
        return (StatusCode::NOT_FOUND, "no such path").into_response();
    };
    let mut resp = Response::new(axum::body::Body::from(c.body));
    *resp.status_mut() = StatusCode::from_u16(c.status).expect("status");
    for (k, v) in c.headers {
        resp.headers_mut().insert(k, v.parse().expect("header value"));
    }
    resp
}

fn run_flow(flows: &Flows, flow: &Value, extra: &[&str]) -> Run {
    let path = flows.write(flow["id"].as_str().unwrap_or("flow"), flow);
    let mut args: Vec<String> =
        vec!["run".into(), path.display().to_string(), "--allow-private-network".into(), "-m".into(), "go".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(args)
}

fn step_trace<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["trace"].as_array().and_then(|t| t.iter().find(|s| s["step"] == id)).unwrap_or_else(|| panic!("no {id}: {out}"))
}

// 1. Declared charsets.

#[test]
fn declared_charsets_are_decoded() {
    let (latin9, _, _) =
        encoding_rs::ISO_8859_15.encode(r#"{"data":{"last_name":"Müller-Lüdenscheidt","price":"12,50 €"}}"#);
    assert!(std::str::from_utf8(&latin9).is_err(), "the body really is Latin-9");
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode("Grüße – “quoted”");
    let api = Scripted::start(vec![
        ("/contact", vec![answer(200, Some("application/json; charset=ISO-8859-15"), latin9.into_owned())]),
        ("/note", vec![answer(200, Some("text/plain; charset=windows-1252"), cp1252.into_owned())]),
    ]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "latin9", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/contact", api.url())},
         "variables": {"last_name": "data.last_name", "price": "$.data.price"}},
        {"id": "note", "type": "http_request", "request": {"url": format!("{}/note", api.url())},
         "save_response_as": "note"},
        {"id": "say", "type": "send_message", "text": "{{last_name}} pays {{price}}; {{note}}"}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Müller-Lüdenscheidt pays 12,50 €; Grüße – “quoted”\n");
}

#[test]
fn unknown_or_mismatched_charsets_are_clear_errors() {
    let api = Scripted::start(vec![
        ("/klingon", vec![answer(200, Some("application/json; charset=x-klingon"), r#"{"data":{}}"#)]),
        ("/lying", vec![answer(200, Some("application/json; charset=utf-8"), b"{\"a\":\"M\xfcller\"}".to_vec())]),
    ]);
    let flows = Flows::new();
    for (path, want) in [
        ("/klingon", "declares charset `x-klingon`, which is not a known encoding"),
        ("/lying", "the body is not valid UTF-8 text"),
    ] {
        let flow = json!({"version": 1, "id": "cs", "steps": [
            {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}{path}", api.url())},
             "variables": {"a": "a"}}
        ]});
        let r = run_flow(&flows, &flow, &[]);
        assert_eq!(r.code(), 1, "{}", r.stderr());
        assert!(r.stderr().contains("[not-json]") && r.stderr().contains(want), "{path}: {}", r.stderr());
    }
}

// 2. Byte order marks.

#[test]
fn byte_order_marks_are_ignored() {
    let mut utf8 = b"\xEF\xBB\xBF".to_vec();
    utf8.extend_from_slice(br#"{"data":{"name":"Zo\u00eb"}}"#);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(r#"{"data":{"name":"Łukasz"}}"#.encode_utf16().flat_map(u16::to_le_bytes));
    let api = Scripted::start(vec![
        ("/utf8", vec![answer(200, Some("application/json"), utf8)]),
        ("/utf16", vec![answer(200, Some("application/json"), utf16)]),
    ]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "bom", "steps": [
        {"id": "a", "type": "fetch_variables", "request": {"url": format!("{}/utf8", api.url())},
         "variables": {"a": "data.name"}},
        {"id": "b", "type": "http_request", "request": {"url": format!("{}/utf16", api.url())},
         "variables": {"b": "data.name"}},
        {"id": "say", "type": "send_message", "text": "{{a}} and {{b}}"}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Zoë and Łukasz\n");
}

// 3. 204 and empty bodies.

#[test]
fn empty_bodies_are_no_fields() {
    let api = Scripted::start(vec![
        ("/plain204", vec![answer(204, None, "")]),
        ("/json204", vec![answer(204, Some("application/json"), "")]),
        ("/blank200", vec![answer(200, Some("application/json"), " \r\n")]),
    ]);
    let flows = Flows::new();
    for path in ["/plain204", "/json204", "/blank200"] {
        let flow = json!({"version": 1, "id": "archive", "steps": [
            {"id": "archive", "type": "http_request",
             "request": {"method": "POST", "url": format!("{}{path}", api.url()), "body": {"id": 7}},
             "variables": {"archived_at": {"path": "data.archived_at", "default": "now"}},
             "save_response_as": "body"},
            {"id": "say", "type": "send_message", "text": "archived {{archived_at}} body=[{{body}}]"}
        ]});
        let r = run_flow(&flows, &flow, &[]);
        assert_eq!(r.code(), 0, "{path}: {}", r.stderr());
        assert_eq!(r.stdout(), "archived now body=[]\n", "{path}");

        let mut without_default = flow.clone();
        without_default["steps"][0]["variables"] = json!({"archived_at": "data.archived_at"});
        let r = run_flow(&flows, &without_default, &[]);
        assert_eq!(r.code(), 1, "{path}");
        let err = r.stderr();
        assert!(err.contains("[mapping]") && err.contains("the response body was empty"), "{path}: {err}");
        assert!(!err.contains("not JSON") && !err.contains("EOF"), "{path}: {err}");
    }
}

// 4. Repeated query parameters.

#[test]
fn lists_become_repeated_query_parameters() {
    let api = Scripted::start(vec![("/items", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "tags", "variables": {"wanted": ["retail", "wholesale & co"]}, "steps": [
        {"id": "literal", "type": "http_request",
         "request": {"url": format!("{}/items", api.url()), "query": {"tag": ["retail", "wholesale"], "page": "2"}}},
        {"id": "from_var", "type": "http_request",
         "request": {"url": format!("{}/items", api.url()), "query": {"tag": "{{wanted}}"}}},
        {"id": "mixed", "type": "http_request",
         "request": {"url": format!("{}/items?fixed=1", api.url()), "query": {"tag": ["{{wanted}}", "x"]}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let uris: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        [
            "/items?tag=retail&tag=wholesale&page=2",
            "/items?tag=retail&tag=wholesale+%26+co",
            "/items?fixed=1&tag=retail&tag=wholesale+%26+co&tag=x",
        ]
    );
}

#[test]
fn a_list_in_the_url_itself_is_a_clear_error() {
    let api = Scripted::start(vec![("/items", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "urllist", "variables": {"wanted": ["a", "b"]}, "steps": [
        {"id": "get", "type": "http_request", "request": {"url": format!("{}/items?tag={{{{wanted}}}}", api.url())}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("holds a list") && r.stderr().contains("`query`"), "{}", r.stderr());
    assert!(api.requests().is_empty());
}

// 5. A JSON token response labelled text/plain.

fn client_credentials_env(token_answer: Canned) -> (Scripted, std::path::PathBuf, Flows, Value) {
    let api = Scripted::start(vec![
        ("/token", vec![token_answer]),
        ("/me", vec![json_answer(json!({"data": {"name": "Service"}}))]),
    ]);
    let data = fresh_data_dir();
    let out = tern()
        .env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("CS", "cs_secret_value_123")
        .args([
            "integrations",
            "add",
            "svc",
            "--kind",
            "client-credentials",
            "--client-id",
            "tern",
            "--client-secret-env",
            "CS",
            "--token-url",
            &format!("{}/token", api.url()),
            "--api-origin",
            &api.url(),
        ])
        .output()
        .expect("run tern");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flow = json!({"version": 1, "id": "svc", "steps": [
        {"id": "me", "type": "fetch_variables", "integration": "svc",
         "request": {"url": format!("{}/me", api.url())}, "variables": {"name": "data.name"}},
        {"id": "say", "type": "send_message", "text": "I am {{name}}"}
    ]});
    (api, data, Flows::new(), flow)
}

fn run_with_data(data: &std::path::Path, flows: &Flows, flow: &Value) -> Run {
    let path = flows.write("svc", flow);
    let output = tern()
        .env("TERN_DATA_DIR", data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .args(["run", path.to_str().expect("path"), "-m", "go"])
        .output()
        .expect("run tern");
    Run { output }
}

#[test]
fn token_responses_are_recognised_by_shape() {
    let json_token = r#"{"access_token":"dGVybi10b2tlbi0x==","token_type":"bearer","expires_in":3600}"#;
    let cases = [
        answer(200, Some("text/plain; charset=utf-8"), json_token),
        answer(200, Some("text/html"), format!("\u{feff}{json_token}\n")),
        answer(200, Some("text/plain"), "access_token=dGVybi10b2tlbi0x%3D%3D&token_type=bearer&expires_in=3600"),
    ];
    for canned in cases {
        let ct = canned.headers.first().map(|(_, v)| v.clone());
        let (api, data, flows, flow) = client_credentials_env(canned);
        let r = run_with_data(&data, &flows, &flow);
        assert_eq!(r.code(), 0, "{ct:?}: {}", r.stderr());
        assert_eq!(r.stdout(), "I am Service\n");
        let me = api.requests().into_iter().find(|r| r.uri == "/me").expect("the API was called");
        assert_eq!(me.header("authorization"), Some("Bearer dGVybi10b2tlbi0x=="), "{ct:?}");
        assert!(!r.stderr().contains("dGVybi10b2tlbi0x"), "the token never shows");
    }
}

#[test]
fn an_unrecognisable_token_response_says_what_it_got() {
    let (_api, data, flows, flow) = client_credentials_env(answer(200, Some("text/html"), "<html>maintenance</html>"));
    let r = run_with_data(&data, &flows, &flow);
    assert_eq!(r.code(), 1);
    let err = r.stderr();
    assert!(err.contains("content type `text/html`") && err.contains("neither a JSON object nor form fields"), "{err}");
    assert!(err.contains("maintenance"), "{err}");
}

// 6. Empty JSONPath matches.

#[test]
fn empty_matches_are_empty_lists_and_keep_the_other_variables() {
    let api = Scripted::start(vec![(
        "/desk",
        vec![json_answer(json!({"desk": {"name": "Retail", "escalated": [], "open": [{"id": 1, "p": 1}]}}))],
    )]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "desk", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/desk", api.url())},
         "variables": {"escalated": "$.desk.escalated[*]", "urgent": "$.desk.open[?@.p > 5].id",
                       "name": "desk.name"}},
        {"id": "say", "type": "send_message", "text": "{{name}}: {{escalated}} {{urgent}}"}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Retail: [] []\n");

    let mut misspelled = flow.clone();
    misspelled["steps"][0]["variables"]["escalated"] = json!("$.desk.escalatd[*]");
    let r = run_flow(&flows, &misspelled, &[]);
    assert_eq!(r.code(), 1);
    let err = r.stderr();
    assert!(err.contains("`$.desk.escalatd[*]` not found: `$.desk` has no `escalatd`"), "{err}");
    assert!(err.contains("escalated"), "says what is there: {err}");
}

// 7. Integers beyond 64 bits.

#[test]
fn big_integers_keep_their_digits() {
    let api = Scripted::start(vec![
        (
            "/order",
            vec![answer(
                200,
                Some("application/json"),
                r#"{"id": 18446744073709551617, "neg": -9223372036854775809, "amount": 0.1}"#,
            )],
        ),
        ("/forward", vec![json_answer(json!({"ok": true}))]),
    ]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "big", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/order", api.url())},
         "variables": {"id": "id", "neg": "neg", "amount": "amount"}},
        {"id": "send", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/forward", api.url()),
                     "body": {"id": "{{id}}", "neg": "{{neg}}", "text": "#{{id}}", "amount": "{{amount}}"}}},
        {"id": "say", "type": "send_message", "text": "order {{id}} ({{neg}})"}
    ]});
    let r = run_flow(&flows, &flow, &["--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let stdout = r.stdout();
    assert!(stdout.contains("order 18446744073709551617 (-9223372036854775809)"), "{stdout}");
    let sent = api.requests().into_iter().find(|r| r.uri == "/forward").expect("forwarded");
    let text = String::from_utf8(sent.body).expect("utf-8");
    assert_eq!(
        text,
        r##"{"id":18446744073709551617,"neg":-9223372036854775809,"text":"#18446744073709551617","amount":0.1}"##
    );
}

// Request bodies other than JSON.

#[test]
fn form_bodies_are_form_encoded_with_repeated_keys() {
    let api = Scripted::start(vec![("/form", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "form", "variables": {"n": "Ann+Bob=1&x é", "tags": ["a", "b c"]}, "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/form", api.url()),
                     "form": {"name": "{{n}}", "tag": "{{tags}}", "extra": ["1", "{{n}}"]}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let req = &api.requests()[0];
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        "name=Ann%2BBob%3D1%26x+%C3%A9&tag=a&tag=b+c&extra=1&extra=Ann%2BBob%3D1%26x+%C3%A9"
    );
}

#[test]
fn text_bodies_use_the_declared_charset() {
    let api = Scripted::start(vec![("/text", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "text", "variables": {"n": "Zoë"}, "steps": [
        {"id": "utf8", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/text", api.url()), "text": "Hi {{n}}\n"}},
        {"id": "latin1", "type": "http_request",
         "request": {"method": "PUT", "url": format!("{}/text", api.url()), "text": "Hi {{n}}",
                     "headers": {"Content-Type": "text/csv; charset=ISO-8859-1"}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let reqs = api.requests();
    assert_eq!(reqs[0].header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reqs[0].body, "Hi Zoë\n".as_bytes());
    assert_eq!(reqs[1].header("content-type"), Some("text/csv; charset=ISO-8859-1"));
    assert_eq!(reqs[1].body, b"Hi Zo\xEB");
    assert_eq!(reqs[1].headers.get_all("content-type").iter().count(), 1);

    // A character the charset cannot hold is an error, not a silent `?`.
    let r = run_flow(&flows, &flow, &["--var", "n=Łukasz"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("cannot hold"), "{}", r.stderr());
}

#[test]
fn multipart_bodies_carry_text_fields() {
    let api = Scripted::start(vec![("/upload", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "mp", "variables": {"note": "line 1\r\nline 2 --not-a-boundary"}, "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/upload", api.url()),
                     "multipart": {"note": "{{note}}", "say \"hi\"": "x", "tag": ["a", "b"]}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let req = &api.requests()[0];
    let ct = req.header("content-type").expect("content type");
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").expect("boundary");
    let part = |name: &str, value: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let want = [
        part("note", "line 1\r\nline 2 --not-a-boundary"),
        part("say %22hi%22", "x"),
        part("tag", "a"),
        part("tag", "b"),
        format!("--{boundary}--\r\n"),
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&req.body), want);

    let mut bad = flow.clone();
    bad["steps"][0]["request"]["multipart"] = json!({"a\r\nX-Injected: 1": "x"});
    let r = run_flow(&flows, &bad, &[]);
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr().contains("contains CR, LF or NUL") && r.stderr().contains("/request/multipart"),
        "{}",
        r.stderr()
    );
    assert_eq!(api.requests().len(), 1, "nothing more was sent");
}

#[test]
fn one_body_per_request() {
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "two", "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": "https://api.example.com/x", "body": {"a": 1}, "form": {"a": "1"}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("a request has one body") && r.stderr().contains("/request/form"), "{}", r.stderr());
}

// Retries.

fn retry_flow(api: &Scripted, path: &str, method: &str, retry: Value) -> Value {
    let mut request = json!({"method": method, "url": format!("{}{path}", api.url())});
    if method != "GET" {
        request["body"] = json!({"n": 1});
    }
    json!({"version": 1, "id": "retry", "steps": [
        {"id": "call", "type": "http_request", "request": request, "retry": retry, "save_status_as": "status"},
        {"id": "say", "type": "send_message", "text": "status {{status}}"}
    ]})
}

#[test]
fn retries_back_off_and_every_attempt_is_traced() {
    let busy = answer(503, Some("text/plain"), "busy");
    let mut limited = answer(429, Some("application/json"), "{}");
    limited.headers.push(("retry-after", "1".into()));
    let api = Scripted::start(vec![("/flaky", vec![busy, limited, json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let r = run_flow(&flows, &retry_flow(&api, "/flaky", "GET", json!({"max": 3, "backoff_ms": 10})), &["--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.json();
    assert_eq!(out["replies"][0]["text"], "status 200");
    let attempts = step_trace(&out, "call")["detail"]["attempts"].as_array().expect("attempts").clone();
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(429), &json!(200)]);
    let first_wait = attempts[0]["wait_ms"].as_u64().expect("waited");
    assert!((5..=10).contains(&first_wait), "equal jitter of a 10 ms backoff: {first_wait}");
    assert_eq!(attempts[1]["wait_ms"], 1000, "Retry-After: 1 is honoured");
    assert!(attempts[2].get("wait_ms").is_none());
    assert_eq!(api.requests().len(), 3);
}

#[test]
fn retries_stop_at_max_and_skip_final_answers() {
    let api = Scripted::start(vec![
        ("/down", vec![answer(502, None, "")]),
        ("/gone", vec![answer(404, None, "")]),
        (
            "/later",
            vec![{
                let mut a = answer(503, None, "");
                a.headers.push(("retry-after", "3600".into()));
                a
            }],
        ),
    ]);
    let flows = Flows::new();
    let r = run_flow(&flows, &retry_flow(&api, "/down", "GET", json!({"max": 2, "backoff_ms": 1})), &["--json"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/down").count(), 3, "the first attempt and 2 retries");

    let r = run_flow(&flows, &retry_flow(&api, "/gone", "DELETE", json!({"max": 5, "backoff_ms": 1})), &[]);
    assert_eq!(r.code(), 1);
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/gone").count(), 1, "404 is final");

    let r = run_flow(&flows, &retry_flow(&api, "/later", "GET", json!({"max": 5})), &["--json"]);
    assert_eq!(r.code(), 1);
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/later").count(), 1, "an hour is past the deadline");
    let out = r.json();
    let attempts = &step_trace(&out, "call")["detail"]["attempts"];
    assert!(attempts[0]["gave_up"].as_str().unwrap_or("").contains("deadline"), "{attempts}");
}

#[test]
fn only_idempotent_requests_are_retried() {
    let api = Scripted::start(vec![("/orders", vec![answer(503, None, ""), json_answer(json!({"id": 1}))])]);
    let flows = Flows::new();
    let r = run_flow(&flows, &retry_flow(&api, "/orders", "POST", json!({"max": 2})), &[]);
    assert_ne!(r.code(), 0);
    let err = r.stderr();
    assert!(err.contains("/retry") && err.contains("not idempotent") && err.contains("Idempotency-Key"), "{err}");
    assert!(api.requests().is_empty());

    let mut keyed = retry_flow(&api, "/orders", "POST", json!({"max": 2, "backoff_ms": 1}));
    keyed["steps"][0]["request"]["headers"] = json!({"Idempotency-Key": "order-{{conversation.id}}"});
    let r = run_flow(&flows, &keyed, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    let keys: Vec<_> = reqs.iter().map(|r| r.header("idempotency-key").map(str::to_string)).collect();
    assert!(keys[0].is_some() && keys[0] == keys[1], "the same key on every attempt: {keys:?}");
}

#[test]
fn retry_config_is_validated() {
    let flows = Flows::new();
    let api = Scripted::start(vec![]);
    let r = run_flow(&flows, &retry_flow(&api, "/x", "GET", json!({"max": 50})), &[]);
    assert_ne!(r.code(), 0);
    // Validation names the place and the range (the schema says what the step accepts).
    let err = r.stderr();
    assert!(err.contains("/steps/0/retry/max") && err.contains("from 0 to 10") && err.contains("50"), "{err}");
}

// Status-dependent mapping.

#[test]
fn accepted_non_2xx_answers_are_not_mapped_unless_asked() {
    let api = Scripted::start(vec![
        ("/contact/1", vec![json_answer(json!({"data": {"name": "Ann"}}))]),
        ("/contact/2", vec![answer(404, Some("application/json"), r#"{"errors":[{"title":"Not found"}]}"#)]),
    ]);
    let flows = Flows::new();
    let flow = |id: &str| {
        json!({"version": 1, "id": "lookup", "steps": [
            {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/contact/{id}", api.url())},
             "accept_status": ["2xx", 404], "save_status_as": "status",
             "variables": {"name": {"path": "data.name", "default": "stranger"}, "raw": "data"}},
            {"id": "route", "type": "branch", "cases": [{"when": {"var": "status", "equals": 404}, "next": "unknown"}]},
            {"id": "known", "type": "send_message", "text": "Hello {{name}}", "next": "end"},
            {"id": "unknown", "type": "send_message", "text": "No contact; hello {{name}}"}
        ]})
    };
    let r = run_flow(&flows, &flow("1"), &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Hello Ann\n");
    let r = run_flow(&flows, &flow("2"), &["--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.json();
    assert_eq!(out["replies"][0]["text"], "No contact; hello stranger");
    assert!(step_trace(&out, "get")["detail"]["mapping"].as_str().unwrap_or("").contains("skipped: status 404"));

    let mut map_404 = flow("2");
    map_404["steps"][0]["map_status"] = json!(["2xx", 404]);
    map_404["steps"][0]["variables"] =
        json!({"title": "$.errors[0].title", "name": {"path": "data.name", "default": "-"}});
    map_404["steps"][3]["text"] = json!("{{title}}");
    let r = run_flow(&flows, &map_404, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Not found\n");
}

// Defaults in templates.

#[test]
fn template_defaults_fill_missing_and_empty_values() {
    let api = Scripted::start(vec![("/hello", vec![json_answer(json!({"ok": true}))])]);
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "greet", "variables": {"nick": ""}, "steps": [
        {"id": "say", "type": "send_message",
         "text": "Hi {{nick | default: \"there\"}}, {{contact.name | default: \"friend\"}}"},
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/hello", api.url()),
                     "query": {"who": "{{nick|default:\"anon\"}}"},
                     "body": {"count": "{{contact.count | default: 0}}"}}}
    ]});
    let r = run_flow(&flows, &flow, &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "Hi there, friend\n");
    let req = &api.requests()[0];
    assert_eq!(req.uri, "/hello?who=anon");
    assert_eq!(req.json(), json!({"count": 0}), "a whole-placeholder default keeps its JSON type");

    let r = run_flow(&flows, &flow, &["--var", "nick=Bo"]);
    assert_eq!(r.stdout(), "Hi Bo, friend\n");

    let mut filter = flow.clone();
    filter["steps"][0]["text"] = json!("{{nick | upcase}}");
    let r = run_flow(&flows, &filter, &[]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("the only filter is `| default:"), "{}", r.stderr());
}
