//! APIs as they really answer (issue 11): token responses labelled `text/plain` (or with a
//! byte order mark, or form-encoded) from a scripted token endpoint on loopback, through an
//! integration added with `tern integrations add` and used by `tern run`. Everything else of
//! issue 11 (charsets, byte order marks, empty bodies, repeated query parameters, empty
//! JSONPath matches, big integers, form, text and multipart bodies, retries, status-dependent
//! mapping, `| default:`) is tested in process: steps/tests/flows/real_apis.rs.

use serde_json::{Value, json};

use crate::support::scripted::{Canned, Scripted, answer, json_answer};
use crate::support::{Flows, Run, fresh_data_dir, tern};

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
