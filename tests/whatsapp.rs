//! A WhatsApp channel end to end (issue 23), over real HTTP on 127.0.0.1: `tern channels add
//! --kind whatsapp`; Meta's verification handshake; notifications shaped as the Cloud API's
//! documented payload examples, signed as Meta signs them (HMAC-SHA256 of the raw body with the
//! app secret, computed here with the `hmac` crate, independently of Tern's code); a
//! conversation that asks which Teamleader contact the sender is with reply buttons, asks again
//! when the answer is typed, looks the pressed contact up through an OAuth integration and
//! answers; replies taken by a fake Cloud API that checks the system user's
//! bearer token, each once even when the API fails in between; no secret in the log.

use std::process::Stdio;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::serve::{ADMIN, Server, rt};
use crate::support::oauth::{AuthServer, CLIENT_SECRET, client_credentials_add};
use crate::support::whatsapp::{FakeWhatsApp, Sent};
use crate::support::{fresh_data_dir, tern, tern_at};

const APP_SECRET: &str = "6c0ffee0ddba11a5f00dfeedc0de4b1d";
const VERIFY_TOKEN: &str = "wa-verify-token-0123456789";
const SYSTEM_TOKEN: &str = "EAAGm0PX4ZCpsBAFakeSystemUserToken0123456789";
const NUMBER_ID: &str = "106540352242922";

/// `help` asks for a Teamleader contact id, looks it up, answers with the name.
fn flows(crm: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lookup = json!({"version": 1, "id": "lookup", "trigger": {"type": "message", "match": {"keywords": ["help"]}},
    "steps": [
        {"id": "ask", "type": "ask", "text": "Hi {{contact.name}}! Which Teamleader contact are you?", "save_as": "id",
         "choices": [{"title": "Erlich Bachman", "payload": "c1a2"}, {"title": "Someone else", "payload": "other"}],
         "reask": "Please press one of the buttons."},
        {"id": "find", "type": "fetch_variables", "integration": "teamleader",
         "request": {"method": "POST", "url": format!("{crm}/api/contacts.info"), "body": {"id": "{{id}}"}},
         "variables": {"first_name": "data.first_name", "last_name": "data.last_name"}},
        {"id": "answer", "type": "send_message", "text": "Found you: {{first_name}} {{last_name}}."}
    ]});
    std::fs::write(dir.path().join("lookup.json"), lookup.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// A text message notification, as the Cloud API documents it.
fn text_message(wamid: &str, from: &str, text: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER_ID},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": from}],
        "messages": [{"from": from, "id": wamid, "timestamp": "1749416383", "type": "text", "text": {"body": text}}]
    }, "field": "messages"}]}]})
}

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(client: &reqwest::Client, base: &str, secret: Option<&str>, body: &Value) -> u16 {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = client.post(format!("{base}/v1/channels/wa/webhook")).header("content-type", "application/json");
    if let Some(s) = secret {
        req = req.header("X-Hub-Signature-256", sign(&bytes, s));
    }
    req.body(bytes).send().await.unwrap().status().as_u16()
}

fn add(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let env =
        [("WA_SECRET", APP_SECRET), ("WA_VERIFY", VERIFY_TOKEN), ("META_TOKEN", SYSTEM_TOKEN), ("CS", CLIENT_SECRET)];
    tern_at(data, &env, args)
}

#[test]
fn a_whatsapp_number_looks_up_a_contact_and_replies_through_the_cloud_api() {
    let meta = FakeWhatsApp::start(SYSTEM_TOKEN, NUMBER_ID);
    let crm = AuthServer::start();
    let (_keep, flows) = flows(&crm.url());
    let data = fresh_data_dir();
    let ok = |out: std::process::Output| {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    ok(add(&data, &["secrets", "set", "META_TOKEN", "--from-env", "META_TOKEN"]));
    let origin = meta.url().trim_end_matches("/v23.0").to_string();
    ok(add(
        &data,
        &["integrations", "add", "meta", "--kind", "static", "--static-secret", "META_TOKEN", "--api-origin", &origin],
    ));
    let cc: Vec<String> = client_credentials_add("teamleader", &crm.url());
    ok(add(&data, &cc.iter().map(String::as_str).collect::<Vec<_>>()));
    // What is missing is named, every field at once.
    let refused = add(&data, &["channels", "add", "wa", "--kind", "whatsapp", "--app-secret-env", "WA_SECRET"]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success());
    for flag in ["--verify-token-env", "--phone-number-id", "--integration"] {
        assert!(err.contains(flag), "{flag} in {err}");
    }
    let out = ok(add(
        &data,
        &[
            "channels",
            "add",
            "wa",
            "--kind",
            "whatsapp",
            "--update",
            "--app-secret-env",
            "WA_SECRET",
            "--verify-token-env",
            "WA_VERIFY",
            "--phone-number-id",
            NUMBER_ID,
            "--integration",
            "meta",
            "--api-base",
            &meta.url(),
        ],
    ));
    assert!(out.contains("Callback URL: https://YOUR-PUBLIC-HOST/v1/channels/wa/webhook"), "{out}");
    // `channels test`: the credentials from here (the integration's token, the number's record),
    // and the public URL that is not https yet.
    let tested = add(&data, &["channels", "test", "wa"]);
    let report = String::from_utf8_lossy(&tested.stdout).to_string();
    assert_eq!(tested.status.code(), Some(1), "{report}");
    assert!(
        report.contains("credentials: accepted by the WhatsApp API: the number 15550783881 (Tern Test)"),
        "{report}"
    );
    assert!(report.contains("is not https") && !report.contains(SYSTEM_TOKEN), "{report}");
    assert!(out.contains("$WA_VERIFY") && !out.contains(VERIFY_TOKEN) && !out.contains(APP_SECRET), "{out}");

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("CS", CLIENT_SECRET)
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .stderr(Stdio::from(log.reopen().unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    let within = Duration::from_secs(30);
    let first = text_message("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=", "16505551234", "help");

    rt.block_on(async {
        // Meta's handshake: the challenge for the verify token, 403 otherwise.
        let hook = format!("{}/v1/channels/wa/webhook", server.url);
        let verify = |token: &str| {
            client
                .get(&hook)
                .query(&[("hub.mode", "subscribe"), ("hub.challenge", "1158201444"), ("hub.verify_token", token)])
                .send()
        };
        let good = verify(VERIFY_TOKEN).await.unwrap();
        assert_eq!(good.status().as_u16(), 200);
        assert_eq!(good.text().await.unwrap(), "1158201444");
        assert_eq!(verify("not-the-token-0123456789").await.unwrap().status().as_u16(), 403);

        // Unsigned, or signed with another secret, or a body changed after signing: refused.
        assert_eq!(post(&client, &server.url, None, &first).await, 401);
        assert_eq!(post(&client, &server.url, Some("another-app-secret-0123456789"), &first).await, 401);
        let bytes = serde_json::to_vec(&first).unwrap();
        let tampered = client
            .post(&hook)
            .header("X-Hub-Signature-256", sign(&bytes, APP_SECRET))
            .body(String::from_utf8(bytes).unwrap().replace("help", "HELP"))
            .send()
            .await
            .unwrap();
        assert_eq!(tampered.status().as_u16(), 401);

        // Signed: acknowledged at once; the question goes to the sender's wa_id.
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &first).await, 200);
    });
    let sent = meta.wait_sent(1, within);
    let buttons =
        vec![("c1a2".to_string(), "Erlich Bachman".to_string()), ("other".to_string(), "Someone else".to_string())];
    let question = "Hi Sheena Nelson! Which Teamleader contact are you?";
    assert_eq!(sent, [Sent { to: "16505551234".into(), text: question.into(), choices: buttons.clone() }]);

    rt.block_on(async {
        // Meta sends a notification again until it gets a 200: the wamid dedupes it.
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &first).await, 200);
        // Typed text that picks no button: asked again, with the buttons.
        let typed =
            text_message("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgB=", "16505551234", "hello?");
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &typed).await, 200);
    });
    let sent = meta.wait_sent(2, within);
    assert_eq!(
        sent[1],
        Sent { to: "16505551234".into(), text: "Please press one of the buttons.".into(), choices: buttons }
    );

    // The press: looked up through the OAuth integration; the Cloud API fails once (a rate
    // limit) before it takes the answer.
    meta.fail_next(&[(400, 130429)]);
    rt.block_on(async {
        // The button press, as the Cloud API documents an interactive button_reply.
        let mut answer = text_message("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgC=", "16505551234", "");
        answer["entry"][0]["changes"][0]["value"]["messages"][0] = json!({"from": "16505551234",
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgC=", "timestamp": "1749416400",
            "context": {"from": "15550783881", "id": "wamid.HBgL00000001"},
            "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "c1a2", "title": "Erlich Bachman"}}});
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &answer).await, 200);
        // A status notification and a payload Tern cannot read are acknowledged, not retried.
        let status = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": {
            "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER_ID},
            "statuses": [{"id": "wamid.HBgL00000001", "status": "read", "timestamp": "1749416390", "recipient_id": "16505551234"}]
        }, "field": "messages"}]}]});
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &status).await, 200);
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &json!({"object": "page"})).await, 200);
    });
    let sent = meta.wait_sent(3, within);
    assert_eq!(sent[2], Sent::text("16505551234", "Found you: Erlich Bachman."));
    assert_eq!(meta.calls().iter().filter(|s| **s >= 400).count(), 1, "the rate limit was retried: {:?}", meta.calls());
    assert!(crm.api_auth_headers().iter().all(|h| h.starts_with("Bearer ")), "the CRM got its own token");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(meta.sent().len(), 3, "each reply once, the repeated notification included: {:?}", meta.sent());

    // Meta's status of the last reply echoes the run it came from: it joins the run's history.
    let (tag, wamid) = meta.callback_data().last().cloned().unwrap();
    let run_id = tag.expect("each reply carries its run id");
    rt.block_on(async {
        let delivered = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": {
            "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER_ID},
            "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1749416400", "recipient_id": "16505551234",
                "biz_opaque_callback_data": run_id, "conversation": {"id": "c1", "origin": {"type": "service"}},
                "pricing": {"billable": false, "pricing_model": "PMP", "category": "service"}}]
        }, "field": "messages"}]}]});
        assert_eq!(post(&client, &server.url, Some(APP_SECRET), &delivered).await, 200);
        let run: Value = client
            .get(format!("{}/v1/runs/{run_id}", server.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(run["deliveries"][0]["status"], "delivered", "{run}");
        assert_eq!(run["deliveries"][0]["message_id"], wamid.as_str(), "{run}");
    });

    rt.block_on(async {
        let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        for line in [
            r#"tern_platform_updates_total{channel="wa",outcome="accepted"}"#,
            r#"tern_platform_updates_total{channel="wa",outcome="verified"} 1"#,
            r#"tern_platform_updates_total{channel="wa",outcome="wrong-verify-token"} 1"#,
            r#"tern_platform_updates_total{channel="wa",outcome="status-read"} 1"#,
            r#"tern_platform_updates_total{channel="wa",outcome="malformed"} 1"#,
            r#"tern_platform_updates_total{channel="wa",outcome="wrong-platform-secret"} 3"#,
            r#"tern_deliveries_total{channel="wa",outcome="sent"} 3"#,
            r#"tern_deliveries_total{channel="wa",outcome="retried"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
    });
    drop(server);
    let text = std::fs::read_to_string(log.path()).unwrap();
    for secret in [APP_SECRET, VERIFY_TOKEN, SYSTEM_TOKEN] {
        assert!(!text.contains(secret), "no secret in the log:\n{text}");
    }
}
