//! Flow files: listing a directory, reading a file with the size limit checked first, and
//! loading a list of files into flows with every file's problems.
//!
//! Only regular files are read (a pipe or device would block or never end). A file's length is
//! taken from its metadata, then the read stops one byte past the limit (a file that grows
//! cannot make Tern read more).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LoadedFlow, flow_hash};
use crate::compile::{LoadOptions, load_flow_and_calls};
use crate::diagnostics::Diagnostic;
use crate::flow::Trigger;
use crate::step::CompiledFlow;

/// Why a flow file (or a directory of them) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlowFileError {
    /// The file could not be opened or read.
    #[error("cannot read flow file {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Why (in the message, not as a source: `{:#}` would print it twice).
        cause: std::io::Error,
    },
    /// The directory could not be listed.
    #[error("cannot list {path}: {cause}")]
    List {
        /// The directory.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is larger than flows may be.
    #[error("{path}: the flow is {bytes} bytes; the limit is {limit}")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size (at least `limit + 1` when it was only found out by reading).
        bytes: u64,
        /// The limit in bytes.
        limit: usize,
    },
}

impl FlowFileError {
    /// The diagnostic `tern validate` reports for a file that is too large (the same one
    /// [`load_flow`] gives for a too-large text), or `None` for read errors.
    pub fn diagnostic(&self) -> Option<Diagnostic> {
        match self {
            FlowFileError::TooLarge { bytes, limit, .. } => {
                Some(Diagnostic::error("too-large", "", format!("the flow is {bytes} bytes; the limit is {limit}")))
            }
            FlowFileError::Io { .. } | FlowFileError::List { .. } => None,
        }
    }
}

/// The text of the flow file at `path`, if it is at most `limit` bytes.
///
/// # Errors
/// [`FlowFileError::TooLarge`] (the file was not read past the limit), or
/// [`FlowFileError::Io`].
pub fn read_flow(path: &Path, limit: usize) -> Result<String, FlowFileError> {
    let io = |cause| FlowFileError::Io { path: path.display().to_string(), cause };
    let too_large = |bytes| FlowFileError::TooLarge { path: path.display().to_string(), bytes, limit };
    // A pipe or device would block the read or never end: only regular files are read.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let limit64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let len = file.metadata().map_err(io)?.len();
    if len > limit64 {
        return Err(too_large(len));
    }
    let mut text = String::new();
    file.take(limit64.saturating_add(1)).read_to_string(&mut text).map_err(io)?;
    if text.len() > limit {
        return Err(too_large(u64::try_from(text.len()).unwrap_or(u64::MAX)));
    }
    Ok(text)
}

/// How a flow test file's name ends (`tern test`); such files sit beside flows and are not flows.
pub const TEST_FILE_SUFFIX: &str = ".test.json";

/// `paths` with each directory replaced by the `.json` files it contains (sorted by name),
/// flow test files ([`TEST_FILE_SUFFIX`]) left out.
///
/// # Errors
/// [`FlowFileError::List`] when a directory cannot be listed.
pub fn flow_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FlowFileError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let list = |cause| FlowFileError::List { path: p.display().to_string(), cause };
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(list)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
                .filter(|f| !f.to_string_lossy().ends_with(TEST_FILE_SUFFIX))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Tells the error flows of one directory apart: the first (in load order) is the error flow;
/// each later one gets an error diagnostic (a failed run starts one error flow, so a second is
/// a mistake `tern validate` and `tern serve` report alike).
#[derive(Debug, Default)]
pub struct ErrorFlows {
    first: Option<(String, PathBuf)>,
}

impl ErrorFlows {
    /// `None` when `flow` is not an error flow or is the first; the diagnostic otherwise.
    pub fn check(&mut self, flow: &CompiledFlow, file: &Path) -> Option<Diagnostic> {
        if !matches!(flow.trigger, Some(Trigger::Error)) {
            return None;
        }
        match &self.first {
            None => {
                self.first = Some((flow.id.to_string(), file.to_path_buf()));
                None
            }
            Some((id, path)) => Some(
                Diagnostic::error(
                    "second-error-flow",
                    "/trigger",
                    format!(
                        "flow `{}` is a second error flow: `{id}` ({}) is the error flow already, and a failed run starts one",
                        flow.id,
                        path.display()
                    ),
                )
                .with_hint("keep one error flow in the directory; give the others another trigger"),
            ),
        }
    }
}

/// One flow file, as [`load_files`] found it.
#[derive(Debug)]
pub struct FlowFile {
    /// The file.
    pub path: PathBuf,
    /// What it holds.
    pub outcome: FileOutcome,
}

/// What a flow file holds.
#[derive(Debug)]
pub enum FileOutcome {
    /// A flow that loads (its warnings are in `flow.flow.warnings`), with its source (what a
    /// store keeps to resume paused runs of this version).
    Loaded {
        /// The file's text.
        source: String,
        /// The compiled flow and its version.
        flow: LoadedFlow,
    },
    /// An error flow after the first ([`ErrorFlows`]): it compiles, but is not loaded.
    SecondErrorFlow {
        /// The compiled flow (its warnings are in `flow.warnings`).
        flow: Box<CompiledFlow>,
        /// The `second-error-flow` error.
        problem: Diagnostic,
    },
    /// A flow that does not load (or a file over the size limit), with every problem.
    Invalid(Vec<Diagnostic>),
    /// The file could not be read.
    Unreadable(FlowFileError),
}

/// Reads and compiles every flow file in `paths` (directories expanded: [`flow_files`]), in
/// order; an error flow after the first is [`FileOutcome::SecondErrorFlow`].
///
/// # Errors
/// [`FlowFileError::List`] when a directory cannot be listed.
pub fn load_files(paths: &[PathBuf], opts: &LoadOptions<'_>) -> Result<Vec<FlowFile>, FlowFileError> {
    let mut error_flows = ErrorFlows::default();
    let files = flow_files(paths)?;
    // The ids of flows that do not load, for the checks of calls to them.
    let mut broken_ids: Vec<String> = Vec::new();
    // Each id once in a set: the file that has it first.
    let mut ids: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    // The calls of flows that do not load (file index, calls, source), checked with the rest.
    let mut broken_calls: Vec<(usize, Vec<crate::step::FlowCall>, String)> = Vec::new();
    let mut loaded: Vec<FlowFile> = files
        .into_iter()
        .enumerate()
        .map(|(index, path)| {
            let outcome = match read_flow(&path, opts.limits.max_bytes) {
                Ok(source) => match load_flow_and_calls(&source, opts) {
                    (Ok(flow), _) => match ids.get(flow.id.as_str()) {
                        Some(first) => {
                            let mut d = Diagnostic::error(
                                "duplicate-flow-id",
                                "/id",
                                format!(
                                    "flow id `{}` is already the id of {}; each flow of a set has its own id",
                                    flow.id,
                                    first.display()
                                ),
                            )
                            .with_hint("rename one of them, or remove the copy");
                            crate::diagnostics::locate(&source, std::slice::from_mut(&mut d));
                            FileOutcome::Invalid(vec![d])
                        }
                        None => {
                            ids.insert(flow.id.to_string(), path.clone());
                            match error_flows.check(&flow, &path) {
                                Some(problem) => FileOutcome::SecondErrorFlow { flow: Box::new(flow), problem },
                                None => {
                                    let flow = LoadedFlow { hash: flow_hash(&source), flow: Arc::new(flow) };
                                    FileOutcome::Loaded { source, flow }
                                }
                            }
                        }
                    },
                    (Err(diags), calls) => {
                        if let Some(id) = crate::json::from_str::<serde_json::Value>(&source)
                            .ok()
                            .and_then(|v| v.get("id").and_then(serde_json::Value::as_str).map(str::to_string))
                        {
                            broken_ids.push(id);
                        }
                        if !calls.is_empty() {
                            broken_calls.push((index, calls, source));
                        }
                        FileOutcome::Invalid(diags)
                    }
                },
                Err(e) => match e.diagnostic() {
                    Some(d) => FileOutcome::Invalid(vec![d]),
                    None => FileOutcome::Unreadable(e),
                },
            };
            FlowFile { path, outcome }
        })
        .collect();
    // The checks across the set: a file whose calls do not match the flows they call does
    // not load.
    let flows: Vec<&CompiledFlow> = loaded
        .iter()
        .filter_map(|f| match &f.outcome {
            FileOutcome::Loaded { flow, .. } => Some(&*flow.flow),
            _ => None,
        })
        .collect();
    let broken: Vec<&str> = broken_ids.iter().map(String::as_str).collect();
    let mut problems = super::check_calls(&flows, &broken).into_iter();
    // A flow that does not load still has its calls checked, so that every problem is
    // reported at once.
    let broken_found: Vec<(usize, Vec<Diagnostic>)> = broken_calls
        .into_iter()
        .map(|(index, calls, source)| {
            let mut found = super::check_these_calls(&calls, &flows, &broken);
            crate::diagnostics::locate(&source, &mut found);
            (index, found)
        })
        .collect();
    for file in &mut loaded {
        if let FileOutcome::Loaded { flow, source } = &file.outcome {
            let found = problems.next().unwrap_or_default();
            if !found.is_empty() {
                let mut diags = flow.flow.warnings.clone();
                diags.extend(found);
                crate::diagnostics::locate(source, &mut diags);
                file.outcome = FileOutcome::Invalid(diags);
            }
        }
    }
    for (index, found) in broken_found {
        if let Some(FileOutcome::Invalid(diags)) = loaded.get_mut(index).map(|f| &mut f.outcome) {
            diags.extend(found);
            diags.sort_by_key(|d| (d.line, d.column, d.severity));
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_checked_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        let file = std::fs::File::create(&path).unwrap();
        // A sparse 1 GiB file: reading it would take a gigabyte of memory.
        file.set_len(1 << 30).unwrap();
        let err = read_flow(&path, 1024 * 1024).unwrap_err();
        assert!(matches!(err, FlowFileError::TooLarge { bytes, .. } if bytes == 1 << 30), "{err}");
        assert_eq!(err.diagnostic().unwrap().code, "too-large");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(read_flow(&path, 1024).unwrap(), "{}");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_or_pipe_is_not_read() {
        // A device without a length (or a FIFO, which would block) is not a flow file.
        let err = read_flow(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
