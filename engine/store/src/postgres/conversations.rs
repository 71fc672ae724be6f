//! [`ConversationStore`] on PostgreSQL, shared by several instances. The same columns are
//! encrypted with the same associated data as on SQLite. What differs:
//!
//! - the store says it is shared ([`ConversationStore::is_shared`]) and gives conversation
//!   locks ([`super::locks`]) and the messages a dead instance left
//!   ([`ConversationStore::stale_accepted`]);
//! - a batch that loses a deadlock or serialization race against another instance's batch is
//!   tried again ([`WRITE_ATTEMPTS`]);
//! - webhook deliveries are claimed (`FOR UPDATE SKIP LOCKED`, then leased for
//!   [`OUTBOX_LEASE_MS`]) so that two instances never post the same one at once;
//! - retention deletes in chunks by `ctid`, and every instance may run it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use tern_engine::conversation::{
    Answer, ConversationId, ConversationLock, ConversationStore, Inbound, MessageId, OutboxItem, PausedChange,
    PausedRun, Pruned, Retention, RunHistory, RunPage, RunQuery, RunSummary, Segment, WriteOp,
};
use tern_engine::effects::{EffectJournal, EffectKey, JournalError, PriorEffect, RecordedResponse};

use super::PgStore;
use crate::StoreError;
use crate::rows::{SUMMARY_COLUMNS, SummaryRow, effect_row, message_row, message_row_str};

/// Most rows one pruning statement deletes.
const PRUNE_CHUNK: i64 = 500;

/// Tries of one batch of writes when PostgreSQL aborts it for a deadlock or a serialization
/// failure (SQLSTATE 40P01, 40001).
pub const WRITE_ATTEMPTS: u32 = 3;

/// How long an instance owns a webhook delivery it took; if it dies, another instance sends
/// it after this (milliseconds).
pub const OUTBOX_LEASE_MS: i64 = 60_000;

fn summary_of(r: &PgRow) -> Result<RunSummary, StoreError> {
    SummaryRow {
        run_id: r.get("run_id"),
        conversation_id: r.get("conversation_id"),
        contact_id: r.get("contact_id"),
        flow_id: r.get("flow_id"),
        flow_version: r.get("flow_version"),
        status: r.get("status"),
        started_at_ms: r.get("started_at_ms"),
        updated_at_ms: r.get("updated_at_ms"),
        finished_at_ms: r.get("finished_at_ms"),
    }
    .into_summary()
}

/// Text PostgreSQL accepts: a `TEXT` value cannot hold NUL, which a contact id or a provider's
/// message may carry (SQLite stores it). NUL becomes U+FFFD; everything else is kept.
pub(crate) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}")) } else { std::borrow::Cow::Borrowed(s) }
}

/// Whether PostgreSQL aborted the transaction for a race another try can win.
fn is_retryable(e: &StoreError) -> bool {
    let StoreError::Database { cause, .. } = e else { return false };
    cause
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

impl PgStore {
    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, op: &WriteOp) -> Result<(), StoreError> {
        let now_ms = self.now_ms();
        match op {
            WriteOp::Accept(m) => {
                let row = message_row(&m.conversation, &m.message_id);
                let body = self.sealer.seal("inbox", &row, "body", &**m)?;
                sqlx::query(
                    "INSERT INTO inbox (conversation_id, message_id, body, accepted_at_ms)
                     SELECT $1, $2, $3, $4 WHERE NOT EXISTS
                       (SELECT 1 FROM answers WHERE conversation_id = $1 AND message_id = $2)
                     ON CONFLICT (conversation_id, message_id) DO NOTHING",
                )
                .bind(m.conversation.as_str())
                .bind(m.message_id.as_str())
                .bind(body)
                .bind(now_ms)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
            }
            WriteOp::Forget(c, m) => {
                sqlx::query("DELETE FROM inbox WHERE conversation_id = $1 AND message_id = $2")
                    .bind(c.as_str())
                    .bind(m.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(self.db())?;
            }
            WriteOp::Complete(done) => {
                let c = done.conversation.as_str();
                match &done.paused {
                    PausedChange::Keep => {}
                    PausedChange::Clear => {
                        sqlx::query("DELETE FROM conversations WHERE conversation_id = $1")
                            .bind(c)
                            .execute(&mut **tx)
                            .await
                            .map_err(self.db())?;
                    }
                    PausedChange::Set(p) => {
                        let blob = self.sealer.seal("conversations", c, "snapshot", &**p)?;
                        sqlx::query(
                            "INSERT INTO conversations (conversation_id, flow_hash, snapshot, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (conversation_id) DO UPDATE SET flow_hash = excluded.flow_hash, snapshot = excluded.snapshot,
                               expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                        )
                        .bind(c)
                        .bind(&p.flow_hash)
                        .bind(blob)
                        .bind(p.expires_at)
                        .bind(self.now_s())
                        .execute(&mut **tx)
                        .await
                        .map_err(self.db())?;
                    }
                }
                if done.remember_answer {
                    let row = message_row(&done.conversation, &done.message_id);
                    let blob = self.sealer.seal("answers", &row, "answer", &done.answer)?;
                    sqlx::query(
                        "INSERT INTO answers (conversation_id, message_id, answer, created_at_ms) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (conversation_id, message_id) DO UPDATE SET answer = excluded.answer, created_at_ms = excluded.created_at_ms",
                    )
                    .bind(c)
                    .bind(done.message_id.as_str())
                    .bind(blob)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(self.db())?;
                }
                if done.accepted {
                    sqlx::query("DELETE FROM inbox WHERE conversation_id = $1 AND message_id = $2")
                        .bind(c)
                        .bind(done.message_id.as_str())
                        .execute(&mut **tx)
                        .await
                        .map_err(self.db())?;
                }
                for (summary, segment) in &done.history {
                    self.append_history(tx, summary, segment).await?;
                }
                if let Some(body) = &done.outbox {
                    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
                    let blob = self.sealer.seal("outbox", &id, "body", body)?;
                    sqlx::query(
                        "INSERT INTO outbox (id, body, attempts, next_attempt_ms, created_at_ms) VALUES ($1, $2, 0, $3, $3)",
                    )
                    .bind(&id)
                    .bind(blob)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(self.db())?;
                }
            }
        }
        Ok(())
    }

    /// Adds a segment: the first goes into the summary row, later ones into `run_segments`.
    async fn append_history(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        s: &RunSummary,
        segment: &Segment,
    ) -> Result<(), StoreError> {
        let first = self.sealer.seal("run_history", &s.run_id, "first_segment", segment)?;
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO run_history (run_id, conversation_id, contact_id, flow_id, flow_version, status, started_at_ms,
               updated_at_ms, finished_at_ms, segments, first_segment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)
             ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, updated_at_ms = excluded.updated_at_ms,
               finished_at_ms = excluded.finished_at_ms, segments = run_history.segments + 1
             RETURNING segments",
        )
        .bind(&s.run_id)
        .bind(&s.conversation_id)
        .bind(s.contact_id.as_deref().map(pg_text))
        .bind(&s.flow_id)
        .bind(&s.flow_version)
        .bind(s.status.as_str())
        .bind(s.started_at_ms)
        .bind(s.updated_at_ms)
        .bind(s.finished_at_ms)
        .bind(first)
        .fetch_one(&mut **tx)
        .await
        .map_err(self.db())?;
        if count > 1 {
            let seq = count - 1;
            let blob = self.sealer.seal("run_segments", &format!("{}/{seq}", s.run_id), "body", segment)?;
            sqlx::query(
                "INSERT INTO run_segments (run_id, seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, seq) DO UPDATE SET body = excluded.body",
            )
            .bind(&s.run_id)
            .bind(seq)
            .bind(blob)
            .execute(&mut **tx)
            .await
            .map_err(self.db())?;
        }
        Ok(())
    }

    async fn write_once(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        for op in ops {
            self.apply(&mut tx, op).await?;
        }
        tx.commit().await.map_err(self.db())
    }

    /// Deletes rows of `table` matching `condition` (with `$1` bound to `bind`), oldest by
    /// `order` first, at most `cap`, in chunks; returns how many.
    async fn delete_chunked(
        &self,
        table: &str,
        condition: &str,
        bind: i64,
        order: &str,
        cap: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut total: i64 = 0;
        loop {
            let chunk = cap.map_or(PRUNE_CHUNK, |c| (c - total).min(PRUNE_CHUNK));
            if chunk <= 0 {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY (ARRAY (SELECT ctid FROM {table} WHERE {condition} ORDER BY {order} LIMIT {chunk}))"
            );
            let n = sqlx::query(&sql).bind(bind).execute(&self.pool).await.map_err(self.db())?.rows_affected();
            let n = i64::try_from(n).unwrap_or(0);
            total += n;
            if n < chunk {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
        }
    }

    async fn count(&self, table: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await.map_err(self.db())
    }

    fn inbound_of(&self, r: &PgRow) -> Option<Inbound> {
        let c: String = r.get("conversation_id");
        let m: String = r.get("message_id");
        match self.sealer.open_json::<Inbound>("inbox", &message_row_str(&c, &m), "body", &r.get::<Vec<u8>, _>("body"))
        {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::error!(conversation = %c, error = %e, "an accepted message cannot be read; skipping it");
                None
            }
        }
    }
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn put_flow_version(&self, hash: &str, flow_id: &str, source: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO flow_versions (hash, flow_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(flow_id)
        .bind(source)
        .bind(self.now_s())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn flow_version(&self, hash: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT source FROM flow_versions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())
    }

    async fn paused(&self, conversation: &ConversationId) -> Result<Option<PausedRun>, StoreError> {
        let c = conversation.as_str();
        let row = sqlx::query(
            "SELECT flow_hash, snapshot, expires_at, updated_at FROM conversations WHERE conversation_id = $1",
        )
        .bind(c)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        row.map(|r| {
            self.sealer.open_paused(
                c,
                &r.get::<Vec<u8>, _>("snapshot"),
                r.get("flow_hash"),
                r.get("expires_at"),
                r.get("updated_at"),
            )
        })
        .transpose()
    }

    async fn answer(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<Answer>, StoreError> {
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT answer FROM answers WHERE conversation_id = $1 AND message_id = $2")
                .bind(conversation.as_str())
                .bind(message_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        blob.map(|b| self.sealer.open_json("answers", &message_row(conversation, message_id), "answer", &b)).transpose()
    }

    async fn is_accepted(&self, conversation: &ConversationId, message_id: &MessageId) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM inbox WHERE conversation_id = $1 AND message_id = $2")
                .bind(conversation.as_str())
                .bind(message_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        Ok(found.is_some())
    }

    async fn accepted(&self) -> Result<Vec<Inbound>, StoreError> {
        let rows = sqlx::query("SELECT conversation_id, message_id, body FROM inbox ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(rows.iter().filter_map(|r| self.inbound_of(r)).collect())
    }

    async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match self.write_once(ops).await {
                Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                    tracing::info!(attempt, error = %e, "a batch of conversation writes lost a race with another instance; trying again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunHistory>, StoreError> {
        if run_id.contains('\0') {
            return Ok(None);
        }
        let Some(r) =
            sqlx::query(&format!("SELECT {SUMMARY_COLUMNS}, first_segment FROM run_history WHERE run_id = $1"))
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?
        else {
            return Ok(None);
        };
        let summary = summary_of(&r)?;
        let rest: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, body FROM run_segments WHERE run_id = $1 ORDER BY seq")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
        let segments = self.sealer.open_segments(run_id, r.get("first_segment"), rest)?;
        Ok(Some(RunHistory { summary, segments }))
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM run_history WHERE TRUE");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if query.flow_id.is_some() {
            sql.push_str(&format!(" AND flow_id = {}", next()));
        }
        if query.status.is_some() {
            sql.push_str(&format!(" AND status = {}", next()));
        }
        if query.conversation_id.is_some() {
            sql.push_str(&format!(" AND conversation_id = {}", next()));
        }
        if query.after.is_some() {
            let (a, b) = (next(), next());
            sql.push_str(&format!(" AND (updated_at_ms, run_id) < ({a}, {b})"));
        }
        sql.push_str(&format!(" ORDER BY updated_at_ms DESC, run_id DESC LIMIT {}", next()));
        let mut q = sqlx::query(&sql);
        // A filter with NUL matches nothing stored (PostgreSQL's text holds none), and must not
        // be an error.
        if let Some(f) = &query.flow_id {
            q = q.bind(pg_text(f).into_owned());
        }
        if let Some(st) = query.status {
            q = q.bind(st.as_str());
        }
        if let Some(c) = &query.conversation_id {
            q = q.bind(pg_text(c).into_owned());
        }
        if let Some(a) = &query.after {
            q = q.bind(a.updated_at_ms).bind(pg_text(&a.run_id).into_owned());
        }
        let size = query.page_size();
        let rows =
            q.bind(i64::try_from(size + 1).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(self.db())?;
        let runs = rows.iter().map(summary_of).collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage::from_overfetch(runs, size))
    }

    /// Claims the due deliveries for this instance: they are leased for [`OUTBOX_LEASE_MS`]
    /// (another instance skips them), then removed or rescheduled by the delivery loop.
    async fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "UPDATE outbox SET next_attempt_ms = $1 + $3 WHERE id IN (
               SELECT id FROM outbox WHERE next_attempt_ms <= $1 ORDER BY next_attempt_ms, created_at_ms LIMIT $2
               FOR UPDATE SKIP LOCKED)
             RETURNING id, body, attempts, created_at_ms",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(OUTBOX_LEASE_MS)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get("id");
            let body = match self.sealer.open_json("outbox", &id, "body", &r.get::<Vec<u8>, _>("body")) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(delivery = %id, error = %e, "a webhook delivery cannot be read; dropping it");
                    self.outbox_remove(&id).await?;
                    continue;
                }
            };
            out.push(OutboxItem {
                id,
                body,
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(0),
                created_at_ms: r.get("created_at_ms"),
            });
        }
        out.sort_by_key(|i| i.created_at_ms);
        Ok(out)
    }

    async fn outbox_remove(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&self.pool).await.map_err(self.db())?;
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, attempts: u32, next_at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET attempts = $1, next_attempt_ms = $2 WHERE id = $3")
            .bind(i64::from(attempts))
            .bind(next_at_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.count("outbox").await?).unwrap_or(0))
    }

    async fn prune(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let runs_before = now_ms.saturating_sub(retention.history_max_age_ms);
        pruned.runs +=
            self.delete_chunked("run_history", "updated_at_ms < $1", runs_before, "updated_at_ms", None).await?;
        let excess = self.count("run_history").await? - i64::try_from(retention.history_max_runs).unwrap_or(i64::MAX);
        if excess > 0 {
            pruned.runs += self.delete_chunked("run_history", "$1 = $1", 0, "updated_at_ms", Some(excess)).await?;
        }
        let answers_before = now_ms.saturating_sub(retention.dedupe_window_ms);
        pruned.answers +=
            self.delete_chunked("answers", "created_at_ms < $1", answers_before, "created_at_ms", None).await?;
        let excess = self.count("answers").await? - i64::try_from(retention.max_answers).unwrap_or(i64::MAX);
        if excess > 0 {
            pruned.answers += self.delete_chunked("answers", "$1 = $1", 0, "created_at_ms", Some(excess)).await?;
        }
        self.delete_chunked("effects", "created_at_ms < $1", answers_before, "created_at_ms", None).await?;
        let now_s = now_ms / 1000;
        pruned.paused += self.delete_chunked("conversations", "expires_at <= $1", now_s, "expires_at", None).await?;
        self.delete_chunked("pending_authorizations", "expires_at < $1", now_s, "expires_at", None).await?;
        Ok(pruned)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn lock_conversation(
        &self,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Result<Option<Box<dyn ConversationLock>>, StoreError> {
        self.locks.lock(conversation, wait).await.map(Some)
    }

    async fn stale_accepted(&self, before_ms: i64, limit: usize) -> Result<Vec<Inbound>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, message_id, body FROM inbox WHERE accepted_at_ms < $1 ORDER BY seq LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(rows.iter().filter_map(|r| self.inbound_of(r)).collect())
    }
}

#[async_trait]
impl EffectJournal for PgStore {
    async fn begin_effect(&self, key: &EffectKey) -> Result<PriorEffect, JournalError> {
        let fail = |e: &dyn std::fmt::Display| JournalError { step: key.step.clone(), reason: e.to_string() };
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO effects (conversation_id, message_id, seq, attempt, step_id, response, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, NULL, $6) ON CONFLICT DO NOTHING RETURNING 1",
        )
        .bind(&key.conversation)
        .bind(&key.message_id)
        .bind(i64::from(key.seq))
        .bind(i64::from(key.attempt))
        .bind(&key.step)
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| fail(&e))?;
        if inserted.is_some() {
            return Ok(PriorEffect::None);
        }
        let row = sqlx::query(
            "SELECT step_id, response FROM effects WHERE conversation_id = $1 AND message_id = $2 AND seq = $3 AND attempt = $4",
        )
        .bind(&key.conversation)
        .bind(&key.message_id)
        .bind(i64::from(key.seq))
        .bind(i64::from(key.attempt))
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
        sqlx::query(
            "UPDATE effects SET response = $1 WHERE conversation_id = $2 AND message_id = $3 AND seq = $4 AND attempt = $5",
        )
        .bind(blob)
        .bind(&key.conversation)
        .bind(&key.message_id)
        .bind(i64::from(key.seq))
        .bind(i64::from(key.attempt))
        .execute(&self.pool)
        .await
        .map_err(|e| fail(&e))?;
        Ok(())
    }
}
