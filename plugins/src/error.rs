//! Errors of loading plugins. Each names the plugin file or step type.

use std::path::PathBuf;

/// Why a plugin could not be loaded or registered.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("{path}: cannot read the plugin: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a WebAssembly component (or not valid).
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The component imports something Tern does not provide.
    #[error(
        "{path}: imports `{import}`, which Tern does not provide; plugins may import only {supported} (log and http-fetch), and no WASI{hint}"
    )]
    ForbiddenImport {
        /// The file.
        path: PathBuf,
        /// The import's name.
        import: String,
        /// What is supported.
        supported: String,
        /// How to fix it.
        hint: String,
    },
    /// The component was built for another version of the `tern:step` package.
    #[error(
        "{path}: built for tern:step@{found}; this Tern supports tern:step@{supported} (any 0.1.x); rebuild the plugin against plugins/wit/step.wit"
    )]
    IncompatibleVersion {
        /// The file.
        path: PathBuf,
        /// The version the plugin imports.
        found: String,
        /// The version Tern provides.
        supported: String,
    },
    /// The component does not export the world's functions.
    #[error("{path}: does not implement the tern:step world (exports `describe` and `run`): {reason}")]
    NotAStep {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Compiling took too long.
    #[error("{path}: compiling took longer than {seconds} s")]
    CompileTimeout {
        /// The file.
        path: PathBuf,
        /// The limit.
        seconds: u64,
    },
    /// `describe` failed or returned something unusable.
    #[error("{path}: describe(): {reason}")]
    Describe {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The wasmtime engine could not be set up.
    #[error("the WebAssembly runtime could not start: {0}")]
    Runtime(String),
}
