//! Events a third party posts for an integration (`POST /v1/integrations/{name}/events`): whose
//! account an event is for. The identifier is read from the event with the integration's
//! `event_identifier` path and must equal the one captured when the integration was authorized
//! (`account_field`); anything else is refused and logged, never guessed.
//!
//! Before any of that, an event must be signed ([`Integrations::authenticate_event`]): a
//! Standard Webhooks signature with the integration's `events_secret`, within the replay window,
//! with a `webhook-id` not seen before for the integration.

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
    /// The event is not signed with the integration's events secret (or there is no such
    /// integration, or it has no events secret). Every case is answered alike.
    #[error("an event for integration `{integration}` was refused: {reason}")]
    Refused {
        /// The name in the request (at most 64 characters).
        integration: String,
        /// Why, for the log (never a secret value).
        reason: String,
        /// A stable, kebab-case name of the reason.
        code: &'static str,
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
    /// Checks that an event posted for integration `name` (its `headers` and raw `body`) is
    /// signed with the integration's `events_secret` (a Tern secret holding one or more
    /// `whsec_…` keys separated by spaces), within the replay window, with a `webhook-id` not
    /// seen before (remembered in `seen`).
    ///
    /// # Errors
    /// [`EventError::Refused`] (log it; answer every one alike), [`EventError::Store`].
    pub async fn authenticate_event(
        &self,
        name: &str,
        headers: &http::HeaderMap,
        body: &[u8],
        seen: &dyn tern_engine::channel_auth::SeenWebhookIds,
        now_ms: i64,
    ) -> Result<IntegrationName, EventError> {
        use secrecy::ExposeSecret as _;
        use tern_engine::channel::InboundAuth;
        use tern_engine::channel_auth::{check, integration_scope};
        use tern_engine::standard_webhooks::WebhookSecret;
        let shown: String = name.chars().take(64).collect();
        let refused =
            |reason: String, code: &'static str| EventError::Refused { integration: shown.clone(), reason, code };
        let Ok(name) = IntegrationName::new(name) else {
            return Err(refused("there is no such integration".into(), "no-such-integration"));
        };
        let record = self
            .store
            .get_integration(&name)
            .await
            .map_err(|source| EventError::Store { integration: name.clone(), source })?
            .ok_or_else(|| refused("there is no such integration".into(), "no-such-integration"))?;
        let Some(secret_name) = record.config.events_secret.as_deref() else {
            return Err(refused(
                "the integration has no events secret, so it refuses every event (set one with `tern integrations add … --events-secret NAME --update`)".into(),
                "no-events-secret",
            ));
        };
        let Some(value) = self.secrets.get(secret_name) else {
            if self.secrets.undecryptable(secret_name) {
                return Err(refused(
                    format!("its events secret: {}", tern_engine::secrets::unreadable_secret(secret_name)),
                    "events-secret-undecryptable",
                ));
            }
            return Err(refused(
                format!("its events secret `{secret_name}` is not set (`tern secrets set {secret_name}`)"),
                "events-secret-not-set",
            ));
        };
        let keys: Result<Vec<WebhookSecret>, _> =
            value.expose_secret().split_whitespace().map(WebhookSecret::parse).collect();
        let keys = keys.map_err(|e| {
            refused(format!("its events secret `{secret_name}` is not usable: {e}"), "events-secret-invalid")
        })?;
        let auth = InboundAuth { signing_secrets: keys, ..InboundAuth::default() };
        // Only a signature is accepted here: a bearer header is ignored, not checked.
        let mut signed = headers.clone();
        signed.remove(http::header::AUTHORIZATION);
        check(&integration_scope(&name), &auth, &signed, body, seen, now_ms)
            .await
            .map_err(|r| refused(r.to_string(), r.reason()))?;
        Ok(name)
    }

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
            .map_err(|e| e.to_string())
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
