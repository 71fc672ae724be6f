//! [`ConversationStore`] on SQLite. Everything that holds what people typed or what Tern
//! replied (paused runs, answers, accepted messages, run segments, webhook deliveries) is
//! encrypted like the other secret columns, with the table, row and column as associated data.
//! Summaries (ids, flow, status, times) stay in clear so that history can be listed and pruned.

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Row, Sqlite, Transaction};

use tern_engine::conversation::{
    Answer, ConversationId, ConversationStore, Inbound, MessageId, OutboxItem, PausedChange, PausedRun, Pruned,
    Retention, RunHistory, RunPage, RunQuery, RunSummary, Segment, WriteOp,
};
use tern_engine::effects::{EffectJournal, EffectKey, JournalError, PriorEffect, RecordedResponse};

use super::SqliteStore;
use crate::StoreError;
use crate::rows::{SummaryRow, effect_row, message_row, message_row_str};

/// Most rows one pruning statement deletes (a pass repeats until done, in short transactions,
/// so the writer is never blocked for long).
const PRUNE_CHUNK: i64 = 500;

/// How many runs history holds, as the writer and the pruning pass see it, so that the writer
/// can keep the count at `--history-max-runs` itself: under sustained load a separate pass
/// competes with the writer for the one write lock and falls behind (the store would grow), so
/// each batch that adds runs also deletes as many of the oldest beyond the limit (at most twice
/// as many as it added, plus 64). The pruning pass sets the limit and the exact count.
#[derive(Debug)]
pub struct HistoryCount {
    /// Runs in `run_history`; negative until the pruning pass has counted them.
    rows: std::sync::atomic::AtomicI64,
    /// `--history-max-runs`; `i64::MAX` until the pruning pass has said.
    limit: std::sync::atomic::AtomicI64,
}

impl Default for HistoryCount {
    fn default() -> Self {
        Self { rows: std::sync::atomic::AtomicI64::new(-1), limit: std::sync::atomic::AtomicI64::new(i64::MAX) }
    }
}

/// Write-ahead log frames (pages, 4 KiB each) past which a checkpoint restarts the log.
const WAL_RESTART_FRAMES: i64 = 4096;

/// A run summary from a `run_history` row.
fn summary_of(r: &sqlx::sqlite::SqliteRow) -> Result<RunSummary, StoreError> {
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

impl SqliteStore {
    fn seal<T: Serialize>(&self, table: &str, row: &str, column: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        self.sealer.seal(table, row, column, value)
    }

    fn open_json<T: DeserializeOwned>(
        &self,
        table: &str,
        row: &str,
        column: &str,
        blob: &[u8],
    ) -> Result<T, StoreError> {
        self.sealer.open_json(table, row, column, blob)
    }

    /// Applies one operation; returns how many runs it added to history.
    async fn apply(&self, tx: &mut Transaction<'_, Sqlite>, op: &WriteOp) -> Result<i64, StoreError> {
        let now_ms = self.now_ms();
        let mut added = 0;
        match op {
            WriteOp::Accept(m) => {
                let row = message_row(&m.conversation, &m.message_id);
                let body = self.seal("inbox", &row, "body", &**m)?;
                sqlx::query(
                    "INSERT OR IGNORE INTO inbox (conversation_id, message_id, body, accepted_at_ms)
                     SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS
                       (SELECT 1 FROM answers WHERE conversation_id = ?1 AND message_id = ?2)",
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
                sqlx::query("DELETE FROM inbox WHERE conversation_id = ? AND message_id = ?")
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
                        sqlx::query("DELETE FROM conversations WHERE conversation_id = ?")
                            .bind(c)
                            .execute(&mut **tx)
                            .await
                            .map_err(self.db())?;
                    }
                    PausedChange::Set(p) => {
                        let blob = self.seal("conversations", c, "snapshot", &**p)?;
                        sqlx::query(
                            "INSERT INTO conversations (conversation_id, flow_hash, snapshot, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)
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
                    let blob = self.seal("answers", &row, "answer", &done.answer)?;
                    sqlx::query(
                        "INSERT OR REPLACE INTO answers (conversation_id, message_id, answer, created_at_ms) VALUES (?, ?, ?, ?)",
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
                    sqlx::query("DELETE FROM inbox WHERE conversation_id = ? AND message_id = ?")
                        .bind(c)
                        .bind(done.message_id.as_str())
                        .execute(&mut **tx)
                        .await
                        .map_err(self.db())?;
                }
                for (summary, segment) in &done.history {
                    if self.append_history(tx, summary, segment).await? {
                        added += 1;
                    }
                }
                if let Some(body) = &done.outbox {
                    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
                    let blob = self.seal("outbox", &id, "body", body)?;
                    sqlx::query(
                        "INSERT INTO outbox (id, body, attempts, next_attempt_ms, created_at_ms) VALUES (?, ?, 0, ?, ?)",
                    )
                    .bind(&id)
                    .bind(blob)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(self.db())?;
                }
            }
        }
        Ok(added)
    }

    /// Adds a segment; returns whether it started a new run.
    async fn append_history(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        s: &RunSummary,
        segment: &Segment,
    ) -> Result<bool, StoreError> {
        // One statement for a new run: the segment goes into the summary row. When the run
        // already has a row (it paused and resumed), the row is updated and the segment is
        // appended to `run_segments` under the next seq.
        let first = self.seal("run_history", &s.run_id, "first_segment", segment)?;
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO run_history (run_id, conversation_id, contact_id, flow_id, flow_version, status, started_at_ms,
               updated_at_ms, finished_at_ms, segments, first_segment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
             ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, updated_at_ms = excluded.updated_at_ms,
               finished_at_ms = excluded.finished_at_ms, segments = segments + 1
             RETURNING segments",
        )
        .bind(&s.run_id)
        .bind(&s.conversation_id)
        .bind(&s.contact_id)
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
            let blob = self.seal("run_segments", &format!("{}/{seq}", s.run_id), "body", segment)?;
            sqlx::query("INSERT OR REPLACE INTO run_segments (run_id, seq, body) VALUES (?, ?, ?)")
                .bind(&s.run_id)
                .bind(seq)
                .bind(blob)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
        }
        Ok(count == 1)
    }

    /// Deletes rows of `table` chosen by `select` (a query returning rowids, without LIMIT),
    /// at most `cap` of them, in chunks; returns how many.
    async fn delete_chunked(
        &self,
        table: &str,
        select: &str,
        binds: &[i64],
        cap: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut total: i64 = 0;
        loop {
            let chunk = cap.map_or(PRUNE_CHUNK, |c| (c - total).min(PRUNE_CHUNK));
            if chunk <= 0 {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
            let sql = format!("DELETE FROM {table} WHERE rowid IN ({select} LIMIT {chunk})");
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            let _gate = self.write_gate.lock().await;
            let n = i64::try_from(q.execute(&self.pool).await.map_err(self.db())?.rows_affected()).unwrap_or(0);
            total += n;
            if n < chunk {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
        }
    }

    async fn count(&self, table: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await.map_err(self.db())
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn put_flow_version(&self, hash: &str, flow_id: &str, source: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT OR IGNORE INTO flow_versions (hash, flow_id, source, created_at) VALUES (?, ?, ?, ?)")
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
        sqlx::query_scalar("SELECT source FROM flow_versions WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())
    }

    async fn paused(&self, conversation: &ConversationId) -> Result<Option<PausedRun>, StoreError> {
        let c = conversation.as_str();
        let row = sqlx::query(
            "SELECT flow_hash, snapshot, expires_at, updated_at FROM conversations WHERE conversation_id = ?",
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

    /// The SQLite file belongs to one `tern serve` (the data directory is not shared), so
    /// the index is exact.
    async fn paused_index(&self, limit: usize) -> Result<Option<Vec<(ConversationId, i64)>>, StoreError> {
        let cap = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT conversation_id, expires_at FROM conversations LIMIT ?")
            .bind(cap)
            .fetch_all(&self.pool)
            .await
            .map_err(self.db())?;
        if rows.len() > limit {
            return Ok(None);
        }
        // An id that does not validate cannot be asked for; leaving it out is safe.
        Ok(Some(rows.into_iter().filter_map(|(c, at)| ConversationId::new(c).ok().map(|c| (c, at))).collect()))
    }

    async fn answer(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<Answer>, StoreError> {
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT answer FROM answers WHERE conversation_id = ? AND message_id = ?")
                .bind(conversation.as_str())
                .bind(message_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db())?;
        blob.map(|b| self.open_json("answers", &message_row(conversation, message_id), "answer", &b)).transpose()
    }

    async fn is_accepted(&self, conversation: &ConversationId, message_id: &MessageId) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM inbox WHERE conversation_id = ? AND message_id = ?")
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
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let c: String = r.get("conversation_id");
            let m: String = r.get("message_id");
            let row = message_row_str(&c, &m);
            match self.open_json::<Inbound>("inbox", &row, "body", &r.get::<Vec<u8>, _>("body")) {
                Ok(i) => out.push(i),
                // One unreadable message must not stop the others from being recovered.
                Err(e) => {
                    tracing::error!(conversation = %c, error = %e, "an accepted message cannot be read; skipping it")
                }
            }
        }
        Ok(out)
    }

    async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.db())?;
        let mut added = 0i64;
        for op in ops {
            added += self.apply(&mut tx, op).await?;
        }
        // Keep history at its limit in the same transaction (see `HistoryCount`).
        let rows = self.history.rows.load(Relaxed);
        let limit = self.history.limit.load(Relaxed);
        let mut deleted = 0i64;
        if added > 0 && rows >= 0 && rows + added > limit {
            let take = (rows + added - limit).min(2 * added + 64);
            let n = sqlx::query(
                "DELETE FROM run_history WHERE rowid IN (SELECT rowid FROM run_history ORDER BY updated_at_ms LIMIT ?)",
            )
            .bind(take)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?
            .rows_affected();
            deleted = i64::try_from(n).unwrap_or(0);
        }
        tx.commit().await.map_err(self.db())?;
        if rows >= 0 {
            self.history.rows.fetch_add(added - deleted, Relaxed);
        }
        Ok(())
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunHistory>, StoreError> {
        let Some(r) = sqlx::query("SELECT * FROM run_history WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?
        else {
            return Ok(None);
        };
        let summary = summary_of(&r)?;
        let rest: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, body FROM run_segments WHERE run_id = ? ORDER BY seq")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
        let segments = self.sealer.open_segments(run_id, r.get("first_segment"), rest)?;
        Ok(Some(RunHistory { summary, segments }))
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        // Only the filters that are set go into the statement, so SQLite can use the
        // (flow_id, updated_at_ms) and (conversation_id, updated_at_ms) indexes.
        let mut sql = String::from(
            "SELECT run_id, conversation_id, contact_id, flow_id, flow_version, status, started_at_ms, updated_at_ms,
               finished_at_ms FROM run_history WHERE 1 = 1",
        );
        if query.flow_id.is_some() {
            sql.push_str(" AND flow_id = ?");
        }
        if query.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if query.conversation_id.is_some() {
            sql.push_str(" AND conversation_id = ?");
        }
        if query.after.is_some() {
            sql.push_str(" AND (updated_at_ms < ? OR (updated_at_ms = ? AND run_id < ?))");
        }
        sql.push_str(" ORDER BY updated_at_ms DESC, run_id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(f) = &query.flow_id {
            q = q.bind(f);
        }
        if let Some(st) = query.status {
            q = q.bind(st.as_str());
        }
        if let Some(c) = &query.conversation_id {
            q = q.bind(c);
        }
        if let Some(a) = &query.after {
            q = q.bind(a.updated_at_ms).bind(a.updated_at_ms).bind(&a.run_id);
        }
        let size = query.page_size();
        let rows =
            q.bind(i64::try_from(size + 1).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(self.db())?;
        let runs = rows.iter().map(summary_of).collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage::from_overfetch(runs, size))
    }

    async fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, body, attempts, created_at_ms FROM outbox WHERE next_attempt_ms <= ? ORDER BY next_attempt_ms, created_at_ms LIMIT ?",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get("id");
            let body = match self.open_json("outbox", &id, "body", &r.get::<Vec<u8>, _>("body")) {
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
        Ok(out)
    }

    async fn outbox_remove(&self, id: &str) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query("DELETE FROM outbox WHERE id = ?").bind(id).execute(&self.pool).await.map_err(self.db())?;
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, attempts: u32, next_at_ms: i64) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query("UPDATE outbox SET attempts = ?, next_attempt_ms = ? WHERE id = ?")
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

    async fn checkpoint(&self) -> Result<(), StoreError> {
        // Passive first: copies what it can without waiting for readers or the writer.
        let (_, log_frames, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await.map_err(self.db())?;
        // Under steady writes the log never empties on its own, so it would grow without end.
        // Past WAL_RESTART_FRAMES, a restart checkpoint between two batches of this process's
        // writer (little is left to copy after the passive one) lets the next write start the
        // log over; `journal_size_limit` then cuts the file back.
        if log_frames > WAL_RESTART_FRAMES {
            let _gate = self.write_gate.lock().await;
            sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&self.pool).await.map_err(self.db())?;
        }
        Ok(())
    }

    async fn prune(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let runs_before = now_ms.saturating_sub(retention.history_max_age_ms);
        pruned.runs += self
            .delete_chunked(
                "run_history",
                "SELECT rowid FROM run_history WHERE updated_at_ms < ?",
                &[runs_before],
                None,
            )
            .await?;
        let max_runs = i64::try_from(retention.history_max_runs).unwrap_or(i64::MAX);
        self.history.limit.store(max_runs, std::sync::atomic::Ordering::Relaxed);
        let excess = self.count("run_history").await? - max_runs;
        if excess > 0 {
            pruned.runs += self
                .delete_chunked(
                    "run_history",
                    "SELECT rowid FROM run_history ORDER BY updated_at_ms",
                    &[],
                    Some(excess),
                )
                .await?;
        }
        {
            // The exact count, taken between two of the writer's batches.
            let _gate = self.write_gate.lock().await;
            let rows = self.count("run_history").await?;
            self.history.rows.store(rows, std::sync::atomic::Ordering::Relaxed);
        }
        let answers_before = now_ms.saturating_sub(retention.dedupe_window_ms);
        pruned.answers += self
            .delete_chunked("answers", "SELECT rowid FROM answers WHERE created_at_ms < ?", &[answers_before], None)
            .await?;
        let excess = self.count("answers").await? - i64::try_from(retention.max_answers).unwrap_or(i64::MAX);
        if excess > 0 {
            pruned.answers += self
                .delete_chunked("answers", "SELECT rowid FROM answers ORDER BY created_at_ms", &[], Some(excess))
                .await?;
        }
        self.delete_chunked("effects", "SELECT rowid FROM effects WHERE created_at_ms < ?", &[answers_before], None)
            .await?;
        let now_s = now_ms / 1000;
        pruned.paused += self
            .delete_chunked("conversations", "SELECT rowid FROM conversations WHERE expires_at <= ?", &[now_s], None)
            .await?;
        self.delete_chunked(
            "pending_authorizations",
            "SELECT rowid FROM pending_authorizations WHERE expires_at < ?",
            &[now_s],
            None,
        )
        .await?;
        Ok(pruned)
    }
}

#[async_trait]
impl EffectJournal for SqliteStore {
    async fn begin_effect(&self, key: &EffectKey) -> Result<PriorEffect, JournalError> {
        let fail = |e: &dyn std::fmt::Display| JournalError { step: key.step.clone(), reason: e.to_string() };
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| fail(&e))?;
        let row = sqlx::query(
            "SELECT step_id, response FROM effects WHERE conversation_id = ? AND message_id = ? AND seq = ? AND attempt = ?",
        )
        .bind(&key.conversation)
        .bind(&key.message_id)
        .bind(i64::from(key.seq))
        .bind(i64::from(key.attempt))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| fail(&e))?;
        let prior = match row {
            None => {
                sqlx::query(
                    "INSERT INTO effects (conversation_id, message_id, seq, attempt, step_id, response, created_at_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                )
                .bind(&key.conversation)
                .bind(&key.message_id)
                .bind(i64::from(key.seq))
                .bind(i64::from(key.attempt))
                .bind(&key.step)
                .bind(self.now_ms())
                .execute(&mut *tx)
                .await
                .map_err(|e| fail(&e))?;
                PriorEffect::None
            }
            // Another step at this position (the flow changed): nothing can be assumed.
            Some(r) if r.get::<String, _>("step_id") != key.step => PriorEffect::Unknown,
            Some(r) => match r.get::<Option<Vec<u8>>, _>("response") {
                None => PriorEffect::Unknown,
                Some(blob) => PriorEffect::Done(
                    self.open_json::<RecordedResponse>("effects", &effect_row(key), "response", &blob)
                        .map_err(|e| fail(&e))?,
                ),
            },
        };
        tx.commit().await.map_err(|e| fail(&e))?;
        Ok(prior)
    }

    async fn finish_effect(&self, key: &EffectKey, response: &RecordedResponse) -> Result<(), JournalError> {
        let fail = |e: &dyn std::fmt::Display| JournalError { step: key.step.clone(), reason: e.to_string() };
        let blob = self.seal("effects", &effect_row(key), "response", response).map_err(|e| fail(&e))?;
        let _gate = self.write_gate.lock().await;
        sqlx::query(
            "UPDATE effects SET response = ? WHERE conversation_id = ? AND message_id = ? AND seq = ? AND attempt = ?",
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

#[cfg(feature = "testing")]
impl SqliteStore {
    /// Writes a paused run's blob as given (encrypted like any other), for tests of older and
    /// newer stored formats.
    ///
    /// # Errors
    /// The database failed.
    pub async fn write_legacy_paused_run(
        &self,
        conversation: &str,
        flow_hash: &str,
        blob: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let sealed = self.seal("conversations", conversation, "snapshot", blob)?;
        sqlx::query(
            "INSERT OR REPLACE INTO conversations (conversation_id, flow_hash, snapshot, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(conversation)
        .bind(flow_hash)
        .bind(sealed)
        .bind(expires_at)
        .bind(self.now_s())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Moves a run's first segment to where schema version 3 kept it (`run_segments`, seq 0),
    /// for tests of history written before the segment moved into the summary row.
    ///
    /// # Errors
    /// The database failed or the run has no inline first segment.
    pub async fn write_legacy_first_segment(&self, run_id: &str) -> Result<(), StoreError> {
        let blob: Option<Vec<u8>> = sqlx::query_scalar("SELECT first_segment FROM run_history WHERE run_id = ?")
            .bind(run_id)
            .fetch_one(&self.pool)
            .await
            .map_err(self.db())?;
        let blob = blob
            .ok_or_else(|| StoreError::Corrupt { what: format!("run {run_id}"), reason: "no first segment".into() })?;
        let segment: Segment = self.open_json("run_history", run_id, "first_segment", &blob)?;
        let sealed = self.seal("run_segments", &format!("{run_id}/0"), "body", &segment)?;
        sqlx::query("INSERT INTO run_segments (run_id, seq, body) VALUES (?, 0, ?)")
            .bind(run_id)
            .bind(sealed)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        sqlx::query("UPDATE run_history SET first_segment = NULL WHERE run_id = ?")
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}
