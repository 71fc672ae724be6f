//! Listing run history: which runs ([`RunQuery`]), one page of them ([`RunPage`]) and where the
//! next page starts ([`RunCursor`]).
//!
//! Runs are listed newest activity first: by `updated_at_ms` descending, then `run_id`
//! descending, so the order is total and a page boundary never skips or repeats a run. Paging
//! is by key (the cursor is the last run's position), not by offset: a page stays correct while
//! new runs arrive, and reading page 50 costs what page 1 costs.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::types::RunSummary;
use crate::ids::RunId;
use crate::run::RunStatus;

/// Most runs on one page.
pub const MAX_RUNS_PAGE: usize = 200;

/// Runs on a page when the caller does not say.
pub const DEFAULT_RUNS_PAGE: usize = 50;

/// Which runs to list. Every field that is set narrows the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunQuery {
    /// Only runs of this flow id.
    pub flow_id: Option<String>,
    /// Only runs whose status is this one.
    pub status: Option<RunStatus>,
    /// Only runs of this conversation.
    pub conversation_id: Option<String>,
    /// Only runs after this position in the listing order (from [`RunPage::next`]).
    pub after: Option<RunCursor>,
    /// How many runs, 1 to [`MAX_RUNS_PAGE`] (larger values are capped, 0 means 1).
    pub limit: usize,
}

impl Default for RunQuery {
    fn default() -> Self {
        Self { flow_id: None, status: None, conversation_id: None, after: None, limit: DEFAULT_RUNS_PAGE }
    }
}

impl RunQuery {
    /// The page size, within 1..=[`MAX_RUNS_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_RUNS_PAGE)
    }

    /// Whether `run` is listed (every filter, and after the cursor).
    pub fn matches(&self, run: &RunSummary) -> bool {
        self.flow_id.as_ref().is_none_or(|f| *f == run.flow_id)
            && self.status.is_none_or(|s| s == run.status)
            && self.conversation_id.as_ref().is_none_or(|c| *c == run.conversation_id)
            && self.after.as_ref().is_none_or(|a| a.is_before(run))
    }
}

/// A position in the listing order: the last run of a page. Written `UPDATED_AT_MS:RUN_ID`
/// (e.g. `1764495000123:3f0c…`), which is what the API's `next` and `after` carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    /// The run's `updated_at_ms`.
    pub updated_at_ms: i64,
    /// The run's id.
    pub run_id: RunId,
}

impl RunCursor {
    /// The cursor of `run`.
    pub fn of(run: &RunSummary) -> Self {
        Self { updated_at_ms: run.updated_at_ms, run_id: run.run_id.clone() }
    }

    /// Whether `run` comes after this position (older activity, or the same time and a smaller
    /// run id).
    pub fn is_before(&self, run: &RunSummary) -> bool {
        (run.updated_at_ms, run.run_id.as_str()) < (self.updated_at_ms, self.run_id.as_str())
    }
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.updated_at_ms, self.run_id)
    }
}

/// A cursor that is not one Tern wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{cursor}` is not a runs cursor: pass the `next` value of the previous page as it was given")]
pub struct RunCursorError {
    /// What was passed (cut to 80 characters).
    pub cursor: String,
}

impl FromStr for RunCursor {
    type Err = RunCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RunCursorError { cursor: s.chars().take(80).collect() };
        let (ms, id) = s.split_once(':').ok_or_else(bad)?;
        let updated_at_ms = ms.parse::<i64>().map_err(|_| bad())?;
        let run_id = RunId::new(id).map_err(|_| bad())?;
        Ok(Self { updated_at_ms, run_id })
    }
}

/// One page of runs, newest activity first.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts (pass it as `after`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub next: Option<RunCursor>,
}

impl Serialize for RunCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl RunPage {
    /// A page from up to `size + 1` runs in listing order: the extra one only says there is a
    /// next page.
    pub fn from_overfetch(mut runs: Vec<RunSummary>, size: usize) -> Self {
        let next = if runs.len() > size {
            runs.truncate(size);
            runs.last().map(RunCursor::of)
        } else {
            None
        };
        Self { runs, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_refuses_anything_else() {
        let c = RunCursor { updated_at_ms: 1_764_495_000_123, run_id: RunId::new("r-1:x").unwrap() };
        assert_eq!(c.to_string().parse::<RunCursor>().unwrap(), c);
        for bad in ["", "12", ":r", "x:r", "12:", "12:a\nb"] {
            let e = bad.parse::<RunCursor>().unwrap_err();
            assert!(e.to_string().contains("not a runs cursor"), "{bad}: {e}");
        }
    }
}
