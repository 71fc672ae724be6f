//! The authorization-code flow with PKCE (SECURITY R8): `begin` builds the provider URL with an
//! S256 challenge and a 256-bit `state` stored (hashed, with the verifier and the exact redirect
//! URI) for ten minutes; `complete` takes the state once, rejects forged, replayed or expired
//! ones before any token request, surfaces the provider's `error=`, exchanges the code and
//! stores the token with its metadata.

use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, Scope};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::config::{IntegrationConfig, Kind, RESERVED_AUTHORIZE_PARAMS};
use super::oauth::{self, TokenEndpointError};
use super::{Integrations, STATE_TTL_SECS};
use crate::problems::Problem;
use crate::store::{IntegrationStatus, PendingAuthorization, StoreError, TokenRecord};
use tern_engine::IntegrationName;
use tern_engine::http::{Method, PreparedRequest, display_url};
use tern_engine::mapping::ResponsePath;
use tern_engine::tokens::{Credential, TokenOwner};

/// Why an authorization could not start or finish. Messages are safe to show to a person.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No such integration.
    #[error("integration `{0}` does not exist; add it with `tern integrations add {0} …`")]
    Unknown(IntegrationName),
    /// The integration is not of the authorization-code kind.
    #[error(
        "integration `{name}` is a {kind} integration; only authorization_code integrations are authorized in a browser"
    )]
    WrongKind {
        /// The integration.
        name: IntegrationName,
        /// Its kind.
        kind: &'static str,
    },
    /// The integration's settings are incomplete.
    #[error("integration `{name}` cannot be authorized yet: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Incomplete {
        /// The integration.
        name: IntegrationName,
        /// What is missing.
        problems: Vec<Problem>,
    },
    /// The callback had no `state`.
    #[error("the callback has no `state`; start again with `tern integrations authorize`")]
    MissingState,
    /// The `state` is unknown: forged, or already used.
    #[error("the callback's `state` is unknown or was already used; start the authorization again")]
    UnknownState,
    /// The `state` expired.
    #[error("the authorization took longer than {} minutes; start it again", STATE_TTL_SECS / 60)]
    Expired,
    /// The provider reported an error on the callback (`error=`).
    #[error("the provider refused the authorization: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        /// The `error` parameter.
        error: String,
        /// The `error_description` parameter.
        description: Option<String>,
    },
    /// The callback had no `code`.
    #[error("the callback has neither `code` nor `error`")]
    MissingCode,
    /// The callback named an accounts server that is not one of the provider's.
    #[error(
        "the callback names accounts server `{server}`, which is not a known {provider} accounts server; refusing to send the code there"
    )]
    BadAccountsServer {
        /// The provider's name.
        provider: &'static str,
        /// The accounts server named (at most 200 characters).
        server: String,
    },
    /// The code exchange failed.
    #[error("exchanging the code failed: {0}")]
    Exchange(#[from] TokenEndpointError),
    /// The identity request made right after the exchange failed.
    #[error(
        "integration `{name}`: the identity request failed: {reason}; check --identity-url and --account-field, then authorize again"
    )]
    Identity {
        /// The integration.
        name: IntegrationName,
        /// Why.
        reason: String,
    },
    /// The task that exchanged the code ended abnormally (a bug; the log has the detail).
    #[error("the authorization was interrupted by an internal error; start it again")]
    Interrupted,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where to send the person.
#[derive(Clone, Debug)]
pub struct AuthorizationStart {
    /// The provider's authorization URL.
    pub url: url::Url,
    /// The redirect URI in it.
    pub redirect_uri: url::Url,
    /// Unix seconds after which the callback is rejected.
    pub expires_at: i64,
}

/// The query of `GET /oauth/callback`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The state.
    #[serde(default)]
    pub state: Option<String>,
    /// An OAuth error code.
    #[serde(default)]
    pub error: Option<String>,
    /// Its description.
    #[serde(default)]
    pub error_description: Option<String>,
    /// Zoho: the data center.
    #[serde(default)]
    pub location: Option<String>,
    /// Zoho: the accounts server to exchange the code at.
    #[serde(default, rename = "accounts-server")]
    pub accounts_server: Option<String>,
}

/// A finished authorization.
#[derive(Clone, Debug)]
pub struct Completed {
    /// The integration.
    pub integration: IntegrationName,
    /// Whose token it is.
    pub owner: TokenOwner,
    /// The conversation waiting for this login (contact logins).
    pub conversation: Option<String>,
}

impl Integrations {
    /// Starts an authorization for `owner`.
    pub async fn begin(&self, name: &IntegrationName, owner: TokenOwner) -> Result<AuthorizationStart, AuthError> {
        self.begin_for(name, owner, None).await
    }

    /// Starts an authorization that, when it completes, resumes `conversation`.
    pub async fn begin_for(
        &self,
        name: &IntegrationName,
        owner: TokenOwner,
        conversation: Option<&str>,
    ) -> Result<AuthorizationStart, AuthError> {
        let rec = self.store.get_integration(name).await?.ok_or_else(|| AuthError::Unknown(name.clone()))?;
        let config = rec.config;
        if config.kind != Kind::AuthorizationCode {
            return Err(AuthError::WrongKind { name: name.clone(), kind: config.kind.as_str() });
        }
        let problems = config.problems();
        let (Some(auth_url), Some(token_url), true) =
            (&config.authorization_url, &config.token_url, problems.is_empty())
        else {
            return Err(AuthError::Incomplete { name: name.clone(), problems });
        };
        let secret = self.store.client_secret(name).await?;
        let redirect = self.callback_url();
        let client = oauth::full_client(&config, secret.as_ref(), auth_url, token_url, &redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(|| CsrfToken::new_random_len(32)).set_pkce_challenge(challenge);
        if !config.scopes.is_empty() {
            req = req.add_scope(Scope::new(config.scopes.join(&config.scope_delimiter)));
        }
        for (k, v) in &config.extra_authorize_params {
            if !RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()) {
                req = req.add_extra_param(k.clone(), v.clone());
            }
        }
        let (url, state) = req.url();
        let expires_at = self.now_s() + STATE_TTL_SECS;
        let pending = PendingAuthorization {
            integration: name.clone(),
            owner,
            verifier: SecretString::from(verifier.secret().clone()),
            redirect_uri: redirect.to_string(),
            expires_at,
            conversation: conversation.map(str::to_string),
        };
        self.store.put_pending(state.secret(), &pending).await?;
        Ok(AuthorizationStart { url, redirect_uri: redirect, expires_at })
    }

    /// Completes an authorization from the callback's query.
    pub async fn complete(&self, params: &CallbackParams) -> Result<Completed, AuthError> {
        self.complete_with_context(params).await.map_err(|(_, e)| e)
    }

    /// Like [`complete`](Self::complete), but a failure once the `state` was recognised comes
    /// with who was logging in, so that a conversation waiting for a contact's login can be
    /// told it failed.
    pub async fn complete_with_context(
        &self,
        params: &CallbackParams,
    ) -> Result<Completed, (Option<Completed>, AuthError)> {
        let state = params.state.as_deref().filter(|s| !s.is_empty()).ok_or((None, AuthError::MissingState))?;
        let pending = self
            .store
            .take_pending(state)
            .await
            .map_err(|e| (None, e.into()))?
            .ok_or((None, AuthError::UnknownState))?;
        let context = Completed {
            integration: pending.integration.clone(),
            owner: pending.owner.clone(),
            conversation: pending.conversation.clone(),
        };
        // The state is spent: the exchange and the write of its tokens run in their own task,
        // so a browser that closes the connection cannot leave a code exchanged at the provider
        // but its tokens unstored.
        let this = self.clone();
        let params = params.clone();
        let task = tokio::spawn(async move { this.exchange(&params, pending).await });
        match task.await {
            Ok(result) => result.map_err(|e| (Some(context), e)),
            Err(join) => {
                tracing::error!(error = %join, "the authorization task failed");
                Err((Some(context), AuthError::Interrupted))
            }
        }
    }

    async fn exchange(&self, params: &CallbackParams, pending: PendingAuthorization) -> Result<Completed, AuthError> {
        if pending.expires_at < self.now_s() {
            return Err(AuthError::Expired);
        }
        if let Some(error) = &params.error {
            return Err(AuthError::Provider { error: error.clone(), description: params.error_description.clone() });
        }
        let code = params.code.as_deref().filter(|c| !c.is_empty()).ok_or(AuthError::MissingCode)?;
        let name = &pending.integration;
        let rec = self.store.get_integration(name).await?.ok_or_else(|| AuthError::Unknown(name.clone()))?;
        let mut config = rec.config;
        // A provider with regions (Zoho) may name the person's in the callback: exchange the
        // code there, if it is one of the provider's.
        if let Some(spec) = config.profile.map(|p| p.spec())
            && spec.follows_accounts_server()
            && let Some(server) = &params.accounts_server
        {
            let region = spec.region_of_accounts_server(server).ok_or_else(|| AuthError::BadAccountsServer {
                provider: spec.label,
                server: server.trim_end_matches('/').chars().take(200).collect(),
            })?;
            config.move_to(region);
            self.store.put_integration(name, &config, None).await?;
        }
        let (Some(auth_url), Some(token_url)) = (&config.authorization_url, &config.token_url) else {
            return Err(AuthError::Incomplete { name: name.clone(), problems: config.problems() });
        };
        let redirect = url::Url::parse(&pending.redirect_uri)
            .map_err(|e| StoreError::Corrupt { what: "pending authorization".into(), reason: e.to_string() })?;
        let secret = self.store.client_secret(name).await?;
        let client = oauth::full_client(&config, secret.as_ref(), auth_url, token_url, &redirect);
        let http = self.http.clone();
        let send = move |req| {
            let http = http.clone();
            async move { oauth::send(&http, req).await }
        };
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.expose_secret().to_string()))
            .request_async(&send)
            .await
            .map_err(oauth::classify)?;
        let mut record = response.into_record(config.profile, None, self.now_s());
        for (k, v) in [("location", &params.location), ("accounts_server", &params.accounts_server)] {
            if let Some(v) = v {
                record.metadata.insert(k.to_string(), Value::String(v.clone()));
            }
        }
        if let Some(field) = &config.account_field {
            let id = self.account_id(name, &config, &record, field).await?;
            record.metadata.insert(ACCOUNT_ID.to_string(), Value::String(id));
        }
        self.store.put_token(name, &pending.owner, &record).await?;
        if pending.owner == TokenOwner::Workspace {
            self.store.set_status(name, IntegrationStatus::Authorized, None).await?;
        }
        self.forget(name, &pending.owner);
        self.observe(name, &pending.owner, crate::TokenEvent::Authorized, None);
        tracing::info!(integration = %name, "authorization complete");
        Ok(Completed { integration: name.clone(), owner: pending.owner, conversation: pending.conversation })
    }

    /// The account identifier: `account_field` in the identity response when the integration
    /// has an `identity_url` (fetched with the new token, under the same outbound policy as
    /// steps), else in the token response.
    async fn account_id(
        &self,
        name: &IntegrationName,
        config: &IntegrationConfig,
        record: &TokenRecord,
        field: &str,
    ) -> Result<String, AuthError> {
        let fail = |reason: String| AuthError::Identity { name: name.clone(), reason };
        let path = ResponsePath::parse(field).map_err(|e| fail(format!("--account-field: {e}")))?;
        let source = match &config.identity_url {
            None => Value::Object(record.metadata.clone()),
            Some(url) => {
                if !config.origins().contains(&url.origin()) {
                    return Err(fail(format!(
                        "{} is not one of the integration's API origins",
                        url.origin().ascii_serialization()
                    )));
                }
                let credential = Credential::bearer(record.access_token.expose_secret())
                    .ok_or_else(|| fail("the access token cannot be sent in a header".into()))?;
                let req = PreparedRequest {
                    method: Method::Get,
                    url: url.clone(),
                    headers: Default::default(),
                    body: None,
                    timeout: self.http.policy().default_timeout,
                };
                let resp = self.http.send(&req, Some(&credential)).await.map_err(|e| fail(e.to_string()))?;
                if !resp.status.is_success() {
                    return Err(fail(format!("{} answered {}", display_url(url), resp.status.as_u16())));
                }
                resp.json().map_err(|e| fail(e.to_string()))?
            }
        };
        let value = path.select(&source).map_err(|e| fail(e.to_string()))?;
        match value {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(fail(format!("`{field}` is {other}, not an identifier"))),
        }
    }
}

/// The token metadata key holding the account identifier captured at authorization.
pub const ACCOUNT_ID: &str = "account_id";
