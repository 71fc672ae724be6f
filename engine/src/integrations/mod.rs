//! OAuth integrations: settings and provider profiles, the authorization flow (PKCE, state,
//! callback), the token endpoint client and the token source that steps use.

pub mod config;
