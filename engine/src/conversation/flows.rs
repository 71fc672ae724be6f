//! The flows the service starts: the current [`FlowSet`] (replaced whole on reload) and the
//! compiled versions paused runs are pinned to, recompiled from the stored source when they are
//! no longer in memory.

use std::sync::{Arc, RwLock};

use super::store::ConversationStore;
use crate::flow_set::{FlowSet, FlowVersions};
use crate::step::{CompiledFlow, Registry};
use crate::storage::StoreError;
use crate::sync;

/// The current flows and the versions known.
#[derive(Debug, Default)]
pub(super) struct Flows {
    current: RwLock<Arc<FlowSet>>,
    versions: FlowVersions,
}

impl Flows {
    /// Replaces the current flows and remembers their versions. Paused runs keep the version
    /// they started with.
    pub(super) fn set(&self, set: FlowSet) {
        self.versions.remember(&set);
        *sync::write(&self.current) = Arc::new(set);
    }

    /// The current flows.
    pub(super) fn current(&self) -> Arc<FlowSet> {
        sync::read(&self.current).clone()
    }

    /// The flow version with this hash: in memory, or recompiled from the source in `store`
    /// with `registry`; `None` when the store no longer has it or it no longer compiles.
    ///
    /// # Errors
    /// The store failed.
    pub(super) async fn version(
        &self,
        hash: &str,
        store: &dyn ConversationStore,
        registry: &Registry,
    ) -> Result<Option<Arc<CompiledFlow>>, StoreError> {
        if let Some(f) = self.versions.get(hash) {
            return Ok(Some(f));
        }
        let Some(source) = store.flow_version(hash).await? else { return Ok(None) };
        Ok(self.versions.compile(hash, &source, registry))
    }
}
