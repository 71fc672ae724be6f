//! The effect journal on SQL (SECURITY R12): a call is recorded as started before it is made,
//! and its response after. The start is one `INSERT … ON CONFLICT DO NOTHING`: a new key is the
//! common case and costs one statement; an existing one is read back to tell what is known.

use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};
use tern_engine::effects::{EffectJournal, EffectKey, JournalError, PriorEffect, RecordedResponse};

use super::{Flavor, SqlStore};
use crate::rows::effect_row;

/// Binds a call's row (conversation, message, seq, attempt) to the next four placeholders.
fn bind_key<'q>(q: Query<'q, Any, AnyArguments<'q>>, key: &'q EffectKey) -> Query<'q, Any, AnyArguments<'q>> {
    q.bind(&key.conversation).bind(&key.message_id).bind(i64::from(key.seq)).bind(i64::from(key.attempt))
}

#[async_trait]
impl<F: Flavor> EffectJournal for SqlStore<F> {
    async fn begin_effect(&self, key: &EffectKey) -> Result<PriorEffect, JournalError> {
        let fail = |e: &dyn std::fmt::Display| JournalError { step: key.step.clone(), reason: e.to_string() };
        let inserted = {
            let _gate = self.gate().await;
            bind_key(
                sqlx::query(
                    "INSERT INTO effects (conversation_id, message_id, seq, attempt, step_id, response, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, NULL, $6) ON CONFLICT DO NOTHING RETURNING seq",
                ),
                key,
            )
            .bind(&key.step)
            .bind(self.now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| fail(&e))?
        };
        if inserted.is_some() {
            return Ok(PriorEffect::None);
        }
        let row = bind_key(
            sqlx::query(
                "SELECT step_id, response FROM effects WHERE conversation_id = $1 AND message_id = $2 AND seq = $3 AND attempt = $4",
            ),
            key,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| fail(&e))?;
        Ok(match row {
            // Pruned between the two statements: as good as unknown.
            None => PriorEffect::Unknown,
            // Another step at this position (the flow changed): nothing can be assumed.
            Some(r) if r.get::<String, _>("step_id") != key.step => PriorEffect::Unknown,
            Some(r) => match r.get::<Option<Vec<u8>>, _>("response") {
                None => PriorEffect::Unknown,
                Some(blob) => PriorEffect::Done(
                    self.sealer
                        .open_json::<RecordedResponse>("effects", &effect_row(key), "response", &blob)
                        .map_err(|e| fail(&e))?,
                ),
            },
        })
    }

    async fn finish_effect(&self, key: &EffectKey, response: &RecordedResponse) -> Result<(), JournalError> {
        let fail = |e: &dyn std::fmt::Display| JournalError { step: key.step.clone(), reason: e.to_string() };
        let blob = self.sealer.seal("effects", &effect_row(key), "response", response).map_err(|e| fail(&e))?;
        let _gate = self.gate().await;
        bind_key(
            sqlx::query(
                "UPDATE effects SET response = $5 WHERE conversation_id = $1 AND message_id = $2 AND seq = $3 AND attempt = $4",
            ),
            key,
        )
        .bind(blob)
        .execute(&self.pool)
        .await
        .map_err(|e| fail(&e))?;
        Ok(())
    }
}
