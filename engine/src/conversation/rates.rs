//! The outbox's send rate per platform channel ([`Rates`]): a token bucket per channel, refilled
//! at the platform's documented rate ([`Platform::sends_per_second`](crate::platforms::Platform::sends_per_second))
//! and holding at most one second's worth (a burst). A delivery that finds its channel's bucket
//! empty is put back for [`DEFER`](super::DEFER), like one whose destination is busy, instead of
//! meeting the platform's 429. Per process; at most [`MAX_CHANNELS`](super::MAX_CHANNELS)
//! buckets (the idle ones are dropped first).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

/// The buckets: per channel, the sends available and when they were counted (Unix ms).
#[derive(Debug, Default)]
pub(super) struct Rates {
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl Rates {
    /// Takes one send of `channel` at `now_ms` when its bucket (`per_second` sends a second, at
    /// most `per_second` at once) has one.
    pub(super) fn try_take(&self, channel: &str, per_second: u32, now_ms: i64) -> bool {
        let rate = f64::from(per_second.max(1));
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(channel) && buckets.len() >= super::MAX_CHANNELS {
            // Idle for a minute: full again, nothing to remember.
            buckets.retain(|_, (_, at)| now_ms.saturating_sub(*at) < 60_000);
            if buckets.len() >= super::MAX_CHANNELS {
                return true;
            }
        }
        let (tokens, at) = buckets.entry(channel.to_string()).or_insert((rate, now_ms));
        let elapsed_s = now_ms.saturating_sub(*at).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed_s * rate).min(rate);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_sends_at_its_rate_with_a_bounded_burst() {
        let r = Rates::default();
        let taken = (0..5).filter(|_| r.try_take("sms", 2, 0)).count();
        assert_eq!(taken, 2, "a burst of one second's worth");
        assert!(!r.try_take("sms", 2, 100));
        assert!(r.try_take("sms", 2, 600), "half a second refills one");
        assert!(r.try_take("other", 2, 600), "each channel has its own bucket");
        let after_idle = (0..10).filter(|_| r.try_take("sms", 2, 60_000)).count();
        assert_eq!(after_idle, 2, "never more than a second's worth");
    }
}
