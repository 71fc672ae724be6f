//! A Slack channel end to end (issue 23), over real HTTP on 127.0.0.1: `tern channels add
//! --kind slack`; the url_verification challenge; events and button presses shaped as the
//! Events API and interactivity document them, signed by Slack's own `SignatureVerifier`
//! (`slack_sdk` from PyPI, pinned in [`PLATFORM_SDKS`](crate::support::tools::PLATFORM_SDKS)),
//! including a stale timestamp; the bot's own messages and edits ignored; replies with Block Kit
//! buttons taken by a fake Web API that checks the bot token; no secret in the log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::slack::{FakeSlack, Sent};
use crate::support::tools::{platform_sdks, python_output};
use crate::support::{fresh_data_dir, tern, tern_at};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99aaabbb85a5";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";

/// `X-Slack-Signature` of `body` at `timestamp`, by Slack's `SignatureVerifier`.
fn slack_signature(python: &Path, timestamp: i64, body: &str) -> String {
    const SCRIPT: &str = r#"
import json, sys
from slack_sdk.signature import SignatureVerifier
secret, timestamp, body = json.loads(sys.argv[1])
print(SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body))
"#;
    python_output(python, SCRIPT, &json!([SIGNING_SECRET, timestamp, body]))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn event(id: &str, text: &str, extra: Value) -> String {
    let mut event = json!({"type": "message", "channel": "D024BE91L", "user": "U2147483697", "text": text,
        "ts": "1355517523.000005", "channel_type": "im"});
    if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    json!({"token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456", "event": event,
        "type": "event_callback", "event_id": id, "event_time": 1_355_517_523})
    .to_string()
}

#[test]
fn a_slack_app_takes_signed_events_and_button_presses_and_replies_with_buttons() {
    let Some(python) = platform_sdks("the Slack channel test") else { return };
    let api = FakeSlack::start(BOT_TOKEN);
    let flows = tempfile::tempdir().unwrap();
    let flow = json!({"version": 1, "id": "shop", "trigger": {"type": "message", "match": {"keywords": ["hours"]}}, "steps": [
        {"id": "ask", "type": "ask", "text": "Which shop?", "save_as": "shop",
         "choices": [{"title": "Ghent", "payload": "gent"}, {"title": "Antwerp", "payload": "antwerpen"}]},
        {"id": "answer", "type": "send_message", "text": "The {{shop}} shop opens at 9."}
    ]});
    std::fs::write(flows.path().join("shop.json"), flow.to_string()).unwrap();
    let data = fresh_data_dir();
    let setup = |args: &[&str]| {
        let out = tern_at(&data, &[("SLACK_SECRET", SIGNING_SECRET), ("BOT_TOKEN", BOT_TOKEN)], args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    // The bot token as an integration bound to the Web API's origin.
    setup(&["secrets", "set", "BOT_TOKEN", "--from-env", "BOT_TOKEN"]);
    setup(&[
        "integrations",
        "add",
        "slackbot",
        "--kind",
        "static",
        "--static-secret",
        "BOT_TOKEN",
        "--api-origin",
        &api.url(),
    ]);
    let out = setup(&[
        "channels",
        "add",
        "slack",
        "--kind",
        "slack",
        "--signing-secret-env",
        "SLACK_SECRET",
        "--integration",
        "slackbot",
        "--api-base",
        &api.url(),
    ]);
    assert!(
        out.contains("Request URL") && out.contains("/v1/channels/slack/webhook") && !out.contains(SIGNING_SECRET),
        "{out}"
    );
    let out = String::from_utf8_lossy(&tern_at(&data, &[], &["channels", "test", "slack"]).stdout).to_string();
    assert!(out.contains("credentials: accepted by the Slack API: the bot user ternbot of workspace Example"), "{out}");
    assert!(!out.contains(BOT_TOKEN), "{out}");

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.path().to_str().unwrap()])
        .stderr(Stdio::from(log.reopen().unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    let hook = format!("{}/v1/channels/slack/webhook", server.url);
    let post = |body: String, content_type: &'static str, at: Option<i64>| {
        let (client, hook, python) = (client.clone(), hook.clone(), python.clone());
        async move {
            let mut req = client.post(&hook).header("content-type", content_type);
            if let Some(at) = at {
                req = req
                    .header("X-Slack-Request-Timestamp", at.to_string())
                    .header("X-Slack-Signature", slack_signature(&python, at, &body));
            }
            let resp = req.body(body).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };

    rt.block_on(async {
        // The request URL's check.
        let challenge = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
        let (status, body) = post(challenge.clone(), "application/json", Some(now())).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
        // Unsigned, or signed more than 5 minutes ago (a replay): refused.
        let first = event("Ev0PV52K21", "hours", json!({}));
        assert_eq!(post(first.clone(), "application/json", None).await.0, 401);
        assert_eq!(post(first.clone(), "application/json", Some(now() - 301)).await.0, 401);
        // The bot's own message and an edit: acknowledged, ignored.
        let own = event("Ev0PV52K22", "hours", json!({"bot_id": "B123", "subtype": "bot_message"}));
        assert_eq!(post(own, "application/json", Some(now())).await.0, 200);
        // A person's message: acknowledged; the question goes back with two buttons.
        assert_eq!(post(first.clone(), "application/json", Some(now())).await.0, 200);
    });
    let sent = api.wait_sent(1, Duration::from_secs(30));
    let buttons = vec![("gent".to_string(), "Ghent".to_string()), ("antwerpen".to_string(), "Antwerp".to_string())];
    assert_eq!(sent, [Sent { channel: "D024BE91L".into(), text: "Which shop?".into(), buttons }]);

    api.fail_next(&[(429, "ratelimited")]);
    rt.block_on(async {
        // Slack's retry of the same event (X-Slack-Retry-Num): answered once.
        let first = event("Ev0PV52K21", "hours", json!({}));
        let at = now();
        let retried = client
            .post(&hook)
            .header("content-type", "application/json")
            .header("X-Slack-Retry-Num", "1")
            .header("X-Slack-Retry-Reason", "http_timeout")
            .header("X-Slack-Request-Timestamp", at.to_string())
            .header("X-Slack-Signature", slack_signature(&python, at, &first))
            .body(first)
            .send()
            .await
            .unwrap();
        assert_eq!(retried.status().as_u16(), 200);
        // The press of "Antwerp", as interactivity posts it: a form whose `payload` is JSON.
        let payload = json!({"type": "block_actions", "user": {"id": "U2147483697", "username": "ann", "name": "ann"},
            "api_app_id": "A123ABC456", "token": "XXYYZZ", "trigger_id": "12466734323.1395872398",
            "team": {"id": "T123ABC456", "domain": "example"}, "channel": {"id": "D024BE91L", "name": "directmessage"},
            "container": {"type": "message", "message_ts": "1548261231.000200", "channel_id": "D024BE91L", "is_ephemeral": false},
            "actions": [{"action_id": "choice-1", "block_id": "b1", "text": {"type": "plain_text", "text": "Antwerp"},
                "value": "antwerpen", "type": "button", "action_ts": "1548426417.840180"}]});
        let form = url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish();
        assert_eq!(post(form, "application/x-www-form-urlencoded", Some(now())).await.0, 200);
    });
    let sent = api.wait_sent(2, Duration::from_secs(30));
    assert_eq!(
        sent[1],
        Sent { channel: "D024BE91L".into(), text: "The antwerpen shop opens at 9.".into(), buttons: vec![] }
    );
    assert_eq!(api.calls().iter().filter(|s| **s == 429).count(), 1, "the rate limit was retried: {:?}", api.calls());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.sent().len(), 2, "each reply once: {:?}", api.sent());
    let metrics = rt
        .block_on(async { client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap() });
    for line in [
        r#"tern_platform_updates_total{channel="slack",outcome="wrong-platform-secret"} 2"#,
        r#"tern_platform_updates_total{channel="slack",outcome="ignored"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    drop(server);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains(SIGNING_SECRET) && !text.contains(BOT_TOKEN), "no secret in the log:\n{text}");
}
