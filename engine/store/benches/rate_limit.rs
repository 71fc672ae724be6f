//! What an integration's rate limit costs a request that does not have to wait: the
//! [`RateLimiter`]'s `acquire` with this process's own bucket, with the bucket shared in SQLite
//! (the code path of a shared store, measured on the one-process database), and shared in
//! PostgreSQL when `TERN_TEST_DATABASE_URL` is set, next to no limiter at all; one caller, then
//! 16 at once. The rate is so high that no request waits: what is measured is the bookkeeping.
//!
//! `cargo bench -p tern-store --bench rate_limit` (`TERN_BENCH_REQUESTS`, default 4000; the smoke
//! run, without `--bench`, makes 160).

#![allow(clippy::unwrap_used, missing_docs)] // a benchmark: a panic is a failed run

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::http::limit::{RateLimiter, SharedBucket};
use tern_engine::rates::Rate;
use tern_store::crypto::{Keyring, MasterKey};

const WORKERS: usize = 16;

/// Microseconds per request over `n` requests from `workers` callers at once.
async fn per_request(limiter: Option<Arc<RateLimiter>>, n: usize, workers: usize) -> f64 {
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let limiter = limiter.clone();
        tasks.spawn(async move {
            for _ in 0..n / workers {
                if let Some(l) = &limiter {
                    assert_eq!(l.acquire("bench", far).await.unwrap(), Duration::ZERO, "nothing waits");
                }
            }
        });
    }
    tasks.join_all().await;
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn limiter(shared: Option<Arc<dyn SharedBucket>>) -> Option<Arc<RateLimiter>> {
    let rate = Some(Rate { per_second: 1e9, burst: 1e9 });
    let l = RateLimiter::new(rate);
    Some(Arc::new(match shared {
        Some(bucket) => l.shared(bucket, "bench"),
        None => l,
    }))
}

fn main() {
    // `cargo bench` passes `--bench`; the smoke run (`cargo test --bench`) does not.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize =
        std::env::var("TERN_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 4000 } else { 160 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let sqlite = tern_store::SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap();
        let mut sides: Vec<(&str, Option<Arc<RateLimiter>>)> = vec![
            ("no limiter", None),
            ("own bucket (one process)", limiter(None)),
            ("shared bucket in SQLite", limiter(Some(Arc::new(sqlite)))),
        ];
        let db = match std::env::var("TERN_TEST_DATABASE_URL") {
            Ok(_) => Some(tern_store::testing::PgTestDb::create().await),
            Err(_) => None,
        };
        if let Some(db) = &db {
            let (key, _) = MasterKey::generate();
            let pg = tern_store::PgStore::open(&db.url, Keyring::new(key)).await.unwrap();
            sides.push(("shared bucket in PostgreSQL", limiter(Some(Arc::new(pg)))));
        }
        println!("| limiter | µs per request, 1 caller | µs per request, {WORKERS} callers |");
        println!("|---|---|---|");
        for (name, l) in &sides {
            let one = per_request(l.clone(), n, 1).await;
            let many = per_request(l.clone(), n, WORKERS).await;
            println!("| {name} | {one:.2} | {many:.2} |");
        }
        drop(sides);
        if let Some(db) = db {
            db.drop_db().await;
        }
    });
}
