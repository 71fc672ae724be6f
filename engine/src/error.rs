//! The engine's error type for operations that are not a step failing inside a run.

use std::path::PathBuf;

use crate::diagnostics::Diagnostic;
use crate::http::HttpError;

/// What can go wrong loading flows and setting up the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flow has errors; each diagnostic says where and what to do.
    #[error("{source_name}: the flow has {} error(s)", diagnostics.iter().filter(|d| d.is_error()).count())]
    InvalidFlow {
        /// The file or name the flow came from.
        source_name: String,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
    /// Two step types have the same name.
    #[error("step type `{name}` is registered twice")]
    DuplicateStepType {
        /// The name.
        name: String,
    },
    /// A flow configured as the error flow does not have the `error` trigger.
    #[error("flow `{flow}` cannot be the error flow: its trigger must be {{\"type\": \"error\"}}")]
    NotAnErrorFlow {
        /// The flow's id.
        flow: String,
    },
    /// A flow file could not be read.
    #[error("cannot read flow file {}: {source}", path.display())]
    ReadFlow {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be set up.
    #[error("HTTP client setup failed: {0}")]
    Http(#[from] HttpError),
}
