//! Delivery of replies to the outbound webhook (the channel). Deliveries are rows in the store,
//! committed with the run's result, so a channel that is down loses nothing: this task posts
//! them oldest first and retries with exponential backoff (with jitter) until the channel
//! answers 2xx or [`OutboxPolicy::max_attempts`] is reached, then drops the delivery with an
//! error in the log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::store::ConversationStore;
use crate::clock::Clock;
use crate::http::{HttpClient, Method, PreparedRequest, RequestBody};

/// How deliveries are retried.
#[derive(Clone, Debug)]
pub struct OutboxPolicy {
    /// Most attempts per delivery (the first included).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Most deliveries sent at once.
    pub batch: usize,
}

impl Default for OutboxPolicy {
    /// 12 attempts over about an hour (1 s, 2 s, 4 s, … capped at 15 minutes), 10 s per
    /// attempt.
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
            batch: 32,
        }
    }
}

impl OutboxPolicy {
    /// The wait after `attempts` failed attempts: exponential, capped, with ±20 % jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.first_backoff.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let base = exp.min(self.max_backoff);
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        base.mul_f64(jitter)
    }
}

pub(super) async fn deliver_loop(
    store: Arc<dyn ConversationStore>,
    client: HttpClient,
    url: url::Url,
    policy: OutboxPolicy,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    clock: Arc<dyn Clock>,
) {
    loop {
        let mut next_wait = Duration::from_secs(1);
        match store.outbox_due(clock.now_ms(), policy.batch.max(1)).await {
            Ok(items) => {
                if items.len() == policy.batch.max(1) {
                    next_wait = Duration::ZERO;
                }
                let mut sends = tokio::task::JoinSet::new();
                for item in items {
                    let client = client.clone();
                    let url = url.clone();
                    let store = store.clone();
                    let policy = policy.clone();
                    let clock = clock.clone();
                    sends.spawn(async move {
                        let req = PreparedRequest {
                            method: Method::Post,
                            url,
                            headers: Default::default(),
                            body: Some(RequestBody::Json(item.body.clone())),
                            timeout: policy.timeout,
                        };
                        let attempts = item.attempts + 1;
                        let failure = match client.send(&req, None).await {
                            Ok(r) if r.status.is_success() => None,
                            Ok(r) => Some(format!("the channel answered {}", r.status.as_u16())),
                            Err(e) => Some(e.to_string()),
                        };
                        let result = match failure {
                            None => store.outbox_remove(&item.id).await,
                            Some(why) if attempts >= policy.max_attempts => {
                                tracing::error!(delivery = %item.id, attempts, error = %why, "the webhook delivery was given up");
                                store.outbox_remove(&item.id).await
                            }
                            Some(why) => {
                                let wait = policy.backoff(attempts);
                                tracing::warn!(delivery = %item.id, attempts, retry_in_ms = wait.as_millis() as u64, error = %why, "the webhook delivery failed; retrying");
                                let next = clock.now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                                store.outbox_retry(&item.id, attempts, next).await
                            }
                        };
                        if let Err(e) = result {
                            tracing::warn!(delivery = %item.id, error = %e, "could not record a webhook delivery attempt");
                        }
                    });
                }
                // Deliveries in flight finish (and record their attempt) even at shutdown.
                while sends.join_next().await.is_some() {}
            }
            Err(e) => tracing::warn!(error = %e, "could not read the webhook outbox"),
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(next_wait) => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
