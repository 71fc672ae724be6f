//! Prometheus metrics for `GET /metrics`: messages, runs by flow and outcome, step latency by
//! step type and outcome, step failures by code, token requests by integration and outcome, the
//! HTTP statuses steps received, the time requests waited for their integration's rate limit,
//! platform updates and reply deliveries by channel and outcome.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tern_engine::RunResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    flow: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    step_type: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    integration: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    step_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    integration: String,
}

/// Seconds, counted as a float.
type SecondsCounter = Counter<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily = Family<StepLabels, Histogram, fn() -> Histogram>;

fn step_histogram() -> Histogram {
    // 50 µs … ~13 s.
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    messages: Counter,
    runs: Family<RunLabels, Counter>,
    steps: HistogramFamily,
    failures: Family<FailureLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    http: Family<HttpLabels, Counter>,
    rate_limit_waits: Family<IntegrationLabels, SecondsCounter>,
    platform: Family<PlatformLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    /// What `deliveries` last took from the service's channel activity, per channel: (sent,
    /// retried, dropped).
    delivered: std::sync::Mutex<std::collections::HashMap<String, (u64, u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tern");
        let messages = Counter::default();
        let runs = Family::<RunLabels, Counter>::default();
        let steps: HistogramFamily = Family::new_with_constructor(step_histogram);
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register("messages", "Conversation messages received", messages.clone());
        registry.register("run_activations", "Run activations by flow and how they ended", runs.clone());
        registry.register("step_duration_seconds", "Step latency by step type and outcome", steps.clone());
        registry.register("step_failures", "Step failures by step type and error code", failures.clone());
        let tokens = Family::<TokenLabels, Counter>::default();
        let http = Family::<HttpLabels, Counter>::default();
        registry.register("token_requests", "Token refreshes by integration and outcome", tokens.clone());
        registry.register("http_responses", "Responses of steps' HTTP requests by step type and status", http.clone());
        let rate_limit_waits = Family::<IntegrationLabels, SecondsCounter>::default();
        registry.register(
            "integration_rate_limit_wait_seconds",
            "Time steps' requests waited for their integration's rate limit (its configured rate, the API's Retry-After and RateLimit headers), by integration",
            rate_limit_waits.clone(),
        );
        let platform = Family::<PlatformLabels, Counter>::default();
        registry.register(
            "platform_updates",
            "Updates messaging platforms posted to platform channels, by channel and outcome (accepted, ignored, malformed, retry-later, or the reason of a refusal)",
            platform.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Reply deliveries (webhooks and platform APIs) by channel and outcome: sent, retried (an attempt failed and is tried again), dropped (given up or refused for good)",
            deliveries.clone(),
        );
        Self {
            registry,
            messages,
            runs,
            steps,
            failures,
            tokens,
            http,
            rate_limit_waits,
            platform,
            deliveries,
            delivered: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts a received message.
    pub fn message(&self) {
        self.messages.inc();
    }

    /// Counts a platform update's outcome on `channel` (an existing channel's name, or
    /// `unknown`: the label set stays bounded by the channels there are).
    pub fn platform_update(&self, channel: &str, outcome: &str) {
        self.platform.get_or_create(&PlatformLabels { channel: channel.into(), outcome: outcome.into() }).inc();
    }

    /// Counts a token request's outcome.
    pub fn token(&self, integration: &str, outcome: &str) {
        self.tokens.get_or_create(&TokenLabels { integration: integration.into(), outcome: outcome.into() }).inc();
    }

    /// Records a finished activation.
    pub fn observe(&self, result: &RunResult) {
        let status = result.status.as_str().to_string();
        self.runs.get_or_create(&RunLabels { flow: result.flow_id.to_string(), status }).inc();
        for t in &result.trace {
            let status = t.status.as_str().to_string();
            self.steps
                .get_or_create(&StepLabels { step_type: t.step_type.to_string(), status })
                .observe(t.duration_us as f64 / 1e6);
            if let Some((integration, seconds)) = rate_limit_wait(&t.detail) {
                self.rate_limit_waits
                    .get_or_create(&IntegrationLabels { integration: integration.into() })
                    .inc_by(seconds);
            }
            for status in http_statuses(&t.detail) {
                self.http
                    .get_or_create(&HttpLabels { step_type: t.step_type.to_string(), status: status.to_string() })
                    .inc();
            }
            if let Some(e) = &t.error {
                self.failures
                    .get_or_create(&FailureLabels { step_type: t.step_type.to_string(), code: e.code.clone() })
                    .inc();
            }
        }
    }

    /// The Prometheus text exposition, with the deliveries counted by the conversation
    /// service's channel activity since the last call (bounded like it, by channel).
    pub fn render(&self, activity: &tern_engine::conversation::ChannelActivity) -> String {
        {
            let mut seen = self.delivered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (channel, a) in activity.all() {
                let before = seen.entry(channel.clone()).or_default();
                for (outcome, now, then) in
                    [("sent", a.sent, before.0), ("retried", a.retried, before.1), ("dropped", a.dropped, before.2)]
                {
                    if now > then {
                        self.deliveries
                            .get_or_create(&DeliveryLabels { channel: channel.clone(), outcome: outcome.into() })
                            .inc_by(now - then);
                    }
                }
                *before = (a.sent, a.retried, a.dropped);
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The HTTP statuses a step's trace detail records: the built-in steps' `response.status`, and
/// each of a plugin's `requests[].status` (one per `http-fetch` call that got an answer).
fn http_statuses(detail: &serde_json::Map<String, serde_json::Value>) -> impl Iterator<Item = u64> + '_ {
    let builtin = detail.get("response").and_then(|r| r.get("status")).and_then(serde_json::Value::as_u64);
    let plugin = detail
        .get("requests")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("status").and_then(serde_json::Value::as_u64));
    builtin.into_iter().chain(plugin)
}

/// The integration a built-in step's request went through and how long it waited for its rate
/// limit, in seconds (`detail.request.integration`, `detail.response.rate_limit_wait_ms`).
fn rate_limit_wait(detail: &serde_json::Map<String, serde_json::Value>) -> Option<(&str, f64)> {
    let ms = detail.get("response")?.get("rate_limit_wait_ms")?.as_u64()?;
    let integration = detail.get("request")?.get("integration")?.as_str()?;
    #[allow(clippy::cast_precision_loss)] // milliseconds of waiting: far below 2^52
    Some((integration, ms as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn rate_limit_waits_are_counted_by_integration() {
        let waited =
            json!({"request": {"integration": "crm"}, "response": {"status": 200, "rate_limit_wait_ms": 1500}});
        assert_eq!(super::rate_limit_wait(waited.as_object().unwrap()), Some(("crm", 1.5)));
        let none = json!({"request": {"integration": "crm"}, "response": {"status": 200}});
        assert_eq!(super::rate_limit_wait(none.as_object().unwrap()), None);
    }

    #[test]
    fn statuses_come_from_built_in_steps_and_every_plugin_request() {
        let builtin = json!({"response": {"status": 200}});
        assert_eq!(super::http_statuses(builtin.as_object().unwrap()).collect::<Vec<_>>(), [200]);
        let plugin = json!({"requests": [{"status": 404}, {"error": "timeout"}, {"status": 201}], "fuel": 9});
        assert_eq!(super::http_statuses(plugin.as_object().unwrap()).collect::<Vec<_>>(), [404, 201]);
        assert_eq!(super::http_statuses(json!({}).as_object().unwrap()).count(), 0);
    }
}
