//! APIs as they really answer (issue 11), each against a scripted server on loopback: declared
//! charsets, byte order marks, empty bodies, repeated query parameters, empty JSONPath
//! matches, integers beyond 64 bits; and the request features designers expect: form, text
//! and multipart bodies, retries, status-dependent mapping and `| default:` in templates.
//! (Token responses of an integration, which need the store: tests/real_apis.rs.)

use serde_json::{Map, Value, json};
use testkit::scripted::{Scripted, answer, json_answer};
use testkit::service::{Conversation, Service};

/// Runs `flow` once, started by "go".
async fn run(flow: &Value) -> Conversation {
    run_with(flow, Map::new()).await
}

/// [`run`] with variables set before the run.
async fn run_with(flow: &Value, variables: Map<String, Value>) -> Conversation {
    Service::builder().flow(flow).start().converse_with(variables, &["go"]).await
}

/// Asserts that the run completed, and returns its replies.
fn completed(c: &Conversation) -> Vec<String> {
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    c.replies()
}

// 1. Declared charsets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_charsets_are_decoded() {
    let (latin9, _, _) =
        encoding_rs::ISO_8859_15.encode(r#"{"data":{"last_name":"Müller-Lüdenscheidt","price":"12,50 €"}}"#);
    assert!(std::str::from_utf8(&latin9).is_err(), "the body really is Latin-9");
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode("Grüße – “quoted”");
    let api = Scripted::start(vec![
        ("/contact", vec![answer(200, Some("application/json; charset=ISO-8859-15"), latin9.into_owned())]),
        ("/note", vec![answer(200, Some("text/plain; charset=windows-1252"), cp1252.into_owned())]),
    ]);
    let flow = json!({"version": 1, "id": "latin9", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/contact", api.url())},
         "variables": {"last_name": "data.last_name", "price": "$.data.price"}},
        {"id": "note", "type": "http_request", "request": {"url": format!("{}/note", api.url())},
         "save_response_as": "note"},
        {"id": "say", "type": "send_message", "text": "{{last_name}} pays {{price}}; {{note}}"}
    ]});
    assert_eq!(completed(&run(&flow).await), ["Müller-Lüdenscheidt pays 12,50 €; Grüße – “quoted”"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_mismatched_charsets_are_clear_errors() {
    let api = Scripted::start(vec![
        ("/klingon", vec![answer(200, Some("application/json; charset=x-klingon"), r#"{"data":{}}"#)]),
        ("/lying", vec![answer(200, Some("application/json; charset=utf-8"), b"{\"a\":\"M\xfcller\"}".to_vec())]),
    ]);
    for (path, want) in [
        ("/klingon", "declares charset `x-klingon`, which is not a known encoding"),
        ("/lying", "the body is not valid UTF-8 text"),
    ] {
        let flow = json!({"version": 1, "id": "cs", "steps": [
            {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}{path}", api.url())},
             "variables": {"a": "a"}}
        ]});
        let c = run(&flow).await;
        let err = c.failed_at("get", "not-json");
        assert!(err.contains(want), "{path}: {err}");
    }
}

// 2. Byte order marks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_marks_are_ignored() {
    let mut utf8 = b"\xEF\xBB\xBF".to_vec();
    utf8.extend_from_slice(br#"{"data":{"name":"Zo\u00eb"}}"#);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(r#"{"data":{"name":"Łukasz"}}"#.encode_utf16().flat_map(u16::to_le_bytes));
    let api = Scripted::start(vec![
        ("/utf8", vec![answer(200, Some("application/json"), utf8)]),
        ("/utf16", vec![answer(200, Some("application/json"), utf16)]),
    ]);
    let flow = json!({"version": 1, "id": "bom", "steps": [
        {"id": "a", "type": "fetch_variables", "request": {"url": format!("{}/utf8", api.url())},
         "variables": {"a": "data.name"}},
        {"id": "b", "type": "http_request", "request": {"url": format!("{}/utf16", api.url())},
         "variables": {"b": "data.name"}},
        {"id": "say", "type": "send_message", "text": "{{a}} and {{b}}"}
    ]});
    assert_eq!(completed(&run(&flow).await), ["Zoë and Łukasz"]);
}

// 3. 204 and empty bodies.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bodies_are_no_fields() {
    let api = Scripted::start(vec![
        ("/plain204", vec![answer(204, None, "")]),
        ("/json204", vec![answer(204, Some("application/json"), "")]),
        ("/blank200", vec![answer(200, Some("application/json"), " \r\n")]),
    ]);
    for path in ["/plain204", "/json204", "/blank200"] {
        let flow = json!({"version": 1, "id": "archive", "steps": [
            {"id": "archive", "type": "http_request",
             "request": {"method": "POST", "url": format!("{}{path}", api.url()), "body": {"id": 7}},
             "variables": {"archived_at": {"path": "data.archived_at", "default": "now"}},
             "save_response_as": "body"},
            {"id": "say", "type": "send_message", "text": "archived {{archived_at}} body=[{{body}}]"}
        ]});
        assert_eq!(completed(&run(&flow).await), ["archived now body=[]"], "{path}");

        let mut without_default = flow.clone();
        without_default["steps"][0]["variables"] = json!({"archived_at": "data.archived_at"});
        let c = run(&without_default).await;
        let err = c.failed_at("archive", "mapping");
        assert!(err.contains("the response body was empty"), "{path}: {err}");
        assert!(!err.contains("not JSON") && !err.contains("EOF"), "{path}: {err}");
    }
}

// 4. Repeated query parameters.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_become_repeated_query_parameters() {
    let api = Scripted::start(vec![("/items", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "tags", "variables": {"wanted": ["retail", "wholesale & co"]}, "steps": [
        {"id": "literal", "type": "http_request",
         "request": {"url": format!("{}/items", api.url()), "query": {"tag": ["retail", "wholesale"], "page": "2"}}},
        {"id": "from_var", "type": "http_request",
         "request": {"url": format!("{}/items", api.url()), "query": {"tag": "{{wanted}}"}}},
        {"id": "mixed", "type": "http_request",
         "request": {"url": format!("{}/items?fixed=1", api.url()), "query": {"tag": ["{{wanted}}", "x"]}}}
    ]});
    completed(&run(&flow).await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_in_the_url_itself_is_a_clear_error() {
    let api = Scripted::start(vec![("/items", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "urllist", "variables": {"wanted": ["a", "b"]}, "steps": [
        {"id": "get", "type": "http_request", "request": {"url": format!("{}/items?tag={{{{wanted}}}}", api.url())}}
    ]});
    let c = run(&flow).await;
    let err = c.failure().message.clone();
    assert_eq!(c.json()["status"], "failed");
    assert!(err.contains("holds a list") && err.contains("`query`"), "{err}");
    assert!(api.requests().is_empty());
}

// 6. Empty JSONPath matches.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_matches_are_empty_lists_and_keep_the_other_variables() {
    let api = Scripted::start(vec![(
        "/desk",
        vec![json_answer(json!({"desk": {"name": "Retail", "escalated": [], "open": [{"id": 1, "p": 1}]}}))],
    )]);
    let flow = json!({"version": 1, "id": "desk", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/desk", api.url())},
         "variables": {"escalated": "$.desk.escalated[*]", "urgent": "$.desk.open[?@.p > 5].id",
                       "name": "desk.name"}},
        {"id": "say", "type": "send_message", "text": "{{name}}: {{escalated}} {{urgent}}"}
    ]});
    assert_eq!(completed(&run(&flow).await), ["Retail: [] []"]);

    let mut misspelled = flow.clone();
    misspelled["steps"][0]["variables"]["escalated"] = json!("$.desk.escalatd[*]");
    let c = run(&misspelled).await;
    let err = c.failed_at("get", "mapping");
    assert!(err.contains("`$.desk.escalatd[*]` not found: `$.desk` has no `escalatd`"), "{err}");
    assert!(err.contains("escalated"), "says what is there: {err}");
}

// 7. Integers beyond 64 bits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_integers_keep_their_digits() {
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
    let flow = json!({"version": 1, "id": "big", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/order", api.url())},
         "variables": {"id": "id", "neg": "neg", "amount": "amount"}},
        {"id": "send", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/forward", api.url()),
                     "body": {"id": "{{id}}", "neg": "{{neg}}", "text": "#{{id}}", "amount": "{{amount}}"}}},
        {"id": "say", "type": "send_message", "text": "order {{id}} ({{neg}})"}
    ]});
    let c = run(&flow).await;
    assert_eq!(completed(&c), ["order 18446744073709551617 (-9223372036854775809)"]);
    // Also as JSON (what `tern run --json` prints).
    let out = c.json().to_string();
    assert!(out.contains("order 18446744073709551617 (-9223372036854775809)"), "{out}");
    let sent = api.requests().into_iter().find(|r| r.uri == "/forward").expect("forwarded");
    let text = String::from_utf8(sent.body).expect("utf-8");
    assert_eq!(
        text,
        r##"{"id":18446744073709551617,"neg":-9223372036854775809,"text":"#18446744073709551617","amount":0.1}"##
    );
}

// Request bodies other than JSON.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_bodies_are_form_encoded_with_repeated_keys() {
    let api = Scripted::start(vec![("/form", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "form", "variables": {"n": "Ann+Bob=1&x é", "tags": ["a", "b c"]}, "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/form", api.url()),
                     "form": {"name": "{{n}}", "tag": "{{tags}}", "extra": ["1", "{{n}}"]}}}
    ]});
    completed(&run(&flow).await);
    let req = &api.requests()[0];
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        "name=Ann%2BBob%3D1%26x+%C3%A9&tag=a&tag=b+c&extra=1&extra=Ann%2BBob%3D1%26x+%C3%A9"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_bodies_use_the_declared_charset() {
    let api = Scripted::start(vec![("/text", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "text", "variables": {"n": "Zoë"}, "steps": [
        {"id": "utf8", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/text", api.url()), "text": "Hi {{n}}\n"}},
        {"id": "latin1", "type": "http_request",
         "request": {"method": "PUT", "url": format!("{}/text", api.url()), "text": "Hi {{n}}",
                     "headers": {"Content-Type": "text/csv; charset=ISO-8859-1"}}}
    ]});
    completed(&run(&flow).await);
    let reqs = api.requests();
    assert_eq!(reqs[0].header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reqs[0].body, "Hi Zoë\n".as_bytes());
    assert_eq!(reqs[1].header("content-type"), Some("text/csv; charset=ISO-8859-1"));
    assert_eq!(reqs[1].body, b"Hi Zo\xEB");
    assert_eq!(reqs[1].headers.get_all("content-type").iter().count(), 1);

    // A character the charset cannot hold is an error, not a silent `?`.
    let c = run_with(&flow, Map::from_iter([("n".to_string(), json!("Łukasz"))])).await;
    assert_eq!(c.json()["status"], "failed");
    assert!(c.failure().message.contains("cannot hold"), "{:?}", c.failure());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_bodies_carry_text_fields() {
    let api = Scripted::start(vec![("/upload", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "mp", "variables": {"note": "line 1\r\nline 2 --not-a-boundary"}, "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/upload", api.url()),
                     "multipart": {"note": "{{note}}", "say \"hi\"": "x", "tag": ["a", "b"]}}}
    ]});
    completed(&run(&flow).await);
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
    let err = Service::builder().flow(&bad).refused();
    assert!(err.contains("contains CR, LF or NUL") && err.contains("/request/multipart"), "{err}");
    assert_eq!(api.requests().len(), 1, "nothing more was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_per_request() {
    let flow = json!({"version": 1, "id": "two", "steps": [
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": "https://api.example.com/x", "body": {"a": 1}, "form": {"a": "1"}}}
    ]});
    let err = Service::builder().flow(&flow).refused();
    assert!(err.contains("a request has one body") && err.contains("/request/form"), "{err}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_and_every_attempt_is_traced() {
    let busy = answer(503, Some("text/plain"), "busy");
    let mut limited = answer(429, Some("application/json"), "{}");
    limited.headers.push(("retry-after", "1".into()));
    let api = Scripted::start(vec![("/flaky", vec![busy, limited, json_answer(json!({"ok": true}))])]);
    let c = run(&retry_flow(&api, "/flaky", "GET", json!({"max": 3, "backoff_ms": 10}))).await;
    assert_eq!(completed(&c), ["status 200"]);
    let attempts = c.step("call")["detail"]["attempts"].as_array().expect("attempts").clone();
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(429), &json!(200)]);
    let first_wait = attempts[0]["wait_ms"].as_u64().expect("waited");
    assert!((5..=10).contains(&first_wait), "equal jitter of a 10 ms backoff: {first_wait}");
    assert_eq!(attempts[1]["wait_ms"], 1000, "Retry-After: 1 is honoured");
    assert!(attempts[2].get("wait_ms").is_none());
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_and_skip_final_answers() {
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
    let c = run(&retry_flow(&api, "/down", "GET", json!({"max": 2, "backoff_ms": 1}))).await;
    assert_eq!(c.json()["status"], "failed", "{:#}", c.json());
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/down").count(), 3, "the first attempt and 2 retries");

    let c = run(&retry_flow(&api, "/gone", "DELETE", json!({"max": 5, "backoff_ms": 1}))).await;
    assert_eq!(c.json()["status"], "failed", "{:#}", c.json());
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/gone").count(), 1, "404 is final");

    let c = run(&retry_flow(&api, "/later", "GET", json!({"max": 5}))).await;
    assert_eq!(c.json()["status"], "failed", "{:#}", c.json());
    assert_eq!(api.requests().iter().filter(|r| r.uri == "/later").count(), 1, "an hour is past the deadline");
    let attempts = &c.step("call")["detail"]["attempts"];
    assert!(attempts[0]["gave_up"].as_str().unwrap_or("").contains("deadline"), "{attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried() {
    let api = Scripted::start(vec![("/orders", vec![answer(503, None, ""), json_answer(json!({"id": 1}))])]);
    let err = Service::builder().flow(&retry_flow(&api, "/orders", "POST", json!({"max": 2}))).refused();
    assert!(err.contains("/retry") && err.contains("not idempotent") && err.contains("Idempotency-Key"), "{err}");
    assert!(api.requests().is_empty());

    let mut keyed = retry_flow(&api, "/orders", "POST", json!({"max": 2, "backoff_ms": 1}));
    keyed["steps"][0]["request"]["headers"] = json!({"Idempotency-Key": "order-{{conversation.id}}"});
    completed(&run(&keyed).await);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    let keys: Vec<_> = reqs.iter().map(|r| r.header("idempotency-key").map(str::to_string)).collect();
    assert!(keys[0].is_some() && keys[0] == keys[1], "the same key on every attempt: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_config_is_validated() {
    let api = Scripted::start(vec![]);
    // Validation names the place and the range (the schema says what the step accepts).
    let err = Service::builder().flow(&retry_flow(&api, "/x", "GET", json!({"max": 50}))).refused();
    assert!(err.contains("/steps/0/retry/max") && err.contains("from 0 to 10") && err.contains("50"), "{err}");
}

// Status-dependent mapping.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_non_2xx_answers_are_not_mapped_unless_asked() {
    let api = Scripted::start(vec![
        ("/contact/1", vec![json_answer(json!({"data": {"name": "Ann"}}))]),
        ("/contact/2", vec![answer(404, Some("application/json"), r#"{"errors":[{"title":"Not found"}]}"#)]),
    ]);
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
    assert_eq!(completed(&run(&flow("1")).await), ["Hello Ann"]);
    let c = run(&flow("2")).await;
    assert_eq!(completed(&c), ["No contact; hello stranger"]);
    assert!(c.step("get")["detail"]["mapping"].as_str().unwrap_or("").contains("skipped: status 404"));

    let mut map_404 = flow("2");
    map_404["steps"][0]["map_status"] = json!(["2xx", 404]);
    map_404["steps"][0]["variables"] =
        json!({"title": "$.errors[0].title", "name": {"path": "data.name", "default": "-"}});
    map_404["steps"][3]["text"] = json!("{{title}}");
    assert_eq!(completed(&run(&map_404).await), ["Not found"]);
}

// Defaults in templates.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_defaults_fill_missing_and_empty_values() {
    let api = Scripted::start(vec![("/hello", vec![json_answer(json!({"ok": true}))])]);
    let flow = json!({"version": 1, "id": "greet", "variables": {"nick": ""}, "steps": [
        {"id": "say", "type": "send_message",
         "text": "Hi {{nick | default: \"there\"}}, {{contact.name | default: \"friend\"}}"},
        {"id": "post", "type": "http_request",
         "request": {"method": "POST", "url": format!("{}/hello", api.url()),
                     "query": {"who": "{{nick|default:\"anon\"}}"},
                     "body": {"count": "{{contact.count | default: 0}}"}}}
    ]});
    assert_eq!(completed(&run(&flow).await), ["Hi there, friend"]);
    let req = &api.requests()[0];
    assert_eq!(req.uri, "/hello?who=anon");
    assert_eq!(req.json(), json!({"count": 0}), "a whole-placeholder default keeps its JSON type");

    let c = run_with(&flow, Map::from_iter([("nick".to_string(), json!("Bo"))])).await;
    assert_eq!(completed(&c), ["Hi Bo, friend"]);

    let mut filter = flow.clone();
    filter["steps"][0]["text"] = json!("{{nick | upcase}}");
    let err = Service::builder().flow(&filter).refused();
    assert!(err.contains("the only filter is `| default:"), "{err}");
}
