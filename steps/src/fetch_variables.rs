//! `fetch_variables`: call an API and map fields of its JSON response (`data.last_name`) into
//! variables, like Bird Flow Builder's *Fetch variables* step.

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

/// Config of `fetch_variables`.
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
    /// Variable → response path: `"data.last_name"`, `"$.data.emails[0].email"`, or
    /// `{ "path": …, "default": … }`. A missing path without a default takes `on_error`. With
    /// `paginate`, read from the first page (totals, metadata) and optional.
    #[serde(default)]
    variables: BTreeMap<VarName, MappingConfig>,
    /// Follow the API's pages and collect their items into one list variable: `{"items":
    /// "$.data[*]", "as": "contacts", "next_link": "links.next"}` (or `link_header`, `cursor`,
    /// `page`, `offset`; `max_pages`, `max_items`).
    #[serde(default)]
    paginate: Option<PaginateConfig>,
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
}

pub struct FetchVariables;

impl StepType for FetchVariables {
    fn name(&self) -> &str {
        "fetch_variables"
    }
    fn description(&self) -> &str {
        "Call an API and map fields of its JSON response into variables"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let call = Call::build(cx, &cfg.request, cfg.integration.as_ref(), cfg.token, &cfg.accept_status, cfg.retry);
        // A misspelt `variables` is already reported as an unknown field, with the suggestion.
        let known = schema_of::<Config>();
        let misspelt = config.as_object().is_some_and(|m| m.keys().any(|k| known["properties"].get(k).is_none()));
        if cfg.variables.is_empty() && cfg.paginate.is_none() && !misspelt {
            cx.error(
                "invalid-value",
                "/variables",
                "fetch_variables needs at least one variable",
                Some("map a response field: \"last_name\": \"data.last_name\"".into()),
            );
        }
        let paginate = cfg.paginate.map(|p| Paginate::build(cx, p));
        if let Some(v) = &cfg.save_status_as {
            cx.defines("/save_status_as", v);
        }
        let mappings = build_mappings(cx, &cfg.variables);
        let paginate = match paginate {
            Some(p) => Some(p?),
            None if cfg.variables.is_empty() => return None,
            None => None,
        };
        Some(Box::new(Fetch {
            call: call?,
            save_status_as: cfg.save_status_as,
            map_status: cfg.map_status,
            mappings: mappings?,
            paginate,
        }))
    }
}

#[derive(Debug)]
struct Fetch {
    call: Call,
    save_status_as: Option<VarName>,
    map_status: Vec<StatusPattern>,
    mappings: Vec<(VarName, Mapping)>,
    paginate: Option<Paginate>,
}

#[async_trait]
impl Step for Fetch {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let resp = crate::paginate::fetch(cx, &self.call, self.paginate.as_ref()).await?;
        if let Some(v) = &self.save_status_as {
            cx.set_var(v, Value::from(resp.status.as_u16()));
        }
        if !self.call.accepts(resp.status.as_u16()) {
            return Err(self.call.status_error(&resp));
        }
        map_response(cx, &self.mappings, &self.map_status, &resp)?;
        Ok(Outcome::Next)
    }
}
