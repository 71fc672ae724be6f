//! What a run's history says about failures: the steps it got over through `on_error`, the
//! failed run an error-flow run was started for, the error flow's run a failure started, and
//! whether the contact was left without an answer ([`RunHistory::unanswered`]). Read by the
//! console's run pages and `tern runs show`, so the rules are written once.

use super::listing::RunQuery;
use super::store::ConversationStore;
use super::types::RunHistory;
use crate::StepStatus;
use crate::run::RunStatus;
use crate::storage::StoreError;

/// Whether the contact was left without an answer by a run that is over (see
/// [`RunHistory::unanswered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The run never replied.
    Never,
    /// It replied earlier, but not to the last message (e.g. it asked, then failed).
    LastMessage,
}

impl RunHistory {
    /// Whether the contact got no answer from this run, once it is over: its last activation
    /// sent nothing, and neither did `error_flow` (the error flow's run its failure started,
    /// when there is one). `None` while the run waits for the contact or when it answered.
    pub fn unanswered(&self, error_flow: Option<&RunHistory>) -> Option<Unanswered> {
        let replied = |h: &RunHistory| h.segments.iter().any(|g| !g.replies.is_empty());
        let last_replied = self.segments.last().is_some_and(|g| !g.replies.is_empty());
        if self.summary.status == RunStatus::Paused || last_replied || error_flow.is_some_and(replied) {
            return None;
        }
        Some(if replied(self) { Unanswered::LastMessage } else { Unanswered::Never })
    }
}

/// The later runs of a conversation looked through for a failure's error-flow run.
const ERROR_FLOW_LOOKAHEAD: usize = 50;

/// What a run's history says about failures it got over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Steps that failed and went to their `on_error` (or the flow's), by id.
    pub on_error: Vec<String>,
    /// For a run of the error flow: the failed run it was started for.
    pub after_failure_of: Option<String>,
}

impl Recovery {
    /// Reads it from the history: `error_handled` steps, and the `error` variable an error
    /// flow starts with (its `run_id`).
    pub fn of(run: &RunHistory) -> Self {
        let on_error = run
            .segments
            .iter()
            .flat_map(|g| &g.trace)
            .filter(|t| t.status == StepStatus::ErrorHandled)
            .map(|t| t.step.as_str().to_string())
            .collect();
        let after_failure_of = run
            .segments
            .first()
            .and_then(|g| g.variables.get(crate::flow::ERROR_VARIABLE))
            .and_then(|e| e.get("run_id"))
            .and_then(|id| id.as_str())
            .map(str::to_owned);
        Self { on_error, after_failure_of }
    }
}

/// The error flow's run that `run`'s failure started, when there is one: among the
/// [`ERROR_FLOW_LOOKAHEAD`] most recent runs of the same conversation, one that started no
/// earlier and names `run` as the failure it handles. `None` for a run that did not fail.
///
/// # Errors
/// [`StoreError`] when the store failed.
pub async fn error_flow_run_of(
    store: &dyn ConversationStore,
    run: &RunHistory,
) -> Result<Option<RunHistory>, StoreError> {
    if run.summary.status != RunStatus::Failed {
        return Ok(None);
    }
    let query = RunQuery {
        conversation_id: Some(run.summary.conversation_id.clone()),
        limit: ERROR_FLOW_LOOKAHEAD,
        ..RunQuery::default()
    };
    for r in store.runs(&query).await?.runs {
        if r.run_id == run.summary.run_id || r.started_at_ms < run.summary.started_at_ms {
            continue;
        }
        if let Some(h) = store.run(&r.run_id).await?
            && Recovery::of(&h).after_failure_of.as_deref() == Some(run.summary.run_id.as_str())
        {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run of `status` whose activations sent `replies` each.
    fn run(status: &str, replies: &[usize]) -> RunHistory {
        let segments: Vec<_> = replies
            .iter()
            .enumerate()
            .map(|(i, n)| {
                json!({"message_id": format!("m{i}"), "message": "hi", "started_at_ms": i, "finished_at_ms": i,
                       "status": status, "replies": (0..*n).map(|_| json!({"text": "a reply"})).collect::<Vec<_>>(),
                       "trace": [], "variables": {}})
            })
            .collect();
        serde_json::from_value(json!({"run_id": "r-1", "conversation_id": "c", "flow_id": "f", "flow_version": "v",
            "status": status, "started_at_ms": 0, "updated_at_ms": 0, "duration_ms": 0, "segments": segments}))
        .unwrap()
    }

    #[test]
    fn a_run_over_without_a_reply_to_the_last_message_left_the_contact_unanswered() {
        assert_eq!(run("completed", &[0]).unanswered(None), Some(Unanswered::Never));
        assert_eq!(run("failed", &[1, 0]).unanswered(None), Some(Unanswered::LastMessage));
        assert_eq!(run("completed", &[0, 2]).unanswered(None), None);
        assert_eq!(run("paused", &[0]).unanswered(None), None, "still waiting for the contact");
        // The error flow's reply answers a failed run.
        assert_eq!(run("failed", &[0]).unanswered(Some(&run("completed", &[1]))), None);
        assert_eq!(run("failed", &[0]).unanswered(Some(&run("completed", &[0]))), Some(Unanswered::Never));
    }
}
