//! A Twilio SMS channel end to end (issue 23), over real HTTP on 127.0.0.1: `tern channels add
//! --kind twilio`; incoming messages as Twilio posts them (a form) signed by Twilio's own
//! request validator (the `twilio` package from PyPI, `RequestValidator.compute_signature`,
//! pinned in [`PLATFORM_SDKS`](crate::support::tools::PLATFORM_SDKS))
//! over the public URL; replies taken by a fake Messages API that checks the Basic
//! credential; choices as numbered text; a refusal for good dropped; no secret in the log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::serve::{ADMIN, Server, rt};
use crate::support::tools::{platform_sdks, python_output};
use crate::support::twilio::{FakeTwilio, Sent};
use crate::support::{free_port, fresh_data_dir, tern, tern_at};

const AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const NUMBER: &str = "+15017122661";

/// `X-Twilio-Signature` of a POST of `params` to `url`, by Twilio's `RequestValidator`.
fn twilio_signature(python: &Path, token: &str, url: &str, params: &[(&str, &str)]) -> String {
    const SCRIPT: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator
token, url, params = json.loads(sys.argv[1])
print(RequestValidator(token).compute_signature(url, dict(params)))
"#;
    python_output(python, SCRIPT, &json!([token, url, params]))
}

fn flows() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let flow = json!({"version": 1, "id": "sms", "trigger": {"type": "message", "match": {"keywords": ["hours"]}}, "steps": [
        {"id": "ask", "type": "ask", "text": "Which shop?", "save_as": "shop",
         "choices": [{"title": "Ghent", "payload": "gent"}, {"title": "Antwerp", "payload": "antwerpen"}]},
        {"id": "answer", "type": "send_message", "text": "The {{shop}} shop opens at 9."}
    ]});
    std::fs::write(dir.path().join("sms.json"), flow.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn message(sid: &str, from: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_string()),
        ("SmsMessageSid", sid.to_string()),
        ("AccountSid", ACCOUNT.to_string()),
        ("From", from.to_string()),
        ("To", NUMBER.to_string()),
        ("Body", body.to_string()),
        ("NumMedia", "0".to_string()),
        ("NumSegments", "1".to_string()),
        ("ApiVersion", "2010-04-01".to_string()),
    ]
}

#[test]
fn an_sms_conversation_is_signed_by_twilios_validator_and_answered_through_the_messages_api() {
    let Some(python) = platform_sdks("the Twilio channel test") else { return };
    let api = FakeTwilio::start(ACCOUNT, AUTH_TOKEN);
    let (_keep, flows) = flows();
    let data = fresh_data_dir();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let added = tern()
        .env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TW_TOKEN", AUTH_TOKEN)
        .args(["channels", "add", "sms", "--kind", "twilio", "--auth-token-env", "TW_TOKEN", "--account-sid", ACCOUNT])
        .args(["--from", NUMBER, "--api-base", &api.url()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&added.stdout).to_string();
    assert!(added.status.success(), "{out}{}", String::from_utf8_lossy(&added.stderr));
    assert!(
        out.contains("Webhook, HTTP POST: https://YOUR-PUBLIC-HOST/v1/channels/sms/webhook")
            && !out.contains(AUTH_TOKEN),
        "{out}"
    );
    let tested = tern_at(&data, &[], &["channels", "test", "sms"]);
    let out = String::from_utf8_lossy(&tested.stdout).to_string();
    assert!(out.contains("credentials: accepted by the Twilio API: the account Tern test account (active)"), "{out}");
    assert!(!out.contains(AUTH_TOKEN), "{out}");

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &public, "--watch", "false"])
        .args(["--flows", flows.to_str().unwrap()])
        .stderr(Stdio::from(log.reopen().unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    let hook = format!("{public}/v1/channels/sms/webhook");
    let post = |params: Vec<(&'static str, String)>, signature: Option<String>| {
        let client = client.clone();
        let hook = hook.clone();
        async move {
            let mut req = client.post(&hook).form(&params);
            if let Some(s) = signature {
                req = req.header("X-Twilio-Signature", s);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            (status, content_type, resp.text().await.unwrap())
        }
    };
    let signed = |params: &[(&'static str, String)], url: &str, token: &str| {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        twilio_signature(&python, token, url, &pairs)
    };

    let first = message("SM0000000000000000000000000000000a", "+14155550100", "hours");
    rt.block_on(async {
        // Unsigned, signed with another token, or signed for another URL: refused.
        assert_eq!(post(first.clone(), None).await.0, 401);
        let wrong_token = signed(&first, &hook, "ffffffffffffffffffffffffffffffff");
        assert_eq!(post(first.clone(), Some(wrong_token)).await.0, 401);
        let other_url = signed(&first, &format!("{public}/v1/channels/other/webhook"), AUTH_TOKEN);
        assert_eq!(post(first.clone(), Some(other_url)).await.0, 401);
        // Signed as Twilio signs it: acknowledged with empty TwiML at once.
        let (status, content_type, body) = post(first.clone(), Some(signed(&first, &hook, AUTH_TOKEN))).await;
        assert_eq!(status, 200);
        assert!(content_type.unwrap().starts_with("text/xml"));
        assert!(body.contains("<Response></Response>"), "{body}");
    });
    let sent = api.wait_sent(1, Duration::from_secs(30));
    assert_eq!(
        sent,
        [Sent { to: "+14155550100".into(), from: NUMBER.into(), body: "Which shop?\n\n1. Ghent\n2. Antwerp".into() }]
    );

    api.fail_next(&[(429, 20429)]);
    rt.block_on(async {
        // Twilio retries a webhook that failed: the MessageSid dedupes it.
        assert_eq!(post(first.clone(), Some(signed(&first, &hook, AUTH_TOKEN))).await.0, 200);
        let answer = message("SM0000000000000000000000000000000b", "+14155550100", "2");
        assert_eq!(post(answer.clone(), Some(signed(&answer, &hook, AUTH_TOKEN))).await.0, 200);
    });
    let sent = api.wait_sent(2, Duration::from_secs(30));
    assert_eq!(sent[1].body, "The antwerpen shop opens at 9.", "a typed number picks the choice's payload");
    assert_eq!(api.calls().iter().filter(|s| **s == 429).count(), 1, "the 429 was retried: {:?}", api.calls());

    // A contact who opted out (21610): the reply is dropped, not retried for an hour.
    api.fail_next(&[(400, 21610)]);
    rt.block_on(async {
        let stop = message("SM0000000000000000000000000000000c", "+14155550199", "hours");
        assert_eq!(post(stop.clone(), Some(signed(&stop, &hook, AUTH_TOKEN))).await.0, 200);
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api.calls().iter().filter(|s| **s == 400).count(), 1, "refused once, not retried: {:?}", api.calls());
    assert_eq!(api.sent().len(), 2, "{:?}", api.sent());
    let metrics =
        rt.block_on(async { client.get(format!("{public}/metrics")).send().await.unwrap().text().await.unwrap() });
    assert!(
        metrics.contains(r#"tern_platform_updates_total{channel="sms",outcome="wrong-platform-secret"} 3"#),
        "{metrics}"
    );
    drop(server);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("21610") && text.contains("refused for good"), "{text}");
    assert!(!text.contains(AUTH_TOKEN), "no secret in the log:\n{text}");
}
