//! What each channel did lately in this process ([`ChannelActivity`]): when it last received a
//! message, when it last had a reply delivered, how many deliveries it sent, retried and lost,
//! and the last failure. The console's channel page shows it and `GET /metrics` counts the
//! deliveries; it is not stored (a restart starts it again) and holds at most
//! [`MAX_CHANNELS`] channels (activity of more is not recorded).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

/// Most channels whose activity is kept.
pub const MAX_CHANNELS: usize = 1024;

/// Longest failure text kept, in characters.
const MAX_FAILURE_CHARS: usize = 300;

/// One channel's activity since the process started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    /// When a message of the channel was last taken (Unix ms).
    pub last_received_ms: Option<i64>,
    /// When a reply of the channel was last delivered (Unix ms).
    pub last_sent_ms: Option<i64>,
    /// Deliveries the receiver or platform took.
    pub sent: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Deliveries given up or refused for good.
    pub dropped: u64,
    /// The last failure: when (Unix ms) and why (no secret: masked where it is made).
    pub last_failure: Option<(i64, String)>,
}

/// How a delivery attempt ended, as [`ChannelActivity`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Taken.
    Sent,
    /// Failed; tried again later.
    Retried,
    /// Given up, or refused for good.
    Dropped,
}

/// The activity of every channel (shared by the edge and the outbox).
#[derive(Debug, Default)]
pub struct ChannelActivity {
    channels: Mutex<HashMap<String, Activity>>,
}

impl ChannelActivity {
    fn update(&self, channel: &str, f: impl FnOnce(&mut Activity)) {
        let mut all = lock(&self.channels);
        if !all.contains_key(channel) && all.len() >= MAX_CHANNELS {
            return;
        }
        f(all.entry(channel.to_string()).or_default());
    }

    /// A message of `channel` was taken at `at_ms`.
    pub fn received(&self, channel: &str, at_ms: i64) {
        self.update(channel, |a| a.last_received_ms = Some(at_ms));
    }

    /// A delivery attempt of `channel` ended at `at_ms` as `outcome` (`why` for a failure).
    pub fn delivered(&self, channel: &str, at_ms: i64, outcome: Delivered, why: Option<&str>) {
        self.update(channel, |a| {
            match outcome {
                Delivered::Sent => {
                    a.sent += 1;
                    a.last_sent_ms = Some(at_ms);
                }
                Delivered::Retried => a.retried += 1,
                Delivered::Dropped => a.dropped += 1,
            }
            if let Some(why) = why {
                a.last_failure = Some((at_ms, why.chars().take(MAX_FAILURE_CHARS).collect()));
            }
        });
    }

    /// The activity of `channel` (all zero when it had none).
    pub fn of(&self, channel: &str) -> Activity {
        lock(&self.channels).get(channel).cloned().unwrap_or_default()
    }

    /// Every channel's, by name.
    pub fn all(&self) -> Vec<(String, Activity)> {
        let mut all: Vec<(String, Activity)> =
            lock(&self.channels).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_counted_per_channel_and_bounded() {
        let a = ChannelActivity::default();
        a.received("wa", 10);
        a.delivered("wa", 11, Delivered::Retried, Some("the WhatsApp Cloud API answered 503"));
        a.delivered("wa", 12, Delivered::Sent, None);
        let wa = a.of("wa");
        assert_eq!(
            (wa.last_received_ms, wa.last_sent_ms, wa.sent, wa.retried, wa.dropped),
            (Some(10), Some(12), 1, 1, 0)
        );
        assert_eq!(wa.last_failure.as_ref().map(|f| f.0), Some(11));
        assert_eq!(a.of("other"), Activity::default());
        for n in 0..MAX_CHANNELS + 10 {
            a.received(&format!("c{n}"), 1);
        }
        assert_eq!(a.all().len(), MAX_CHANNELS);
    }
}
