//! Run history from the outside: `GET /v1/runs` (filters, pages) and `tern runs list|show`
//! reading the store of a running `tern serve`.

use serde_json::{Value, json};

use crate::serve::{Server, admin_get, flows_dir, post, rt};
use crate::support::{TestApi, fresh_data_dir, run};

#[test]
fn runs_are_listed_filtered_paged_and_shown_by_the_api_and_the_cli() {
    let api = TestApi::start();
    let (_keep, flows) = flows_dir(&api);
    let data = fresh_data_dir();
    let server = Server::start(&data, &flows);
    let rt = rt();
    let client = reqwest::Client::new();
    let runs = rt.block_on(async {
        // c-1 pauses and resumes (two activations of one run); c-2..c-4 only pause.
        post(&client, &server.url, "c-1", json!({"text": "last name", "contact": {"id": "u1"}})).await;
        post(&client, &server.url, "c-1", json!({"text": "c1a2"})).await;
        for c in ["c-2", "c-3", "c-4"] {
            post(&client, &server.url, c, json!({"text": "start"})).await;
        }
        // History is written in the background: wait for all four runs.
        for _ in 0..100 {
            let page = admin_get(&client, &server.url, "/v1/runs").await;
            let runs = page["runs"].as_array().unwrap().clone();
            if runs.len() == 4 && runs.iter().any(|r| r["status"] == "completed") {
                return runs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("four runs never appeared");
    });
    let completed: Vec<&Value> = runs.iter().filter(|r| r["status"] == "completed").collect();
    assert_eq!(completed.len(), 1);
    let tl = completed[0];
    assert_eq!(tl["conversation_id"], "c-1");
    assert_eq!(tl["contact_id"], "u1");
    assert_eq!(tl["flow_id"], "teamleader-last-name");
    let tl_run = tl["run_id"].as_str().unwrap().to_string();

    rt.block_on(async {
        let paused = admin_get(&client, &server.url, "/v1/runs?status=paused&flow=echo").await;
        assert_eq!(paused["runs"].as_array().unwrap().len(), 3, "{paused}");
        let c1 = admin_get(&client, &server.url, "/v1/runs?conversation=c-1").await;
        assert_eq!(c1["runs"][0]["run_id"], tl_run.as_str());
        // Pages of one: every run once, then no `next`.
        let mut seen = Vec::new();
        let mut path = "/v1/runs?limit=1".to_string();
        loop {
            let page = admin_get(&client, &server.url, &path).await;
            seen.push(page["runs"][0]["run_id"].clone());
            match page["next"].as_str() {
                Some(next) => path = format!("/v1/runs?limit=1&after={}", urlencode(next)),
                None => break,
            }
        }
        let all: Vec<Value> = runs.iter().map(|r| r["run_id"].clone()).collect();
        assert_eq!(seen, all);
    });

    // The CLI reads the same store while the server runs.
    let dir = data.to_str().unwrap();
    let list = run(["--data-dir", dir, "runs", "list"]);
    assert_eq!(list.code(), 0, "{}", list.stderr());
    let text = list.stdout();
    assert!(text.starts_with("UPDATED (UTC)"), "{text}");
    assert_eq!(text.lines().count(), 5, "a header and four runs: {text}");
    assert!(text.contains(&tl_run) && text.contains("teamleader-last-name") && text.contains("u1"), "{text}");
    let filtered = run(["--data-dir", dir, "runs", "list", "--status", "completed", "--json"]);
    let page: Value = serde_json::from_str(&filtered.stdout()).unwrap();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    let limited = run(["--data-dir", dir, "runs", "list", "--flow", "echo", "--limit", "2"]);
    assert!(limited.stdout().contains("(more runs:"), "{}", limited.stdout());
    // A channel's conversation by the channel's own id.
    let by_channel =
        run(["--data-dir", dir, "runs", "list", "--channel", "default", "--conversation", "c-1", "--json"]);
    assert_eq!(by_channel.code(), 0, "{}", by_channel.stderr());
    let page: Value = serde_json::from_str(&by_channel.stdout()).unwrap();
    assert_eq!(page["runs"][0]["run_id"], tl_run.as_str(), "{page}");
    let no_channel = run(["--data-dir", dir, "runs", "list", "--channel", "nope", "--conversation", "c-1"]);
    assert_ne!(no_channel.code(), 0);
    assert!(no_channel.stderr().contains("no channel `nope`"), "{}", no_channel.stderr());
    let bad = run(["--data-dir", dir, "runs", "list", "--status", "done"]);
    assert_ne!(bad.code(), 0);
    assert!(bad.stderr().contains("`done` is not a run status"), "{}", bad.stderr());

    let show = run(["--data-dir", dir, "runs", "show", &tl_run]);
    assert_eq!(show.code(), 0, "{}", show.stderr());
    let text = show.stdout();
    for part in [
        "contact: last name",
        "tern:    What is your Teamleader contact ID?",
        "contact: c1a2",
        "tern:    Hello Erlich Bachman!",
        "lookup",
        "completed",
    ] {
        assert!(text.contains(part), "{part} in:\n{text}");
    }
    assert!(!text.contains("no answer"), "the contact was answered: {text}");
    let json = run(["--data-dir", dir, "runs", "show", &tl_run, "--json"]);
    let history: Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(history["segments"].as_array().unwrap().len(), 2);
    let missing = run(["--data-dir", dir, "runs", "show", "no-such-run"]);
    assert_ne!(missing.code(), 0);
    assert!(missing.stderr().contains("no run no-such-run"), "{}", missing.stderr());
    let empty = run(["--data-dir", fresh_data_dir().to_str().unwrap(), "runs", "list"]);
    assert_ne!(empty.code(), 0);
    assert!(empty.stderr().contains("runs are recorded by `tern serve`"), "{}", empty.stderr());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The example flows do not shadow each other: each one's own trigger phrase reaches it.
#[test]
fn every_example_flow_is_reached_by_its_own_trigger() {
    let examples = crate::support::repo().join("flows/examples");
    let server = Server::start(&fresh_data_dir(), &examples);
    let rt = rt();
    let client = reqwest::Client::new();
    for (text, flow) in [
        ("where is my order", "order-status"),
        ("I want to buy", "order-size"),
        ("help", "support-ticket"),
        ("last name", "teamleader-last-name"),
    ] {
        let (_, a) = rt.block_on(post(&client, &server.url, &format!("c-{flow}"), json!({"text": text})));
        assert_eq!(a["flow_id"], flow, "{text}: {a}");
    }
}
