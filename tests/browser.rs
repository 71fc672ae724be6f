//! The integrations page in a real headless browser: Debian's Chromium driven by chromedriver
//! over WebDriver (fantoccini). The operator fills the "Add integration" form, clicks Authorize,
//! logs in at panva's oidc-provider, comes back to the "All set!" banner, and a conversation then
//! uses the token.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test` installs them; see `support::tools`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::serve::{ADMIN, Server, post, rt};
use crate::support::oidc::{OIDC_SECRET, OidcProvider};
use crate::support::{free_port, fresh_data_dir, tools};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed for the browser test (apt-get install chromium chromium-driver)");
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

async fn connect(webdriver: &str) -> Client {
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
async fn wait_for_text(c: &Client, needle: &str) -> String {
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
        if started.elapsed() > Duration::from_secs(20) {
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
            // Basic credentials in a top-level navigation; the browser keeps them for the realm.
            c.goto(&format!("http://admin:{ADMIN}@127.0.0.1:{port}/")).await.unwrap();
            let page = wait_for_text(&c, "Add integration").await;
            assert!(page.contains(&format!("{base}/oauth/callback")), "the callback URL is shown");

            fill(&c, "name", "oidc").await;
            select(&c, "kind", "authorization_code").await;
            fill(&c, "client_id", "tern-interop").await;
            fill(&c, "client_secret", OIDC_SECRET).await;
            fill(&c, "scopes", "openid offline_access").await;
            fill(&c, "authorization_url", &format!("{iss}/auth")).await;
            fill(&c, "token_url", &format!("{iss}/token")).await;
            fill(&c, "api_origins", &iss).await;
            select(&c, "client_auth", "basic").await;
            fill(&c, "params", "prompt=consent").await;
            c.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "incomplete").await;

            // Authorize → oidc-provider's login page → consent → Tern's callback → the banner.
            c.find(Locator::Id("authorize-oidc")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Sign-in").await;
            c.find(Locator::Css("input[name=\"login\"]")).await.unwrap().send_keys("erlich").await.unwrap();
            c.find(Locator::Css("input[name=\"password\"]")).await.unwrap().send_keys("any").await.unwrap();
            c.find(Locator::Css("button[type=\"submit\"]")).await.unwrap().click().await.unwrap();
            wait_for_text(&c, "Authorize").await;
            c.find(Locator::Css("button[type=\"submit\"]")).await.unwrap().click().await.unwrap();
            let page = wait_for_text(&c, "All set! Your authorization is complete!").await;
            assert!(page.contains("id=\"status-oidc\">authorized<"), "{page}");
            assert!(!page.contains(OIDC_SECRET), "the page never shows the client secret");
            assert!(c.current_url().await.unwrap().as_str().starts_with(&base), "back on Tern's page");
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
}
