//! `tern api NAME [-X METHOD] PATH_OR_URL [-d JSON] [-H 'Name: value']`: call an integration's
//! API with its token, like `gh api`, and print the answer — the quickest way to find the path
//! to map in a flow (`data.last_name`). Thin adapter over
//! [`Integrations::call`](tern_integrations::Integrations::call): the token goes only to
//! the integration's API origins, and is refreshed when due or after a "token rejected" status.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use tern_engine::IntegrationName;
use tern_engine::http::Method;
use tern_integrations::{ApiCall, ProbeError};

use super::context::Shared;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The integration whose token is sent.
    name: IntegrationName,
    /// A path under the integration's first API origin (`/v1/me`), or a full URL on one of its
    /// API origins.
    target: String,
    /// The method: GET, POST, PUT, PATCH, DELETE or HEAD (default GET, or POST with -d).
    #[arg(short = 'X', long, value_name = "METHOD", value_parser = parse_method)]
    method: Option<Method>,
    /// A JSON request body.
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    data: Option<String>,
    /// An extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Print the status line and the response headers before the body.
    #[arg(short = 'i', long)]
    include: bool,
}

/// A method `tern api` does not send.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD")]
pub struct UnknownMethod(String);

fn parse_method(s: &str) -> Result<Method, UnknownMethod> {
    serde_json::from_value(Value::String(s.to_ascii_uppercase()))
        .map_err(|_| UnknownMethod(s.chars().take(40).collect()))
}

pub async fn api(shared: &Shared, args: ApiArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.data {
        None => None,
        Some(d) => Some(
            serde_json::from_str::<Value>(d).context("-d is not JSON (quote it for the shell: -d '{\"id\": 1}')")?,
        ),
    };
    let method = args.method.unwrap_or(if body.is_some() { Method::Post } else { Method::Get });
    let store = shared.open_store().await?;
    let secrets = shared.secrets(Some(&*store)).await?;
    let service = shared.integrations(store, secrets)?;
    let call = ApiCall { method, target: args.target, body, headers: args.headers, timeout: None };
    // A request that was made and failed (refused origin, no usable token, network) is a
    // failed command (exit 1); a mistake in the arguments is a usage error (exit 2).
    let resp = service.call(&args.name, &call).await.map_err(|e| match e {
        ProbeError::Http { .. } => anyhow::Error::new(super::Failed(e.to_string())),
        other => other.into(),
    })?;
    // What the API answers can echo the credential (or any other secret Tern holds): masked
    // like everything else that leaves the process.
    // Control characters (terminal escape sequences an API may send) are shown as `�`.
    let mask = super::terminal::safe;
    if args.include {
        println!("{} {}", resp.status.as_u16(), resp.status.canonical_reason().unwrap_or(""));
        for (k, v) in &resp.headers {
            println!("{k}: {}", mask(v.to_str().unwrap_or("(not text)")));
        }
        println!();
    }
    match tern_engine::json::from_slice::<Value>(&resp.body) {
        Ok(json) => println!("{}", mask(&serde_json::to_string_pretty(&json)?)),
        Err(_) => println!("{}", mask(&String::from_utf8_lossy(&resp.body))),
    }
    if resp.status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} answered {}", tern_engine::http::display_url(&resp.url), resp.status.as_u16());
        Ok(ExitCode::from(super::EXIT_FAILED))
    }
}
