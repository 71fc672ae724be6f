//! The console in a real headless browser: Debian's Chromium driven by chromedriver over
//! WebDriver (fantoccini). The operator signs in, adds an integration with a mistake, fixes it,
//! clicks Authorize, logs in at panva's oidc-provider, comes back to the "All set!" banner,
//! tests, edits and removes it; a conversation uses the token in between. A second test looks
//! at every example flow's picture, chats in the Try it page's web chat through a pause, and opens the
//! run's page from the runs list.
//!
//! `TERN_SCREENSHOTS=DIR` saves a PNG of each page there (kept out of the repository).
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test` installs them; see `support::tools`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::serve::{ADMIN, Server, post, rt};
use crate::support::oidc::{OIDC_SECRET, OidcProvider};
use crate::support::{free_port, fresh_data_dir, tools};

pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn chromedriver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed for the browser test (apt-get install chromium chromium-driver)");
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

pub(crate) async fn connect(webdriver: &str) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
        }
    });
    let caps = caps.as_object().cloned().unwrap_or_default();
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(webdriver).await {
            Ok(c) => return c,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("could not start Chromium through chromedriver: {e}"),
        }
    }
}

/// Saves a screenshot as `DIR/NAME.png` when `TERN_SCREENSHOTS=DIR` is set.
pub(crate) async fn shot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("TERN_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// Signs in on the console's sign-in page.
async fn sign_in(c: &Client, base: &str) {
    c.goto(base).await.unwrap();
    wait_for_text(c, "Admin token").await;
    shot(c, "sign-in").await;
    c.find(Locator::Id("token")).await.unwrap().send_keys("wrong-token-0000000000").await.unwrap();
    c.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    wait_for_text(c, "That is not the admin token.").await;
    c.find(Locator::Id("token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    c.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    wait_for_text(c, "Sign out").await;
}

async fn fill(c: &Client, name: &str, value: &str) {
    let field = c.find(Locator::Css(&format!("#add [name=\"{name}\"]"))).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn select(c: &Client, name: &str, value: &str) {
    let field = c.find(Locator::Css(&format!("#add select[name=\"{name}\"]"))).await.unwrap();
    field.select_by_value(value).await.unwrap();
}

/// Waits until the page's text contains `needle`; returns the page source.
pub(crate) async fn wait_for_text(c: &Client, needle: &str) -> String {
    wait_for_text_within(c, needle, Duration::from_secs(20)).await
}

/// Waits until the page's address contains `part`: after a click that submits a form, the old
/// page stays (and its elements can be found, then go stale) until the new one replaces it.
pub(crate) async fn wait_for_url(c: &Client, part: &str) {
    let started = Instant::now();
    loop {
        let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if url.contains(part) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the address never contained `{part}`; it is {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`wait_for_text`] for at most `limit`.
pub(crate) async fn wait_for_text_within(c: &Client, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let body = c.find(Locator::Css("body")).await.ok();
        let text = match body {
            Some(b) => b.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains(needle) {
            return c.source().await.unwrap_or_default();
        }
        if started.elapsed() > limit {
            panic!("`{needle}` never appeared; the page at {:?} says:\n{text}", c.current_url().await.ok());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn operator_adds_and_authorizes_an_integration_in_a_real_browser() {
    let test = "operator_adds_and_authorizes_an_integration_in_a_real_browser";
    if !tools::available(test, &[&tools::CHROMIUM, &tools::NODE]) {
        return;
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let oidc = OidcProvider::start(&format!("{base}/oauth/callback"));
    let iss = oidc.issuer.clone();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("me.json"),
        json!({"version": 1, "id": "me", "trigger": {"type": "message", "match": {"regex": "^me$"}},
        "steps": [
          {"id": "me", "type": "fetch_variables", "integration": "oidc",
           "request": {"url": format!("{iss}/me")}, "variables": {"last_name": "family_name"}},
          {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
        ]})
        .to_string(),
    )
    .unwrap();
    let server = Server::start_at(&fresh_data_dir(), flows.path(), &format!("127.0.0.1:{port}"), &base);
    let (_driver, webdriver) = chromedriver();

    rt().block_on(async {
        let c = connect(&webdriver).await;
        let result = async {
            sign_in(&c, &base).await;
            let page = wait_for_text(&c, "Add integration").await;
            assert!(page.contains(&format!("{base}/oauth/callback")), "the callback URL is shown");
            shot(&c, "integrations-empty").await;

            // One form per kind, chosen with tabs (links: the console runs no JavaScript);
            // each shows only its own fields.
            c.find(Locator::Id("kind-static")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Static key: secret name").await;
            assert!(c.find(Locator::Css("#add [name=\"client_id\"]")).await.is_err(), "no client id for a static key");
            assert!(c.find(Locator::Css("#add [name=\"client_auth\"]")).await.is_err());
            c.find(Locator::Id("kind-authorization_code")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Authorization URL").await;
            assert!(c.find(Locator::Css("#add [name=\"static_secret\"]")).await.is_err());
            let page = c.source().await.unwrap();
            assert!(
                !c.find(Locator::Css("body")).await.unwrap().text().await.unwrap().contains('`'),
                "no Markdown backticks: {page}"
            );

            // A mistake first: no token URL. What was typed stays (not the secret), the
            // problem is next to its field.
            fill(&c, "name", "oidc").await;
            fill(&c, "client_id", "tern-interop").await;
            fill(&c, "client_secret", OIDC_SECRET).await;
            fill(&c, "scopes", "openid offline_access").await;
            fill(&c, "authorization_url", &format!("{iss}/auth")).await;
            fill(&c, "api_origins", &iss).await;
            select(&c, "client_auth", "basic").await;
            fill(&c, "params", "prompt=consent").await;
            c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "The integration was not saved").await;
            shot(&c, "integrations-mistake").await;
            assert!(page.contains("a token URL is required"), "{page}");
            assert!(page.contains("value=\"tern-interop\""), "typed values stay");
            assert!(!page.contains(OIDC_SECRET), "the secret is never sent back");
            fill(&c, "token_url", &format!("{iss}/token")).await;
            fill(&c, "client_secret", OIDC_SECRET).await;
            c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Not authorized yet").await;

            // Authorize → oidc-provider's login page → consent → Tern's callback → the banner.
            c.find(Locator::Id("authorize-oidc")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Sign-in").await;
            c.find(Locator::Css("input[name=\"login\"]")).await.unwrap().send_keys("erlich").await.unwrap();
            c.find(Locator::Css("input[name=\"password\"]")).await.unwrap().send_keys("any").await.unwrap();
            c.find(Locator::Css("button[type=\"submit\"]")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Authorize").await;
            c.find(Locator::Css("button[type=\"submit\"]")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "All set! Your authorization is complete!").await;
            shot(&c, "integrations-authorized").await;
            assert!(page.contains("data-status=\"authorized\">Authorized<"), "{page}");
            assert!(!page.contains(OIDC_SECRET), "the page never shows the client secret");
            assert!(c.current_url().await.unwrap().as_str().starts_with(&base), "back on Tern's page");

            // Test: a usable token, and what the test did (no identity URL: no API called).
            c.find(Locator::Id("test-oidc")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Test of oidc: the stored token is usable; no API was called").await;
            shot(&c, "integrations-test").await;
        }
        .await;
        let _ = c.close().await;
        result
    });

    // The authorization works for a conversation.
    rt().block_on(async {
        let client = reqwest::Client::new();
        let (status, r) = post(&client, &server.url, "browser-1", json!({"text": "me"})).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["replies"][0]["text"], "Hello Bachman", "{r}");
    });

    // Edit (the secret left blank stays), then remove with confirmation.
    rt().block_on(async {
        let r = reqwest::Client::new()
            .put(format!("{}/v1/secrets/KV_KEY", server.url))
            .bearer_auth(ADMIN)
            .json(&json!({"value": "kv-key-value-0123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    });
    let (_driver, webdriver) = chromedriver();
    rt().block_on(async {
        let c = connect(&webdriver).await;
        let result = async {
            sign_in(&c, &base).await;
            c.find(Locator::Id("edit-oidc")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Edit integration oidc").await;
            shot(&c, "integrations-edit").await;
            fill(&c, "scopes", "openid profile offline_access").await;
            c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Integration oidc saved.").await;
            c.find(Locator::Id("remove-oidc")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Remove oidc?").await;
            shot(&c, "integrations-remove").await;
            c.find(Locator::Id("confirm-remove")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "Integration oidc removed with its tokens.").await;
            assert!(!page.contains("id=\"row-oidc\""), "{page}");

            // A static key: its own form; its test has nothing to call and says so; its edit
            // form chooses no client authentication.
            c.find(Locator::Id("kind-static")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Static key: secret name").await;
            fill(&c, "name", "kv").await;
            fill(&c, "static_secret", "KV_KEY").await;
            fill(&c, "api_origins", "https://api.example.com").await;
            c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Integration kv saved.").await;
            c.find(Locator::Id("test-kv")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "Test of kv: nothing to call; add an identity URL to test it.").await;
            shot(&c, "integrations-test-static").await;
            assert!(!page.contains("it works"), "{page}");
            c.find(Locator::Id("edit-kv")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Edit integration kv").await;
            assert!(
                c.find(Locator::Css("#add [name=\"client_auth\"]")).await.is_err(),
                "no client authentication chosen"
            );
        }
        .await;
        let _ = c.close().await;
        result
    });
    rt().block_on(async {
        let client = reqwest::Client::new();
        let (_, r) = post(&client, &server.url, "browser-2", json!({"text": "me"})).await;
        assert_eq!(r["status"], "failed", "the flow's integration is gone: {r}");
    });
}

#[test]
fn flows_try_it_and_runs_in_a_real_browser() {
    let test = "flows_try_it_and_runs_in_a_real_browser";
    if !tools::available(test, &[&tools::CHROMIUM]) {
        return;
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let examples = crate::support::repo().join("flows/examples");
    let _server = Server::start_at(&fresh_data_dir(), &examples, &format!("127.0.0.1:{port}"), &base);
    let (_driver, webdriver) = chromedriver();
    rt().block_on(async {
        let c = connect(&webdriver).await;
        let result = async {
            sign_in(&c, &base).await;
            // The list: every example flow, each a link to its page with its picture, drawn
            // (the image loaded and has a size).
            c.goto(&format!("{base}/flows")).await.unwrap();
            wait_for_text(&c, "Last run").await;
            shot(&c, "flows").await;
            let mut ids = Vec::new();
            for f in tern_engine::flow_set::flow_files(std::slice::from_ref(&examples)).unwrap() {
                let text = std::fs::read_to_string(f).unwrap();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                ids.push(v["id"].as_str().unwrap().to_string());
            }
            for id in &ids {
                c.goto(&format!("{base}/flows")).await.unwrap();
                wait_for_text(&c, "Last run").await;
                c.find(Locator::Css(&format!("#flow-{id} a"))).await.unwrap().click().await.unwrap();
                wait_for_text(&c, "All flows").await;
                assert!(c.current_url().await.unwrap().as_str().ends_with(&format!("/flows/{id}")));
                let script = "return document.querySelector('#picture').naturalWidth".to_string();
                let mut width = 0;
                for _ in 0..100 {
                    width = c.execute(&script, vec![]).await.unwrap().as_u64().unwrap_or(0);
                    if width > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(width > 0, "the picture of {id} did not load");
            }
            shot(&c, "flow").await;

            // The picture: boxes say what each step does, conditions sit in boxes of their own,
            // and the text is in the console's font.
            c.goto(&format!("{base}/flows/teamleader-last-name")).await.unwrap();
            let page_font = c.execute("return getComputedStyle(document.body).fontFamily", vec![]).await.unwrap();
            c.goto(&format!("{base}/flows/teamleader-last-name/graph.svg")).await.unwrap();
            let svg = c.source().await.unwrap();
            for part in [
                "“What is your Teamleader contact ID?”",
                "answer → id",
                "POST https://api.focus.teamleader.eu/contacts.info",
                "sets last_name, first_name",
            ] {
                assert!(svg.contains(part), "{part} in the picture: {svg}");
            }
            let svg_font =
                c.execute("return getComputedStyle(document.querySelector('text')).fontFamily", vec![]).await.unwrap();
            assert_eq!(svg_font, page_font, "the picture is in the page's font");

            // Try it, the web chat widget inside the page: the Teamleader flow, chosen by its id,
            // asks, pauses, and the answer resumes it; each reply links to its run.
            c.goto(&format!("{base}/try")).await.unwrap();
            wait_for_text(&c, "Start with").await;
            c.find(Locator::Id("try-flow-id")).await.unwrap().select_by_value("teamleader-last-name").await.unwrap();
            c.find(Locator::Id("new-conversation")).await.unwrap().click().await.unwrap();
            // The button submits a form: until the new page is in, the old page's chat is still
            // there (typing into it fails with a stale element), so wait for the new address.
            wait_for_url(&c, "new=1").await;
            let message = c.wait().for_element(Locator::Css("#try-chat textarea[aria-label='Message']")).await.unwrap();
            message.send_keys("look up a last name").await.unwrap();
            message.send_keys("\u{E007}").await.unwrap();
            wait_for_text(&c, "What is your Teamleader contact ID?").await;
            let message = c.find(Locator::Css("#try-chat textarea[aria-label='Message']")).await.unwrap();
            message.send_keys("c1a2").await.unwrap();
            message.send_keys("\u{E007}").await.unwrap();
            wait_for_text(&c, "c1a2").await;
            let log = c.find(Locator::Css("#try-chat [role='log']")).await.unwrap();
            // Both messages are delivered (the first, which started the chosen flow, too).
            let started = std::time::Instant::now();
            while log.find_all(Locator::Css(".tern-delivered")).await.unwrap().len() < 2 {
                assert!(started.elapsed() < Duration::from_secs(20), "both messages delivered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let started = std::time::Instant::now();
            while log.find_all(Locator::Css("a.tern-run")).await.unwrap().len() < 2 {
                assert!(started.elapsed() < Duration::from_secs(20), "two replies with their run's link");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            shot(&c, "try-it").await;
            let run_link = log.find(Locator::Css("a.tern-run")).await.unwrap().attr("href").await.unwrap().unwrap();
            assert!(run_link.starts_with("/runs/"), "{run_link}");

            // The runs list has it; its page has the transcript across the pause and the steps.
            c.goto(&format!("{base}/runs")).await.unwrap();
            wait_for_text(&c, "teamleader-last-name").await;
            c.find(Locator::Css("#f-flow")).await.unwrap().select_by_value("teamleader-last-name").await.unwrap();
            c.find(Locator::Css("form.filters button")).await.unwrap().click().await.unwrap();
            // "Any status" is on the unfiltered page too: the filtered page's address says it is in.
            wait_for_url(&c, "flow=teamleader-last-name").await;
            wait_for_text(&c, "Any status").await;
            shot(&c, "runs").await;
            // On a phone-sized window nothing is wider than the screen (tables scroll inside).
            c.set_window_size(390, 844).await.unwrap();
            shot(&c, "runs-phone").await;
            let fits =
                c.execute("return document.documentElement.scrollWidth <= window.innerWidth", vec![]).await.unwrap();
            assert_eq!(fits, serde_json::Value::Bool(true), "the runs page is wider than a phone's screen");
            // The Teamleader integration is not added: the lookup failed and the run went on
            // through on_error, which the list shows.
            let list = c.find(Locator::Css("#runs")).await.unwrap().text().await.unwrap();
            assert!(list.contains("recovered via on_error"), "{list}");
            c.find(Locator::Css("#runs tbody tr a")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "Activation 2").await;
            shot(&c, "run").await;
            for part in ["last name", "What is your Teamleader contact ID?", "c1a2", "Activation 1"] {
                assert!(page.contains(part), "{part} in the run page");
            }
            // Work and the wait for the contact apart; the recovery in words.
            let text = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
            for part in [
                "Working",
                "Waiting for the contact",
                "between a question and its answer",
                "failed, went to on_error",
                "recovered via on_error",
            ] {
                assert!(text.contains(part), "{part} in the run page: {text}");
            }
            assert!(!text.contains("The contact got no answer"), "{text}");
        }
        .await;
        let _ = c.close().await;
        result
    });
}
