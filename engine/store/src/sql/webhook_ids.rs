//! [`SeenWebhookIds`] on SQL: the `webhook-id`s of accepted signed channel requests, one row
//! per sender (a channel, or an integration's events) and id until the signature leaves the
//! replay window, with the body's SHA-256 and the latest accepted timestamp. One statement
//! decides ([`SeenWebhookIds`]'s rule): a new id is inserted, an expired one (not pruned yet) is
//! taken again, a live one is taken again only by a retry (the same body, a later timestamp);
//! anything else changes nothing. Retention ([`SqlStore::prune_webhook_ids`]) deletes expired rows and
//! keeps at most [`MAX_SEEN_WEBHOOK_IDS`].

use async_trait::async_trait;
use tern_engine::channel_auth::{MAX_SEEN_WEBHOOK_IDS, SeenWebhookIds, Sighting, SignedRequest};

use super::{Flavor, SqlStore};
use crate::StoreError;

#[async_trait]
impl<F: Flavor> SeenWebhookIds for SqlStore<F> {
    async fn sighting(&self, r: &SignedRequest<'_>, now_ms: i64) -> Result<Sighting, StoreError> {
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
}

impl<F: Flavor> SqlStore<F> {
    /// Deletes the expired `webhook-id`s, then the oldest beyond [`MAX_SEEN_WEBHOOK_IDS`].
    /// Returns how many.
    pub(crate) async fn prune_webhook_ids(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut n = self.delete_chunked("webhook_ids", "expires_at_ms <= $1", now_ms, "expires_at_ms", None).await?;
        let excess = self.count("webhook_ids").await? - i64::try_from(MAX_SEEN_WEBHOOK_IDS).unwrap_or(i64::MAX);
        if excess > 0 {
            n += self.delete_chunked("webhook_ids", "$1 = $1", 0, "expires_at_ms", Some(excess)).await?;
        }
        Ok(n)
    }
}
