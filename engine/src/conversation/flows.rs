//! The flows the service starts: the current [`FlowSet`] (replaced whole on reload) and the
//! compiled versions paused runs are pinned to, recompiled from the stored source when they are
//! no longer in memory.

use std::sync::{Arc, RwLock};

use super::store::ConversationStore;
use crate::flow_set::{FlowSet, FlowVersions};
use crate::step::{CompiledFlow, Registry};
use crate::storage::StoreError;
use crate::sync;

/// The flows a run's `call_flow` steps call: the current set, and the versions paused runs
/// are pinned to (in memory, or recompiled from the store).
pub(super) struct ServiceFlows {
    pub(super) flows: Arc<Flows>,
    pub(super) store: Arc<dyn ConversationStore>,
    pub(super) registry: Arc<Registry>,
}

impl std::fmt::Debug for ServiceFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceFlows").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl crate::step::FlowResolver for ServiceFlows {
    fn current(&self, id: &str) -> Option<crate::flow_set::LoadedFlow> {
        self.flows.current().by_id(id).cloned()
    }

    async fn version(&self, hash: &str) -> Option<Arc<CompiledFlow>> {
        match self.flows.version(hash, &*self.store, &self.registry).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(version = hash, error = %e, "cannot read a called flow's version from the store");
                None
            }
        }
    }
}

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
