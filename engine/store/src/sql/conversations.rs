//! [`ConversationStore`] on SQL. Everything that holds what people typed or what Tern replied
//! (paused runs, answers, accepted messages, run segments, webhook deliveries) is encrypted
//! like the other secret columns, with the table, row and column as associated data.
//! Summaries (ids, flow, status, times) stay in clear so that history can be listed and pruned.
//!
//! The batch writer and the retention pass are assembled per database ([`Flavor::write`],
//! [`Flavor::prune`]) from the pieces here: [`SqlStore::apply_all`] and
//! [`SqlStore::prune_all`].

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tern_engine::channel::ChannelRef;
use tern_engine::conversation::{
    ConversationId, ConversationLock, ConversationStore, DueTimer, Inbound, MessageId, OutboxItem, PausedChange,
    PausedRun, Pruned, Remembered, Retention, RunHistory, RunId, RunPage, RunQuery, RunSummary, Segment, WriteOp,
};

use super::{Flavor, SqlStore};
use crate::StoreError;
use crate::rows::{OUTBOX_BINDING, SUMMARY_COLUMNS, SummaryRow, message_row, message_row_str, outbox_row};

/// Most rows one pruning statement deletes (a pass repeats until done, in short statements,
/// so that writers are never blocked for long).
const PRUNE_CHUNK: i64 = 500;

/// Most history rows in one statement: 13 bound values each, far within both databases'
/// limits (SQLite 32,766, PostgreSQL 65,535).
const HISTORY_ROWS_PER_STATEMENT: usize = 64;

/// The statement that inserts `rows` history rows and returns each one's run id and segment
/// count. `rows` is a chunk size of [`history_chunks`]: a power of two up to
/// [`HISTORY_ROWS_PER_STATEMENT`], so there are seven texts, each made once.
fn history_insert(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=HISTORY_ROWS_PER_STATEMENT.trailing_zeros())
            .map(|log| {
                let values = (0..1usize << log)
                    .map(|r| {
                        let p = |i: usize| format!("${}", r * 13 + i);
                        format!(
                            "({}, {}, {}, {}, {}, {}, {}, {}, {}, 1, {}, {}, {}, {})",
                            p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8), p(9), p(10), p(11), p(12), p(13)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "INSERT INTO run_history (run_id, conversation_id, contact_id, flow_id, flow_version, status, started_at_ms,
                       updated_at_ms, finished_at_ms, segments, first_segment, work_ms, recovered, answered_last)
                     VALUES {values}
                     ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, updated_at_ms = excluded.updated_at_ms,
                       finished_at_ms = excluded.finished_at_ms, segments = run_history.segments + 1,
                       work_ms = run_history.work_ms + excluded.work_ms,
                       recovered = CASE WHEN excluded.recovered = 1 THEN 1 ELSE run_history.recovered END,
                       answered_last = excluded.answered_last
                     RETURNING run_id, segments"
                )
            })
            .collect()
    });
    debug_assert!(rows.is_power_of_two() && rows <= HISTORY_ROWS_PER_STATEMENT, "a chunk size of history_chunks");
    // history_chunks only makes powers of two within the limit, so the index is in range.
    let log = rows.clamp(1, HISTORY_ROWS_PER_STATEMENT).ilog2() as usize;
    texts.get(log).map_or("", String::as_str)
}

/// `segments` cut into the chunks [`SqlStore::append_histories`] writes, in order: each at
/// most [`HISTORY_ROWS_PER_STATEMENT`] long and a power of two, none naming a run twice.
fn history_chunks<'a, 'o>(segments: &'a [&'o (RunSummary, Segment)]) -> Vec<&'a [&'o (RunSummary, Segment)]> {
    let mut chunks = Vec::new();
    let mut rest = segments;
    while !rest.is_empty() {
        // The longest prefix that names each run once.
        let limit = rest
            .iter()
            .take(HISTORY_ROWS_PER_STATEMENT)
            .enumerate()
            .position(|(i, (s, _))| rest[..i].iter().any(|(t, _)| t.run_id == s.run_id))
            .unwrap_or(rest.len().min(HISTORY_ROWS_PER_STATEMENT));
        // The largest power of two within it (at least 1).
        let size = 1usize << (usize::BITS - 1 - limit.max(1).leading_zeros());
        let (chunk, next) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = next;
    }
    chunks
}

/// A run summary from a `run_history` row.
fn summary_of(r: &AnyRow) -> Result<RunSummary, StoreError> {
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
        work_ms: r.get("work_ms"),
        recovered: r.get("recovered"),
        answered_last: r.get("answered_last"),
    }
    .into_summary()
}

impl<F: Flavor> SqlStore<F> {
    /// Applies a batch's operations in `tx`; returns how many runs they added to history.
    ///
    /// The batch's history goes in last, a few statements for all of it
    /// ([`append_histories`](Self::append_histories)) rather than one per run: each statement
    /// is a round trip to the database (for SQLite, to its connection's thread), and history is
    /// the one row every message writes. Its tables are written by nothing else in the batch,
    /// so writing them after the other rows changes nothing but the statement count.
    pub(crate) async fn apply_all(&self, tx: &mut Transaction<'_, Any>, ops: &[WriteOp]) -> Result<i64, StoreError> {
        let mut history = Vec::new();
        for op in ops {
            self.apply(tx, op, &mut history).await?;
        }
        self.append_histories(tx, &history).await
    }

    /// Fails with [`StoreError::Fenced`] unless `epoch` is still the conversation's fencing
    /// token, and then keeps the token's row locked until `tx` ends
    /// ([`Dialect::fence_check`](super::Dialect::fence_check)).
    async fn check_fence(
        &self,
        tx: &mut Transaction<'_, Any>,
        conversation: &str,
        epoch: i64,
    ) -> Result<(), StoreError> {
        let fenced = || StoreError::Fenced { conversation: conversation.to_string() };
        // A fence from a store without fences cannot be checked: refuse rather than commit.
        let Some(check) = F::DIALECT.fence_check else { return Err(fenced()) };
        let current =
            sqlx::query(check).bind(conversation).bind(epoch).fetch_optional(&mut **tx).await.map_err(self.db())?;
        current.map(drop).ok_or_else(fenced)
    }

    /// Applies one operation but its history, which it adds to `history`.
    async fn apply<'o>(
        &self,
        tx: &mut Transaction<'_, Any>,
        op: &'o WriteOp,
        history: &mut Vec<&'o (RunSummary, Segment)>,
    ) -> Result<(), StoreError> {
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
            WriteOp::Forget(c, m) => self.forget(tx, c.as_str(), m.as_str()).await?,
            WriteOp::Notify(notice) => {
                let queued =
                    sqlx::query("INSERT INTO notices (id, created_at_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                        .bind(&notice.id)
                        .bind(now_ms)
                        .execute(&mut **tx)
                        .await
                        .map_err(self.db())?
                        .rows_affected();
                if queued == 1 {
                    let body = serde_json::to_vec(&notice.body).map_err(|e| StoreError::Corrupt {
                        what: format!("notice `{}`", notice.id),
                        reason: e.to_string(),
                    })?;
                    self.insert_outbox(tx, &notice.id, &notice.channel, &body, None, now_ms).await?;
                }
            }
            WriteOp::Complete(done) => {
                let c = done.conversation.as_str();
                if let Some(epoch) = done.fence {
                    self.check_fence(tx, c, epoch).await?;
                }
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
                        let wake = p.snapshot.wake_at_ms.map(|at| (p.snapshot.run_id.as_str(), at));
                        self.put_paused(&mut **tx, c, &p.flow_hash, blob, p.expires_at, wake).await?;
                    }
                }
                if done.remember_answer {
                    let row = message_row(&done.conversation, &done.message_id);
                    let blob = self.sealer.seal_json_bytes("answers", &row, "answer", &done.answer.json);
                    // Sealed like the answer: a bare digest of a short text could be guessed.
                    let digest =
                        done.digest.as_ref().map(|d| self.sealer.seal("answers", &row, "digest", d)).transpose()?;
                    sqlx::query(
                        "INSERT INTO answers (conversation_id, message_id, answer, created_at_ms, digest) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (conversation_id, message_id) DO UPDATE SET answer = excluded.answer,
                           created_at_ms = excluded.created_at_ms, digest = excluded.digest",
                    )
                    .bind(c)
                    .bind(done.message_id.as_str())
                    .bind(blob)
                    .bind(now_ms)
                    .bind(digest)
                    .execute(&mut **tx)
                    .await
                    .map_err(self.db())?;
                }
                if done.accepted {
                    self.forget(tx, c, done.message_id.as_str()).await?;
                }
                history.extend(done.history.iter());
                if let Some(body) = &done.outbox {
                    let id = tern_engine::conversation::new_delivery_id();
                    self.insert_outbox(tx, &id, &done.channel, body, Some(c), now_ms).await?;
                }
                if !done.transcript.is_empty() {
                    self.append_transcript(tx, c, &done.transcript, now_ms).await?;
                }
            }
        }
        Ok(())
    }

    /// Appends `entries` to conversation `c`'s web chat transcript after its last entry,
    /// stamped `now_ms`, and drops what is beyond
    /// [`MAX_ENTRIES`](tern_engine::web_chat::transcript::MAX_ENTRIES) (the oldest).
    /// Queues the delivery `id` of `body` (JSON) to `channel`, sealed and bound to its row;
    /// `conversation` orders it after that conversation's earlier deliveries (a notice has none).
    async fn insert_outbox(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
        channel: &ChannelRef,
        body: &[u8],
        conversation: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let channel = channel.to_string();
        let row = outbox_row(OUTBOX_BINDING, id, &channel);
        let blob = self.sealer.seal_json_bytes("outbox", &row, "body", body);
        sqlx::query(
            "INSERT INTO outbox (id, channel, body, attempts, next_attempt_ms, created_at_ms, binding, conversation) VALUES ($1, $2, $3, 0, $4, $4, $5, $6)",
        )
        .bind(id)
        .bind(&channel)
        .bind(blob)
        .bind(now_ms)
        .bind(OUTBOX_BINDING)
        .bind(conversation)
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn append_transcript(
        &self,
        tx: &mut Transaction<'_, Any>,
        c: &str,
        entries: &[tern_engine::web_chat::Entry],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let last: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM web_transcript WHERE conversation_id = $1")
                .bind(c)
                .fetch_one(&mut **tx)
                .await
                .map_err(self.db())?;
        let mut seq = last;
        for (next, entry) in (last + 1..).zip(entries) {
            seq = next;
            let entry = tern_engine::web_chat::Entry { seq, at_ms: now_ms, ..entry.clone() };
            let body = self.sealer.seal("web_transcript", &format!("{c}/{seq}"), "body", &entry)?;
            sqlx::query("INSERT INTO web_transcript (conversation_id, seq, at_ms, body) VALUES ($1, $2, $3, $4)")
                .bind(c)
                .bind(seq)
                .bind(now_ms)
                .bind(body)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
        }
        let keep_after = seq - tern_engine::web_chat::transcript::MAX_ENTRIES;
        if keep_after > 0 {
            sqlx::query("DELETE FROM web_transcript WHERE conversation_id = $1 AND seq <= $2")
                .bind(c)
                .bind(keep_after)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
        }
        Ok(())
    }

    /// Drops an accepted message from the inbox.
    async fn forget(&self, tx: &mut Transaction<'_, Any>, c: &str, m: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM inbox WHERE conversation_id = $1 AND message_id = $2")
            .bind(c)
            .bind(m)
            .execute(&mut **tx)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    /// Writes a conversation's paused run (its sealed snapshot) and its timer (`wake`: the
    /// run's id and when it is due), replacing the earlier one's; the timer is unclaimed.
    async fn put_paused<'e, E: sqlx::Executor<'e, Database = Any>>(
        &self,
        exec: E,
        conversation: &str,
        flow_hash: &str,
        sealed: Vec<u8>,
        expires_at: i64,
        wake: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversations (conversation_id, flow_hash, snapshot, expires_at, updated_at, wake_run_id, wake_at_ms, wake_lease_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
             ON CONFLICT (conversation_id) DO UPDATE SET flow_hash = excluded.flow_hash, snapshot = excluded.snapshot,
               expires_at = excluded.expires_at, updated_at = excluded.updated_at, wake_run_id = excluded.wake_run_id,
               wake_at_ms = excluded.wake_at_ms, wake_lease_ms = NULL",
        )
        .bind(conversation)
        .bind(flow_hash)
        .bind(sealed)
        .bind(expires_at)
        .bind(self.now_s())
        .bind(wake.map(|(run, _)| run))
        .bind(wake.map(|(_, at)| at))
        .execute(exec)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Adds segments to history; returns how many runs they started. A segment of a new run
    /// goes into the run's summary row; when the run already has a row (it paused and
    /// resumed), the row is updated and the segment is appended to `run_segments` under the
    /// next seq.
    ///
    /// The rows go in multi-row statements ([`history_chunks`]): one per chunk, whose sizes
    /// are powers of two (so that few statement texts are prepared and cached), each chunk
    /// naming a run at most once (a second segment of a run in one batch goes in a later
    /// chunk, after the first).
    async fn append_histories(
        &self,
        tx: &mut Transaction<'_, Any>,
        segments: &[&(RunSummary, Segment)],
    ) -> Result<i64, StoreError> {
        let mut started = 0;
        for chunk in history_chunks(segments) {
            let mut q = sqlx::query(history_insert(chunk.len()));
            for (s, segment) in chunk.iter().copied() {
                let first = self.sealer.seal("run_history", s.run_id.as_str(), "first_segment", segment)?;
                // This activation's facts; the update adds them to the run's
                // (RunSummary::with_segment for one activation).
                let facts = s.clone().with_segment(None, segment);
                q = q
                    .bind(s.run_id.as_str())
                    .bind(&s.conversation_id)
                    .bind(s.contact_id.as_deref().map(|c| self.text(c).into_owned()))
                    .bind(&s.flow_id)
                    .bind(&s.flow_version)
                    .bind(s.status.as_str())
                    .bind(s.started_at_ms)
                    .bind(s.updated_at_ms)
                    .bind(s.finished_at_ms)
                    .bind(first)
                    .bind(facts.work_ms)
                    .bind(facts.recovered.map(i64::from))
                    .bind(facts.answered_last.map(i64::from));
            }
            let rows = q.fetch_all(&mut **tx).await.map_err(self.db())?;
            for row in rows {
                let (run_id, count): (String, i64) =
                    (row.try_get(0).map_err(self.db())?, row.try_get(1).map_err(self.db())?);
                if count == 1 {
                    started += 1;
                    continue;
                }
                let Some((_, segment)) = chunk.iter().copied().find(|(s, _)| s.run_id.as_str() == run_id) else {
                    continue;
                };
                let seq = count - 1;
                let blob = self.sealer.seal("run_segments", &format!("{run_id}/{seq}"), "body", segment)?;
                sqlx::query(
                    "INSERT INTO run_segments (run_id, seq, body) VALUES ($1, $2, $3)
                     ON CONFLICT (run_id, seq) DO UPDATE SET body = excluded.body",
                )
                .bind(&run_id)
                .bind(seq)
                .bind(blob)
                .execute(&mut **tx)
                .await
                .map_err(self.db())?;
            }
        }
        Ok(started)
    }

    /// Deletes rows of `table` matching `condition` (with `$1` bound to `bind`), oldest by
    /// `order` first, at most `cap`, in chunks by their address ([`Dialect::row_in`]); returns
    /// how many.
    ///
    /// [`Dialect::row_in`]: super::Dialect::row_in
    pub(crate) async fn delete_chunked(
        &self,
        table: &str,
        condition: &str,
        bind: i64,
        order: &str,
        cap: Option<i64>,
    ) -> Result<u64, StoreError> {
        let id = F::DIALECT.row_id;
        let mut total: i64 = 0;
        loop {
            let chunk = cap.map_or(PRUNE_CHUNK, |c| (c - total).min(PRUNE_CHUNK));
            if chunk <= 0 {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
            let rows = format!("SELECT {id} FROM {table} WHERE {condition} ORDER BY {order} LIMIT {chunk}");
            let sql = format!("DELETE FROM {table} WHERE {}", F::DIALECT.row_in.replace("{rows}", &rows));
            let q = sqlx::query(&sql).bind(bind);
            let _gate = self.gate().await;
            let n = i64::try_from(q.execute(&self.pool).await.map_err(self.db())?.rows_affected()).unwrap_or(0);
            total += n;
            if n < chunk {
                return Ok(u64::try_from(total).unwrap_or(0));
            }
        }
    }

    /// Deletes what the retention policy no longer keeps, table by table, in chunks.
    pub(crate) async fn prune_all(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
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
        self.prune_webhook_ids(retention, now_ms).await?;
        let idle_before = now_ms.saturating_sub(super::rate_buckets::IDLE_MS);
        self.delete_chunked("rate_buckets", "counted_ms < $1 AND hold_until_ms < $1", idle_before, "counted_ms", None)
            .await?;
        let notices_before = now_ms.saturating_sub(retention.notices_max_age_ms);
        self.delete_chunked("notices", "created_at_ms < $1", notices_before, "created_at_ms", None).await?;
        let excess =
            self.count("notices").await? - i64::try_from(tern_engine::conversation::MAX_NOTICES).unwrap_or(i64::MAX);
        if excess > 0 {
            self.delete_chunked("notices", "$1 = $1", 0, "created_at_ms", Some(excess)).await?;
        }
        let transcripts_before = now_ms.saturating_sub(tern_engine::web_chat::session::SESSION_TTL_S * 1000);
        self.delete_chunked("web_transcript", "at_ms < $1", transcripts_before, "at_ms", None).await?;
        Ok(pruned)
    }

    /// Updates the delivery `id` only while it is claimed as `lease` (a stale claim's update
    /// changes nothing): `set` assigns from `$1`, `$2`… in the order of `values`.
    async fn update_claimed(&self, set: &str, values: &[i64], id: &str, lease: i64) -> Result<(), StoreError> {
        let n = values.len();
        let sql = format!("UPDATE outbox SET {set} WHERE id = ${} AND lease = ${}", n + 1, n + 2);
        let _gate = self.gate().await;
        let mut query = sqlx::query(&sql);
        for v in values {
            query = query.bind(*v);
        }
        query.bind(id).bind(lease).execute(&self.pool).await.map_err(self.db())?;
        Ok(())
    }

    /// An accepted message from its `inbox` row; one that cannot be read is logged and left
    /// out, so that it does not stop the others from being recovered.
    fn inbound_of(&self, r: &AnyRow) -> Option<Inbound> {
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
impl<F: Flavor> ConversationStore for SqlStore<F> {
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

    /// Exact where the database has one `tern serve` (a SQLite file in its data directory is
    /// not shared); a shared database has no such index (the default).
    async fn paused_index(&self, limit: usize) -> Result<Option<Vec<(ConversationId, i64)>>, StoreError> {
        if F::DIALECT.shared {
            return Ok(None);
        }
        let cap = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT conversation_id, expires_at FROM conversations LIMIT $1")
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
    ) -> Result<Option<Remembered>, StoreError> {
        let Some(r) = sqlx::query("SELECT answer, digest FROM answers WHERE conversation_id = $1 AND message_id = $2")
            .bind(conversation.as_str())
            .bind(message_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db())?
        else {
            return Ok(None);
        };
        let row = message_row(conversation, message_id);
        let answer = self.sealer.open_json("answers", &row, "answer", &r.get::<Vec<u8>, _>("answer"))?;
        let digest: Option<Vec<u8>> = r.get("digest");
        let digest = digest.map(|d| self.sealer.open_json("answers", &row, "digest", &d)).transpose()?;
        Ok(Some(Remembered { answer, digest }))
    }

    async fn is_accepted(&self, conversation: &ConversationId, message_id: &MessageId) -> Result<bool, StoreError> {
        let found = sqlx::query("SELECT 1 FROM inbox WHERE conversation_id = $1 AND message_id = $2")
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
        F::write(self, ops).await
    }

    async fn run(&self, run_id: &RunId) -> Result<Option<RunHistory>, StoreError> {
        let run_id = run_id.as_str();
        if !self.storable(run_id) {
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
        let statuses: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, body FROM delivery_statuses WHERE run_id = $1 ORDER BY seq")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
        let deliveries = statuses
            .iter()
            .map(|(_, body)| self.sealer.open_json("delivery_statuses", run_id, "body", body))
            .collect::<Result<_, _>>()?;
        Ok(Some(RunHistory { summary, segments, deliveries }))
    }

    async fn record_delivery(
        &self,
        run_id: &RunId,
        status: &tern_engine::conversation::DeliveryStatus,
    ) -> Result<(), StoreError> {
        let run_id = run_id.as_str();
        if !self.storable(run_id) {
            return Ok(());
        }
        let body = self.sealer.seal("delivery_statuses", run_id, "body", status)?;
        let max = i64::try_from(tern_engine::conversation::MAX_DELIVERY_STATUSES).unwrap_or(i64::MAX);
        // Only for a run in history, and only while it has fewer than the bound; a race of two
        // writers for the same seq keeps the first.
        let _gate = self.gate().await;
        sqlx::query(
            "INSERT INTO delivery_statuses (run_id, seq, body)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2 FROM delivery_statuses WHERE run_id = $1
             HAVING COUNT(*) < $3 AND EXISTS (SELECT 1 FROM run_history WHERE run_id = $1)
             ON CONFLICT (run_id, seq) DO NOTHING",
        )
        .bind(run_id)
        .bind(body)
        .bind(max)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        // Only the filters that are set go into the statement, so that the database can use
        // the (flow_id, updated_at_ms) and (conversation_id, updated_at_ms) indexes.
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM run_history WHERE 1 = 1");
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
            let (at, id) = (next(), next());
            sql.push_str(" AND ");
            sql.push_str(&F::DIALECT.runs_before.replace("{at}", &at).replace("{id}", &id));
        }
        sql.push_str(&format!(" ORDER BY updated_at_ms DESC, run_id DESC LIMIT {}", next()));
        let mut q = sqlx::query(&sql);
        // A filter with NUL matches nothing stored where text holds none, and must not be an
        // error.
        if let Some(f) = &query.flow_id {
            q = q.bind(self.text(f).into_owned());
        }
        if let Some(st) = query.status {
            q = q.bind(st.as_str());
        }
        if let Some(c) = &query.conversation_id {
            q = q.bind(self.text(c).into_owned());
        }
        if let Some(a) = &query.after {
            q = q.bind(a.updated_at_ms).bind(self.text(a.run_id.as_str()).into_owned());
        }
        let size = query.page_size();
        let rows =
            q.bind(i64::try_from(size + 1).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(self.db())?;
        let runs = rows.iter().map(summary_of).collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage::from_overfetch(runs, size))
    }

    /// The due deliveries, claimed for [`OUTBOX_LEASE`](tern_engine::conversation::OUTBOX_LEASE)
    /// ([`Dialect::outbox_due`](super::Dialect::outbox_due)), oldest first. One that cannot be
    /// read is dropped.
    async fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let lease = i64::try_from(tern_engine::conversation::OUTBOX_LEASE.as_millis()).unwrap_or(i64::MAX);
        let mut rows = {
            let _gate = self.gate().await;
            sqlx::query(F::DIALECT.outbox_due)
                .bind(now_ms)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(lease)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?
        };
        rows.sort_by_key(|r| r.get::<i64, _>("created_at_ms"));
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get("id");
            let channel: String = r.get("channel");
            let row = outbox_row(r.get("binding"), &id, &channel);
            let body = match self.sealer.open_json("outbox", &row, "body", &r.get::<Vec<u8>, _>("body")) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(delivery = %id, error = %e, "a webhook delivery cannot be read; dropping it");
                    self.outbox_remove(&id).await?;
                    continue;
                }
            };
            let channel = match ChannelRef::parse(&channel) {
                Some(c) => c,
                None => {
                    tracing::error!(delivery = %id, channel = %channel.escape_debug(), "a webhook delivery names a channel that is not valid; dropping it");
                    self.outbox_remove(&id).await?;
                    continue;
                }
            };
            out.push(OutboxItem {
                id,
                channel,
                body,
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(0),
                created_at_ms: r.get("created_at_ms"),
                lease: r.get("lease"),
                sent: u32::try_from(r.get::<i64, _>("sent")).unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn release_timer_claims(&self) -> Result<(), StoreError> {
        if F::DIALECT.shared {
            return Ok(());
        }
        let _gate = self.gate().await;
        sqlx::query("UPDATE conversations SET wake_lease_ms = NULL WHERE wake_lease_ms IS NOT NULL")
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    /// Claims due timers ([`Dialect::timers_due`](super::Dialect::timers_due)), most overdue
    /// first. A row whose ids do not validate cannot have been written by Tern; it is skipped.
    async fn timers_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<DueTimer>, StoreError> {
        let rows: Vec<(String, Option<String>, Option<i64>)> = {
            let _gate = self.gate().await;
            sqlx::query_as(F::DIALECT.timers_due)
                .bind(now_ms)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(lease_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?
        };
        let mut due: Vec<DueTimer> = rows
            .into_iter()
            .filter_map(|(c, run, at)| {
                Some(DueTimer {
                    conversation: ConversationId::new(c).ok()?,
                    run_id: RunId::new(run?).ok()?,
                    due_at_ms: at?,
                })
            })
            .collect();
        due.sort_by_key(|t| t.due_at_ms);
        Ok(due)
    }

    async fn outbox_remove(&self, id: &str) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&self.pool).await.map_err(self.db())?;
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, lease: i64, attempts: u32, next_at_ms: i64) -> Result<(), StoreError> {
        self.update_claimed("attempts = $1, next_attempt_ms = $2", &[i64::from(attempts), next_at_ms], id, lease).await
    }

    async fn outbox_progress(&self, id: &str, lease: i64, sent: u32) -> Result<(), StoreError> {
        self.update_claimed("sent = $1", &[i64::from(sent)], id, lease).await
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.count("outbox").await?).unwrap_or(0))
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        F::checkpoint(self).await
    }

    async fn prune(&self, retention: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        F::prune(self, retention, now_ms).await
    }

    async fn transcript(
        &self,
        conversation: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<tern_engine::web_chat::Entry>, StoreError> {
        let c = conversation.as_str();
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, body FROM web_transcript WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(c)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter()
            .map(|(seq, body)| self.sealer.open_json("web_transcript", &format!("{c}/{seq}"), "body", body))
            .collect()
    }

    fn is_shared(&self) -> bool {
        F::DIALECT.shared
    }

    async fn lock_conversation(
        &self,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Result<Option<Box<dyn ConversationLock>>, StoreError> {
        self.flavor.lock_conversation(conversation, wait).await
    }

    /// On a shared database, the messages a dead (or very slow) instance left; none otherwise.
    async fn stale_accepted(&self, before_ms: i64, limit: usize) -> Result<Vec<Inbound>, StoreError> {
        if !F::DIALECT.shared {
            return Ok(Vec::new());
        }
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

#[cfg(feature = "testing")]
impl<F: Flavor> SqlStore<F> {
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
        let sealed = self.sealer.seal("conversations", conversation, "snapshot", blob)?;
        self.put_paused(&self.pool, conversation, flow_hash, sealed, expires_at, None).await
    }

    /// Moves a run's first segment to where schema version 3 kept it (`run_segments`, seq 0),
    /// for tests of history written before the segment moved into the summary row.
    ///
    /// # Errors
    /// The database failed or the run has no inline first segment.
    pub async fn write_legacy_first_segment(&self, run_id: &str) -> Result<(), StoreError> {
        let blob: Option<Vec<u8>> = sqlx::query_scalar("SELECT first_segment FROM run_history WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.pool)
            .await
            .map_err(self.db())?;
        let blob = blob
            .ok_or_else(|| StoreError::Corrupt { what: format!("run {run_id}"), reason: "no first segment".into() })?;
        let segment: Segment = self.sealer.open_json("run_history", run_id, "first_segment", &blob)?;
        let sealed = self.sealer.seal("run_segments", &format!("{run_id}/0"), "body", &segment)?;
        sqlx::query("INSERT INTO run_segments (run_id, seq, body) VALUES ($1, 0, $2)")
            .bind(run_id)
            .bind(sealed)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        sqlx::query("UPDATE run_history SET first_segment = NULL WHERE run_id = $1")
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }
}
