//! `http_request`: send a request; optionally keep the status, the body, or fields of it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::http::RequestConfig;
use tern_engine::http::retry::RetryConfig;
use tern_engine::mapping::{Mapping, MappingConfig};
use tern_engine::{
    BuildContext, IntegrationName, Outcome, Step, StepContext, StepFailure, StepType, VarName, schema::schema_of,
};

use crate::http_common::{Call, StatusPattern, TokenChoice, build_mappings, map_response};
use crate::paginate::{Paginate, PaginateConfig};

/// Config of `http_request`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The request.
    request: RequestConfig,
    /// An authorized integration whose token is injected (only for its `api_origins`).
    #[serde(default)]
    integration: Option<IntegrationName>,
    /// Whose token: `workspace` (default) or `contact`.
    #[serde(default)]
    token: TokenChoice,
    /// Statuses that count as success (default `["2xx"]`); others take `on_error`.
    #[serde(default)]
    accept_status: Vec<StatusPattern>,
    /// Variable that receives the status code (also when the status is not accepted).
    #[serde(default)]
    save_status_as: Option<VarName>,
    /// Accepted statuses whose body is mapped into `variables` (default `["2xx"]`). For any
    /// other accepted status the body is not read: variables with a default get it, the
    /// others keep their value; branch on `save_status_as`.
    #[serde(default)]
    map_status: Vec<StatusPattern>,
    /// Retry timeouts, connection failures and 408/425/429/500/502/503/504 answers:
    /// `{"max": 3, "backoff_ms": 500}`. Only GET, HEAD, PUT and DELETE, or a request with an
    /// `Idempotency-Key` header.
    #[serde(default)]
    retry: Option<RetryConfig>,
    /// Variable that receives the body (JSON when it is JSON, text otherwise).
    #[serde(default)]
    save_response_as: Option<VarName>,
    /// Variable → response path, as in `fetch_variables`.
    #[serde(default)]
    variables: BTreeMap<VarName, MappingConfig>,
    /// Follow the API's pages and collect their items into one list variable, as in
    /// `fetch_variables`; `save_response_as` and `variables` read the first page.
    #[serde(default)]
    paginate: Option<PaginateConfig>,
}

pub struct HttpRequest;

impl StepType for HttpRequest {
    fn name(&self) -> &str {
        "http_request"
    }
    fn description(&self) -> &str {
        "Send an HTTP request, optionally with an integration's token; keep the status, body or fields"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let call = Call::build(cx, &cfg.request, cfg.integration.as_ref(), cfg.token, &cfg.accept_status, cfg.retry);
        if let Some(v) = &cfg.save_status_as {
            cx.defines("/save_status_as", v);
        }
        if let Some(v) = &cfg.save_response_as {
            cx.defines("/save_response_as", v);
        }
        let mappings = build_mappings(cx, &cfg.variables);
        let paginate = match cfg.paginate.map(|p| Paginate::build(cx, p)) {
            Some(built) => Some(built?),
            None => None,
        };
        Some(Box::new(Request {
            paginate,
            call: call?,
            save_status_as: cfg.save_status_as,
            save_response_as: cfg.save_response_as,
            map_status: cfg.map_status,
            mappings: mappings?,
        }))
    }
}

#[derive(Debug)]
struct Request {
    call: Call,
    save_status_as: Option<VarName>,
    save_response_as: Option<VarName>,
    map_status: Vec<StatusPattern>,
    mappings: Vec<(VarName, Mapping)>,
    paginate: Option<Paginate>,
}

#[async_trait]
impl Step for Request {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let resp = crate::paginate::fetch(cx, &self.call, self.paginate.as_ref()).await?;
        if let Some(v) = &self.save_status_as {
            cx.set_var(v, Value::from(resp.status.as_u16()));
        }
        if !self.call.accepts(resp.status.as_u16()) {
            return Err(self.call.status_error(&resp));
        }
        if let Some(v) = &self.save_response_as {
            cx.set_var(v, resp.body_value());
        }
        if !self.mappings.is_empty() {
            map_response(cx, &self.mappings, &self.map_status, &resp)?;
        }
        Ok(Outcome::Next)
    }
}
