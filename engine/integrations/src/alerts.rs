//! Connection events: operators learn about an integration before contacts do. An event is a
//! signed webhook (Standard Webhooks, through the conversation outbox: kept across restarts,
//! retried, signed with the channel's secret) to the one generic channel the operator names
//! (`tern serve --connection-events-channel NAME`), when
//!
//! - `integration.authorized`: an operator completed an authorization (code exchange);
//! - `integration.refresh_failed`: a token request of the workspace's credential failed (the
//!   token endpoint was down, or refused a service account's credentials); at most one per
//!   integration per hour;
//! - `integration.needs_reauthorization`: the provider rejected the refresh token; flows that
//!   use the integration fail until someone authorizes again;
//! - `integration.certificate_expiring`: the client certificate expires within 30, 7 or 1
//!   days, or has expired (one event at each of these stages).
//!
//! ## Design
//!
//! - **Derived from state, raised once.** What a condition is (needs re-authorization, a
//!   certificate at a stage) is read from the stored integration ([`ConnectionEvent::of_record`],
//!   a pure function), both when a token request reports it and by a sweep every
//!   [`SWEEP_EVERY`] (and at start): an event lost in a crash between the report and the write is
//!   raised by the next sweep. Each event has an *episode* (the status change's time, the
//!   certificate's expiry and stage, the hour of a failure) and its id is a digest of the
//!   integration, the kind and the episode: the store queues a notice id once
//!   ([`WriteOp::Notify`]), so several instances sweeping the same database, or a restart,
//!   send it once. The id is the delivery's `webhook-id` as well.
//! - **Reminded, not forgotten.** Notice ids are remembered for
//!   [`Retention::notices_max_age_ms`](tern_engine::conversation::Retention::notices_max_age_ms)
//!   (7 days): a condition still there after that is announced again, once a week.
//! - **Bounded.** The reports wait in a queue of [`MAX_QUEUED`]; a report that finds it full is
//!   dropped with a warning (the sweep finds a lasting condition again). A static key's expiry is
//!   not known to Tern, so there is no event for it.
//!
//! The body follows the Standard Webhooks payload structure:
//! `{"type": "integration.needs_reauthorization", "timestamp": "2026-12-07T08:00:00Z",
//! "data": {"integration", "reason", "fix", "console_url", "certificate"?}}`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tern_engine::IntegrationName;
use tern_engine::channel::{ChannelDirectory, ChannelKind, ChannelName, ChannelRef};
use tern_engine::clock::Clock;
use tern_engine::conversation::{ConversationStore, Notice, WriteOp};
use tern_engine::http::tls::{CertificateFacts, certificate_facts};
use tern_engine::storage::StoreError;
use tokio::sync::{mpsc, watch};

use crate::store::{IntegrationRecord, IntegrationStatus, Store};
use crate::{TokenEvent, TokenOutcome};

/// How often the stored integrations are swept for lasting conditions.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Most token reports waiting to be turned into events.
pub const MAX_QUEUED: usize = 1024;

/// How long a refresh failure is one episode: at most one `integration.refresh_failed` per
/// integration in this many seconds.
pub const REFRESH_FAILED_EVERY_SECS: i64 = 3600;

/// The certificate stages announced: expiring within this many days (the first is
/// [`EXPIRY_WARNING_SECS`](tern_engine::http::tls::EXPIRY_WARNING_SECS)), then expired.
pub const CERTIFICATE_STAGES_DAYS: [i64; 3] = [30, 7, 1];

/// What happened to an integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEventKind {
    /// An operator completed an authorization.
    Authorized,
    /// A token request of the workspace's credential failed; a later one may work.
    RefreshFailed,
    /// The provider rejected the grant: someone must authorize again.
    NeedsReauthorization,
    /// The client certificate expires soon, or has expired.
    CertificateExpiring,
}

impl ConnectionEventKind {
    /// The event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "integration.authorized",
            Self::RefreshFailed => "integration.refresh_failed",
            Self::NeedsReauthorization => "integration.needs_reauthorization",
            Self::CertificateExpiring => "integration.certificate_expiring",
        }
    }
}

/// One connection event.
#[derive(Clone, Debug)]
pub struct ConnectionEvent {
    /// The integration.
    pub integration: IntegrationName,
    /// What happened.
    pub kind: ConnectionEventKind,
    /// What makes it one occurrence: events of the same integration, kind and episode are one.
    pub episode: String,
    /// Why (no secret in it).
    pub reason: Option<String>,
    /// The client certificate, for [`ConnectionEventKind::CertificateExpiring`].
    pub certificate: Option<CertificateFacts>,
}

impl ConnectionEvent {
    /// The lasting conditions of `rec` at `now_s` (Unix seconds): needing re-authorization (the
    /// episode is when the status was written), and a client certificate within a stage of
    /// [`CERTIFICATE_STAGES_DAYS`] of its expiry or past it (the episode is its expiry and the
    /// stage).
    pub fn of_record(rec: &IntegrationRecord, now_s: i64) -> Vec<Self> {
        let mut events = Vec::new();
        if rec.status == IntegrationStatus::NeedsReauthorization {
            events.push(Self {
                integration: rec.name.clone(),
                kind: ConnectionEventKind::NeedsReauthorization,
                episode: rec.updated_at.to_string(),
                reason: rec.status_message.clone(),
                certificate: None,
            });
        }
        if let Some(facts) = rec.config.client_cert.as_deref().and_then(|c| certificate_facts(c).ok())
            && let Some(stage) = certificate_stage(&facts, now_s)
        {
            events.push(Self {
                integration: rec.name.clone(),
                kind: ConnectionEventKind::CertificateExpiring,
                episode: format!("{}/{stage}", facts.not_after),
                reason: None,
                certificate: Some(facts),
            });
        }
        events
    }

    /// An authorization completed on `rec` (the episode is when its status was written).
    pub fn authorized(rec: &IntegrationRecord) -> Self {
        Self {
            integration: rec.name.clone(),
            kind: ConnectionEventKind::Authorized,
            episode: rec.updated_at.to_string(),
            reason: None,
            certificate: None,
        }
    }

    /// A failed token request of `name` at `now_s`, for `reason` (one episode per
    /// [`REFRESH_FAILED_EVERY_SECS`]).
    pub fn refresh_failed(name: &IntegrationName, reason: &str, now_s: i64) -> Self {
        Self {
            integration: name.clone(),
            kind: ConnectionEventKind::RefreshFailed,
            episode: now_s.div_euclid(REFRESH_FAILED_EVERY_SECS).to_string(),
            reason: Some(reason.to_string()),
            certificate: None,
        }
    }

    /// Its notice id and `webhook-id`: `conn_` and 32 hex digits of the SHA-256 of the
    /// integration, the kind and the episode.
    pub fn id(&self) -> String {
        let mut digest = Sha256::new();
        for part in [self.integration.as_str(), self.kind.as_str(), &self.episode] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        format!("conn_{}", &hex::encode(digest.finalize())[..32])
    }

    /// What an operator does about it, in words.
    fn fix(&self) -> Option<String> {
        let name = &self.integration;
        match self.kind {
            ConnectionEventKind::Authorized => None,
            ConnectionEventKind::RefreshFailed => Some(format!(
                "Tern tries again when a flow next uses it; check the provider's status and the integration's settings, and run `tern integrations test {name}`"
            )),
            ConnectionEventKind::NeedsReauthorization => Some(format!(
                "authorize it again: the console's Authorize button, or `tern integrations authorize {name}`"
            )),
            ConnectionEventKind::CertificateExpiring => Some(format!(
                "renew the certificate: paste the new certificate and its key in the console's Edit form, or give them with the integration's other options to `tern integrations add {name} --update … --client-cert NEW.pem --client-key NEW-key.pem`"
            )),
        }
    }

    /// The delivery's body at `now_s` (the payload structure of Standard Webhooks: `type`,
    /// `timestamp`, `data`). The console link is `{public_url}/#row-{name}` (its row on the integrations page).
    pub fn body(&self, public_url: &url::Url, now_s: i64) -> Value {
        let mut data = json!({
            "integration": self.integration.as_str(),
            "console_url": format!("{}/#row-{}", public_url.as_str().trim_end_matches('/'), self.integration),
        });
        if let Some(reason) = &self.reason {
            data["reason"] = json!(tern_engine::secrets::known::mask(reason));
        }
        if let Some(fix) = self.fix() {
            data["fix"] = json!(fix);
        }
        if let Some(c) = &self.certificate {
            data["certificate"] = json!({
                "subject": c.subject,
                "not_after": rfc3339(c.not_after),
                "expires_in_days": (c.not_after - now_s).div_euclid(86_400),
            });
        }
        json!({"type": self.kind.as_str(), "timestamp": rfc3339(now_s), "data": data})
    }
}

/// The stage of `facts` at `now_s`: `expired`, or the smallest of [`CERTIFICATE_STAGES_DAYS`]
/// (as `30d`, `7d`, `1d`) that its remaining validity is within; `None` before the first.
fn certificate_stage(facts: &CertificateFacts, now_s: i64) -> Option<String> {
    let left = facts.not_after.saturating_sub(now_s);
    if left <= 0 {
        return Some("expired".into());
    }
    CERTIFICATE_STAGES_DAYS.iter().rev().find(|d| left <= *d * 86_400).map(|d| format!("{d}d"))
}

/// `s` (Unix seconds) as RFC 3339 in UTC, to the second.
fn rfc3339(s: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Why an event could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The configured channel is not there (any more).
    #[error(
        "the connection events channel `{channel}` does not exist; add it (`tern channels add {channel} --kind generic --webhook-url URL`) or start without --connection-events-channel"
    )]
    NoChannel {
        /// The channel.
        channel: ChannelName,
    },
    /// The channel cannot take signed webhooks.
    #[error(
        "the connection events channel `{channel}` is a {kind} channel; connection events go to a generic channel's webhook URL, signed with its webhook secret"
    )]
    NotWebhook {
        /// The channel.
        channel: ChannelName,
        /// Its kind.
        kind: &'static str,
    },
    /// The channel has no webhook URL or no webhook secret.
    #[error(
        "the connection events channel `{channel}` has no webhook URL; add a channel of its own for the events (`tern channels add ops --kind generic --webhook-url URL`) and name it with --connection-events-channel ops{}",
        if channel.is_default() { " (the `default` channel's webhook is `tern serve --webhook-url`)" } else { "" }
    )]
    NoWebhook {
        /// The channel.
        channel: ChannelName,
    },
    /// The channel could not be read.
    #[error("the connection events channel `{channel}` could not be read: {source}")]
    ReadChannel {
        /// The channel.
        channel: ChannelName,
        /// The store's error.
        source: StoreError,
    },
    /// The integrations could not be read.
    #[error("the integrations could not be read for their connection events: {source}")]
    ReadIntegrations {
        /// The store's error.
        source: StoreError,
    },
    /// The event could not be queued.
    #[error("the connection event `{kind}` of integration `{integration}` could not be queued: {source}")]
    Queue {
        /// The integration.
        integration: IntegrationName,
        /// The event's type.
        kind: &'static str,
        /// The store's error.
        source: StoreError,
    },
}

/// Raises connection events as notices to one channel.
#[derive(Clone)]
pub struct ConnectionEvents {
    store: Arc<dyn ConversationStore>,
    channels: Arc<dyn ChannelDirectory>,
    channel: ChannelName,
    public_url: url::Url,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionEvents").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl ConnectionEvents {
    /// Events to `channel` (a generic channel with a webhook URL and secret), queued in
    /// `store`'s outbox; console links under `public_url`.
    pub fn new(
        store: Arc<dyn ConversationStore>,
        channels: Arc<dyn ChannelDirectory>,
        channel: ChannelName,
        public_url: url::Url,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, channels, channel, public_url, clock }
    }

    /// The channel, if it can take the events now.
    ///
    /// # Errors
    /// [`AlertError`]: the channel is missing, not a generic one, or has no webhook.
    pub async fn destination(&self) -> Result<ChannelRef, AlertError> {
        let missing = || AlertError::NoChannel { channel: self.channel.clone() };
        let channel = match self.channels.channel(&self.channel).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(missing()),
            Err(source) => return Err(AlertError::ReadChannel { channel: self.channel.clone(), source }),
        };
        if channel.kind != ChannelKind::Generic {
            return Err(AlertError::NotWebhook { channel: self.channel.clone(), kind: channel.kind.as_str() });
        }
        if channel.delivery.webhook_url.is_none() || channel.delivery.webhook_secret.is_none() {
            return Err(AlertError::NoWebhook { channel: self.channel.clone() });
        }
        Ok(ChannelRef::of(&channel))
    }

    /// Queues `event` unless it was queued before (by this or another instance, within the
    /// notice retention).
    ///
    /// # Errors
    /// [`AlertError`]: no usable channel, or the store failed.
    pub async fn raise(&self, event: &ConnectionEvent) -> Result<(), AlertError> {
        let channel = self.destination().await?;
        let notice = Notice { id: event.id(), channel, body: event.body(&self.public_url, self.clock.now_s()) };
        self.store.write(&[WriteOp::Notify(Box::new(notice))]).await.map_err(|source| AlertError::Queue {
            integration: event.integration.clone(),
            kind: event.kind.as_str(),
            source,
        })
    }

    /// Raises the lasting conditions of every stored integration; how many events it found
    /// (raised now or before).
    ///
    /// # Errors
    /// The integrations could not be read, or an event could not be queued.
    pub async fn sweep(&self, integrations: &dyn Store) -> Result<usize, AlertError> {
        let now_s = self.clock.now_s();
        let records =
            integrations.list_integrations().await.map_err(|source| AlertError::ReadIntegrations { source })?;
        let events: Vec<ConnectionEvent> = records.iter().flat_map(|r| ConnectionEvent::of_record(r, now_s)).collect();
        for event in &events {
            self.raise(event).await?;
        }
        Ok(events.len())
    }

    /// Turns one token report into its event: a failure directly, an authorization or a
    /// rejected grant from the stored integration (so that its episode is the sweep's).
    ///
    /// # Errors
    /// The integration could not be read, or the event could not be queued.
    pub async fn report(&self, integrations: &dyn Store, report: &Report) -> Result<(), AlertError> {
        let name = &report.integration;
        let event = match report.event {
            TokenEvent::Refreshed => return Ok(()),
            TokenEvent::Failed => {
                let why = report.why.as_deref().unwrap_or("the token request failed");
                ConnectionEvent::refresh_failed(name, why, self.clock.now_s())
            }
            TokenEvent::Authorized | TokenEvent::NeedsReauthorization => {
                let read = integrations.get_integration(name).await;
                let Some(rec) = read.map_err(|source| AlertError::ReadIntegrations { source })? else {
                    return Ok(());
                };
                match (report.event, rec.status) {
                    (TokenEvent::Authorized, IntegrationStatus::Authorized) => ConnectionEvent::authorized(&rec),
                    (TokenEvent::NeedsReauthorization, _) => {
                        match ConnectionEvent::of_record(&rec, self.clock.now_s())
                            .into_iter()
                            .find(|e| e.kind == ConnectionEventKind::NeedsReauthorization)
                        {
                            Some(e) => e,
                            None => return Ok(()),
                        }
                    }
                    // Changed again since the report: the sweep tells what lasts.
                    _ => return Ok(()),
                }
            }
        };
        self.raise(&event).await
    }

    /// Raises events until `stop`: from the token reports as they come, and from a sweep of
    /// the stored integrations at start and every [`SWEEP_EVERY`]. Failures are logged (the
    /// next sweep tries again).
    pub async fn run(
        self,
        integrations: Arc<dyn Store>,
        mut reports: mpsc::Receiver<Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        if let Err(e) = self.destination().await {
            tracing::warn!(error = %e, "connection events cannot be sent yet");
        }
        let mut sweeps = tokio::time::interval(SWEEP_EVERY);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            tokio::select! {
                _ = sweeps.tick() => {
                    if let Err(e) = self.sweep(&*integrations).await {
                        tracing::warn!(error = %e, "the connection events sweep failed; it runs again in 10 minutes");
                    }
                }
                report = reports.recv(), if open => match report {
                    Some(r) => {
                        if let Err(e) = self.report(&*integrations, &r).await {
                            tracing::warn!(integration = %r.integration, error = %e, "a connection event could not be raised");
                        }
                    }
                    None => open = false,
                },
                // Mapped to `()`: the guard it returns must not live across the other branches' awaits.
                () = async { drop(stop.wait_for(|s| *s).await) } => break,
            }
        }
    }
}

/// A token request's outcome waiting to become a connection event.
#[derive(Clone, Debug)]
pub struct Report {
    /// The integration.
    pub integration: IntegrationName,
    /// What happened.
    pub event: TokenEvent,
    /// Why, for a failure.
    pub why: Option<String>,
}

/// Where a [`TokenObserver`](crate::TokenObserver) puts its reports: a queue of at most
/// [`MAX_QUEUED`] that never blocks the token request.
#[derive(Clone, Debug)]
pub struct Reports(mpsc::Sender<Report>);

impl Reports {
    /// A queue and its receiving end (for [`ConnectionEvents::run`]).
    pub fn new() -> (Self, mpsc::Receiver<Report>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        (Self(tx), rx)
    }

    /// Queues what matters of `outcome` for the workspace's credentials (an authorization, a
    /// failure, a rejected grant); a full queue drops it with a warning.
    pub fn observe(&self, outcome: &TokenOutcome<'_>) {
        if !outcome.workspace || outcome.event == TokenEvent::Refreshed {
            return;
        }
        let report = Report {
            integration: outcome.integration.clone(),
            event: outcome.event,
            why: outcome.why.map(str::to_string),
        };
        if let Err(mpsc::error::TrySendError::Full(r)) = self.0.try_send(report) {
            tracing::warn!(integration = %r.integration, event = r.event.as_str(), "too many connection events waiting; this one is dropped (a lasting condition is found again by the next sweep)");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::IntegrationConfig;

    fn record(status: IntegrationStatus, updated_at: i64) -> IntegrationRecord {
        IntegrationRecord {
            name: IntegrationName::new("crm").unwrap(),
            config: IntegrationConfig::default(),
            client_secret_set: false,
            client_key_set: false,
            status,
            status_message: Some("the provider rejected the refresh token (invalid_grant)".into()),
            created_at: 1,
            updated_at,
        }
    }

    /// Needing re-authorization is one episode per status write: the same record found again
    /// (by a later sweep, by another instance) is the same event; a later write is another.
    #[test]
    fn a_lasting_condition_is_one_event_until_it_changes() {
        let first = ConnectionEvent::of_record(&record(IntegrationStatus::NeedsReauthorization, 100), 1_000);
        let again = ConnectionEvent::of_record(&record(IntegrationStatus::NeedsReauthorization, 100), 9_000);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, ConnectionEventKind::NeedsReauthorization);
        assert_eq!(first[0].id(), again[0].id(), "found again later: the same event");
        let later = ConnectionEvent::of_record(&record(IntegrationStatus::NeedsReauthorization, 200), 9_000);
        assert_ne!(first[0].id(), later[0].id(), "rejected again after a new authorization: a new event");
        assert!(ConnectionEvent::of_record(&record(IntegrationStatus::Authorized, 100), 1_000).is_empty());
        let id = first[0].id();
        assert!(id.len() <= tern_engine::conversation::MAX_NOTICE_ID && id.starts_with("conn_"), "{id}");
        assert!(id[5..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }

    /// A certificate is announced at 30, 7 and 1 days before its expiry and when it has
    /// expired: once per stage, not once per sweep.
    #[test]
    fn a_certificate_is_announced_once_per_stage() {
        let day = 86_400;
        let facts = |left: i64| CertificateFacts { subject: "CN=tern".into(), not_after: 1_000_000 + left };
        let stage = |left: i64| certificate_stage(&facts(left), 1_000_000);
        assert_eq!(stage(31 * day), None);
        assert_eq!(stage(30 * day).as_deref(), Some("30d"));
        assert_eq!(stage(8 * day).as_deref(), Some("30d"));
        assert_eq!(stage(7 * day).as_deref(), Some("7d"));
        assert_eq!(stage(day + 1).as_deref(), Some("7d"));
        assert_eq!(stage(day).as_deref(), Some("1d"));
        assert_eq!(stage(1).as_deref(), Some("1d"));
        assert_eq!(stage(0).as_deref(), Some("expired"));
        assert_eq!(stage(-5 * day).as_deref(), Some("expired"));
        assert_eq!(
            CERTIFICATE_STAGES_DAYS[0] * day,
            tern_engine::http::tls::EXPIRY_WARNING_SECS,
            "the console's warning"
        );
    }

    /// Failures within one hour are one event; the next hour's is another.
    #[test]
    fn refresh_failures_are_one_event_per_hour() {
        let crm = IntegrationName::new("crm").unwrap();
        let at = |s: i64| ConnectionEvent::refresh_failed(&crm, "the token endpoint answered 503", s).id();
        assert_eq!(at(7_200), at(7_200 + 3_599));
        assert_ne!(at(7_200), at(7_200 + 3_600));
    }

    /// The body: Standard Webhooks' payload structure, the reason, the fix and the console link.
    #[test]
    fn the_body_says_what_happened_and_how_to_fix_it() {
        let event = ConnectionEvent::of_record(&record(IntegrationStatus::NeedsReauthorization, 100), 0).remove(0);
        let body = event.body(&"https://tern.example.com/".parse().unwrap(), 1_765_094_400);
        assert_eq!(body["type"], "integration.needs_reauthorization");
        assert_eq!(body["timestamp"], "2025-12-07T08:00:00Z");
        assert_eq!(body["data"]["integration"], "crm");
        assert_eq!(body["data"]["console_url"], "https://tern.example.com/#row-crm");
        assert!(body["data"]["reason"].as_str().unwrap().contains("invalid_grant"));
        assert!(body["data"]["fix"].as_str().unwrap().contains("tern integrations authorize crm"));
    }

    /// Only the workspace's authorizations, failures and rejections are queued; a contact's own
    /// login and a successful refresh are not, and a full queue drops without blocking.
    #[test]
    fn reports_keep_what_an_operator_must_know() {
        let (reports, mut rx) = Reports::new();
        let crm = IntegrationName::new("crm").unwrap();
        let outcome = |event, workspace| TokenOutcome { integration: &crm, event, workspace, why: Some("503") };
        reports.observe(&outcome(TokenEvent::Refreshed, true));
        reports.observe(&outcome(TokenEvent::Failed, false));
        reports.observe(&outcome(TokenEvent::Failed, true));
        let got = rx.try_recv().unwrap();
        assert_eq!((got.event, got.why.as_deref()), (TokenEvent::Failed, Some("503")));
        assert!(rx.try_recv().is_err(), "nothing else");
        for _ in 0..MAX_QUEUED + 10 {
            reports.observe(&outcome(TokenEvent::NeedsReauthorization, true));
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_QUEUED, "bounded");
    }
}
