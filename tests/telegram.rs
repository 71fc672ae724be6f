//! A Telegram channel end to end (issue 23), over real HTTP on 127.0.0.1: `tern channels add
//! --kind telegram` against a fake Bot API that checks what the real one checks
//! ([`testkit::telegram`]); updates shaped as the Bot API documents its Update object, posted
//! to `/v1/channels/{name}/webhook` with the secret token; replies taken by `sendMessage`,
//! each part once even when the API fails in between; the bot token never in the log.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{ADMIN, Server, rt};
use crate::support::telegram::{FakeTelegram, Sent};
use crate::support::{fresh_data_dir, run, tern, tern_at};

const BOT_TOKEN: &str = "987654321:AAFakeTokenForTheTestsOnly_0123456789";
const SECRET_TOKEN: &str = "tg-webhook-secret-0123456789";

/// Two flows: `/start` gets two replies; `pick` asks with a question and echoes the answer.
fn flows() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let start = json!({"version": 1, "id": "start", "trigger": {"type": "message", "match": {"regex": "^/start$"}},
    "steps": [
        {"id": "hello", "type": "send_message", "text": "Hello {{contact.name}}!"},
        {"id": "more", "type": "send_message", "text": "Type pick to choose."}
    ]});
    let pick = json!({"version": 1, "id": "pick", "trigger": {"type": "message", "match": {"regex": "^pick$"}},
    "steps": [
        {"id": "ask", "type": "ask", "text": "Which contact?", "save_as": "choice"},
        {"id": "echo", "type": "send_message", "text": "You chose {{choice}}."}
    ]});
    std::fs::write(dir.path().join("start.json"), start.to_string()).unwrap();
    std::fs::write(dir.path().join("pick.json"), pick.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn update(update_id: i64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {"message_id": update_id, "date": 1_441_645_532,
        "chat": {"id": chat, "type": "private", "first_name": "Test", "last_name": "Lastname"},
        "from": {"id": chat, "is_bot": false, "first_name": "Test", "last_name": "Lastname", "language_code": "en"},
        "text": text}})
}

async fn post_update(client: &reqwest::Client, base: &str, secret: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = client.post(format!("{base}/v1/channels/bot/webhook")).json(body);
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[test]
fn a_telegram_bot_takes_updates_and_replies_through_the_bot_api_once_each() {
    let fake = FakeTelegram::start(BOT_TOKEN);
    let (_keep, flows) = flows();
    let data = fresh_data_dir();
    let added = {
        let mut cmd = tern();
        cmd.env("TERN_DATA_DIR", &data)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("TG_SECRET", SECRET_TOKEN)
            .env("TG_BOT", BOT_TOKEN)
            .args(["channels", "add", "bot", "--kind", "telegram", "--secret-token-env", "TG_SECRET"])
            .args(["--bot-token-env", "TG_BOT", "--api-base", &fake.url()]);
        cmd.output().unwrap()
    };
    let out = String::from_utf8_lossy(&added.stdout).to_string();
    assert!(added.status.success(), "{out}{}", String::from_utf8_lossy(&added.stderr));
    assert!(out.contains("/v1/channels/bot/webhook") && out.contains("setWebhook"), "{out}");
    assert!(!out.contains(BOT_TOKEN) && !out.contains(SECRET_TOKEN), "{out}");
    let shown = run(["--data-dir", data.to_str().unwrap(), "channels", "show", "bot"]);
    assert!(shown.stdout().contains("bot token:       set"), "{}", shown.stdout());
    // `channels test`: the token from here (getMe), and a public URL that is not https.
    let tested = tern_at(&data, &[], &["channels", "test", "bot"]);
    let out = String::from_utf8_lossy(&tested.stdout).to_string();
    assert_eq!(tested.status.code(), Some(1), "{out}");
    assert!(out.contains("credentials: accepted by the Telegram API: the bot @tern_test_bot"), "{out}");
    assert!(out.contains("is not https") && !out.contains(BOT_TOKEN), "{out}");

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .stderr(Stdio::from(log.reopen().unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    let within = Duration::from_secs(30);

    rt.block_on(async {
        // Not Telegram's: refused before anything is stored or run.
        let (status, body) = post_update(&client, &server.url, None, &update(1, 42, "/start")).await;
        assert_eq!(status, 401);
        assert!(body["error"].as_str().unwrap().contains("X-Telegram-Bot-Api-Secret-Token"), "{body}");
        // The generic message routes are not the platform's.
        let generic_route = client
            .post(format!("{}/v1/channels/bot/conversations/42/messages", server.url))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET_TOKEN)
            .bearer_auth(SECRET_TOKEN)
            .json(&json!({"text": "/start"}))
            .send()
            .await
            .unwrap();
        assert_eq!(generic_route.status().as_u16(), 401);
        let (status, _) = post_update(&client, &server.url, Some("wrong"), &update(1, 42, "/start")).await;
        assert_eq!(status, 401);
        let generic = client
            .post(format!("{}/v1/channels/default/webhook", server.url))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET_TOKEN)
            .json(&update(1, 42, "/start"))
            .send()
            .await
            .unwrap();
        assert_eq!(generic.status().as_u16(), 401, "the default channel is no platform's");

        // A message: acknowledged at once; both replies go to its chat, in order.
        let (status, body) = post_update(&client, &server.url, Some(SECRET_TOKEN), &update(10_000, 42, "/start")).await;
        assert_eq!((status, body), (200, json!({})));
    });
    let sent = fake.wait_sent(2, within);
    assert_eq!(
        sent,
        [
            Sent { chat_id: "42".into(), text: "Hello Test Lastname!".into() },
            Sent { chat_id: "42".into(), text: "Type pick to choose.".into() }
        ]
    );

    rt.block_on(async {
        // Telegram sends an update again until it gets a 2xx: the update_id dedupes it.
        let (status, _) = post_update(&client, &server.url, Some(SECRET_TOKEN), &update(10_000, 42, "/start")).await;
        assert_eq!(status, 200);
        // Updates Tern does not handle, and bodies it cannot read, are acknowledged (a retry
        // would not help) and change nothing.
        let edited = json!({"update_id": 10_001, "edited_message": {"message_id": 1, "chat": {"id": 42}, "text": "x"}});
        assert_eq!(post_update(&client, &server.url, Some(SECRET_TOKEN), &edited).await.0, 200);
        assert_eq!(post_update(&client, &server.url, Some(SECRET_TOKEN), &json!({"no": "update"})).await.0, 200);

        // A conversation across updates; the API fails between the two replies' calls.
        post_update(&client, &server.url, Some(SECRET_TOKEN), &update(10_002, 77, "pick")).await;
    });
    let sent = fake.wait_sent(3, within);
    assert_eq!(sent[2], Sent { chat_id: "77".into(), text: "Which contact?".into() });
    fake.fail_next(&[500, 429]);
    rt.block_on(async {
        // A button press: its data is the answer, and the callback query is answered in the
        // webhook's response.
        let press = json!({"update_id": 10_003, "callback_query": {"id": "cbq-1", "data": "contact-42",
            "chat_instance": "1", "from": {"id": 77, "is_bot": false, "first_name": "Test"},
            "message": {"message_id": 5, "date": 1_441_645_532, "chat": {"id": 77, "type": "private"}}}});
        let (status, body) = post_update(&client, &server.url, Some(SECRET_TOKEN), &press).await;
        assert_eq!((status, body), (200, json!({"method": "answerCallbackQuery", "callback_query_id": "cbq-1"})));
    });
    let sent = fake.wait_sent(4, within);
    assert_eq!(sent[3], Sent { chat_id: "77".into(), text: "You chose contact-42.".into() });
    let failed = fake.calls().iter().filter(|(_, status)| *status >= 400).count();
    assert_eq!(failed, 2, "the 500 and the 429 were retried: {:?}", fake.calls());
    // The API takes the first of two replies, then fails: the retry sends the second only.
    fake.fail_after(1, &[500]);
    rt.block_on(async {
        post_update(&client, &server.url, Some(SECRET_TOKEN), &update(10_004, 55, "/start")).await;
    });
    let sent = fake.wait_sent(6, within);
    let to_55: Vec<&str> = sent.iter().filter(|s| s.chat_id == "55").map(|s| s.text.as_str()).collect();
    assert_eq!(to_55, ["Hello Test Lastname!", "Type pick to choose."], "each part once, in order");
    // Each reply exactly once, the repeated update included.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.sent().len(), 6, "{:?}", fake.sent());

    rt.block_on(async {
        let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        for line in [
            r#"tern_platform_updates_total{channel="bot",outcome="accepted"}"#,
            r#"tern_platform_updates_total{channel="bot",outcome="ignored"} 1"#,
            r#"tern_platform_updates_total{channel="bot",outcome="malformed"} 1"#,
            r#"tern_platform_updates_total{channel="bot",outcome="wrong-platform-secret"} 2"#,
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
    });
    drop(server);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("wrong-platform-secret"), "the refusal is logged with its reason:\n{text}");
    assert!(text.contains("platform-channel") && text.contains("/v1/channels/NAME/webhook"), "{text}");
    assert!(text.contains("channel `bot` takes its platform's updates"), "the start-up log names it:\n{text}");
    assert!(!text.contains(BOT_TOKEN) && !text.contains(SECRET_TOKEN), "no token in the log:\n{text}");
}

/// A chat Telegram says does not exist (or a bot the contact blocked) is refused for good: the
/// delivery is dropped with an error in the log, not retried for an hour.
#[test]
fn a_reply_telegram_refuses_for_good_is_dropped_not_retried() {
    let fake = FakeTelegram::start(BOT_TOKEN);
    fake.forget_chat("13");
    let (_keep, flows) = flows();
    let data = fresh_data_dir();
    let toml = format!(
        "[channels.bot]\nkind = \"telegram\"\nsecret_token_env = \"TG_SECRET\"\nbot_token_env = \"TG_BOT\"\napi_base = \"{}\"\n",
        fake.url()
    );
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("tern.toml"), toml).unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tern();
    cmd.env("TERN_CONFIG", conf.path().join("tern.toml"))
        .env("TERN_DATA_DIR", &data)
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .env("TG_SECRET", SECRET_TOKEN)
        .env("TG_BOT", BOT_TOKEN)
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--flows", flows.to_str().unwrap()])
        .stderr(Stdio::from(log.reopen().unwrap()));
    let server = Server::spawn_keeping_stderr(cmd);
    let rt = rt();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let (status, _) = post_update(&client, &server.url, Some(SECRET_TOKEN), &update(1, 13, "/start")).await;
        assert_eq!(status, 200);
        let (status, _) = post_update(&client, &server.url, Some(SECRET_TOKEN), &update(2, 14, "/start")).await;
        assert_eq!(status, 200);
    });
    let sent = fake.wait_sent(2, Duration::from_secs(30));
    assert!(sent.iter().all(|s| s.chat_id == "14"), "{sent:?}");
    std::thread::sleep(Duration::from_secs(2));
    let to_13 = fake.calls().iter().filter(|(_, status)| *status == 400).count();
    assert_eq!(to_13, 1, "refused once, not retried: {:?}", fake.calls());
    drop(server);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("chat not found") && text.contains("refused for good"), "{text}");
}
