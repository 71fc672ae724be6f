//! `paginate` on `fetch_variables`: follow an API's pages and collect their items into one
//! list.
//!
//! One way to the next page, exactly one of:
//!
//! - `next_link`: a response field holding the next page's URL (absolute, or relative to the
//!   page), as JSON:API's `links.next` or HAL's `_links.next.href`;
//! - `link_header: true`: the `Link` header's `rel="next"` target (RFC 8288, as GitHub and
//!   Shopify send it), parsed by the `http-link` crate;
//! - `cursor`: `{"from": PATH, "param": NAME}`: a response field sent back as a query
//!   parameter (Slack's `response_metadata.next_cursor`, Stripe-like `starting_after`);
//! - `page`: `{"param": NAME, "start": 1}`: page numbers in a query parameter;
//! - `offset`: `{"param": NAME, "start": 0}`: an offset in a query parameter, moved by the
//!   number of items each page had.
//!
//! It stops when there is no next page (no link, an empty or repeated cursor, a page without
//! items), after `max_pages` pages (default [`DEFAULT_MAX_PAGES`], at most [`MAX_PAGES`]) or
//! once `max_items` items are collected (default [`DEFAULT_MAX_ITEMS`], at most
//! [`MAX_ITEMS`]); the trace says when a bound stopped it (`truncated`). A next page must be on
//! the first request's origin: a link elsewhere fails the step (tokens and the flow's headers
//! go only where the flow said). Each page is a call of its own through the step's journaled
//! path, with the step's `retry`; a page whose status is not accepted fails the step.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::http::{HttpResponse, PreparedRequest, display_url};
use tern_engine::mapping::{Mapping, ResponsePath};
use tern_engine::{BuildContext, StepContext, StepFailure, VarName};
use url::Url;

use crate::http_common::Call;

/// Pages followed when `max_pages` is not given.
pub const DEFAULT_MAX_PAGES: u32 = 10;
/// The most `max_pages` may be.
pub const MAX_PAGES: u32 = 100;
/// Items collected when `max_items` is not given.
pub const DEFAULT_MAX_ITEMS: u32 = 1000;
/// The most `max_items` may be.
pub const MAX_ITEMS: u32 = 10_000;

/// `paginate` as written in a flow.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaginateConfig {
    /// Each page's items: a path to a list (`data`, `$.results`) or a JSONPath query that
    /// selects them (`$.data[*]`).
    items: String,
    /// The variable that receives every page's items, in order.
    #[serde(rename = "as")]
    into: VarName,
    /// A response field holding the next page's URL (absolute or relative).
    #[serde(default)]
    next_link: Option<String>,
    /// `true`: the next page is the `Link` header's `rel="next"` target (RFC 8288).
    #[serde(default)]
    link_header: bool,
    /// A response field sent back as a query parameter: `{"from": "meta.next_cursor", "param": "cursor"}`.
    #[serde(default)]
    cursor: Option<CursorConfig>,
    /// Page numbers in a query parameter: `{"param": "page", "start": 1}`.
    #[serde(default)]
    page: Option<CounterConfig>,
    /// An offset in a query parameter, moved by each page's item count: `{"param": "offset"}`.
    #[serde(default)]
    offset: Option<CounterConfig>,
    /// The most pages to fetch (default 10, at most 100).
    #[serde(default)]
    max_pages: Option<u32>,
    /// The most items to collect (default 1000, at most 10000).
    #[serde(default)]
    max_items: Option<u32>,
}

/// `cursor` of `paginate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorConfig {
    /// Where the next cursor is in the response (`meta.next_cursor`).
    from: String,
    /// The query parameter that carries it.
    param: String,
}

/// `page` or `offset` of `paginate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    /// The query parameter.
    param: String,
    /// The first value (default 1 for `page`, 0 for `offset`), sent with the first request
    /// unless its `query` sets the parameter itself.
    #[serde(default)]
    start: Option<u64>,
}

#[derive(Debug)]
enum Next {
    Link(Mapping),
    LinkHeader,
    Cursor { from: Mapping, param: String },
    Page { param: String, start: u64 },
    Offset { param: String, start: u64 },
}

/// `paginate`, compiled.
#[derive(Debug)]
pub struct Paginate {
    items: ResponsePath,
    into: VarName,
    next: Next,
    max_pages: u32,
    max_items: u32,
}

fn path(cx: &mut BuildContext<'_>, rel: &str, raw: &str) -> Option<ResponsePath> {
    cx.mapping(rel, &tern_engine::mapping::MappingConfig::Path(raw.to_string())).map(|m| m.path)
}

fn bounded(cx: &mut BuildContext<'_>, rel: &str, given: Option<u32>, default: u32, max: u32) -> Option<u32> {
    let value = given.unwrap_or(default);
    if value == 0 || value > max {
        cx.error("invalid-value", rel, format!("{value} is out of range; give a number from 1 to {max}"), None);
        return None;
    }
    Some(value)
}

impl Paginate {
    /// Compiles `paginate` at `/paginate`, reporting every problem.
    pub fn build(cx: &mut BuildContext<'_>, cfg: PaginateConfig) -> Option<Self> {
        cx.defines("/paginate/as", &cfg.into);
        let items = path(cx, "/paginate/items", &cfg.items);
        let max_pages = bounded(cx, "/paginate/max_pages", cfg.max_pages, DEFAULT_MAX_PAGES, MAX_PAGES);
        let max_items = bounded(cx, "/paginate/max_items", cfg.max_items, DEFAULT_MAX_ITEMS, MAX_ITEMS);
        let given =
            [cfg.next_link.is_some(), cfg.link_header, cfg.cursor.is_some(), cfg.page.is_some(), cfg.offset.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            cx.error(
                "invalid-value",
                "/paginate",
                "say how to reach the next page with exactly one of `next_link`, `link_header`, `cursor`, `page` or `offset`",
                Some("for an API that answers `\"links\": {\"next\": \"…\"}`, write \"next_link\": \"links.next\"".into()),
            );
            return None;
        }
        let next = if let Some(raw) = &cfg.next_link {
            Next::Link(Mapping { path: path(cx, "/paginate/next_link", raw)?, default: Some(Value::Null) })
        } else if cfg.link_header {
            Next::LinkHeader
        } else if let Some(c) = cfg.cursor {
            let from = path(cx, "/paginate/cursor/from", &c.from)?;
            Next::Cursor { from: Mapping { path: from, default: Some(Value::Null) }, param: c.param }
        } else if let Some(p) = cfg.page {
            Next::Page { start: p.start.unwrap_or(1), param: p.param }
        } else {
            let o = cfg.offset?;
            Next::Offset { start: o.start.unwrap_or(0), param: o.param }
        };
        Some(Self { items: items?, into: cfg.into, next, max_pages: max_pages?, max_items: max_items? })
    }

    /// Fetches the pages from `first` (the rendered request) on, sets the `as` variable to
    /// their items and returns the first page's answer (for the step's own `variables`).
    ///
    /// # Errors
    /// A page's exchange failed or its status is not accepted; its items are not a list; a
    /// next link is not a URL on the first request's origin.
    pub async fn run(
        &self,
        cx: &mut StepContext<'_>,
        call: &Call,
        first: PreparedRequest,
    ) -> Result<HttpResponse, StepFailure> {
        let origin = first.url.origin();
        let mut request = first;
        if let Next::Page { param, start } | Next::Offset { param, start } = &self.next
            && !request.url.query_pairs().any(|(k, _)| k == param.as_str())
        {
            set_query(&mut request.url, param, &start.to_string());
        }
        let mut items: Vec<Value> = Vec::new();
        let mut pages = Vec::new();
        let mut first_response = None;
        let mut previous_cursor: Option<String> = None;
        let mut counter = match &self.next {
            Next::Page { start, .. } | Next::Offset { start, .. } => *start,
            _ => 0,
        };
        let mut truncated = None;
        for page in 0..self.max_pages {
            let resp = call.send(cx, request.clone(), page).await?;
            if !call.accepts(resp.status.as_u16()) {
                return Err(call.status_error(&resp));
            }
            let body = resp.json_body()?.unwrap_or(Value::Null);
            let found = match self.items.select(&body) {
                Ok(Value::Array(found)) => found,
                Ok(Value::Null) | Err(_) if page > 0 => Vec::new(),
                Ok(other) => {
                    return Err(self.fail(
                        page,
                        &resp,
                        format!("`{}` is {}, not a list", self.items.raw(), tern_engine::dot_path::describe(&other)),
                    ));
                }
                Err(why) => return Err(self.fail(page, &resp, why)),
            };
            let count = found.len();
            pages.push(json!({"url": display_url(&resp.url), "status": resp.status.as_u16(), "items": count}));
            let room = self.max_items as usize - items.len();
            if count > room {
                truncated = Some(format!("stopped at max_items ({})", self.max_items));
            }
            items.extend(found.into_iter().take(room));
            let next_url = if truncated.is_some() || count == 0 {
                None
            } else {
                self.next_request(&resp, &body, &mut counter, count, &mut previous_cursor)?
            };
            if first_response.is_none() {
                first_response = Some(resp);
            }
            let Some(next_url) = next_url else { break };
            if next_url.origin() != origin {
                return Err(StepFailure::Other {
                    code: "pagination",
                    message: format!(
                        "page {}: the next page is at {}, which is not on the first request's origin ({}); Tern follows pages only on the same origin",
                        page + 1,
                        display_url(&next_url),
                        origin.ascii_serialization()
                    ),
                });
            }
            if page + 1 == self.max_pages {
                truncated = Some(format!("stopped at max_pages ({}); the API has more pages", self.max_pages));
                break;
            }
            request.url = next_url;
        }
        let mut detail = json!({"pages": pages, "items": items.len()});
        if let Some(t) = truncated {
            detail["truncated"] = Value::from(t);
        }
        cx.record("pagination", detail);
        cx.set_var(&self.into, Value::Array(items));
        first_response.ok_or_else(|| StepFailure::Other { code: "pagination", message: "no page was fetched".into() })
    }

    fn fail(&self, page: u32, resp: &HttpResponse, why: String) -> StepFailure {
        StepFailure::Other {
            code: "pagination",
            message: format!("page {} ({}): the items: {why}", page + 1, display_url(&resp.url)),
        }
    }

    /// The next page's URL, or `None` at the last page.
    fn next_request(
        &self,
        resp: &HttpResponse,
        body: &Value,
        counter: &mut u64,
        count: usize,
        previous_cursor: &mut Option<String>,
    ) -> Result<Option<Url>, StepFailure> {
        let mut url = resp.url.clone();
        match &self.next {
            Next::Link(m) => match m.apply(body).unwrap_or(Value::Null) {
                Value::String(s) if !s.trim().is_empty() => resp.url.join(s.trim()).map(Some).map_err(|e| {
                    StepFailure::Other { code: "pagination", message: format!("the next link `{s}` is not a URL: {e}") }
                }),
                _ => Ok(None),
            },
            Next::LinkHeader => {
                for value in resp.headers.get_all("link") {
                    let Ok(text) = value.to_str() else { continue };
                    let links = http_link::parse_link_header(text, &resp.url).map_err(|e| StepFailure::Other {
                        code: "pagination",
                        message: format!("the Link header cannot be read (RFC 8288): {e}"),
                    })?;
                    if let Some(next) = links.into_iter().find(|l| l.rel == "next") {
                        return Ok(Some(next.target));
                    }
                }
                Ok(None)
            }
            Next::Cursor { from, param } => {
                let cursor = match from.apply(body).unwrap_or(Value::Null) {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    _ => return Ok(None),
                };
                if cursor.is_empty() || previous_cursor.as_deref() == Some(cursor.as_str()) {
                    return Ok(None);
                }
                set_query(&mut url, param, &cursor);
                *previous_cursor = Some(cursor);
                Ok(Some(url))
            }
            Next::Page { param, .. } => {
                *counter += 1;
                set_query(&mut url, param, &counter.to_string());
                Ok(Some(url))
            }
            Next::Offset { param, .. } => {
                *counter += count as u64;
                set_query(&mut url, param, &counter.to_string());
                Ok(Some(url))
            }
        }
    }
}

/// Sets query parameter `name` to `value`, keeping the other parameters and their order.
fn set_query(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    pairs.extend_pairs(kept);
    pairs.append_pair(name, value);
}
