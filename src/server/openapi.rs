//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and the request and answer types (`utoipa`), served at `GET /openapi.json` and
//! printed by `tern openapi`. The committed copy is `docs/openapi.json`; a test fails when it
//! is stale, and another when a route of [`super::routes`] is missing from it.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// A stable, kebab-case code (conversation errors: `bad-id`, `conversation-busy`,
    /// `overloaded`, `shutting-down`, `store-unavailable`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Settings that break rules (code `invalid-settings`): each problem at its field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldProblem>,
}

/// One broken rule of a request's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The field, as the request's JSON names it (`tokens`, `webhook_url`, …).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// `PUT /v1/integrations/{name}`'s body: the integration's settings plus the write-only
/// secret of its kind.
pub struct IntegrationSettings;

impl PartialSchema for IntegrationSettings {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut schema = <tern_integrations::config::IntegrationConfig as PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            for (name, what) in [
                ("client_secret", "The OAuth client secret"),
                ("password", "A `basic` integration's password"),
                ("api_key", "An `api_key` integration's key"),
                (
                    "private_key",
                    "A `jwt_bearer` integration's RSA private key in PEM, or its Google service-account JSON key file",
                ),
                ("client_key", "The private key (PEM) of the `client_cert` (mutual TLS; any kind)"),
            ] {
                let secret = ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                    .min_length(Some(1))
                    .description(Some(format!(
                        "{what} (write-only: never returned; one secret per request, the kind's own)."
                    )));
                object.properties.insert(name.into(), secret.into());
            }
        }
        schema
    }
}

impl ToSchema for IntegrationSettings {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <tern_integrations::config::IntegrationConfig as ToSchema>::schemas(schemas);
    }
}

/// The security schemes: the admin token and a channel's token as bearer tokens, and the
/// Standard Webhooks signature of a channel's or an integration's requests (OpenAPI has no
/// scheme for a signature over the body: it is described as its `webhook-signature` header,
/// which goes with `webhook-id` and `webhook-timestamp`).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        let mut channel = Http::new(HttpAuthScheme::Bearer);
        channel.description =
            Some("The channel's token (`--channel-token` / `TERN_CHANNEL_TOKEN` for the `default` channel)".into());
        components.add_security_scheme("channel_token", SecurityScheme::Http(channel));
        let mut web = Http::new(HttpAuthScheme::Bearer);
        web.description = Some(
            "A web chat visitor's session token, from `POST /v1/channels/{name}/web/sessions` (signed by the channel, 7 days)"
                .into(),
        );
        components.add_security_scheme("web_session", SecurityScheme::Http(web));
        let signature = |what: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "webhook-signature",
                &format!(
                    "A Standard Webhooks signature (https://www.standardwebhooks.com/) over `{{webhook-id}}.{{webhook-timestamp}}.{{raw body}}` with {what} (`whsec_…`), sent with the `webhook-id` and `webhook-timestamp` headers; within 5 minutes of the server's clock, each `webhook-id` once"
                ),
            )))
        };
        components.add_security_scheme("channel_signature", signature("one of the channel's signing secrets"));
        components.add_security_scheme("events_signature", signature("the integration's events secret"));
        // Each platform's own proof, in its header.
        for (scheme, header, description) in [
            (
                "platform_secret",
                "x-telegram-bot-api-secret-token",
                "A platform channel's own proof: for Telegram, the secret token set with setWebhook, which Telegram sends with every update",
            ),
            (
                "platform_signature",
                "x-hub-signature-256",
                "A WhatsApp channel's proof: `sha256=` and the hex HMAC-SHA256 of the raw body with the Meta app's secret",
            ),
            (
                "twilio_signature",
                "x-twilio-signature",
                "A Twilio channel's proof: the Base64 HMAC-SHA1, with the account's auth token, of the public URL of this route followed by the form's parameters sorted by name",
            ),
            (
                "slack_signature",
                "x-slack-signature",
                "A Slack channel's proof: `v0=` and the hex HMAC-SHA256, with the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw body}`, the timestamp within 5 minutes",
            ),
        ] {
            components.add_security_scheme(
                scheme,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(header, description))),
            );
        }
    }
}

/// The patterns of the path parameters and id fields, set here from the engine's constants
/// (utoipa's attributes take literals only, so the rules are not written a second time in
/// them): integration names are identifiers, secret names secret names, channel names lower-case
/// identifiers, and conversation and message ids opaque ids.
struct Patterns;

impl Patterns {
    fn for_parameter(path: &str, name: &str) -> Option<&'static str> {
        match name {
            "name" if path.starts_with("/v1/integrations/") => Some(tern_engine::IDENT_PATTERN),
            "name" if path.starts_with("/v1/secrets/") => Some(tern_engine::secrets::SECRET_NAME_PATTERN),
            "name" if path.starts_with("/v1/channels/") => Some(tern_engine::CHANNEL_NAME_PATTERN),
            "id" | "message_id" if path.contains("/conversations/") => Some(tern_engine::OPAQUE_ID_PATTERN),
            _ => None,
        }
    }

    fn set(schema: Option<&mut RefOr<Schema>>, pattern: &str) {
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.pattern = Some(pattern.to_string());
        }
    }
}

impl Modify for Patterns {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for op in ops.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    if let Some(pattern) = Self::for_parameter(path, &p.name) {
                        Self::set(p.schema.as_mut(), pattern);
                    }
                }
            }
        }
        let schemas = openapi.components.as_mut().map(|c| &mut c.schemas);
        if let Some(RefOr::T(Schema::Object(message))) = schemas.and_then(|s| s.get_mut("IncomingMessage")) {
            Self::set(message.properties.get_mut("message_id"), tern_engine::OPAQUE_ID_PATTERN);
        }
    }
}

/// The document's source: every operation of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tern",
        description = "The HTTP API of `tern serve`: conversation messages, the admin API, run history, the OAuth callback, integration events, health and metrics (the console's HTML pages are not part of it). Every error answer is JSON `{\"error\": …}` (with a `code` for conversation errors). Request bodies are limited to 64 KiB (413).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::messages::post_message,
        super::messages::get_message,
        super::messages::post_channel_message,
        super::messages::get_channel_message,
        super::platform_webhook::post_webhook,
        super::platform_webhook::get_webhook,
        super::web_chat::get_widget_js,
        super::web_chat::get_widget_css,
        super::web_chat::post_session,
        super::web_chat::post_message,
        super::web_chat::get_history,
        super::web_chat::get_stream,
        super::runs::list_runs,
        super::runs::get_run,
        super::callback,
        super::admin::api_list,
        super::admin::put_integration,
        super::admin::delete_integration,
        super::admin::list_secrets,
        super::admin::put_secret,
        super::admin::delete_secret,
        super::admin::list_flows,
        super::channel_admin::list_channels,
        super::channel_admin::get_channel,
        super::channel_admin::put_channel,
        super::channel_admin::delete_channel,
        super::events::post_event,
        super::health::healthz,
        super::health::livez,
        super::health::readyz,
        super::metrics_text,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &Patterns),
    tags(
        (name = "conversations", description = "Messages from a chat channel and their answers"),
        (name = "admin", description = "The admin API: `Authorization: Bearer <admin token>`"),
        (name = "integrations", description = "OAuth callback and integration events"),
        (name = "web chat", description = "The web chat widget and its visitors' requests: only from pages of the channel's allowed origins (`Origin`), with a visitor's session token"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline (what `docs/openapi.json` holds).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `docs/openapi.json` is what the code generates. Regenerate with
    /// `cargo run -- openapi > docs/openapi.json`.
    #[test]
    fn committed_document_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "{} is stale: regenerate it with `cargo run -- openapi > docs/openapi.json` and commit it",
            path.display()
        );
    }

    /// Every route the router serves is an operation of the document, and every operation is a
    /// route.
    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let mut routes: Vec<(String, String)> =
            super::super::routes().iter().map(|(m, p, _)| (m.as_str().to_lowercase(), (*p).to_string())).collect();
        routes.sort();
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
                ("head", &item.head),
                ("options", &item.options),
                ("trace", &item.trace),
            ];
            for (method, op) in ops {
                if op.is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        documented.sort();
        assert_eq!(routes, documented, "the router's routes and the document's operations differ");
    }

    /// Every operation says what each status means, and every error status has the JSON error
    /// body.
    #[test]
    fn every_operation_documents_its_errors_as_json() {
        let doc = serde_json::to_value(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} has no responses");
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &r["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            schema, "#/components/schemas/ErrorBody",
                            "{method} {path} {status} is not documented as the JSON error body"
                        );
                    }
                }
            }
        }
    }

    /// The path parameters' patterns are the engine's rules (set by [`Patterns`]).
    #[test]
    fn name_parameters_carry_the_engine_s_patterns() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let want = match p["name"].as_str().unwrap() {
                        "name" if path.starts_with("/v1/integrations/") => tern_engine::IDENT_PATTERN,
                        "name" if path.starts_with("/v1/secrets/") => tern_engine::secrets::SECRET_NAME_PATTERN,
                        "name" if path.starts_with("/v1/channels/") => tern_engine::CHANNEL_NAME_PATTERN,
                        "id" | "message_id" if path.contains("/conversations/") => tern_engine::OPAQUE_ID_PATTERN,
                        _ => continue,
                    };
                    assert_eq!(p["schema"]["pattern"], want, "{method} {path} {}", p["name"]);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 16, "only {checked} parameters found");
        let message_id = &doc["components"]["schemas"]["IncomingMessage"]["properties"]["message_id"];
        assert_eq!(message_id["pattern"], tern_engine::OPAQUE_ID_PATTERN);
    }
}
