//! # The loaded flows
//!
//! One owner for which flow runs: [`FlowSet`] holds the flows a service can start, in the order
//! their triggers are tried, and the error flow; it picks the flow for a message
//! ([`FlowSet::for_message`]), for an integration's event ([`FlowSet::for_event`]), by id
//! ([`FlowSet::by_id`]) and for a failure ([`FlowSet::error_flow`]). The conversation service,
//! the events endpoint and the CLI all ask it, so the rules are written once.
//!
//! ## Design choices
//!
//! - **A set is a snapshot.** A reload builds a new [`FlowSet`] and swaps it in whole; a message
//!   being handled keeps the set it started with, and the error flow always belongs to the same
//!   set as the flows.
//! - **A flow's version is the SHA-256 of its source** ([`flow_hash`]). A paused run is pinned to
//!   the version it started with; [`FlowVersions`] keeps compiled versions (bounded) across
//!   reloads, and the conversation service recompiles older ones from the stored source.
//! - **Loading a directory is one rule** ([`load_files`]): the `.json` files sorted by name, each
//!   read with the size limit checked first (`files.rs`), compiled, and a second error flow
//!   refused (`second-error-flow`), so `tern validate` and `tern serve` judge a directory alike.

mod calls;
mod files;
mod versions;

use std::sync::Arc;

pub use calls::{check_calls, check_these_calls};
pub use files::{
    ErrorFlows, FileOutcome, FlowFile, FlowFileError, TEST_FILE_SUFFIX, flow_files, load_files, read_flow,
};
pub(crate) use versions::FlowVersions;

use crate::flow::Trigger;
use crate::ids::IntegrationName;
use crate::step::CompiledFlow;

/// A flow version that can start: the compiled flow and the SHA-256 of its source.
#[derive(Clone, Debug)]
pub struct LoadedFlow {
    /// SHA-256 of the source, hex.
    pub hash: String,
    /// The compiled flow.
    pub flow: Arc<CompiledFlow>,
}

/// SHA-256 of a flow's source, hex: the version a paused run is pinned to.
pub fn flow_hash(source: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(source.as_bytes()))
}

/// The flows that can start, in the order their triggers are tried (priority, highest first,
/// then id), and the error flow. Cheap to share behind an `Arc`; replaced whole on reload.
#[derive(Clone, Debug, Default)]
pub struct FlowSet {
    flows: Vec<LoadedFlow>,
    error_flow: Option<LoadedFlow>,
}

impl FlowSet {
    /// Orders `flows` by trigger priority (highest first), then id.
    ///
    /// A flow whose trigger is `{"type": "error"}` becomes the error flow: it is started, with
    /// the failure in `{{error.*}}`, when a run fails and nothing in its flow caught it (README
    /// "When a step fails"). With several, the first by id is used (loading a directory refuses
    /// a second one: [`ErrorFlows`]).
    pub fn new(mut flows: Vec<LoadedFlow>) -> Self {
        let error_flow = flows
            .iter()
            .filter(|f| matches!(f.flow.trigger, Some(Trigger::Error)))
            .min_by(|a, b| a.flow.id.cmp(&b.flow.id))
            .cloned();
        flows.sort_by(|a, b| {
            let pa = a.flow.trigger.as_ref().map_or(i32::MIN, Trigger::priority);
            let pb = b.flow.trigger.as_ref().map_or(i32::MIN, Trigger::priority);
            pb.cmp(&pa).then_with(|| a.flow.id.cmp(&b.flow.id))
        });
        Self { flows, error_flow }
    }

    /// The flows, in the order triggers are tried.
    pub fn iter(&self) -> std::slice::Iter<'_, LoadedFlow> {
        self.flows.iter()
    }

    /// How many flows there are.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether there is no flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flow with this id (started by name: `Trigger::Start`, the console's "Try it").
    pub fn by_id(&self, id: &str) -> Option<&LoadedFlow> {
        self.flows.iter().find(|f| f.flow.id.as_str() == id)
    }

    /// The first flow whose `message` trigger matches `text`.
    pub fn for_message(&self, text: &str) -> Option<&LoadedFlow> {
        self.flows.iter().find(|f| f.flow.trigger.as_ref().is_some_and(|t| t.matches(text)))
    }

    /// The first flow with an `integration_event` trigger for `integration`.
    pub fn for_event(&self, integration: &IntegrationName) -> Option<&LoadedFlow> {
        self.flows.iter().find(|f| f.flow.trigger.as_ref().is_some_and(|t| t.matches_event(integration)))
    }

    /// The flow started when a run fails and nothing in its flow caught the failure.
    pub fn error_flow(&self) -> Option<&LoadedFlow> {
        self.error_flow.as_ref()
    }
}

impl<'a> IntoIterator for &'a FlowSet {
    type Item = &'a LoadedFlow;
    type IntoIter = std::slice::Iter<'a, LoadedFlow>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
