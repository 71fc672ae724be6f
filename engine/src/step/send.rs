//! The one path a step's HTTP call takes: the guarded [`Outbound`](crate::http::Outbound) client,
//! and for a call that is not idempotent the effect journal (SECURITY R12), so that a message
//! processed again after a crash never repeats a call silently.

use super::{StepContext, StepFailure};
use crate::effects::{EffectKey, PriorEffect, RecordedResponse};
use crate::http::{HttpResponse, PreparedRequest};
use crate::ids::IntegrationName;
use crate::tokens::TokenOwner;

impl StepContext<'_> {
    /// Sends a request the way steps should: through [`Outbound::execute`](crate::http::Outbound::execute), and for a request
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
        let journal = match &self.env.journal {
            Some(j) if !req.method.is_idempotent() => j,
            _ => return Ok(self.outbound.execute(req, auth).await?),
        };
        let key = EffectKey {
            conversation: journal.conversation.clone(),
            message_id: journal.message_id.clone(),
            seq: self.seq,
            attempt,
            step: self.step_id.to_string(),
        };
        let prior = journal.journal.begin_effect(&key).await.map_err(|e| {
            tracing::error!(step = %self.step_id, error = %e, "could not record a call's intent; not sending it");
            StepFailure::Other {
                code: "journal",
                message: "the call was not sent because Tern could not record it first (the store failed); try again"
                    .into(),
            }
        })?;
        match prior {
            PriorEffect::None => {}
            PriorEffect::Done(recorded) => {
                tracing::info!(step = %self.step_id, "replaying a call recorded before a restart");
                return recorded.into_response().ok_or_else(|| StepFailure::Other {
                    code: "journal",
                    message: "the call recorded before a restart cannot be replayed".into(),
                });
            }
            PriorEffect::Unknown if req.headers.contains_key("idempotency-key") => {
                tracing::info!(step = %self.step_id, "re-sending a call with its Idempotency-Key after a restart");
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
            tracing::warn!(step = %self.step_id, error = %e, "could not record a call's response");
        }
        Ok(resp)
    }
}
