//! Token buckets by key ([`Rates`]): the outbox's send rate per platform channel, and the web
//! chat's limits per session and per address. Each key's bucket is refilled at its [`Rate`] and
//! holds at most its burst. Per process; at most the number of keys given to [`Rates::new`]:
//! when full, buckets idle for a minute (full again, so nothing to remember) are dropped (at
//! most once a second, so that a flood of new keys does not scan the map each time), and a new
//! key beyond the bound is let through ([`WhenFull::Allow`]: the outbox, whose keys are the
//! channels) or refused ([`WhenFull::Refuse`]: limits on what visitors send, which a flood of
//! new keys must not switch off).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

/// Who a client's limits count against: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber's, which hands out its addresses freely; RFC 6177). An IPv4-mapped IPv6
/// address is its IPv4 address.
pub fn client_network(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// How fast a bucket refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Takes added per second.
    pub per_second: f64,
    /// Most takes at once (the bucket's size; a new key starts full).
    pub burst: f64,
}

impl Rate {
    /// `n` a second, at most one second's worth at once.
    pub fn per_second(n: u32) -> Self {
        let n = f64::from(n.max(1));
        Self { per_second: n, burst: n }
    }

    /// `n` a minute, at most `burst` at once.
    pub fn per_minute(n: u32, burst: u32) -> Self {
        Self { per_second: f64::from(n.max(1)) / 60.0, burst: f64::from(burst.max(1)) }
    }
}

/// What a new key gets when the buckets are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Let it through, unremembered.
    Allow,
    /// Refuse it (for a minute, the time an idle bucket takes to be dropped).
    Refuse,
}

/// The buckets: per key, the takes available and when they were counted (Unix ms).
#[derive(Debug)]
pub struct Rates {
    buckets: Mutex<Buckets>,
    max_keys: usize,
    when_full: WhenFull,
}

#[derive(Debug, Default)]
struct Buckets {
    by_key: HashMap<String, (f64, i64)>,
    last_sweep_ms: i64,
}

impl Rates {
    /// Buckets for at most `max_keys` keys; a new key beyond them is let through.
    pub fn new(max_keys: usize) -> Self {
        Self::with_policy(max_keys, WhenFull::Allow)
    }

    /// Buckets for at most `max_keys` keys; a new key beyond them gets `when_full`.
    pub fn with_policy(max_keys: usize, when_full: WhenFull) -> Self {
        Self { buckets: Mutex::new(Buckets::default()), max_keys, when_full }
    }

    /// Takes one from `key`'s bucket at `now_ms` when it has one.
    pub fn try_take(&self, key: &str, rate: Rate, now_ms: i64) -> bool {
        self.wait_for(key, rate, now_ms).is_none()
    }

    /// Takes one from `key`'s bucket at `now_ms`; when it is empty, takes nothing and says how
    /// long until it has one (milliseconds, at least 1), for a `Retry-After`.
    pub fn wait_for(&self, key: &str, rate: Rate, now_ms: i64) -> Option<i64> {
        let mut buckets = lock(&self.buckets);
        let Buckets { by_key, last_sweep_ms } = &mut *buckets;
        if !by_key.contains_key(key) && by_key.len() >= self.max_keys {
            if now_ms.saturating_sub(*last_sweep_ms) >= 1000 {
                by_key.retain(|_, (_, at)| now_ms.saturating_sub(*at) < 60_000);
                *last_sweep_ms = now_ms;
            }
            if by_key.len() >= self.max_keys {
                return match self.when_full {
                    WhenFull::Allow => None,
                    WhenFull::Refuse => Some(60_000),
                };
            }
        }
        let (tokens, at) = by_key.entry(key.to_string()).or_insert((rate.burst, now_ms));
        let elapsed_s = now_ms.saturating_sub(*at).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed_s * rate.per_second).min(rate.burst);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            let missing_s = (1.0 - *tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Some(((missing_s * 1000.0).ceil() as i64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_takes_at_its_rate_with_a_bounded_burst() {
        let r = Rates::new(16);
        let taken = (0..5).filter(|_| r.try_take("sms", Rate::per_second(2), 0)).count();
        assert_eq!(taken, 2, "a burst of one second's worth");
        assert!(!r.try_take("sms", Rate::per_second(2), 100));
        assert!(r.try_take("sms", Rate::per_second(2), 600), "half a second refills one");
        assert!(r.try_take("other", Rate::per_second(2), 600), "each key has its own bucket");
        let after_idle = (0..10).filter(|_| r.try_take("sms", Rate::per_second(2), 60_000)).count();
        assert_eq!(after_idle, 2, "never more than a second's worth");
    }

    #[test]
    fn an_empty_bucket_says_how_long_to_wait() {
        let r = Rates::new(16);
        let rate = Rate::per_minute(6, 2);
        assert_eq!(r.wait_for("s", rate, 0), None);
        assert_eq!(r.wait_for("s", rate, 0), None);
        assert_eq!(r.wait_for("s", rate, 0), Some(10_000), "one every ten seconds");
        assert_eq!(r.wait_for("s", rate, 4_000), Some(6_000));
        assert_eq!(r.wait_for("s", rate, 10_000), None);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let r = Rates::new(2);
        let rate = Rate::per_minute(1, 1);
        assert!(r.try_take("a", rate, 0) && r.try_take("b", rate, 0));
        assert!(r.try_take("c", rate, 0), "a key beyond the bound is not remembered");
        assert!(r.try_take("c", rate, 0));
        assert!(!r.try_take("a", rate, 0), "remembered keys keep their limit");
        assert!(r.try_take("c", rate, 61_000) && !r.try_take("c", rate, 61_000), "idle keys make room");
    }

    #[test]
    fn limits_that_must_hold_refuse_new_keys_when_full() {
        let r = Rates::with_policy(2, WhenFull::Refuse);
        let rate = Rate::per_minute(1, 1);
        assert!(r.try_take("a", rate, 0) && r.try_take("b", rate, 0));
        assert_eq!(r.wait_for("c", rate, 0), Some(60_000), "a flood of new keys switches nothing off");
        assert_eq!(r.wait_for("c", rate, 61_000), None, "idle keys make room");
    }
}
