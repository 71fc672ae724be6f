//! `tern demo`: the whole mission on loopback, with no setup. An embedded OAuth provider and a
//! Teamleader-like API start on 127.0.0.1; Tern registers an integration in a fresh encrypted
//! store, authorizes it (authorization code + PKCE, the browser played by Tern itself), runs the
//! example flow that looks up `data.last_name`, then forces the token to expire and shows the
//! refresh. Every step is printed.

mod provider;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;
use serde_json::{Map, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{
    Engine, IntegrationName, LoadOptions, Message, RunInput, RunLimits, RunStatus, TokenOwner, load_flow,
};
use tern_integrations::config::{ClientAuth, IntegrationConfig};
use tern_integrations::{CallbackParams, Integrations};
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::{SqliteStore, Store};

const FLOW: &str = include_str!("../../flows/examples/teamleader-last-name.json");
const CONTACT_ID: &str = "cde0bc5f";

#[derive(Debug, Args)]
pub struct DemoArgs {}

fn say(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

pub async fn demo(_: DemoArgs) -> anyhow::Result<ExitCode> {
    println!("Tern demo: an OAuth integration, a flow that fetches `data.last_name`, and a token refresh.");
    let client_secret: String = {
        let bytes: [u8; 16] = rand::random();
        hex::encode(bytes)
    };
    let provider = provider::DemoProvider::start(&client_secret).await.context("cannot start the demo provider")?;
    let origin = provider.origin();
    say(1, &format!("Started a demo OAuth provider and a Teamleader-like API at {origin}"));

    let dir = std::env::temp_dir().join(format!("tern-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _cleanup = Cleanup(dir.clone());
    let (key, _) = MasterKey::generate();
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(&dir.join("tern.db"), Keyring::new(key)).await?);
    say(2, &format!("Created an encrypted SQLite store in {} (AES-256-GCM; the key stays in memory)", dir.display()));

    let http = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() })?;
    let public_url = url::Url::parse("http://127.0.0.1:8080")?;
    let integrations = Arc::new(Integrations::new(store.clone(), http.clone(), public_url, Arc::new(NoSecrets)));
    let name = IntegrationName::new("teamleader").map_err(anyhow::Error::msg)?;
    let config = IntegrationConfig {
        client_id: Some(provider::CLIENT_ID.into()),
        scopes: vec!["contacts".into()],
        authorization_url: Some(url::Url::parse(&format!("{origin}/oauth2/authorize"))?),
        token_url: Some(url::Url::parse(&format!("{origin}/oauth2/access_token"))?),
        api_origins: vec![origin.clone()],
        client_auth: ClientAuth::Body,
        ..IntegrationConfig::default()
    };
    store.put_integration(&name, &config, Some(&SecretString::from(client_secret))).await?;
    say(
        3,
        &format!(
            "Registered integration `teamleader` (client secret stored encrypted). Callback URL to register at the provider: {}",
            integrations.callback_url()
        ),
    );

    let start = integrations.begin(&name, TokenOwner::Workspace).await?;
    say(4, "Authorizing with authorization code + PKCE. The authorization URL a person would open:");
    println!("   {}", start.url);
    let browser = reqwest_client()?;
    let resp = browser.get(start.url.as_str()).send().await.context("the demo provider did not answer")?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .context("the demo provider did not redirect back")?;
    let callback = url::Url::parse(location)?;
    let query: Map<String, serde_json::Value> =
        callback.query_pairs().map(|(k, v)| (k.into_owned(), json!(v))).collect();
    let params: CallbackParams = serde_json::from_value(serde_json::Value::Object(query))?;
    integrations.complete(&params).await?;
    println!(
        "   The provider redirected to {} with a code; Tern checked the state, exchanged the code with the PKCE verifier and stored the tokens.",
        callback.path()
    );
    println!("   All set! Your authorization is complete!");

    let flow_text = FLOW.replace("https://api.focus.teamleader.eu", &origin);
    let registry = tern_steps::registry();
    let flow = load_flow(
        &flow_text,
        // The demo's API is on loopback, and its client allows it.
        &LoadOptions { allow_private_network: true, ..LoadOptions::new(&registry) },
    )
    .map_err(|d| anyhow::anyhow!("the embedded flow is invalid: {d:?}"))?;
    let engine = Engine {
        registry: Arc::new(registry),
        outbound: Outbound::new(http, Some(integrations.clone())),
        secrets: Arc::new(NoSecrets),
        limits: RunLimits::default(),
    };
    say(5, "Running flows/examples/teamleader-last-name.json (the API answers only with a valid bearer token):");
    converse(&engine, &flow).await?;

    let mut token = store.get_token(&name, &TokenOwner::Workspace).await?.context("no token stored")?;
    token.expires_at = Some(store.clock().now_s() - 1);
    store.put_token(&name, &TokenOwner::Workspace, &token).await?;
    integrations.invalidate(&name);
    say(6, "Forced the stored access token to expire, and ran the flow again:");
    let before = provider.token_requests().len();
    converse(&engine, &flow).await?;
    let requests = provider.token_requests();
    println!(
        "   Tern refreshed the token before calling the API (token requests: {} × {}); the rotated refresh token was stored before the new access token was used.",
        requests.len() - before,
        requests[before..].join(", ")
    );

    say(7, "Do it for real:");
    println!(
        "   tern integrations add teamleader --profile teamleader --client-id ID --client-secret-env TL_SECRET --scopes contacts"
    );
    println!("   tern integrations authorize teamleader");
    println!("   tern run flows/examples/teamleader-last-name.json -m \"last name\" -m <contact id>");
    println!("   export TERN_CHANNEL_TOKEN=$(openssl rand -hex 24)   # the `default` channel's token");
    println!("   tern serve --flows flows/examples   # reads TERN_CHANNEL_TOKEN from the environment");
    println!(
        "   curl -s -X POST http://127.0.0.1:8080/v1/conversations/conv-42/messages -H \"authorization: Bearer $TERN_CHANNEL_TOKEN\" -H 'content-type: application/json' -d '{{\"text\": \"last name\", \"message_id\": \"m-1\"}}'"
    );
    Ok(ExitCode::SUCCESS)
}

async fn converse(engine: &Engine, flow: &tern_engine::CompiledFlow) -> anyhow::Result<()> {
    let input = |text: &str| RunInput {
        now_ms: None,
        woken: None,
        event: None,
        journal: None,
        flows: None,
        conversation_id: "demo".into(),
        contact: json!({"id": "demo-user"}),
        message: Message { text: text.into(), ..Default::default() },
    };
    println!("   you:  last name");
    let mut result = engine.start(flow, input("last name"), Map::new(), None).await;
    for r in &result.replies {
        println!("   tern: {}", r.text);
    }
    if let Some(snapshot) = result.snapshot.take() {
        println!("   you:  {CONTACT_ID}");
        result = engine.resume(flow, snapshot, input(CONTACT_ID), None).await;
        for r in &result.replies {
            println!("   tern: {}", r.text);
        }
    }
    for t in result.trace.iter().filter(|t| &*t.step_type == "fetch_variables") {
        let status = t.detail.get("response").and_then(|r| r.get("status")).cloned().unwrap_or_default();
        println!(
            "   (step `{}`: POST /contacts.info → {status}, mapped data.last_name = {})",
            t.step,
            result.variables.get("last_name").cloned().unwrap_or_default()
        );
    }
    anyhow::ensure!(result.status == RunStatus::Completed, "the flow did not complete: {:?}", result.error);
    Ok(())
}

fn reqwest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build()?)
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
