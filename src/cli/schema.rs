//! `tern schema`: print the JSON Schema of the flow format.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub async fn schema(shared: &super::context::Shared, _: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = tern_engine::schema::flow_schema(&super::registry(shared).await?);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
