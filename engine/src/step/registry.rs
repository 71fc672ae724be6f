//! The step types a flow may use, registered explicitly (built-in ones in `tern-steps`,
//! WebAssembly plugins in `tern-plugins`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::StepType;

/// The step types a flow may use.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, Arc<dyn StepType>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step type; a name can be registered once.
    pub fn register(&mut self, step_type: Arc<dyn StepType>) -> Result<(), crate::Error> {
        let name = step_type.name().to_string();
        if self.types.contains_key(&name) {
            return Err(crate::Error::DuplicateStepType { name });
        }
        self.types.insert(name, step_type);
        Ok(())
    }

    /// The step type called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepType>> {
        self.types.get(name)
    }

    /// All registered step types, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn StepType>> {
        self.types.values()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}
