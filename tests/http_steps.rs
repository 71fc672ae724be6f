//! `tern run` with HTTP steps against a real HTTP server on loopback: what the command prints
//! and exits with, and secrets from the environment. What the steps do (the exact request,
//! mapping, errors, the outbound policy) is tested in process: steps/tests/flows/http_steps.rs.

use serde_json::json;

use crate::support::fixtures::{teamleader_flow, without_error_path};
use crate::support::{Flows, TestApi, run};

fn run_flow(path: &std::path::Path, messages: &[&str], extra: &[&str]) -> crate::support::Run {
    let mut args: Vec<String> = vec!["run".into(), path.display().to_string(), "--allow-private-network".into()];
    for m in messages {
        args.push("--message".into());
        args.push((*m).into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    run(args)
}

#[test]
fn fetch_variables_maps_last_name() {
    let api = TestApi::start();
    let flows = Flows::new();
    let path = flows.write("tl", &teamleader_flow(&api));
    let r = run_flow(&path, &["last name", "c1a2"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "What is your Teamleader contact ID?\nHello Erlich Bachman <erlich@piedpiper.com>!\n");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].uri, "/contacts.info");
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].json(), json!({"id": "c1a2"}));
    assert!(reqs[0].header("authorization").is_none());
}

#[test]
fn missing_field_names_path_and_what_was_found() {
    let api = TestApi::start();
    let flows = Flows::new();
    let flow = without_error_path(teamleader_flow(&api));
    let path = flows.write("tl", &flow);
    let r = run_flow(&path, &["last name", "no-last-name"], &[]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("step `lookup` failed [mapping]"), "{err}");
    assert!(err.contains("`data.last_name` not found: `data` has no `last_name` (it has id, first_name)"), "{err}");
}

#[test]
fn secrets_are_masked_in_output() {
    let api = TestApi::start();
    let flows = Flows::new();
    let flow = json!({"version": 1, "id": "sec", "steps": [
        {"id": "get", "type": "http_request",
         "request": {"url": format!("{}/status/404?key={{{{secrets.API_KEY}}}}", api.url()),
                     "headers": {"X-Key": "{{secrets.API_KEY}}"}},
         "save_response_as": "echo"},
        {"id": "say", "type": "send_message", "text": "echo: {{echo.uri}}"}
    ]});
    let path = flows.write("sec", &flow);
    let out = crate::support::tern()
        .env("TERN_SECRET_API_KEY", "sk_live_very_secret_value")
        .args(["run", path.to_str().unwrap(), "-m", "go", "--allow-private-network", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(api.requests()[0].header("x-key"), Some("sk_live_very_secret_value"), "the API gets the secret");
    assert!(
        !stdout.contains("sk_live_very_secret_value") && !stderr.contains("sk_live_very_secret_value"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("[redacted]"), "{stdout}");
}

/// What an API answers reaches the operator's terminal without its control characters: no
/// escape sequence can retitle or clear it (the error, the notes, the replies).
#[test]
fn an_apis_escape_sequences_never_reach_the_terminal() {
    let api = TestApi::start();
    let flows = Flows::new();
    let path = flows.write(
        "esc",
        &json!({"version": 1, "id": "esc", "steps": [
            {"id": "call", "type": "http_request", "request": {"method": "GET", "url": format!("{}/escapes", api.url())}}
        ]}),
    );
    let r = run_flow(&path, &["hi"], &[]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("answered 500") && err.contains("cleared"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\r'), "{err:?}");
    assert!(err.contains('\u{FFFD}'), "shown as replacement characters: {err:?}");
}
