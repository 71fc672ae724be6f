//! # tern-steps
//!
//! Tern's built-in step types, one module each. [`register`] is the single list of them (no
//! link-time registration): adding a step type means adding a module and a line there.

mod ask;
mod branch;
mod call_flow;
mod choices;
mod end;
mod fetch_variables;
mod for_each;
mod http_common;
mod http_request;
mod oauth_request;
mod paginate;
mod send_message;
mod set_variables;
mod wait;

use std::sync::Arc;

use tern_engine::{Registry, StepType};

/// Every built-in step type, in the order `tern schema` lists them.
pub fn builtins() -> Vec<Arc<dyn StepType>> {
    vec![
        Arc::new(send_message::SendMessage),
        Arc::new(ask::Ask),
        Arc::new(set_variables::SetVariables),
        Arc::new(wait::Wait),
        Arc::new(branch::Branch),
        Arc::new(for_each::ForEach),
        Arc::new(call_flow::CallFlow),
        Arc::new(http_request::HttpRequest),
        Arc::new(fetch_variables::FetchVariables),
        Arc::new(oauth_request::OAuthRequest),
        Arc::new(end::End),
    ]
}

/// Registers every built-in step type.
pub fn register(registry: &mut Registry) -> Result<(), tern_engine::Error> {
    for step_type in builtins() {
        registry.register(step_type)?;
    }
    Ok(())
}

/// A registry with the built-in step types.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    for step_type in builtins() {
        // Built-in names are distinct by construction; a duplicate would be a bug caught by tests.
        let _ = registry.register(step_type);
    }
    registry
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_names_are_unique() {
        let mut r = tern_engine::Registry::new();
        super::register(&mut r).unwrap();
        assert_eq!(r.names().len(), super::builtins().len());
    }
}
