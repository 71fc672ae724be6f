//! What is wrong with an integration's settings, as data: a [`Problem`] is at one [`Field`],
//! and its message refers to fields (its own and others: "a token URL is required (--token-url,
//! or a --profile)") by [`Field`], not by a front end's name for them.
//!
//! Each front end words a problem for itself with [`Problem::words`]: the command line names a
//! field by its option (`--token-url`, what [`Display`](std::fmt::Display) uses), the console by
//! its form label (“Token URL”), the admin API by its JSON name (`token_url`). The console puts
//! each problem next to its field by [`Problem::field`] instead of guessing it from the text.

use std::borrow::Cow;
use std::fmt;

/// A setting a problem is at, or that a message refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The provider preset (`profile`).
    Profile,
    /// The region of a multi-region provider (`data_center`).
    DataCenter,
    /// The OAuth client id (`client_id`).
    ClientId,
    /// The client secret, stored apart from the settings (`client_secret`).
    ClientSecret,
    /// The authorization endpoint (`authorization_url`).
    AuthorizationUrl,
    /// The token endpoint (`token_url`).
    TokenUrl,
    /// Where the token may be sent (`api_origins`).
    ApiOrigins,
    /// Extra authorization parameters (`extra_authorize_params`).
    ExtraAuthorizeParams,
    /// The secret holding a static key (`static_secret`).
    StaticSecret,
    /// Where the account is in an event (`event_identifier`).
    EventIdentifier,
    /// Where the account is in the identity or token response (`account_field`).
    AccountField,
    /// The identity request's URL (`identity_url`).
    IdentityUrl,
    /// A `basic` integration's user name (`username`).
    Username,
    /// A `basic` integration's password, stored apart from the settings (`password`).
    Password,
    /// An `api_key` integration's key, stored apart from the settings (`api_key`).
    ApiKey,
    /// Where the API key goes (`key_in`).
    KeyIn,
    /// The API key's header or parameter (`key_name`).
    KeyName,
    /// A `jwt_bearer` integration's private key, stored apart from the settings
    /// (`private_key`).
    PrivateKey,
    /// A `jwt_bearer` integration's subject (`subject`).
    Subject,
    /// The client certificate (`client_cert`).
    ClientCert,
    /// The client certificate's private key, stored apart from the settings (`client_key`).
    ClientKey,
    /// A private CA for the API origins (`ca_cert`).
    CaCert,
    /// The request rate (`rate_limit`).
    RateLimit,
}

impl Field {
    /// The field holding the secret stored with an integration of `kind`: its client secret,
    /// password, API key or private key.
    pub fn secret_of(kind: crate::config::Kind) -> Self {
        use crate::config::Kind;
        match kind {
            Kind::Basic => Field::Password,
            Kind::ApiKey => Field::ApiKey,
            Kind::JwtBearer => Field::PrivateKey,
            Kind::AuthorizationCode | Kind::ClientCredentials | Kind::Static => Field::ClientSecret,
        }
    }
}

impl Field {
    /// Its name in the JSON settings ([`IntegrationConfig`](crate::config::IntegrationConfig)'s
    /// field, or `client_secret`), as the admin API and `tern integrations show --json` spell it.
    pub fn json_name(self) -> &'static str {
        match self {
            Field::Profile => "profile",
            Field::DataCenter => "data_center",
            Field::ClientId => "client_id",
            Field::ClientSecret => "client_secret",
            Field::AuthorizationUrl => "authorization_url",
            Field::TokenUrl => "token_url",
            Field::ApiOrigins => "api_origins",
            Field::ExtraAuthorizeParams => "extra_authorize_params",
            Field::StaticSecret => "static_secret",
            Field::EventIdentifier => "event_identifier",
            Field::AccountField => "account_field",
            Field::IdentityUrl => "identity_url",
            Field::Username => "username",
            Field::Password => "password",
            Field::ApiKey => "api_key",
            Field::KeyIn => "key_in",
            Field::KeyName => "key_name",
            Field::PrivateKey => "private_key",
            Field::Subject => "subject",
            Field::ClientCert => "client_cert",
            Field::ClientKey => "client_key",
            Field::CaCert => "ca_cert",
            Field::RateLimit => "rate_limit",
        }
    }

    /// Its option of `tern integrations add` (`--token-url`): the wording of
    /// [`Problem`]'s `Display`, and so of errors that reach a person through the command line
    /// or a log.
    pub fn flag(self) -> &'static str {
        match self {
            Field::Profile => "--profile",
            Field::DataCenter => "--data-center",
            Field::ClientId => "--client-id",
            Field::ClientSecret => "--client-secret-env, --client-secret-file or --client-secret-stdin",
            Field::AuthorizationUrl => "--authorization-url",
            Field::TokenUrl => "--token-url",
            Field::ApiOrigins => "--api-origin",
            Field::ExtraAuthorizeParams => "--param",
            Field::StaticSecret => "--static-secret",
            Field::EventIdentifier => "--event-identifier",
            Field::AccountField => "--account-field",
            Field::IdentityUrl => "--identity-url",
            Field::Username => "--username",
            Field::Password => "--password-env, --password-file or --password-stdin",
            Field::ApiKey => "--key-env, --key-file or --key-stdin",
            Field::KeyIn => "--key-in",
            Field::KeyName => "--key-name",
            Field::PrivateKey => "--key-file",
            Field::Subject => "--subject",
            Field::ClientCert => "--client-cert",
            Field::ClientKey => "--client-key",
            Field::CaCert => "--ca-cert",
            Field::RateLimit => "--rate-limit",
        }
    }
}

/// A piece of a problem's message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(Cow<'static, str>),
    Field(Field),
}

/// One problem with an integration's settings: the field it is at and what to do, with the
/// fields it mentions kept as fields until a front end words them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field to correct.
    pub field: Field,
    parts: Vec<Part>,
}

impl Problem {
    /// A problem at `field`, with an empty message to build with [`text`](Self::text) and
    /// [`field`](Self::field()).
    pub fn at(field: Field) -> Self {
        Self { field, parts: Vec::new() }
    }

    /// Adds words.
    #[must_use]
    pub fn text(mut self, text: impl Into<Cow<'static, str>>) -> Self {
        self.parts.push(Part::Text(text.into()));
        self
    }

    /// Adds a reference to a field, worded by the front end.
    #[must_use]
    pub fn field(mut self, field: Field) -> Self {
        self.parts.push(Part::Field(field));
        self
    }

    /// The message, with every field referred to worded by `name`.
    pub fn words<'a>(&self, name: impl Fn(Field) -> Cow<'a, str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&name(*f)),
            }
        }
        out
    }
}

/// The command line's wording: fields by their `tern integrations add` option.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words(|field| Cow::Borrowed(field.flag())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_front_end_words_the_fields_a_problem_mentions() {
        let p = Problem::at(Field::TokenUrl)
            .text("a token URL is required (")
            .field(Field::TokenUrl)
            .text(", or a ")
            .field(Field::Profile);
        let p = p.text(")");
        assert_eq!(p.to_string(), "a token URL is required (--token-url, or a --profile)");
        assert_eq!(
            p.words(|f| Cow::Owned(format!("`{}`", f.json_name()))),
            "a token URL is required (`token_url`, or a `profile`)"
        );
        assert_eq!(p.field, Field::TokenUrl);
    }
}
