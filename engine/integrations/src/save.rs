//! Saving and removing integrations: the one path every front end takes (`tern integrations
//! add`, the console's form, `PUT /v1/integrations/{name}`), so that what may be saved is
//! decided once ([`rules`](crate::rules)) and the in-memory grants of a changed integration are
//! always dropped.
//!
//! What differs per front end is a choice, not a copy: whether an existing integration may be
//! replaced ([`SaveOptions::replace`]), and what to do with endpoints the outbound guard would
//! refuse ([`Reachability`]): the console refuses them (it runs in the server, under the very
//! policy that would refuse them), the command line warns (the server may run with
//! `--allow-private-network` where the command does not), the admin API leaves them alone (it
//! resolves no host names inside a request).

use crate::Integrations;
use crate::config::IntegrationConfig;
use crate::problems::{Field, Problem};
use crate::rules::Draft;
use crate::store::{IntegrationRecord, StoreError};
use tern_engine::IntegrationName;

/// What to do with endpoints Tern itself would refuse to call (a loopback, private or
/// link-local address where private networks are not allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// They are problems: nothing is saved.
    Refuse,
    /// Saved anyway, with each one as a warning in [`Saved::warnings`].
    Warn,
    /// Not looked at (no name resolution).
    Unchecked,
}

/// How to save.
#[derive(Clone, Copy, Debug)]
pub struct SaveOptions {
    /// Whether an integration of the same name may be replaced (its tokens are kept).
    pub replace: bool,
    /// What to do with endpoints the outbound guard would refuse.
    pub reachability: Reachability,
}

/// A saved integration.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The integration as stored now (never its secret).
    pub record: IntegrationRecord,
    /// What was saved but deserves a look: endpoints Tern would refuse to call (with
    /// [`Reachability::Warn`]), a stored client certificate the new settings leave out.
    pub warnings: Vec<Problem>,
}

/// Why an integration was not saved or removed. Every variant names the integration.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The settings break a rule; every problem, each at its field.
    #[error("integration `{integration}` is not complete: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The integration.
        integration: IntegrationName,
        /// What is wrong.
        problems: Vec<Problem>,
    },
    /// An integration of that name exists and replacing it was not asked for.
    #[error("integration `{integration}` already exists")]
    Exists {
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
    /// Saves an integration: checks the draft against the integration stored under `name`
    /// (every [`Problem`] at once), then endpoints as `options` say, then whether it may
    /// replace one, stores it (a `None` secret keeps the stored one) and drops its cached grants.
    ///
    /// # Errors
    /// [`SaveError`].
    pub async fn save(&self, name: &IntegrationName, draft: Draft, options: SaveOptions) -> Result<Saved, SaveError> {
        let store_err = |source| SaveError::Store { integration: name.clone(), source };
        let invalid = |problems| SaveError::Invalid { integration: name.clone(), problems };
        let stored = self.store.get_integration(name).await.map_err(store_err)?;
        let checked = draft.check(stored.as_ref()).map_err(invalid)?;
        let mut warnings = Vec::new();
        if options.reachability != Reachability::Unchecked {
            warnings = self.refused_endpoints(&checked.config).await;
            if options.reachability == Reachability::Refuse && !warnings.is_empty() {
                return Err(invalid(warnings));
            }
        }
        if stored.is_some() && !options.replace {
            return Err(SaveError::Exists { integration: name.clone() });
        }
        // Settings replace settings: a certificate left out is removed, which the API will
        // notice before the operator does.
        if stored.as_ref().is_some_and(|r| r.config.client_cert.is_some()) && checked.config.client_cert.is_none() {
            warnings.push(Problem::at(Field::ClientCert).text(
                "the stored client certificate is removed with these settings; give the certificate and its key again to keep it",
            ));
        }
        self.store
            .put_integration_with_key(
                name,
                &checked.config,
                checked.client_secret.as_ref(),
                checked.client_key.as_ref(),
            )
            .await
            .map_err(store_err)?;
        self.invalidate(name);
        let record = self.store.get_integration(name).await.map_err(store_err)?.ok_or_else(|| {
            store_err(StoreError::Corrupt {
                what: format!("integration `{name}`"),
                reason: "it was not there right after it was saved".into(),
            })
        })?;
        Ok(Saved { record, warnings })
    }

    /// Removes an integration with its tokens and drops its cached grants; `false` when there
    /// was none.
    ///
    /// # Errors
    /// [`SaveError::Store`].
    pub async fn remove(&self, name: &IntegrationName) -> Result<bool, SaveError> {
        let removed = self
            .store
            .remove_integration(name)
            .await
            .map_err(|source| SaveError::Store { integration: name.clone(), source })?;
        self.invalidate(name);
        Ok(removed)
    }

    /// The endpoints Tern itself calls for `config` (the token URL and the identity URL) that
    /// the outbound guard would refuse — a loopback, private or link-local address, unless
    /// private networks are allowed — each a [`Problem`] at its field. Said when the
    /// integration is saved, not after a person has signed in and consented. Host names are
    /// resolved (at most 2 s each); one that does not resolve is not reported here (it may
    /// resolve later).
    pub async fn refused_endpoints(&self, config: &IntegrationConfig) -> Vec<Problem> {
        let allow = self.http.policy().allow_private_network;
        let mut out = Vec::new();
        for (field, url) in [(Field::TokenUrl, &config.token_url), (Field::IdentityUrl, &config.identity_url)] {
            let Some(url) = url else { continue };
            let refused = tern_engine::http::guard::refusal(url, allow).await;
            if let Some(reason) = refused {
                out.push(Problem::at(field).text(format!("Tern would refuse to call {url}: {reason}")));
            }
        }
        out
    }
}
