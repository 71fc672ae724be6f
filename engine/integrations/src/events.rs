//! Events a third party posts for an integration (`POST /v1/integrations/{name}/events`): whose
//! account an event is for. The identifier is read from the event with the integration's
//! `event_identifier` path and must equal the one captured when the integration was authorized
//! (`account_field`); anything else is refused and logged, never guessed.

use serde_json::Value;

use crate::Integrations;
use crate::authorize::ACCOUNT_ID;
use crate::store::StoreError;
use tern_engine::IntegrationName;
use tern_engine::TokenOwner;
use tern_engine::mapping::ResponsePath;
use tern_engine::template::value_text;

/// Why an event is refused. Every variant names the integration.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No integration of that name.
    #[error("no integration `{integration}`")]
    Unknown {
        /// The integration.
        integration: IntegrationName,
    },
    /// The integration has no `event_identifier` and `account_field`.
    #[error("integration `{integration}` does not accept events; configure --event-identifier and --account-field")]
    NoEvents {
        /// The integration.
        integration: IntegrationName,
    },
    /// The event has nothing at the `event_identifier` path.
    #[error("the event has no account identifier: {reason}")]
    NoIdentifier {
        /// The integration.
        integration: IntegrationName,
        /// Why (the path's error).
        reason: String,
    },
    /// The identifier is not the account the integration was authorized for.
    #[error("unknown account identifier for this integration")]
    UnknownAccount {
        /// The integration.
        integration: IntegrationName,
    },
    /// The store failed.
    #[error("integration `{integration}`: {source}")]
    Store {
        /// The integration.
        integration: IntegrationName,
        /// The store's error.
        source: StoreError,
    },
}

impl Integrations {
    /// The account identifier of `event` for integration `name`, when it is the account the
    /// integration was authorized for (captured as [`ACCOUNT_ID`] at authorization; tokens
    /// authorized before that was captured keep the token-response field itself).
    ///
    /// # Errors
    /// [`EventError`].
    pub async fn event_account(&self, name: &IntegrationName, event: &Value) -> Result<String, EventError> {
        let store_err = |source| EventError::Store { integration: name.clone(), source };
        let record = self
            .store
            .get_integration(name)
            .await
            .map_err(store_err)?
            .ok_or_else(|| EventError::Unknown { integration: name.clone() })?;
        let (Some(path), Some(field)) = (&record.config.event_identifier, &record.config.account_field) else {
            return Err(EventError::NoEvents { integration: name.clone() });
        };
        let identifier = ResponsePath::parse(path)
            .and_then(|p| p.select(event))
            .map(|v| value_text(&v).into_owned())
            .map_err(|e| EventError::NoIdentifier { integration: name.clone(), reason: e.to_string() })?;
        let token = self.store.get_token(name, &TokenOwner::Workspace).await.map_err(store_err)?;
        let expected = token.and_then(|t| {
            let captured = t.metadata.get(ACCOUNT_ID).or_else(|| t.metadata.get(field));
            captured.map(|v| value_text(v).into_owned())
        });
        if expected.as_deref() != Some(identifier.as_str()) {
            tracing::warn!(integration = %name, "rejected an event for an unknown account identifier");
            return Err(EventError::UnknownAccount { integration: name.clone() });
        }
        Ok(identifier)
    }
}
