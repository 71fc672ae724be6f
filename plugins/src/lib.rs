//! WebAssembly step plugins for Tern (DESIGN §8, SECURITY R10).
//!
//! A plugin is a WebAssembly component of the `tern:step@0.1.0` world (`plugins/wit/step.wit`):
//! it exports `describe` and `run`, and may import only `tern:step/host` (`log`, `http-fetch`).
//! No WASI is linked; any other import is refused when the plugin is loaded, with its name.
//!
//! Design choices:
//!
//! - **One engine per process** ([`Runtime`]): Cranelift, the component model, fuel, epoch
//!   interruption driven by a ticker thread, and the pooling allocator (on-demand when the
//!   platform refuses the pool). Compiled code is cached by wasmtime in a directory that only
//!   Tern writes, keyed by the component's hash and the engine's settings, so no file from
//!   elsewhere is ever deserialized, and Tern itself needs no `unsafe`.
//! - **Compile once, instantiate per execution**: a [`Plugin`] keeps an `InstancePre`; every
//!   step execution gets a fresh `Store` and instance, so nothing leaks between runs. Each store
//!   has a memory cap, fuel and an epoch deadline (the step's share of the run's deadline), and
//!   the output is size-capped.
//! - **The host mediates all I/O**: `http-fetch` goes through the engine's [`Outbound`]
//!   (SSRF guard, redirect checks, timeouts, size cap, token injection and one refresh after a
//!   rejected token). The plugin's own `Authorization` is removed; it may use only the
//!   integrations its step names, and call other origins only when the operator allowed them.
//! - **Same registry as built-in steps** ([`PluginStepType`]): flows use plugin steps by name,
//!   `tern validate` checks their config against the plugin's JSON Schema, and every failure
//!   (trap, timeout, memory, bad output, the plugin's own typed error) is a step error that
//!   names the plugin and can take the step's `on_error`.
//!
//! [`Outbound`]: tern_engine::http::Outbound

mod bindings;
mod error;
pub mod fixture;
mod host;
mod limits;
mod plugin;
mod runtime;
pub mod scaffold;
mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::PluginError;
pub use limits::Limits;
pub use plugin::{HOST_INTERFACE, Plugin, PluginInfo, PluginSummary, WORLD_PACKAGE, WORLD_VERSION, valid_name};
pub use runtime::Runtime;
pub use step::PluginStepType;

/// The `.wasm` files in a plugin directory, sorted; none when the directory does not exist.
pub fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PluginError::Read { path: dir.to_path_buf(), reason: e.to_string() }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The allowlist next to a plugin: `NAME.allow`, one origin (`https://api.example.com`) per
/// line, `#` comments. Requests without an integration may go only there.
pub fn allowlist_path(plugin: &Path) -> PathBuf {
    plugin.with_extension("allow")
}

/// Reads a plugin's allowlist (empty when there is none).
pub fn read_allowlist(plugin: &Path) -> Result<Vec<url::Origin>, PluginError> {
    let path = allowlist_path(plugin);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PluginError::Read { path, reason: e.to_string() }),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let origin = tern_engine::http::parse_origin(line)
            .map_err(|e| PluginError::Read { path: path.clone(), reason: format!("line {}: {e}", i + 1) })?;
        out.push(origin);
    }
    Ok(out)
}

/// Loads every plugin in `dir`. Returns all problems at once.
pub async fn load_dir(runtime: &Runtime, dir: &Path) -> Result<Vec<Arc<Plugin>>, Vec<PluginError>> {
    let files = plugin_files(dir).map_err(|e| vec![e])?;
    let mut plugins = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let loaded = match read_allowlist(&file) {
            Ok(origins) => Plugin::load(runtime, &file, origins).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(p) => plugins.push(Arc::new(p)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(plugins) } else { Err(errors) }
}
