//! The service's settings and their defaults.

use std::sync::Arc;
use std::time::Duration;

use super::outbox::OutboxPolicy;
use super::store::Retention;
use crate::channel::{ChannelDirectory, FixedChannels};
use crate::clock::{self, Clock};
use crate::run::RunResult;

/// Settings of the service.
#[derive(Clone, Debug)]
pub struct ConversationOptions {
    /// How long a paused run waits for the contact's next message.
    pub pause_ttl: Duration,
    /// Where channels are looked up: a message's replies are also posted to its channel's
    /// webhook ([`Delivery`](crate::channel::Delivery)), signed with the channel's secret. A
    /// channel without a webhook URL gets no deliveries. Default: no channels (nothing is
    /// delivered).
    pub channels: Arc<dyn ChannelDirectory>,
    /// Most messages queued or running at once.
    pub max_in_flight: usize,
    /// Most messages queued for one conversation.
    pub max_queued_per_conversation: usize,
    /// What history and dedupe keep.
    pub retention: Retention,
    /// How often retention runs.
    pub prune_every: Duration,
    /// Webhook delivery.
    pub outbox: OutboxPolicy,
    /// Capacity of the write queue (operations).
    pub write_queue: usize,
    /// The default error reply: sent when a run fails, nothing in its flow caught the failure
    /// and no error flow answered (README "When a step fails"). `None` sends nothing. The
    /// command line sends [`DEFAULT_ERROR_REPLY`] unless told otherwise; this library default
    /// is `None` so that embedders choose.
    pub error_reply: Option<String>,
    /// On a store shared by several instances: how often this one looks for messages another
    /// accepted but did not answer ([`ADOPT_EVERY`] by default) …
    pub adopt_every: Duration,
    /// … and how old such a message must be before this one takes it over ([`ADOPT_AFTER`]).
    pub adopt_after: Duration,
    /// How often due timers of paused runs are fired ([`TIMER_POLL`](super::TIMER_POLL));
    /// `None`: only when [`Conversations::fire_due_timers`](super::Conversations::fire_due_timers)
    /// is called (tests that move a manual clock).
    pub timer_poll: Option<Duration>,
    /// What paused-run expiry, retention, history times and webhook retries are judged by
    /// (the system clock; tests pass a [`ManualClock`](crate::clock::ManualClock), and give
    /// the store the same one).
    pub clock: Arc<dyn Clock>,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        Self {
            pause_ttl: Duration::from_secs(86_400),
            channels: Arc::new(FixedChannels::default()),
            max_in_flight: 4096,
            max_queued_per_conversation: 64,
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
            outbox: OutboxPolicy::default(),
            write_queue: 4096,
            error_reply: None,
            adopt_every: ADOPT_EVERY,
            adopt_after: ADOPT_AFTER,
            timer_poll: Some(super::TIMER_POLL),
            clock: clock::system(),
        }
    }
}

/// What a contact is told when a run fails and nothing caught it, unless the operator chose
/// another text or none (`tern serve`/`tern run` `--error-reply TEXT`, `--no-error-reply`):
/// chat tools answer something rather than leave the contact waiting.
pub const DEFAULT_ERROR_REPLY: &str = "Sorry, something went wrong. Please try again later.";

/// Called with every run result (the server counts them for `/metrics`).
pub type RunObserver = Arc<dyn Fn(&RunResult) + Send + Sync>;

/// How often an instance sharing the store looks, by default, for messages another instance
/// accepted but did not answer ([`ConversationStore::stale_accepted`](super::ConversationStore::stale_accepted)).
pub const ADOPT_EVERY: Duration = Duration::from_secs(5);

/// How old an accepted message must be, by default, before another instance takes it over.
/// Taking over a message that its instance is still handling is safe (the conversation lock makes one wait,
/// then it finds the answer), only wasted effort.
pub const ADOPT_AFTER: Duration = Duration::from_secs(10);
