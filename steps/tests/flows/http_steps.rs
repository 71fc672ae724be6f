//! `fetch_variables` and `http_request` against a real HTTP server on loopback: the exact
//! request it received, response mapping, errors, and the outbound policy. (`tern run`'s own
//! output for the same flows: tests/http_steps.rs.)

use serde_json::{Map, Value, json};
use testkit::TestApi;
use testkit::fixtures::{teamleader_flow, without_error_path};
use testkit::service::Service;

/// `v` set to `value` before the run (`tern run --var v=…`).
fn var_v(value: Value) -> Map<String, Value> {
    Map::from_iter([("v".to_string(), value)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_variables_maps_last_name() {
    let api = TestApi::start();
    let service = Service::builder().flow(&teamleader_flow(&api)).start();
    let c = service.converse(&["last name", "c1a2"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(c.replies(), ["What is your Teamleader contact ID?", "Hello Erlich Bachman <erlich@piedpiper.com>!"]);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].uri, "/contacts.info");
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].json(), json!({"id": "c1a2"}));
    assert!(reqs[0].header("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_takes_the_error_path() {
    let api = TestApi::start();
    let service = Service::builder().flow(&teamleader_flow(&api)).start();
    let out = service.converse(&["last name", "nobody"]).await.json();
    assert_eq!(out["status"], "completed");
    assert_eq!(out["replies"][1]["text"], "I could not find contact nobody.");
    let lookup = out["trace"].as_array().unwrap().iter().find(|t| t["step"] == "lookup").unwrap();
    assert_eq!(lookup["status"], "error_handled");
    assert_eq!(lookup["error"]["code"], "http-status");
    assert!(lookup["error"]["message"].as_str().unwrap().contains("404"));
    assert_eq!(lookup["detail"]["response"]["status"], 404);
    assert!(lookup["duration_us"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_field_names_path_and_what_was_found() {
    let api = TestApi::start();
    let service = Service::builder().flow(&without_error_path(teamleader_flow(&api))).start();
    let c = service.converse(&["last name", "no-last-name"]).await;
    let err = c.failed_at("lookup", "mapping");
    assert!(err.contains("`data.last_name` not found: `data` has no `last_name` (it has id, first_name)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_fill_missing_fields() {
    let api = TestApi::start();
    let mut flow = teamleader_flow(&api);
    flow["steps"][1]["variables"]["last_name"] = json!({"path": "data.last_name", "default": "(unknown)"});
    flow["steps"][1]["variables"]["email"] = json!({"path": "$.data.emails[0].email", "default": "-"});
    let service = Service::builder().flow(&flow).start();
    let c = service.converse(&["last name", "no-last-name"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert!(c.replies().contains(&"Hello Solo (unknown) <->!".to_string()), "{:?}", c.replies());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_response_is_a_clear_error() {
    let api = TestApi::start();
    let mut flow = without_error_path(teamleader_flow(&api));
    flow["steps"][1]["accept_status"] = json!(["2xx", "5xx"]);
    // Accepted non-2xx answers are mapped only when the step asks for it (issue 11).
    flow["steps"][1]["map_status"] = json!(["2xx", "5xx"]);
    let service = Service::builder().flow(&flow).start();
    let c = service.converse(&["last name", "html"]).await;
    let err = c.failed_at("lookup", "not-json");
    assert!(err.contains("status 500") && err.contains("content type `text/html`"), "{err}");
}

fn echo_flow(api: &TestApi, url_suffix: &str) -> Value {
    json!({
        "version": 1, "id": "echo",
        "variables": {"v": ""},
        "steps": [
            {"id": "call", "type": "http_request",
             "request": {"method": "POST", "url": format!("{}{url_suffix}", api.url()),
                         "headers": {"X-Value": "{{v}}"},
                         "body": {"v": "{{v}}", "wrapped": "<{{v}}>", "n": 1}},
             "save_response_as": "resp"},
            {"id": "done", "type": "send_message", "text": "ok"}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_cannot_change_path_query_or_body() {
    let api = TestApi::start();
    let service = Service::builder().flow(&echo_flow(&api, "/items/{{v}}?q={{v}}&x=1")).start();
    let cases = [
        ("../admin", "/items/..%2Fadmin?q=..%2Fadmin&x=1"),
        ("a?b=1#c", "/items/a%3Fb%3D1%23c?q=a%3Fb%3D1%23c&x=1"),
        (r#""},"x":1"#, "/items/%22%7D%2C%22x%22%3A1?q=%22%7D%2C%22x%22%3A1&x=1"),
        ("a b&c=d", "/items/a%20b%26c%3Dd?q=a%20b%26c%3Dd&x=1"),
    ];
    for (value, want_uri) in cases {
        let before = api.requests().len();
        let c = service.converse_with(var_v(json!(value)), &["go"]).await;
        assert_eq!(c.json()["status"], "completed", "{value}: {:#}", c.json());
        let req = api.requests()[before].clone();
        assert_eq!(req.uri, want_uri, "value {value:?}");
        assert_eq!(req.json(), json!({"v": value, "wrapped": format!("<{value}>"), "n": 1}), "value {value:?}");
        assert_eq!(req.header("x-value"), Some(value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_string_template_keeps_json_type() {
    let api = TestApi::start();
    let service = Service::builder().flow(&echo_flow(&api, "/typed")).start();
    let c = service.converse_with(var_v(json!({"nested": [1, true]})), &["go"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    let body = api.requests()[0].json();
    assert_eq!(body["v"], json!({"nested": [1, true]}));
    assert_eq!(body["wrapped"], json!(r#"<{"nested":[1,true]}>"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_crlf_are_rejected_before_sending() {
    let api = TestApi::start();
    let service = Service::builder().flow(&echo_flow(&api, "/items/{{v}}")).start();
    let c = service.converse_with(var_v(json!("..")), &["go"]).await;
    let err = c.failed_at("call", "template");
    assert!(err.contains("would change the URL"), "{err}");
    let service = Service::builder().flow(&echo_flow(&api, "/ok")).start();
    let c = service.converse_with(var_v(json!("a\r\nX-Injected: 1")), &["go"]).await;
    let err = c.failed_at("call", "template");
    assert!(err.contains("CR, LF or NUL"), "{err}");
    assert!(api.requests().is_empty(), "nothing may be sent: {:?}", api.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_denied_by_default() {
    let api = TestApi::start();
    let service = Service::builder().flow(&teamleader_flow(&api)).deny_private_network().start();
    let c = service.converse(&["last name", "c1a2"]).await;
    assert_eq!(c.json()["status"], "completed", "the flow handles the error: {:#}", c.json());
    let lookup = c.step("lookup");
    assert_eq!(lookup["error"]["code"], "http-denied");
    assert!(lookup["error"]["message"].as_str().unwrap().contains("loopback"), "{lookup}");
    // The same through a host name that resolves to loopback.
    let mut flow = teamleader_flow(&api);
    flow["steps"][1]["request"]["url"] = json!(format!("{}/contacts.info", api.other_origin_url()));
    let service = Service::builder().flow(&flow).deny_private_network().start();
    let lookup = service.converse(&["last name", "c1a2"]).await.step("lookup");
    assert_eq!(lookup["error"]["code"], "http-denied", "{lookup}");
    assert!(api.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_rechecked() {
    let api = TestApi::start();
    // Same origin: headers kept.
    let service = Service::builder().flow(&echo_flow(&api, "/redirect?to=/landed")).start();
    let c = service.converse_with(var_v(json!("secret-ish")), &["go"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].uri, "/landed");
    assert_eq!(reqs[1].method, "GET", "302 after POST becomes GET");
    assert_eq!(reqs[1].header("x-value"), Some("secret-ish"));

    // Another origin: every header the flow set is dropped.
    let target = format!("{}/elsewhere", api.other_origin_url());
    let service = Service::builder().flow(&echo_flow(&api, &format!("/redirect?to={}", urlencode(&target)))).start();
    let c = service.converse_with(var_v(json!("secret-ish")), &["go"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    let reqs = api.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[3].uri, "/elsewhere");
    assert_eq!(reqs[3].header("host"), Some(format!("localhost:{}", api.addr.port()).as_str()));
    assert!(reqs[3].header("x-value").is_none(), "flow headers must not cross origins");

    // Loops stop after 5 redirects.
    let service = Service::builder().flow(&echo_flow(&api, "/loop")).start();
    let before = api.requests().len();
    let c = service.converse(&["go"]).await;
    let err = c.failed_at("call", "http");
    assert!(err.contains("redirected more than 5 times"), "{err}");
    assert_eq!(api.requests().len() - before, 6, "the first request and 5 redirects");
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_is_capped_after_decompression() {
    let api = TestApi::start();
    let flow = json!({"version": 1, "id": "big", "steps": [
        {"id": "get", "type": "fetch_variables", "request": {"url": format!("{}/gzip-bomb", api.url())},
         "variables": {"a": "a"}}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    let err = c.failed_at("get", "http-too-large");
    assert!(err.contains("10485760 bytes"), "{err}");
    let req = &api.requests()[0];
    assert!(req.header("accept-encoding").unwrap_or("").contains("gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_timeout_is_enforced() {
    let api = TestApi::start();
    let flow = json!({"version": 1, "id": "slow", "steps": [
        {"id": "get", "type": "http_request", "request": {"url": format!("{}/slow", api.url()), "timeout_ms": 300}}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    let err = c.failed_at("get", "http-timeout");
    assert!(err.contains("timed out after 300 ms"), "{err}");
    // The run ended before the server answered (it answers after a minute): Tern gave up on its
    // own deadline rather than waiting for the slow server.
    assert_eq!(api.requests().len(), 1, "the request was sent");
    assert_eq!(api.slow_answered(), 0, "did not wait for the slow server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_keeps_non_json_body_as_text() {
    let api = TestApi::start();
    let flow = json!({"version": 1, "id": "html", "steps": [
        {"id": "get", "type": "http_request", "request": {"url": format!("{}/html", api.url())},
         "save_response_as": "page", "save_status_as": "status"},
        {"id": "say", "type": "send_message", "text": "{{status}}: {{page}}"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["go"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(c.replies(), ["200: <!doctype html><p>hello</p>"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_output() {
    let api = TestApi::start();
    let flow = json!({"version": 1, "id": "sec", "steps": [
        {"id": "get", "type": "http_request",
         "request": {"url": format!("{}/status/404?key={{{{secrets.API_KEY}}}}", api.url()),
                     "headers": {"X-Key": "{{secrets.API_KEY}}"}},
         "save_response_as": "echo"},
        {"id": "say", "type": "send_message", "text": "echo: {{echo.uri}}"}
    ]});
    let service = Service::builder().flow(&flow).secret("API_KEY", "sk_live_very_secret_value").start();
    let c = service.converse(&["go"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(api.requests()[0].header("x-key"), Some("sk_live_very_secret_value"), "the API gets the secret");
    // Nowhere in what the run gives back: replies, variables, trace, error.
    let out = format!("{:?}\n{}", c.answers, c.json());
    assert!(!out.contains("sk_live_very_secret_value"), "{out}");
    assert!(out.contains("[redacted]"), "{out}");
}
