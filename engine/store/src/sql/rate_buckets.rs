//! [`SharedBucket`] on SQL: one row per rate-limited integration (`rate_buckets`), read and
//! written under the row's lock in one short transaction per request. The row is created full
//! (or, by a hold, empty) and locked by one `INSERT … ON CONFLICT DO UPDATE … RETURNING`: on
//! PostgreSQL the conflict's update takes the row lock, so the instances' takes are serialized
//! (SQLite's writing transaction holds the database's one write lock). The arithmetic is
//! [`Bucket::take`]'s, the same as a process's own bucket: the database only keeps the state.
//! Takes are kept in thousandths (`tokens_milli`) so that every column is an integer.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use tern_engine::http::limit::{Bucket, SharedBucket};
use tern_engine::rates::Rate;

use super::{Flavor, SqlStore};
use crate::StoreError;

/// A row unused for this long is removed by retention, in milliseconds (a day).
pub(crate) const IDLE_MS: i64 = 86_400_000;

fn milli(tokens: f64) -> i64 {
    (tokens * 1000.0).round() as i64
}

#[async_trait]
impl<F: Flavor> SharedBucket for SqlStore<F> {
    async fn take(&self, key: &str, rate: Option<Rate>, now_ms: i64) -> Result<Option<Duration>, StoreError> {
        let full = Bucket::full(rate, now_ms);
        let _gate = self.gate().await;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO rate_buckets (name, tokens_milli, counted_ms, hold_until_ms) VALUES ($1, $2, $3, 0)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name
             RETURNING tokens_milli, counted_ms, hold_until_ms",
        )
        .bind(key)
        .bind(milli(full.tokens))
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db())?;
        let mut bucket = Bucket {
            tokens: row.get::<i64, _>("tokens_milli") as f64 / 1000.0,
            counted_ms: row.get("counted_ms"),
            hold_until_ms: row.get("hold_until_ms"),
        };
        let wait = bucket.take(rate, now_ms);
        if wait.is_none() {
            sqlx::query("UPDATE rate_buckets SET tokens_milli = $2, counted_ms = $3 WHERE name = $1")
                .bind(key)
                .bind(milli(bucket.tokens))
                .bind(bucket.counted_ms)
                .execute(&mut *tx)
                .await
                .map_err(self.db())?;
        }
        tx.commit().await.map_err(self.db())?;
        Ok(wait)
    }

    async fn hold(&self, key: &str, until_ms: i64) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        sqlx::query(
            "INSERT INTO rate_buckets (name, tokens_milli, counted_ms, hold_until_ms) VALUES ($1, 0, $2, $3)
             ON CONFLICT (name) DO UPDATE SET hold_until_ms = excluded.hold_until_ms
             WHERE rate_buckets.hold_until_ms < excluded.hold_until_ms",
        )
        .bind(key)
        .bind(self.now_ms())
        .bind(until_ms)
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(())
    }
}
