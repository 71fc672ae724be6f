//! Flow tests for designers (`tern test`): conversation scripts kept next to the flows, run in
//! process against recorded API answers.
//!
//! A test file (`NAME.test.json`, see [`TestFile`]) names the flows under test (by default its
//! own folder, loaded as a server loads it), and lists test cases. Each case is a conversation:
//! what the contact writes, turn by turn, and the replies Tern must send; the third-party API's
//! answers as recorded exchanges ([`recording`](crate::http::recording)); and what must hold at
//! the end (status, variables, error code).
//!
//! ```json
//! { "tests": [ {
//!     "name": "a known contact is greeted by name",
//!     "conversation": [
//!       {"contact": "last name", "tern": ["What is your Teamleader contact ID?"]},
//!       {"contact": "42", "tern": ["Hello Ada Lovelace!"]} ],
//!     "http": [ {"request": {"method": "POST", "url": "https://api.focus.teamleader.eu/contacts.info",
//!                            "integration": "teamleader", "json": {"id": "42"}},
//!                "response": {"json": {"data": {"first_name": "Ada", "last_name": "Lovelace"}}}} ],
//!     "expect": {"status": "completed", "variables": {"last_name": "Lovelace"}} } ],
//!   "integrations": {"teamleader": ["https://api.focus.teamleader.eu"]} }
//! ```
//!
//! Design choices:
//! - **The same path as production.** Each case gets its own conversation service
//!   ([`Conversations`](crate::conversation::Conversations)) over an in-memory store, with the
//!   flow set a server would load: triggers choose the flow, pauses, the error flow, the
//!   default error reply and the effect journal behave as they do in `tern serve`. Only the
//!   network is replaced, at the one place every step and plugin calls it
//!   ([`Outbound`](crate::http::Outbound) with a [`Tape`](crate::http::Tape)).
//! - **No tokens, no secrets needed.** A replayed call fetches no token; a secret the file does
//!   not give gets a stand-in. Both kinds of value are masked, so recordings keep `[redacted]`
//!   where a key was and still match.
//! - **Every difference at once**, each at its JSON pointer in the test file, with a line diff
//!   for replies and variables ([`check`]).
//! - **Recording** (`tern test --record`) runs the same conversations against the real APIs
//!   with the operator's integrations and secrets, and writes back what happened: replies,
//!   exchanges (secret values masked; request headers, where tokens travel, are never recorded),
//!   each integration's API origins, the status and the values of the variables `expect` names.
//!
//! Bounds: a test file is at most [`MAX_TEST_FILE_BYTES`], with at most [`MAX_CASES`] cases of
//! at most [`MAX_TURNS`] turns; a turn gets [`TURN_TIMEOUT`]; a recording holds at most
//! [`MAX_EXCHANGES`](crate::http::recording::MAX_EXCHANGES) exchanges; folders are searched
//! [`MAX_DEPTH`] levels deep.

mod check;
mod file;
mod run;

use std::path::{Path, PathBuf};

pub use check::{Problem, check, record_problems, recorded};
pub use file::{
    DescribedReply, Expect, ExpectedReply, ExpectedStatus, MAX_CASES, MAX_TEST_FILE_BYTES, MAX_TURNS, TestCase,
    TestFile, Turn,
};
pub use run::{CaseOptions, Mode, Observed, StepFailed, TURN_TIMEOUT, TurnOutcome, run_case};

pub use crate::flow_set::TEST_FILE_SUFFIX;

/// How deep [`test_files`] looks into folders.
pub const MAX_DEPTH: usize = 8;

/// Folders [`test_files`] does not enter: build output and dependencies.
const SKIPPED: &[&str] = &["target", "node_modules"];

/// The test files in `paths`: each folder searched for `*.test.json` (at most [`MAX_DEPTH`]
/// levels, hidden folders, `target` and `node_modules` skipped), files taken as given; sorted,
/// without repeats.
///
/// # Errors
/// A folder that cannot be listed (the error names it).
pub fn test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, 0, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if depth + 1 < MAX_DEPTH && !name.starts_with('.') && !SKIPPED.contains(&name.as_str()) {
                walk(&path, depth + 1, out)?;
            }
        } else if name.ends_with(TEST_FILE_SUFFIX) && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            // A regular file, or a link to one (not a pipe or device: reading it could block).
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_searched_for_test_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("node_modules")).unwrap();
        for f in ["x.test.json", "x.json", "a/b/y.test.json", ".git/z.test.json", "node_modules/n.test.json"] {
            std::fs::write(root.join(f), "{}").unwrap();
        }
        let found = test_files(&[root.to_path_buf(), root.join("x.json")]).unwrap();
        let names: Vec<String> = found.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(names, ["a/b/y.test.json", "x.json", "x.test.json"]);
    }
}
