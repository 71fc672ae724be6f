//! The one path a step's HTTP call takes: the guarded [`Outbound`] client, and for a call that
//! is not idempotent the effect journal (SECURITY R12), so that a message processed again after
//! a crash never repeats a call silently.
//!
//! Built-in steps send through [`StepContext::send`] / [`StepContext::send_attempt`]; a step
//! whose calls outlive the context's borrow (a plugin's host, which wasmtime owns) takes a
//! [`CallJournal`] from [`StepContext::call_journal`]. Both end in the same [`CallPath::send`].

use super::{StepContext, StepFailure};
use crate::effects::{EffectKey, JournalScope, PriorEffect, RecordedResponse};
use crate::http::{HttpResponse, Outbound, PreparedRequest};
use crate::ids::{IntegrationName, StepId};
use crate::tokens::TokenOwner;

/// The step error code of a call that was not sent because the effect journal could not
/// record its intent (the store failed): nothing happened outside, and the conversation
/// service fails the whole message as a store failure (retryable) instead of committing a
/// failed run.
pub(crate) const JOURNAL_UNAVAILABLE: &str = "journal";

impl StepContext<'_> {
    /// Sends a request the way steps should: through [`Outbound::execute`], and for a request
    /// that is not idempotent (POST, PATCH) through the effect journal when the run has one
    /// (SECURITY R12, see [`crate::effects`]): the intent is recorded before sending and the
    /// response after; a message processed again after a crash replays the recorded response
    /// or fails with `outcome-unknown` instead of repeating the call, unless the request
    /// carries an `Idempotency-Key` header (then it is sent again with the same key).
    ///
    /// # Errors
    /// [`StepFailure::Http`] when the exchange failed; `outcome-unknown` as above;
    /// `journal` when the store could not record the intent (nothing was sent).
    pub async fn send(
        &self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
    ) -> Result<HttpResponse, StepFailure> {
        self.send_attempt(req, auth, 0).await
    }

    /// [`send`](Self::send) for the `attempt`-th try of a step that retries (0 for the first):
    /// each attempt is journaled on its own, so that a message processed again after a crash
    /// replays the same sequence of answers.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_attempt(
        &self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
        attempt: u32,
    ) -> Result<HttpResponse, StepFailure> {
        self.call_path().send(req, auth, attempt).await
    }

    /// The journaled call path of this step as an owned value, for calls made where the
    /// context cannot be borrowed (a plugin's host state). Its calls are numbered from 0 in
    /// the order they are made (see [`CallJournal::send_next`]).
    pub fn call_journal(&self) -> CallJournal {
        CallJournal {
            outbound: self.outbound.clone(),
            journal: self.env.journal.clone(),
            step: self.step_id.clone(),
            seq: self.seq,
            next_call: 0,
        }
    }

    fn call_path(&self) -> CallPath<'_> {
        CallPath { outbound: self.outbound, journal: self.env.journal.as_ref(), step: self.step_id, seq: self.seq }
    }
}

/// One step execution's journaled way out, owned: the guarded client, the effect journal of
/// the message being processed (when it has one), the step and its position in the run, and
/// the number of the step's next call. Taken from [`StepContext::call_journal`]; a plugin's
/// host state holds one for the plugin's `http-fetch` calls.
#[derive(Clone, Debug)]
pub struct CallJournal {
    outbound: Outbound,
    journal: Option<JournalScope>,
    step: StepId,
    seq: u32,
    next_call: u32,
}

impl CallJournal {
    /// The guarded client (its policy: default timeout, size caps).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Sends the step's next call as [`StepContext::send`] does. The `n`-th call of the step
    /// (from 0) is journaled under the attempt number `n`, so that each of a step's calls has
    /// its own key and a message processed again after a crash meets the same calls in the
    /// same order: a recorded one is replayed, one sent without a recorded answer fails with
    /// `outcome-unknown`.
    ///
    /// # Errors
    /// As [`StepContext::send`].
    pub async fn send_next(
        &mut self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
    ) -> Result<HttpResponse, StepFailure> {
        let call = self.next_call;
        self.next_call = self.next_call.saturating_add(1);
        let path =
            CallPath { outbound: &self.outbound, journal: self.journal.as_ref(), step: &self.step, seq: self.seq };
        path.send(req, auth, call).await
    }
}

/// The call path borrowed for one call: what [`StepContext`] and [`CallJournal`] both send
/// through.
struct CallPath<'a> {
    outbound: &'a Outbound,
    journal: Option<&'a JournalScope>,
    step: &'a StepId,
    /// Steps the run executed before this one.
    seq: u32,
}

impl CallPath<'_> {
    /// The one implementation of a journaled call (see [`StepContext::send`]).
    async fn send(
        &self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
        attempt: u32,
    ) -> Result<HttpResponse, StepFailure> {
        let journal = match self.journal {
            Some(j) if !req.method.is_idempotent() => j,
            _ => return Ok(self.outbound.execute(req, auth).await?),
        };
        let step = self.step;
        let key = EffectKey {
            conversation: journal.conversation.clone(),
            message_id: journal.message_id.clone(),
            seq: self.seq,
            attempt,
            step: step.to_string(),
        };
        let prior = journal.journal.begin_effect(&key).await.map_err(|e| {
            tracing::error!(step = %step, error = %e, "could not record a call's intent; not sending it");
            StepFailure::Other {
                code: JOURNAL_UNAVAILABLE,
                message: "the call was not sent because Tern could not record it first (the store failed); try again"
                    .into(),
            }
        })?;
        match prior {
            PriorEffect::None => {}
            PriorEffect::Done(recorded) => {
                tracing::info!(step = %step, "replaying a call recorded before a restart");
                return recorded.into_response().ok_or_else(|| StepFailure::Other {
                    code: "journal",
                    message: "the call recorded before a restart cannot be replayed".into(),
                });
            }
            PriorEffect::Unknown if req.headers.contains_key("idempotency-key") => {
                tracing::info!(step = %step, "re-sending a call with its Idempotency-Key after a restart");
            }
            PriorEffect::Unknown => {
                return Err(StepFailure::Other {
                    code: "outcome-unknown",
                    message: format!(
                        "Tern stopped after sending this {} request and before recording its answer, so it may or may not have taken effect; it is not sent again. Give the request an `Idempotency-Key` header to have it re-sent safely, or handle `outcome-unknown` with `on_error`",
                        req.method.as_str()
                    ),
                });
            }
        }
        let resp = self.outbound.execute(req, auth).await?;
        if let Err(e) = journal.journal.finish_effect(&key, &RecordedResponse::of(&resp)).await {
            tracing::warn!(step = %step, error = %e, "could not record a call's response");
        }
        Ok(resp)
    }
}
