//! Connection events (issue 28), end to end: `tern serve --connection-events-channel ops`
//! sends an integration's authorization, a failed token refresh, a rejected refresh token and a
//! client certificate near its expiry to the `ops` channel's webhook, each verified by the
//! Standard Webhooks reference library for Python (`tests/webhooks/receiver.py`). Each condition
//! is sent once: a restart (`kill -9`) that finds the same conditions again sends nothing new.
//! The console shows the same conditions as banners.

use std::collections::VecDeque;
use std::path::Path;

use serde_json::{Value, json};

use crate::deliveries::{Receiver, python_receiver};
use crate::serve::{ADMIN, Server, add_crm, authorize_crm, console_sign_in, post, rt};
use crate::support::oauth::AuthServer;
use crate::support::{free_port, fresh_data_dir, tern_at};

/// The events the receiver verified, in the order they came; fails on one it could not verify.
struct Events {
    receiver: Receiver,
    early: VecDeque<Value>,
}

impl Events {
    /// The next event of `kind` (the others that come first are kept for later).
    fn of(&mut self, kind: &str) -> Value {
        if let Some(i) = self.early.iter().position(|e| e["body"]["type"] == kind) {
            return self.early.remove(i).unwrap();
        }
        loop {
            let report = self.receiver.next();
            assert_eq!(report["verified"], true, "every event verifies: {report}");
            assert!(report["id"].as_str().unwrap().starts_with("conn_"), "{report}");
            if report["body"]["type"] == kind {
                return report;
            }
            self.early.push_back(report);
        }
    }
}

fn serve(data: &Path, flows: &Path, port: u16) -> Server {
    let mut cmd = crate::support::tern();
    cmd.env("TERN_DATA_DIR", data)
        .env("TERN_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", ADMIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--watch", "false"])
        .args(["--flows", flows.to_str().unwrap(), "--connection-events-channel", "ops"]);
    Server::spawn(cmd)
}

#[test]
fn connection_events_reach_the_operator_signed_and_once_each() {
    let auth = AuthServer::start();
    let a = auth.url();
    let data = fresh_data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    add_crm(&data, &base, &a, &[]);
    // An integration whose client certificate expires in 5 days.
    let mtls = crate::support::mtls::MtlsServer::start();
    let soon = mtls.client_expiring_in(5);
    std::fs::write(data.join("bank.pem"), &soon.cert).unwrap();
    std::fs::write(data.join("bank-key.pem"), &soon.key).unwrap();
    let env = [("BANK_KEY", "bank-key-0123456789")];
    let out = tern_at(
        &data,
        &env,
        &[
            "integrations",
            "add",
            "bank",
            "--kind",
            "api-key",
            "--key-env",
            "BANK_KEY",
            "--key-name",
            "X-Api-Key",
            "--client-cert",
            data.join("bank.pem").to_str().unwrap(),
            "--client-key",
            data.join("bank-key.pem").to_str().unwrap(),
            "--api-origin",
            &mtls.url(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The operators' channel and its receiver.
    let hook_port = free_port();
    let secret = tern_engine::standard_webhooks::WebhookSecret::generate().to_whsec();
    let out = tern_at(
        &data,
        &[("OPS_HOOK", &secret)],
        &[
            "channels",
            "add",
            "ops",
            "--kind",
            "generic",
            "--webhook-url",
            &format!("http://127.0.0.1:{hook_port}/events"),
            "--webhook-secret-env",
            "OPS_HOOK",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let Some(receiver) = python_receiver(hook_port, &secret) else { return };
    let mut events = Events { receiver, early: VecDeque::new() };

    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("crm.json"),
        json!({"version": 1, "id": "crm", "trigger": {"type": "message"},
               "steps": [{"id": "lookup", "type": "fetch_variables", "integration": "crm",
                          "request": {"method": "POST", "url": format!("{a}/api/contacts.info"), "body": {"id": "c1a2"}},
                          "variables": {"last_name": "data.last_name"}},
                         {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}]})
        .to_string(),
    )
    .unwrap();

    let mut server = serve(&data, flows.path(), port);
    // Found at start: the certificate, at its 7-day stage.
    let cert = events.of("integration.certificate_expiring");
    assert_eq!(cert["body"]["data"]["integration"], "bank", "{cert}");
    // Whole days left: 5 within the second the certificate was made, 4 after.
    let days = cert["body"]["data"]["certificate"]["expires_in_days"].as_i64().unwrap();
    assert!((4..=5).contains(&days), "{cert}");
    assert!(cert["body"]["data"]["fix"].as_str().unwrap().contains("--client-cert NEW.pem"), "{cert}");

    let rt = rt();
    let mut rejected_body = String::new();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    rt.block_on(async {
        authorize_crm(&client, &base).await;
        let authorized = events.of("integration.authorized");
        assert_eq!(authorized["body"]["data"]["console_url"], format!("{base}/#row-crm"), "{authorized}");

        // The API stops taking the access token and the token endpoint fails: one event,
        // however many messages fail the same hour.
        auth.set(|f| f.html_500 = true);
        auth.revoke_access_tokens();
        for n in 0..3 {
            let (_, answer) =
                post(&client, &base, &format!("c-{n}"), json!({"id": format!("m-{n}"), "text": "hi"})).await;
            assert_eq!(answer["status"], "failed", "{answer}");
        }
        let failed = events.of("integration.refresh_failed");
        assert_eq!(failed["body"]["data"]["integration"], "crm", "{failed}");
        assert!(failed["body"]["data"]["reason"].as_str().unwrap().contains("500"), "{failed}");
        // The console says the same.
        let cookie = console_sign_in(&client, &base).await;
        let page = client.get(format!("{base}/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("id=\"attention-refresh-crm\""), "a banner for the failed refresh");

        // The provider rejects the refresh token, and echoes the request (the refresh token)
        // in its error description.
        auth.set(|f| {
            f.html_500 = false;
            f.echo_request = true;
        });
        auth.revoke_refresh_tokens();
        let (_, answer) = post(&client, &base, "c-9", json!({"id": "m-9", "text": "hi"})).await;
        assert_eq!(answer["status"], "failed", "{answer}");
        let rejected = events.of("integration.needs_reauthorization");
        rejected_body = rejected.to_string();
        assert!(rejected["body"]["data"]["reason"].as_str().unwrap().contains("invalid_grant"), "{rejected}");
        assert!(rejected["body"]["data"]["fix"].as_str().unwrap().contains("tern integrations authorize crm"));
        let page = client.get(format!("{base}/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("id=\"attention-crm\""), "a banner for the authorization to renew");
        assert!(!page.contains("id=\"attention-refresh-crm\""), "one banner, the one that says what to do");
    });

    // Killed and started again: the start-up sweep finds the same certificate and rejected
    // authorization, and sends nothing new; the next event is the next authorization.
    server.kill9();
    let _server = serve(&data, flows.path(), port);
    // The provider's words were stored masked: after the restart (when the process no longer
    // knows the old refresh token) neither the admin API nor the event shows it.
    let list = rt.block_on(crate::serve::admin_get(&client, &base, "/v1/integrations")).to_string();
    assert!(list.contains("refresh token revoked"), "the reason is kept: {list}");
    for secret in auth.secrets() {
        assert!(!list.contains(&secret), "a secret in the admin API's list");
        assert!(!rejected_body.contains(&secret), "a secret in the event");
    }
    rt.block_on(authorize_crm(&client, &base));
    let next = events.receiver.next();
    assert_eq!(next["body"]["type"], "integration.authorized", "nothing sent twice: {next}");
    assert!(events.early.is_empty(), "nothing else came: {:?}", events.early);
}
