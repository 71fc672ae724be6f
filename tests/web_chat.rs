//! The web chat in a real headless browser (Debian's Chromium through chromedriver): a page on
//! another origin embeds the tag `tern channels add --kind web` prints; a visitor opens the
//! chat, answers an `ask` with a button, gets a reply that arrives 30 s later over the stream
//! (the API behind the flow is that slow), reloads the page and sees the conversation again,
//! logs in to a CRM through `oauth_request` in a new tab and sees the conversation go on by
//! itself. The server is killed (`kill -9`) while a reply is on its way: after a restart the
//! reply reaches the open page, and the API call is not repeated. A second visitor (another browser profile) sees nothing of the first's; a page on
//! an origin the channel does not allow gets nothing.
//!
//! `TERN_SCREENSHOTS=DIR` saves the widget closed, open, with buttons and on a phone-sized
//! window there.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{chromedriver, connect, shot, wait_for_text, wait_for_text_within};
use crate::serve::{Server, add_crm, rt};
use crate::support::oauth::AuthServer;
use crate::support::{TestApi, free_port, fresh_data_dir, tern, tools};

/// How long the ticket API takes: longer than any request waits for a run, so the reply can
/// only come over the stream.
const SLOW_API_MS: u64 = 30_000;

/// Serves `html` at `/` on a port of its own (another origin than Tern's); returns its origin.
async fn host_page(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

async fn open_chat(c: &Client) {
    let launcher = c.wait().for_element(Locator::Css("button[aria-label='Open chat']")).await.unwrap();
    launcher.click().await.unwrap();
    c.wait().for_element(Locator::Css("textarea[aria-label='Message']")).await.unwrap();
}

async fn send(c: &Client, text: &str) {
    let field = c.find(Locator::Css("textarea[aria-label='Message']")).await.unwrap();
    field.send_keys(text).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap(); // Enter
}

/// The text of the chat's message log.
async fn log_text(c: &Client) -> String {
    match c.find(Locator::Css("[role='log']")).await {
        Ok(log) => log.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[test]
fn a_visitor_chats_on_another_site_in_a_real_browser() {
    let test = "a_visitor_chats_on_another_site_in_a_real_browser";
    if !tools::available(test, &[&tools::CHROMIUM]) {
        return;
    }
    let api = TestApi::start();
    let auth = AuthServer::start();
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("ticket.json"),
        json!({"version": 1, "id": "ticket", "trigger": {"type": "message", "match": {"keywords": ["help"]}},
          "steps": [
            {"id": "topic", "type": "ask", "text": "What is it about?", "save_as": "topic",
             "choices": [{"title": "Billing", "payload": "billing"}, {"title": "Shipping", "payload": "shipping"}]},
            {"id": "open", "type": "http_request",
             "request": {"method": "POST", "url": format!("{}/tickets?delay_ms={SLOW_API_MS}", api.url()), "timeout_ms": 55_000},
             "variables": {"ticket": "id"}},
            {"id": "done", "type": "send_message", "text": "Ticket {{ticket}} is open for {{topic}}."}
          ]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        flows.path().join("login.json"),
        json!({"version": 1, "id": "login", "trigger": {"type": "message", "match": {"keywords": ["login"]}},
          "steps": [
            {"id": "login", "type": "oauth_request", "integration": "crm", "text": "Please log in to the CRM:", "save_as": "login"},
            {"id": "lookup", "type": "fetch_variables", "integration": "crm", "token": "contact",
             "request": {"method": "POST", "url": format!("{}/api/contacts.info", auth.url()), "body": {"id": "c1a2"}},
             "variables": {"last_name": "data.last_name"}},
            {"id": "say", "type": "send_message", "text": "Welcome back, {{last_name}}!"}
          ]})
        .to_string(),
    )
    .unwrap();
    let (data, port) = (fresh_data_dir(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    add_crm(&data, &base, &auth.url(), &[]);
    let rt = rt();
    rt.block_on(async {
        // Two sites: the one the channel allows, and another.
        let tag_of = |out: &str| out.lines().find(|l| l.contains("<script")).unwrap().trim().to_string();
        let placeholder = "__TAG__";
        let page = |tag: &str| {
            format!(
                "<!doctype html><html lang=en><head><title>Shop</title><meta name=viewport content='width=device-width'><style>.tern-chat {{ --tern-accent: rgb(15, 118, 110) }}</style></head><body><h1>Our shop</h1><p>Welcome.</p>{tag}</body></html>"
            )
        };
        // The allowed origin is known only once its server listens: the page is served with a
        // placeholder that the test fills in below.
        let tag_cell = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shop = {
            let cell = tag_cell.clone();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
            let template = page(placeholder);
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(move || {
                    let html = template.replace(placeholder, &cell.lock().unwrap());
                    async move { axum::response::Html(html) }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            origin
        };
        let out = tern()
            .env("TERN_DATA_DIR", &data)
            .env("TERN_PUBLIC_URL", &base)
            .args(["channels", "add", "site", "--kind", "web", "--origin", &shop])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
        let tag = tag_of(&printed);
        assert_eq!(tag, format!(r#"<script src="{base}/v1/channels/site/web/widget.js" data-title="Chat" async></script>"#));
        *tag_cell.lock().unwrap() = tag.replace("data-title=\"Chat\"", "data-title=\"Shop support\"");
        let elsewhere = host_page(page(&tag)).await;
        let listen = format!("127.0.0.1:{port}");
        let mut server = Server::start_at(&data, flows.path(), &listen, &base);
        let (_driver, webdriver) = chromedriver();

        let c = connect(&webdriver).await;
        let result = async {
            c.goto(&shop).await.unwrap();
            wait_for_text(&c, "Our shop").await;
            shot(&c, "web-chat-closed").await;
            open_chat(&c).await;
            shot(&c, "web-chat-open").await;
            // The page's own colour wins over the widget's default.
            let accent = c
                .execute("return getComputedStyle(document.querySelector('.tern-header')).backgroundColor", vec![])
                .await
                .unwrap();
            assert_eq!(accent, "rgb(15, 118, 110)", "the page's --tern-accent");
            send(&c, "help").await;
            let buttons = c.wait().for_element(Locator::XPath("//button[normalize-space()='Billing']")).await.unwrap();
            assert!(log_text(&c).await.contains("What is it about?"));
            shot(&c, "web-chat-buttons").await;
            buttons.click().await.unwrap();
            // The answer shows as the button's title; the reply takes the API's 30 s.
            wait_for_text(&c, "Billing").await;
            wait_for_text_within(&c, "Ticket T-1 is open for billing.", Duration::from_secs(60)).await;
            assert_eq!(api.requests().iter().filter(|r| r.uri.starts_with("/tickets")).count(), 1, "asked once");

            // After a reload, the conversation is there again.
            c.refresh().await.unwrap();
            open_chat(&c).await;
            wait_for_text(&c, "Ticket T-1 is open for billing.").await;
            let log = log_text(&c).await;
            for line in ["help", "What is it about?", "Billing", "Ticket T-1 is open for billing."] {
                assert!(log.contains(line), "{line} after the reload: {log}");
            }

            // A crash while a reply is on its way: the message was stored before the server
            // answered, so after a restart it is taken up again; the API call it was making is
            // not repeated (its outcome is unknown: the flow fails, and the default error reply
            // says so), and that reply reaches the open page over the stream.
            let tickets = || api.requests().iter().filter(|r| r.uri.starts_with("/tickets")).count();
            send(&c, "help").await;
            let shipping = c
                .wait()
                .for_element(Locator::XPath("//button[normalize-space()='Shipping' and not(@disabled)]"))
                .await
                .unwrap();
            shipping.click().await.unwrap();
            let started = std::time::Instant::now();
            while tickets() < 2 || c.find_all(Locator::Css(".tern-msg-visitor.tern-sent")).await.unwrap().is_empty() {
                assert!(started.elapsed() < Duration::from_secs(20), "the message stored and the API called");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            server.kill9();
            server = Server::start_at(&data, flows.path(), &listen, &base);
            wait_for_text_within(&c, tern_engine::conversation::DEFAULT_ERROR_REPLY, Duration::from_secs(60)).await;
            assert_eq!(tickets(), 2, "the call whose outcome the crash hid is not made again");

            // A login in a new tab: the conversation goes on by itself.
            send(&c, "login").await;
            let link = c.wait().for_element(Locator::Css("[role='log'] a[target='_blank']")).await.unwrap();
            let href = link.attr("href").await.unwrap().unwrap();
            assert!(href.starts_with(&format!("{}/authorize?", auth.url())), "{href}");
            link.click().await.unwrap();
            wait_for_text_within(&c, "Welcome back, Bachman!", Duration::from_secs(30)).await;

            // A phone-sized window: the open chat fills it.
            c.set_window_size(375, 667).await.unwrap();
            shot(&c, "web-chat-phone").await;
            let width = c
                .execute("return document.querySelector('[role=dialog]').getBoundingClientRect().width", vec![])
                .await
                .unwrap();
            assert!(width.as_f64().unwrap() >= 360.0, "the chat fills a phone's width: {width}");

            // Another visitor (another browser profile) sees nothing of it.
            let other = connect(&webdriver).await;
            let seen = async {
                other.goto(&shop).await.unwrap();
                wait_for_text(&other, "Our shop").await;
                open_chat(&other).await;
                send(&other, "hello?").await;
                wait_for_text(&other, "hello?").await;
                log_text(&other).await
            }
            .await;
            other.close().await.unwrap();
            assert!(!seen.contains("Ticket") && !seen.contains("Bachman"), "{seen}");

            // A page of another origin gets nothing: the browser refuses to hand it the answers.
            c.goto(&elsewhere).await.unwrap();
            wait_for_text(&c, "Our shop").await;
            let outcome = c
                .execute_async(
                    &format!(
                        "const done = arguments[0]; fetch('{base}/v1/channels/site/web/sessions', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: '{{}}'}}).then(r => done('read ' + r.status), e => done('refused: ' + e.name));"
                    ),
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(outcome, "refused: TypeError", "the page of another origin reads nothing");
        }
        .await;
        c.close().await.unwrap();
        result
    });
}
