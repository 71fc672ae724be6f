//! `tern schema`: print the JSON Schema of the flow format.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub fn schema(_: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = tern_engine::schema::flow_schema(&super::registry());
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
