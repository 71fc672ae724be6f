//! Compiled flow versions by hash, kept across reloads for paused runs (bounded: past
//! [`MAX_VERSIONS`] the cache starts over, and older versions are recompiled from the stored
//! source when a paused run needs them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::FlowSet;
use crate::compile::{LoadOptions, load_flow};
use crate::step::{CompiledFlow, Registry};
use crate::sync;

/// Most compiled flow versions kept in memory (others are recompiled from the store).
pub(crate) const MAX_VERSIONS: usize = 256;

/// Compiled flow versions by their hash ([`super::flow_hash`]).
#[derive(Debug, Default)]
pub(crate) struct FlowVersions {
    versions: Mutex<HashMap<String, Arc<CompiledFlow>>>,
}

impl FlowVersions {
    /// The version with this hash, when it is in memory.
    pub(crate) fn get(&self, hash: &str) -> Option<Arc<CompiledFlow>> {
        self.lock().get(hash).cloned()
    }

    /// Remembers every version of `set`.
    pub(crate) fn remember(&self, set: &FlowSet) {
        let mut versions = self.lock();
        for f in set {
            insert(&mut versions, &f.hash, f.flow.clone());
        }
    }

    /// Compiles a stored version's `source` (as flows are loaded without a store: integrations
    /// are not checked) and remembers it; `None` when it no longer compiles with `registry`.
    pub(crate) fn compile(&self, hash: &str, source: &str, registry: &Registry) -> Option<Arc<CompiledFlow>> {
        let opts = LoadOptions::new(registry);
        let flow = Arc::new(load_flow(source, &opts).ok()?);
        insert(&mut self.lock(), hash, flow.clone());
        Some(flow)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<CompiledFlow>>> {
        sync::lock(&self.versions)
    }
}

/// Inserts a version, starting over when the cache is full.
fn insert(versions: &mut HashMap<String, Arc<CompiledFlow>>, hash: &str, flow: Arc<CompiledFlow>) {
    if versions.len() >= MAX_VERSIONS && !versions.contains_key(hash) {
        versions.clear();
    }
    versions.insert(hash.to_string(), flow);
}
