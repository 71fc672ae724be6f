//! Delivery of replies to the channels' webhooks. Deliveries are rows in the store, committed
//! with the run's result and the channel the message came through, so a receiver that is down
//! loses nothing: this task claims due rows oldest first, resolves each row's channel through
//! the [`ChannelDirectory`] (its [`Delivery`](crate::channel::Delivery): URL and secret), signs
//! the body the [Standard Webhooks] way and posts it, retrying with exponential backoff (with
//! jitter) until the receiver answers 2xx or [`OutboxPolicy::max_attempts`] is reached, then
//! drops the delivery with an error in the log.
//!
//! - **Same id on every attempt.** A row's id is its `webhook-id`; a retry (after a refusal, a
//!   network error, or a timeout on Tern's side while the receiver was still working) sends it
//!   again with the same id, a new `webhook-timestamp` and a new signature, so the receiver
//!   dedupes.
//! - **One receiver never holds back another.** Each delivery is a task of its own; the loop
//!   never waits for a batch. At most [`OutboxPolicy::per_destination`] deliveries are in
//!   flight to one URL (a due delivery beyond that is put back for [`DEFER`]), at most
//!   [`OutboxPolicy::max_in_flight`] in all. A row in flight is not claimed again: the store
//!   leases it for [`OUTBOX_LEASE`], longer than any attempt can take
//!   ([`MAX_ATTEMPT_TIMEOUT`]), and this process also remembers which ids it is sending.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::store::{ConversationStore, OutboxItem};
use crate::channel::ChannelDirectory;
use crate::clock::Clock;
use crate::http::{Method, Outbound, PreparedRequest, RequestBody, display_url};
use crate::standard_webhooks::WebhookSecret;
use crate::sync::lock;

/// How long a claimed delivery is not due again ([`ConversationStore::outbox_due`]): if the
/// process sending it dies, it is sent again (same id) after this.
pub const OUTBOX_LEASE: Duration = Duration::from_secs(60);

/// Longest per-attempt timeout: half the lease, so that an attempt always ends (and is
/// recorded) before its row could be claimed again.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a due delivery waits when its destination already has
/// [`OutboxPolicy::per_destination`] deliveries in flight.
pub const DEFER: Duration = Duration::from_secs(1);

/// A new delivery id (`msg_` and 32 hex digits), the `webhook-id` of all its attempts: the
/// Unix time in ms (12 digits), a counter of this process (4), then 64 random bits (16). Ids
/// made later by a process sort after earlier ones, even within one millisecond, so that the
/// store can tell which of a conversation's deliveries was written first
/// ([`ConversationStore::outbox_due`]).
pub fn new_delivery_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        & 0xFFFF_FFFF_FFFF;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let random: u64 = rand::random();
    format!("msg_{ms:012x}{n:04x}{random:016x}")
}

/// How deliveries are sent and retried.
#[derive(Clone, Debug)]
pub struct OutboxPolicy {
    /// Most attempts per delivery (the first included).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Timeout of one attempt (capped at [`MAX_ATTEMPT_TIMEOUT`]).
    pub timeout: Duration,
    /// Most deliveries claimed from the store at once.
    pub batch: usize,
    /// Most deliveries in flight to one webhook URL.
    pub per_destination: usize,
    /// Most deliveries in flight in all.
    pub max_in_flight: usize,
}

impl Default for OutboxPolicy {
    /// 12 attempts over about an hour (1 s, 2 s, 4 s, … capped at 15 minutes), 10 s per
    /// attempt, 8 at once per URL, 256 at once in all.
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
            batch: 32,
            per_destination: 8,
            max_in_flight: 256,
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

    fn attempt_timeout(&self) -> Duration {
        self.timeout.min(MAX_ATTEMPT_TIMEOUT)
    }
}

/// What the delivery loop and its tasks share.
pub(super) struct Outbox {
    pub(super) store: Arc<dyn ConversationStore>,
    pub(super) outbound: Outbound,
    pub(super) channels: Arc<dyn ChannelDirectory>,
    pub(super) policy: OutboxPolicy,
    pub(super) clock: Arc<dyn Clock>,
    /// Each channel's deliveries, counted.
    pub(super) activity: Arc<super::ChannelActivity>,
    /// Ids being sent by this process.
    in_flight: Mutex<HashSet<String>>,
    /// One semaphore per webhook URL with deliveries in flight.
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Each platform channel's send rate.
    rates: crate::rates::Rates,
    /// Slots for deliveries in flight, in all.
    slots: Arc<Semaphore>,
}

impl Outbox {
    pub(super) fn new(
        store: Arc<dyn ConversationStore>,
        outbound: Outbound,
        channels: Arc<dyn ChannelDirectory>,
        policy: OutboxPolicy,
        clock: Arc<dyn Clock>,
        activity: Arc<super::ChannelActivity>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(policy.max_in_flight.max(1)));
        Self {
            store,
            outbound,
            channels,
            policy,
            clock,
            activity,
            in_flight: Mutex::default(),
            destinations: Mutex::default(),
            rates: crate::rates::Rates::new(super::MAX_CHANNELS),
            slots,
        }
    }

    fn ms_from_now(&self, wait: Duration) -> i64 {
        self.clock.now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Where one delivery goes, once its channel is looked up.
enum Target {
    /// A generic channel's webhook: the answer posted as it is, signed.
    Webhook { url: url::Url, secret: WebhookSecret },
    /// A platform's chat: each reply sent through the platform's API.
    Platform { platform: crate::platforms::Platform, chat_id: String },
}

impl Target {
    /// What limits concurrency, and how many deliveries may be in flight to it: a webhook URL
    /// takes [`OutboxPolicy::per_destination`] at once; a chat takes one at a time, so that a
    /// conversation's replies arrive in order.
    fn destination(&self, item: &OutboxItem, policy: &OutboxPolicy) -> (String, usize) {
        match self {
            Self::Webhook { url, .. } => (url.to_string(), policy.per_destination.max(1)),
            Self::Platform { platform, chat_id } => {
                (format!("{}:{}:{chat_id}", platform.kind().as_str(), item.channel), 1)
            }
        }
    }

    /// Where it goes, as it may be logged (never a token).
    fn shown(&self) -> String {
        match self {
            Self::Webhook { url, .. } => display_url(url),
            Self::Platform { platform, .. } => format!("{} ({})", platform.title(), display_url(platform.api_base())),
        }
    }
}

/// Why a delivery cannot be sent now.
enum NoTarget {
    /// Nothing to send it to any more (the channel was removed or has no webhook URL).
    Drop(String),
    /// A failed attempt (retried with backoff).
    Fail(String),
}

/// Why an attempt did not deliver.
#[derive(Debug)]
enum SendFailure {
    /// Try again later: after the backoff, or after `after` when the receiver said so.
    Retry {
        /// Why, for the log (no secret in it).
        why: String,
        /// The receiver's own wait (Telegram's `retry_after`).
        after: Option<Duration>,
    },
    /// The receiver refused it for good (a Telegram chat that does not exist, a bot blocked
    /// by the contact): dropped with an error in the log.
    Refused(String),
}

impl SendFailure {
    fn retry(why: impl Into<String>) -> Self {
        Self::Retry { why: why.into(), after: None }
    }
}

pub(super) async fn deliver_loop(outbox: Arc<Outbox>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        lock(&outbox.destinations).retain(|_, s| Arc::strong_count(s) > 1);
        let free = outbox.slots.available_permits().min(outbox.policy.batch.max(1));
        let mut next_wait = Duration::from_secs(1);
        if free > 0 {
            match outbox.store.outbox_due(outbox.clock.now_ms(), free).await {
                Ok(items) => {
                    if items.len() == free {
                        next_wait = Duration::ZERO;
                    }
                    for item in items {
                        dispatch(&outbox, item, &mut tasks, &wake).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read the webhook outbox"),
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(next_wait) => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Deliveries in flight finish (and record their attempt) even at shutdown; each is bounded
    // by its timeout.
    while tasks.join_next().await.is_some() {}
}

/// Starts sending one claimed delivery in a task of its own, or puts it back when its
/// destination is busy.
async fn dispatch(outbox: &Arc<Outbox>, item: OutboxItem, tasks: &mut tokio::task::JoinSet<()>, wake: &Arc<Notify>) {
    if !lock(&outbox.in_flight).insert(item.id.clone()) {
        return;
    }
    let Ok(slot) = outbox.slots.clone().try_acquire_owned() else {
        defer(outbox, &item).await;
        return;
    };
    let target = target(outbox, &item).await;
    let permit = match &target {
        Ok(t) => {
            let (key, capacity) = t.destination(&item, &outbox.policy);
            let destination =
                lock(&outbox.destinations).entry(key).or_insert_with(|| Arc::new(Semaphore::new(capacity))).clone();
            let within_rate = |platform: &crate::platforms::Platform| {
                outbox.rates.try_take(
                    item.channel.name.as_str(),
                    crate::rates::Rate::per_second(platform.sends_per_second()),
                    outbox.clock.now_ms(),
                )
            };
            match destination.try_acquire_owned() {
                Ok(p) if !matches!(t, Target::Platform { platform, .. } if !within_rate(platform)) => Some(p),
                _ => {
                    defer(outbox, &item).await;
                    return;
                }
            }
        }
        Err(_) => None,
    };
    let outbox = outbox.clone();
    let wake = wake.clone();
    tasks.spawn(async move {
        let _held: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>) = (slot, permit);
        let outcome = match target {
            Ok(t) => send(&outbox, &item, &t).await.map_err(|why| (why, Some(t.shown()))),
            Err(NoTarget::Fail(why)) => Err((SendFailure::retry(why), None)),
            Err(NoTarget::Drop(why)) => Err((SendFailure::Refused(why), None)),
        };
        record(&outbox, &item, outcome).await;
        lock(&outbox.in_flight).remove(&item.id);
        wake.notify_one();
    });
}

/// Puts a claimed delivery back, due after [`DEFER`], without counting an attempt.
async fn defer(outbox: &Outbox, item: &OutboxItem) {
    if let Err(e) = outbox.store.outbox_retry(&item.id, item.lease, item.attempts, outbox.ms_from_now(DEFER)).await {
        tracing::warn!(delivery = %item.id, error = %e, "could not put back a webhook delivery; it is sent when its lease ends");
    }
    lock(&outbox.in_flight).remove(&item.id);
}

/// The delivery's channel's destination: its webhook URL and secret, or its platform's chat.
async fn target(outbox: &Outbox, item: &OutboxItem) -> Result<Target, NoTarget> {
    let name = &item.channel.name;
    let channel = match outbox.channels.channel(name).await {
        Ok(Some(c)) if item.channel.is(&c) => c,
        Ok(Some(_)) => {
            return Err(NoTarget::Drop(format!(
                "the channel `{name}` was removed and added again after this reply was written; the reply is not sent to the new channel"
            )));
        }
        Ok(None) => return Err(NoTarget::Drop(format!("the channel `{name}` no longer exists"))),
        Err(e) => return Err(NoTarget::Fail(format!("the channel `{name}` could not be read: {e}"))),
    };
    if let Some(platform) = &channel.platform {
        let Some(chat_id) = item.body.get("conversation_id").and_then(serde_json::Value::as_str) else {
            return Err(NoTarget::Drop("the delivery names no conversation".into()));
        };
        return Ok(Target::Platform { platform: platform.clone(), chat_id: chat_id.to_string() });
    }
    let Some(url) = channel.delivery.webhook_url.clone() else {
        return Err(NoTarget::Drop(format!("the channel `{name}` no longer has a webhook URL")));
    };
    crate::http::remember_url_secrets(&url);
    let Some(secret) = channel.delivery.webhook_secret.clone() else {
        return Err(NoTarget::Fail(format!(
            "the channel `{name}` has no webhook secret, and deliveries are always signed; give it one (`whsec_…`)"
        )));
    };
    Ok(Target::Webhook { url, secret })
}

/// One attempt.
async fn send(outbox: &Outbox, item: &OutboxItem, target: &Target) -> Result<(), SendFailure> {
    match target {
        Target::Webhook { url, secret } => send_webhook(outbox, item, url, secret).await,
        Target::Platform { platform, chat_id } => send_platform(outbox, item, platform, chat_id).await,
    }
}

/// The body signed at this moment, posted with the per-attempt timeout.
async fn send_webhook(
    outbox: &Outbox,
    item: &OutboxItem,
    url: &url::Url,
    secret: &WebhookSecret,
) -> Result<(), SendFailure> {
    let body = serde_json::to_vec(&item.body)
        .map_err(|e| SendFailure::Refused(format!("the delivery's body cannot be written: {e}")))?;
    let timestamp = outbox.clock.now_ms().div_euclid(1000);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in secret.headers(&item.id, timestamp, &body) {
        let value = HeaderValue::from_str(&value)
            .map_err(|_| SendFailure::Refused(format!("the `{name}` header is not valid")))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    let req = PreparedRequest {
        method: Method::Post,
        url: url.clone(),
        headers,
        body: Some(RequestBody::Bytes(body)),
        timeout: outbox.policy.attempt_timeout(),
    };
    match outbox.outbound.client.send(&req, None).await {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) => Err(SendFailure::retry(format!("the receiver answered {}", r.status.as_u16()))),
        Err(e) => Err(failure_of(&e)),
    }
}

/// A failed call as a delivery failure: one the outbound guard refused (a private address
/// without `--allow-private-network`, a scheme it does not call) is refused for good, since
/// sending it again would meet the same rule; every other one is retried. The message is
/// masked (it may name the URL, with a token in it).
fn failure_of(e: &crate::http::HttpError) -> SendFailure {
    let why = crate::secrets::known::mask(&e.to_string()).into_owned();
    if matches!(e, crate::http::HttpError::Denied { .. }) {
        SendFailure::Refused(format!("{why} (the outbound guard refuses it: sending it again would not help)"))
    } else {
        SendFailure::retry(why)
    }
}

/// Each call of each reply ([`Platform::reply_requests`](crate::platforms::Platform::reply_requests):
/// a long reply is several), in order, from the first call the platform has not taken yet
/// ([`OutboxItem::sent`]); the progress is recorded after every call, so that a retry sends no
/// part twice. A platform whose replies use an integration's token (WhatsApp) gets it injected
/// like any flow step's request: only to the integration's API origins, refreshed once after a
/// rejection; one that holds its credential (Twilio) sends it to its API base only.
async fn send_platform(
    outbox: &Outbox,
    item: &OutboxItem,
    platform: &crate::platforms::Platform,
    chat_id: &str,
) -> Result<(), SendFailure> {
    use crate::platforms::Outcome;
    let replies = item.body.get("replies").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let timeout = outbox.policy.attempt_timeout();
    let run_id = item.body.get("run_id").and_then(serde_json::Value::as_str);
    let calls: Vec<PreparedRequest> = replies
        .iter()
        .filter_map(|r| {
            let text = r.get("text").and_then(serde_json::Value::as_str)?;
            // Written by this process from a `ReplyText`: choices that do not read are none.
            let choices: Vec<crate::step::Choice> =
                r.get("choices").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
            Some(platform.reply_requests(chat_id, text, &choices, run_id, timeout))
        })
        .flatten()
        .collect();
    let owner = crate::tokens::TokenOwner::Workspace;
    let auth = platform.integration().map(|i| (i, &owner));
    // A credential the channel holds itself (Twilio's Basic authentication).
    let credential = platform.credential();
    let start = usize::try_from(item.sent).unwrap_or(usize::MAX);
    for (n, req) in calls.iter().enumerate().skip(start) {
        // The error may name the URL, which may hold a token (Telegram's): masked.
        let answer = match (&credential, auth) {
            (Some(c), None) => outbox.outbound.client.send(req, Some(c)).await,
            _ => outbox.outbound.execute(req, auth).await,
        };
        let answer = answer.map_err(|e| failure_of(&e))?;
        match platform.outcome(answer.status.as_u16(), &answer.body) {
            Outcome::Sent => {
                let sent = u32::try_from(n + 1).unwrap_or(u32::MAX);
                if let Err(e) = outbox.store.outbox_progress(&item.id, item.lease, sent).await {
                    tracing::warn!(delivery = %item.id, error = %e, "could not record a delivery's progress; if it is retried, its sent parts are sent again");
                }
            }
            Outcome::Retry { why, after } => return Err(SendFailure::Retry { why, after }),
            Outcome::Refused { why } => return Err(SendFailure::Refused(why)),
        }
    }
    Ok(())
}

/// Records an attempt: removes a delivered (or refused) row, schedules a retry or gives up.
async fn record(outbox: &Outbox, item: &OutboxItem, outcome: Result<(), (SendFailure, Option<String>)>) {
    let attempts = item.attempts + 1;
    let channel = item.channel.name.as_str();
    let now = outbox.clock.now_ms();
    let counted = |outcome: super::Delivered, why: Option<&str>| outbox.activity.delivered(channel, now, outcome, why);
    let result = match outcome {
        Ok(()) => {
            counted(super::Delivered::Sent, None);
            outbox.store.outbox_remove(&item.id).await
        }
        Err((SendFailure::Refused(why), to)) => {
            counted(super::Delivered::Dropped, Some(&why));
            let to = to.unwrap_or_default();
            tracing::error!(delivery = %item.id, channel = %item.channel, to, error = %why, "a delivery was refused for good and dropped");
            outbox.store.outbox_remove(&item.id).await
        }
        Err((SendFailure::Retry { why, after }, to)) => {
            let to = to.unwrap_or_default();
            let last = attempts >= outbox.policy.max_attempts;
            counted(if last { super::Delivered::Dropped } else { super::Delivered::Retried }, Some(&why));
            if last {
                tracing::error!(delivery = %item.id, channel = %item.channel, to, attempts, error = %why, "the delivery was given up");
                outbox.store.outbox_remove(&item.id).await
            } else {
                let wait = outbox.policy.backoff(attempts).max(after.unwrap_or_default());
                tracing::warn!(delivery = %item.id, channel = %item.channel, to, attempts, retry_in_ms = wait.as_millis() as u64, error = %why, "the delivery failed; retrying");
                outbox.store.outbox_retry(&item.id, item.lease, attempts, outbox.ms_from_now(wait)).await
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(delivery = %item.id, error = %e, "could not record a delivery attempt");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::channel::{Channel, ChannelKind, ChannelName, ChannelRef, Delivery, FixedChannels, Incarnation};

    fn item(channel: ChannelRef) -> OutboxItem {
        OutboxItem {
            id: "d-1".into(),
            channel,
            body: serde_json::Value::Null,
            attempts: 0,
            created_at_ms: 0,
            lease: 1,
            sent: 0,
        }
    }

    /// An outbox over a memory store whose one channel, `name` (`incarnation`), delivers to
    /// `url`, with the guard's default policy (private networks denied).
    fn outbox_of(name: &ChannelName, incarnation: Option<Incarnation>, url: &str) -> Outbox {
        let channel = Channel {
            name: name.clone(),
            incarnation,
            kind: ChannelKind::Generic,
            inbound: Default::default(),
            delivery: Delivery {
                webhook_url: Some(url.parse().unwrap()),
                webhook_secret: Some(WebhookSecret::generate()),
            },
            platform: None,
            web: None,
        };
        Outbox::new(
            Arc::new(crate::conversation::MemoryConversationStore::default()),
            Outbound::new(crate::http::HttpClient::new(crate::http::HttpPolicy::default()).unwrap(), None),
            Arc::new(FixedChannels::new([channel])),
            OutboxPolicy::default(),
            crate::clock::system(),
            Arc::default(),
        )
    }

    /// A delivery goes to its own channel's incarnation only: the same name removed and added
    /// again (another incarnation), or gone, drops it; the same incarnation gets it.
    #[tokio::test]
    async fn a_delivery_goes_only_to_the_incarnation_it_was_written_for() {
        let name = ChannelName::new("support").unwrap();
        let now = Some(Incarnation::generate());
        let outbox = outbox_of(&name, now.clone(), "https://chat.example.com/replies");
        let same = ChannelRef { name: name.clone(), incarnation: now };
        assert!(target(&outbox, &item(same)).await.is_ok());
        let before = ChannelRef { name: name.clone(), incarnation: Some(Incarnation::generate()) };
        match target(&outbox, &item(before)).await {
            Err(NoTarget::Drop(why)) => assert!(why.contains("removed and added again"), "{why}"),
            _ => panic!("a delivery of an earlier incarnation is dropped"),
        }
        let gone = ChannelRef::named(ChannelName::new("gone").unwrap());
        assert!(matches!(target(&outbox, &item(gone)).await, Err(NoTarget::Drop(_))));
    }

    /// A delivery the outbound guard refuses (a loopback receiver without
    /// `--allow-private-network`) is refused for good: retrying it for an hour would meet the
    /// same rule.
    #[tokio::test]
    async fn a_delivery_the_guard_refuses_is_not_retried() {
        let name = ChannelName::new("support").unwrap();
        let outbox = outbox_of(&name, None, "http://127.0.0.1:9/replies");
        let item = item(ChannelRef::named(name));
        let Ok(target) = target(&outbox, &item).await else { panic!("the channel is there") };
        match send(&outbox, &item, &target).await {
            Err(SendFailure::Refused(why)) => assert!(why.contains("outbound guard"), "{why}"),
            other => panic!("refused for good, not {other:?}"),
        }
    }
}
