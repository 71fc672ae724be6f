//! Loading a component: check that it is a component, compile it (through the cache, under a
//! timeout), check every import against the world and its version, pre-instantiate it once,
//! and ask it to `describe` itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;
use wasmtime::StoreLimitsBuilder;
use wasmtime::component::Component;

use crate::bindings::{StepPre, tern::step::host::StepInfo};
use crate::error::PluginError;
use crate::host::HostState;
use crate::runtime::Runtime;

/// The package and version of the world this host provides.
pub const WORLD_PACKAGE: &str = "tern:step";
/// The version of [`WORLD_PACKAGE`] this host provides.
pub const WORLD_VERSION: &str = "0.1.0";
/// The one interface a plugin may import.
pub const HOST_INTERFACE: &str = "tern:step/host";

/// What a plugin says about itself.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    /// The step type name flows use.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line.
    pub description: String,
    /// JSON Schema of the step's own fields.
    pub config_schema: Value,
    /// JSON Schema of the variables it sets.
    pub output_schema: Option<Value>,
}

/// A loaded, pre-instantiated plugin. Every execution gets a fresh store and instance from it.
pub struct Plugin {
    /// What it says about itself.
    pub info: PluginInfo,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// How long loading took (compilation or cache hit included).
    pub load_time: Duration,
    pub(crate) pre: StepPre<HostState>,
    pub(crate) runtime: Runtime,
    pub(crate) validator: jsonschema::Validator,
    /// Origins the operator allowed for requests without an integration.
    pub(crate) allowed_origins: Arc<Vec<url::Origin>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).field("path", &self.path).finish_non_exhaustive()
    }
}

/// An installed plugin as `tern plugins list --json` and the console show it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PluginSummary {
    /// The step type flows use.
    #[serde(rename = "type")]
    pub step_type: String,
    /// The plugin's own version.
    pub version: String,
    /// Its one-line description.
    pub description: String,
    /// SHA-256 of the component, hex (what `install --sha256` pins).
    pub sha256: String,
    /// Origins the operator allowed for calls without an integration.
    pub allowed_origins: Vec<String>,
    /// The step's fields that name integrations (`integration`, `integrations`): the plugin
    /// calls APIs only through the integrations a flow names there. Empty: it uses none.
    pub integration_fields: Vec<String>,
    /// The component's file.
    pub file: String,
    /// How long loading took, in milliseconds.
    pub load_ms: f64,
}

/// Whether `name` may be a plugin's step type name: lowercase letters, digits, `_`, `-` and
/// `.`, starting with a letter, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

/// Checks one import name against the world.
fn check_import(path: &Path, name: &str) -> Result<(), PluginError> {
    let supported = format!("{HOST_INTERFACE}@{WORLD_VERSION}");
    if let Some(version) = name.strip_prefix(HOST_INTERFACE).and_then(|v| v.strip_prefix('@')) {
        let mut parts = version.split('.');
        let (major, minor) = (parts.next(), parts.next());
        if major == Some("0") && minor == Some("1") {
            return Ok(());
        }
        return Err(PluginError::IncompatibleVersion {
            path: path.to_path_buf(),
            found: version.to_string(),
            supported: WORLD_VERSION.to_string(),
        });
    }
    if name == HOST_INTERFACE {
        return Err(PluginError::IncompatibleVersion {
            path: path.to_path_buf(),
            found: "(no version)".into(),
            supported: WORLD_VERSION.to_string(),
        });
    }
    let hint = if name.starts_with("wasi:") {
        "; build without WASI (C: no stdio, `-mexec-model=reactor`; componentize-qjs: `--stub-wasi`)".to_string()
    } else {
        String::new()
    };
    Err(PluginError::ForbiddenImport { path: path.to_path_buf(), import: name.to_string(), supported, hint })
}

/// Whether the bytes are a component (not a core module).
fn component_kind(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            Err("this is a core WebAssembly module, not a component; turn it into one with `wasm-tools component new`"
                .into())
        }
        _ => Err("the file does not start with the WebAssembly magic number".into()),
    }
}

impl Plugin {
    /// Origins it may call without an integration.
    pub fn allowed_origins(&self) -> &[url::Origin] {
        &self.allowed_origins
    }

    /// What `tern plugins list` and the console show about it.
    pub fn summary(&self) -> PluginSummary {
        let props = self.info.config_schema.get("properties").and_then(Value::as_object);
        let integration_fields = ["integration", "integrations"]
            .into_iter()
            .filter(|f| props.is_some_and(|p| p.contains_key(*f)))
            .map(str::to_string)
            .collect();
        PluginSummary {
            step_type: self.info.name.clone(),
            version: self.info.version.clone(),
            description: self.info.description.clone(),
            sha256: self.sha256.clone(),
            allowed_origins: self.allowed_origins.iter().map(url::Origin::ascii_serialization).collect(),
            integration_fields,
            file: self.path.display().to_string(),
            load_ms: self.load_time.as_secs_f64() * 1000.0,
        }
    }

    /// Loads the component at `path`. `allowed_origins` are the origins it may call without an
    /// integration.
    pub async fn load(runtime: &Runtime, path: &Path, allowed_origins: Vec<url::Origin>) -> Result<Self, PluginError> {
        let started = Instant::now();
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| PluginError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::from_bytes(runtime, path, bytes, allowed_origins, started).await
    }

    /// Loads a component from memory (`path` names it in messages).
    pub async fn from_bytes(
        runtime: &Runtime,
        path: &Path,
        bytes: Vec<u8>,
        allowed_origins: Vec<url::Origin>,
        started: Instant,
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid { path: path.to_path_buf(), reason };
        component_kind(&bytes).map_err(invalid)?;
        let sha256: String = hex::encode(sha2::Sha256::digest(&bytes));
        let engine = runtime.engine.clone();
        let compile = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
        let component = match tokio::time::timeout(runtime.limits.compile_timeout, compile).await {
            Err(_) => {
                return Err(PluginError::CompileTimeout {
                    path: path.to_path_buf(),
                    seconds: runtime.limits.compile_timeout.as_secs(),
                });
            }
            Ok(Err(join)) => return Err(invalid(format!("the compiler stopped: {join}"))),
            Ok(Ok(Err(e))) => return Err(invalid(with_build_hint(format!("{e:#}")))),
            Ok(Ok(Ok(c))) => c,
        };
        for (name, _) in component.component_type().imports(&runtime.engine) {
            check_import(path, name)?;
        }
        let instance_pre = runtime.linker.instantiate_pre(&component).map_err(|e| PluginError::NotAStep {
            path: path.to_path_buf(),
            reason: with_build_hint(format!("{e:#}")),
        })?;
        let pre = StepPre::new(instance_pre).map_err(|e| PluginError::NotAStep {
            path: path.to_path_buf(),
            reason: with_build_hint(format!("{e:#}")),
        })?;
        let describe_error = |reason: String| PluginError::Describe { path: path.to_path_buf(), reason };
        let raw = describe(runtime, &pre).await.map_err(describe_error)?;
        let info = check_info(raw).map_err(describe_error)?;
        let validator = jsonschema::validator_for(&info.config_schema)
            .map_err(|e| describe_error(format!("the config schema is not a valid JSON Schema: {e}")))?;
        Ok(Self {
            info,
            path: path.to_path_buf(),
            sha256,
            load_time: started.elapsed(),
            pre,
            runtime: runtime.clone(),
            validator,
            allowed_origins: Arc::new(allowed_origins),
        })
    }
}

/// Calls `describe` in a fresh store with the usual limits.
async fn describe(runtime: &Runtime, pre: &StepPre<HostState>) -> Result<StepInfo, String> {
    let mut store = crate::step::new_store(
        runtime,
        HostState {
            limits: StoreLimitsBuilder::new().build(),
            plugin: Arc::from("(loading)"),
            step: String::new(),
            calls: crate::host::Calls::None,
            contact: None,
            integrations: Arc::default(),
            allowed_origins: Arc::default(),
            http_calls_left: 0,
            deadline: tokio::time::Instant::now() + runtime.limits.max_duration,
            fetches: Vec::new(),
            masker: Default::default(),
        },
        runtime.limits.max_duration,
    );
    let instance = pre.instantiate_async(&mut store).await.map_err(|e| format!("{e:#}"))?;
    instance
        .call_describe(&mut store)
        .await
        .map_err(|e| crate::step::explain_trap(&e, runtime, runtime.limits.max_duration))
}

fn check_info(raw: StepInfo) -> Result<PluginInfo, String> {
    if !valid_name(&raw.name) {
        return Err(format!(
            "step type name `{}` is not allowed: use lowercase letters, digits, `_`, `-` and `.`, starting with a letter",
            raw.name
        ));
    }
    if raw.version.trim().is_empty() {
        return Err("the plugin version is empty".into());
    }
    let config_schema: Value =
        tern_engine::json::from_str(&raw.config_schema).map_err(|e| format!("the config schema is not JSON: {e}"))?;
    if !config_schema.is_object() {
        return Err("the config schema must be a JSON object".into());
    }
    let output_schema = raw
        .output_schema
        .map(|s| tern_engine::json::from_str::<Value>(&s).map_err(|e| format!("the output schema is not JSON: {e}")))
        .transpose()?;
    Ok(PluginInfo { name: raw.name, version: raw.version, description: raw.description, config_schema, output_schema })
}

/// A compiler's or linker's reason, with what to do when it is a known build mistake: a
/// component built for the component model's async ABI (`task.cancel`, `task.return`, a
/// `requires the component model async feature`), which Tern's host does not run — the
/// JavaScript toolchain makes one unless it is told `--sync`.
fn with_build_hint(reason: String) -> String {
    if reason.contains("async feature") || reason.contains("task.cancel") || reason.contains("task.return") {
        format!(
            "{reason}; the component uses the component model's async ABI, which Tern does not run: build it synchronously (componentize-qjs: add `--sync`; see plugins/README.md)"
        )
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The linker's words for an async-ABI component get the fix; other reasons stay as they are.
    #[test]
    fn an_async_component_is_told_to_build_with_sync() {
        let said = with_build_hint("`task.cancel` requires the component model async feature".into());
        assert!(said.contains("--sync"), "{said}");
        assert_eq!(with_build_hint("unknown import".into()), "unknown import");
    }

    #[test]
    fn imports_are_checked_against_the_world_and_its_version() {
        let p = Path::new("x.wasm");
        assert!(check_import(p, "tern:step/host@0.1.0").is_ok());
        assert!(check_import(p, "tern:step/host@0.1.7").is_ok());
        let e = check_import(p, "tern:step/host@0.2.0").unwrap_err().to_string();
        assert!(e.contains("built for tern:step@0.2.0") && e.contains("0.1.0"), "{e}");
        let e = check_import(p, "wasi:cli/environment@0.2.0").unwrap_err().to_string();
        assert!(e.contains("`wasi:cli/environment@0.2.0`") && e.contains("--stub-wasi"), "{e}");
        assert!(check_import(p, "getenv").unwrap_err().to_string().contains("`getenv`"));
    }

    #[test]
    fn names_and_kinds() {
        assert!(valid_name("acme.lookup-contact"));
        assert!(!valid_name("Acme") && !valid_name("1x") && !valid_name("a b") && !valid_name(""));
        assert!(component_kind(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module"));
        assert!(component_kind(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(component_kind(b"hello").is_err());
    }
}
