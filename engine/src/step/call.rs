//! Calls between flows (`call_flow`): what a calling step asks for ([`CallRequest`]), what the
//! compiler records of it for the checks across a set of flows ([`FlowCall`]), and where the
//! executor finds the called flow ([`FlowResolver`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::CompiledFlow;
use crate::flow_set::LoadedFlow;
use crate::ids::{FlowId, StepId, VarName};

/// How deep calls may nest: a flow called by a flow called by … at most this many flows below
/// the one the run started with. A deeper call fails its step (`call-depth`), so a flow that
/// calls itself without end fails instead of growing the run.
pub const MAX_CALL_DEPTH: usize = 8;

/// What a calling step asks the executor for ([`Outcome::Call`](super::Outcome::Call)).
#[derive(Clone, Debug, PartialEq)]
pub struct CallRequest {
    /// The flow to run.
    pub flow: FlowId,
    /// Its inputs, rendered: set as its variables before its first step.
    pub inputs: Map<String, Value>,
    /// What the caller takes back when it ends: (the caller's variable, the called flow's
    /// output).
    pub outputs: Vec<(VarName, VarName)>,
}

/// A call as the compiler saw it, for [`check_calls`](crate::flow_set::check_calls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowCall {
    /// The calling step.
    pub step: StepId,
    /// The JSON pointer of the called flow's id in the caller (`/steps/3/flow`).
    pub pointer: String,
    /// The step's JSON pointer (`/steps/3`).
    pub step_pointer: String,
    /// The flow called.
    pub flow: FlowId,
    /// The inputs given.
    pub inputs: BTreeSet<VarName>,
    /// (the caller's variable, the called flow's output) for each output taken back.
    pub outputs: Vec<(VarName, VarName)>,
}

/// Where the executor finds called flows: the current set (a call starts the current version)
/// and every version by hash (a paused run resumes the versions it started with).
#[async_trait]
pub trait FlowResolver: Send + Sync {
    /// The current version of the flow with this id, with its hash.
    fn current(&self, id: &str) -> Option<LoadedFlow>;

    /// The version with this hash, when it is still known.
    async fn version(&self, hash: &str) -> Option<Arc<CompiledFlow>>;
}

/// A fixed list of flows (tests, `tern run`): the current versions are the versions.
#[derive(Debug, Default)]
pub struct FixedFlows(pub Vec<LoadedFlow>);

#[async_trait]
impl FlowResolver for FixedFlows {
    fn current(&self, id: &str) -> Option<LoadedFlow> {
        self.0.iter().find(|f| f.flow.id.as_str() == id).cloned()
    }

    async fn version(&self, hash: &str) -> Option<Arc<CompiledFlow>> {
        self.0.iter().find(|f| f.hash == hash).map(|f| f.flow.clone())
    }
}
