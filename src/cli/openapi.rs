//! `tern openapi`: print the OpenAPI 3.1 document of `tern serve`'s HTTP API (what
//! `GET /openapi.json` serves). `tern openapi > docs/openapi.json` refreshes the committed copy.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct OpenapiArgs {}

pub async fn openapi(_: OpenapiArgs) -> anyhow::Result<ExitCode> {
    print!("{}", crate::server::openapi::document_json());
    Ok(ExitCode::SUCCESS)
}
