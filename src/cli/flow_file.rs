//! Reading flow files with the size limit checked first: the file's length from its metadata,
//! then a read that stops one byte past the limit (a file that grows, or a device or pipe whose
//! metadata says nothing, cannot make Tern read more).

use std::io::Read as _;
use std::path::Path;

use tern_engine::Diagnostic;

/// Why a flow file could not be read.
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
    /// `load_flow` gives for a too-large text), or `None` for read errors.
    pub fn diagnostic(&self) -> Option<Diagnostic> {
        match self {
            FlowFileError::TooLarge { bytes, limit, .. } => {
                Some(Diagnostic::error("too-large", "", format!("the flow is {bytes} bytes; the limit is {limit}")))
            }
            FlowFileError::Io { .. } => None,
        }
    }
}

/// The text of the flow file at `path`, if it is at most `limit` bytes.
pub fn read_flow(path: &Path, limit: usize) -> Result<String, FlowFileError> {
    let io = |cause| FlowFileError::Io { path: path.display().to_string(), cause };
    let too_large = |bytes| FlowFileError::TooLarge { path: path.display().to_string(), bytes, limit };
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
    fn a_device_without_a_length_is_read_only_up_to_the_limit() {
        let err = read_flow(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(matches!(err, FlowFileError::TooLarge { bytes: 4097, .. }), "{err}");
    }
}
