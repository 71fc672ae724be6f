//! `tern validate`: report every problem in every flow file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tern_engine::LoadOptions;
use tern_engine::flow_set::{FileOutcome, load_files};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Flow files, or directories of `.json` flows.
    #[arg(required = true, value_name = "FLOW")]
    paths: Vec<PathBuf>,
    /// Print the diagnostics as JSON (one object per file) on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn validate(shared: &super::context::Shared, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let registry = super::registry(shared).await?;
    // With a store in the data directory, integrations are checked against it.
    let integrations = super::known_integrations(shared).await;
    let opts = LoadOptions {
        integrations: integrations.as_ref(),
        allow_private_network: shared.allow_private_network,
        ..LoadOptions::new(&registry)
    };
    let files = load_files(&args.paths, &opts)?;
    let (mut errors, mut warnings) = (0, 0);
    let mut report = Vec::new();
    for loaded in &files {
        let file = &loaded.path;
        let diags = match &loaded.outcome {
            FileOutcome::Loaded { flow, .. } => flow.flow.warnings.clone(),
            FileOutcome::SecondErrorFlow { flow, problem } => {
                let mut diags = flow.warnings.clone();
                diags.push(problem.clone());
                diags
            }
            FileOutcome::Invalid(diags) => diags.clone(),
            FileOutcome::Unreadable(e) => {
                let cause = match e {
                    tern_engine::flow_set::FlowFileError::Io { cause, .. } => cause.to_string(),
                    e => e.to_string(),
                };
                eprintln!("{}", super::terminal::safe(&format!("{}: error[unreadable]: {cause}", file.display())));
                errors += 1;
                continue;
            }
        };
        errors += diags.iter().filter(|d| d.is_error()).count();
        warnings += diags.iter().filter(|d| !d.is_error()).count();
        if args.json {
            report.push(json!({ "file": file, "diagnostics": diags }));
        } else {
            super::print_diagnostics(file, &diags);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    eprintln!("checked {} file(s): {errors} error(s), {warnings} warning(s)", files.len());
    Ok(if errors > 0 { ExitCode::from(super::EXIT_USAGE) } else { ExitCode::SUCCESS })
}
