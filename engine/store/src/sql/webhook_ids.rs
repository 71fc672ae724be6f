//! [`SeenWebhookIds`] on SQL: the `webhook-id`s of accepted signed channel requests, one row
//! per sender (a channel, or an integration's events) and id until the signature leaves the
//! replay window, with the body's SHA-256 and the latest accepted timestamp. One statement
//! decides ([`SeenWebhookIds`]'s rule): a new id is inserted, an expired one (not pruned yet) is
//! taken again, a live one is taken again only by a retry (the same body, a later timestamp);
//! anything else changes nothing. Retention ([`SqlStore::prune_webhook_ids`]) deletes expired
//! rows. An id still in the replay window is never deleted (its request could be replayed):
//! a sender with more than [`Retention::max_webhook_ids_per_sender`] live ids at a retention
//! pass has its new ids refused like replays until a pass finds fewer, and the other senders go
//! on (the table holds at most that many per sender plus what senders sign between two
//! passes).

use async_trait::async_trait;
use tern_engine::channel_auth::{SeenWebhookIds, Sighting, SignedRequest};
use tern_engine::conversation::Retention;

use super::{Flavor, SqlStore};
use crate::StoreError;

#[async_trait]
impl<F: Flavor> SeenWebhookIds for SqlStore<F> {
    async fn sighting(&self, r: &SignedRequest<'_>, now_ms: i64) -> Result<Sighting, StoreError> {
        if self.full_senders.lock().unwrap_or_else(|p| p.into_inner()).contains(r.scope) {
            tracing::warn!(
                sender = r.scope,
                "this sender has more webhook-ids in the replay window than are kept for it; its new signed requests are refused until retention finds fewer"
            );
            return Ok(Sighting::Replayed);
        }
        let _gate = self.gate().await;
        let accepted = sqlx::query(
            "INSERT INTO webhook_ids (scope, webhook_id, expires_at_ms, body_sha256, signed_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, webhook_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms,
               body_sha256 = excluded.body_sha256, signed_at = excluded.signed_at
             WHERE webhook_ids.expires_at_ms <= $6
                OR (webhook_ids.body_sha256 = excluded.body_sha256 AND webhook_ids.signed_at < excluded.signed_at)
             RETURNING expires_at_ms",
        )
        .bind(r.scope)
        .bind(r.id)
        .bind(r.expires_at_ms)
        .bind(r.body_sha256)
        .bind(r.signed_at)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        if accepted.is_some() {
            return Ok(Sighting::Accepted);
        }
        // Refused: only which reason to log is left to tell.
        let body: Option<String> =
            sqlx::query_scalar("SELECT body_sha256 FROM webhook_ids WHERE scope = $1 AND webhook_id = $2")
                .bind(r.scope)
                .bind(r.id)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        Ok(if body.as_deref() == Some(r.body_sha256) { Sighting::Replayed } else { Sighting::Reused })
    }

    async fn forget_webhook_id(&self, scope: &str, id: &str) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        sqlx::query("DELETE FROM webhook_ids WHERE scope = $1 AND webhook_id = $2")
            .bind(scope)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}

impl<F: Flavor> SqlStore<F> {
    /// Deletes the expired `webhook-id`s and notes the senders whose live ones reach
    /// `retention.max_webhook_ids_per_sender` (their new ids are refused until a pass finds
    /// room). Returns how many were deleted.
    pub(crate) async fn prune_webhook_ids(&self, retention: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        let n = self.delete_chunked("webhook_ids", "expires_at_ms <= $1", now_ms, "expires_at_ms", None).await?;
        let limit = i64::try_from(retention.max_webhook_ids_per_sender).unwrap_or(i64::MAX);
        let full: Vec<String> =
            sqlx::query_scalar("SELECT scope FROM webhook_ids GROUP BY scope HAVING COUNT(*) >= $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
        *self.full_senders.lock().unwrap_or_else(|p| p.into_inner()) = full.into_iter().collect();
        Ok(n)
    }
}
