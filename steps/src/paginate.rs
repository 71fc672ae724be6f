//! `paginate` on `fetch_variables` and `http_request`: follow an API's pages and collect their items into one
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
//! [`MAX_ITEMS`]) or once the pages' bodies total the response size limit (10 MiB by
//! default, the cap of one response); the trace says when a bound stopped it (`truncated`). A next page must be on
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
/// The largest first page number or offset (`start`).
pub const MAX_START: u64 = 1_000_000_000;

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

impl Paginate {
    /// Compiles `paginate` at `/paginate`, reporting every problem.
    pub fn build(cx: &mut BuildContext<'_>, cfg: PaginateConfig) -> Option<Self> {
        cx.defines("/paginate/as", &cfg.into);
        let items = path(cx, "/paginate/items", &cfg.items);
        let max_pages = cx.bound("/paginate/max_pages", cfg.max_pages, DEFAULT_MAX_PAGES, MAX_PAGES);
        let max_items = cx.bound("/paginate/max_items", cfg.max_items, DEFAULT_MAX_ITEMS, MAX_ITEMS);
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
        for (rel, param) in [
            ("/paginate/cursor/param", cfg.cursor.as_ref().map(|c| &c.param)),
            ("/paginate/page/param", cfg.page.as_ref().map(|c| &c.param)),
            ("/paginate/offset/param", cfg.offset.as_ref().map(|c| &c.param)),
        ] {
            if param.is_some_and(|p| p.trim().is_empty()) {
                cx.error(
                    "invalid-value",
                    rel,
                    "the query parameter's name is empty",
                    Some("name it: \"param\": \"page\"".into()),
                );
                return None;
            }
        }
        for (rel, start) in [
            ("/paginate/page/start", cfg.page.as_ref().and_then(|c| c.start)),
            ("/paginate/offset/start", cfg.offset.as_ref().and_then(|c| c.start)),
        ] {
            if start.is_some_and(|s| s > MAX_START) {
                cx.error("invalid-value", rel, format!("the first value is at most {MAX_START}"), None);
                return None;
            }
        }
        let next = if let Some(raw) = &cfg.next_link {
            Next::Link(Mapping::of(path(cx, "/paginate/next_link", raw)?))
        } else if cfg.link_header {
            Next::LinkHeader
        } else if let Some(c) = cfg.cursor {
            let from = path(cx, "/paginate/cursor/from", &c.from)?;
            Next::Cursor { from: Mapping::of(from), param: c.param }
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
        // Every cursor and page URL seen: one that comes back is a cycle, and the pages stop.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut counter = match &self.next {
            Next::Page { start, .. } | Next::Offset { start, .. } => *start,
            _ => 0,
        };
        let mut truncated = None;
        let mut stopped = String::new();
        // All pages together are held to one response's size cap (10 MiB by default).
        let byte_cap = cx.outbound().client.policy().max_response_bytes;
        let mut bytes = 0usize;
        for page in 0..self.max_pages {
            let sent = self.param_sent(&request.url);
            let resp = call.send(cx, request.clone(), page).await?;
            bytes = bytes.saturating_add(resp.body.len());
            if resp.url.origin() != origin {
                return Err(StepFailure::Other {
                    code: "pagination",
                    message: format!(
                        "page {} was redirected to {}, which is not on the first request's origin ({}); Tern takes pages only from the same origin",
                        page + 1,
                        display_url(&resp.url),
                        origin.ascii_serialization()
                    ),
                });
            }
            seen.insert(resp.url.to_string());
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
                        format!(
                            "`{}` must select a list, but {}",
                            self.items.raw(),
                            tern_engine::dot_path::describe(&other)
                        ),
                    ));
                }
                Err(why) => return Err(self.fail(page, &resp, why)),
            };
            let count = found.len();
            let mut summary = json!({"url": display_url(&resp.url), "status": resp.status.as_u16(), "items": count});
            if let Some((name, value)) = sent {
                summary[name] = Value::from(value);
            }
            pages.push(summary);
            let room = self.max_items as usize - items.len();
            if count > room {
                truncated = Some(format!("stopped at max_items ({})", self.max_items));
            }
            items.extend(found.into_iter().take(room));
            if truncated.is_none() && bytes >= byte_cap {
                truncated = Some(format!(
                    "stopped after {bytes} bytes of pages; all pages together are held to {byte_cap} bytes (the response size limit)"
                ));
            }
            let next = if truncated.is_some() {
                After::Last(String::new())
            } else if count == 0 {
                After::Last(format!("page {} had no items", page + 1))
            } else {
                self.next_request(&resp, &body, &mut counter, count, &mut seen)?
            };
            if first_response.is_none() {
                first_response = Some(resp);
            }
            let next_url = match next {
                After::Next(url) => url,
                After::Last(why) => {
                    stopped = why;
                    break;
                }
            };
            if !next_url.username().is_empty() || next_url.password().is_some() {
                return Err(StepFailure::Other {
                    code: "pagination",
                    message: format!(
                        "page {}: the next page's URL carries a user name or password ({}); Tern does not send credentials a response chose",
                        page + 1,
                        display_url(&next_url)
                    ),
                });
            }
            if seen.contains(next_url.as_str()) {
                stopped =
                    format!("page {}: the next page is one already fetched ({})", page + 1, display_url(&next_url));
                break;
            }
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
        match truncated {
            Some(t) => detail["truncated"] = Value::from(t),
            None => detail["last_page"] = Value::from(stopped),
        }
        cx.record("pagination", detail);
        cx.set_var(&self.into, Value::Array(items));
        first_response.ok_or_else(|| StepFailure::Other { code: "pagination", message: "no page was fetched".into() })
    }

    /// The query parameter this kind of pagination sets, with its value in `url`, for the
    /// trace (the page summaries' URLs leave the query out, since it may hold secrets).
    fn param_sent(&self, url: &Url) -> Option<(&'static str, String)> {
        let (label, param) = match &self.next {
            Next::Cursor { param, .. } => ("cursor", param),
            Next::Page { param, .. } => ("page", param),
            Next::Offset { param, .. } => ("offset", param),
            Next::Link(_) | Next::LinkHeader => return None,
        };
        url.query_pairs().find(|(k, _)| k == param.as_str()).map(|(_, v)| (label, v.into_owned()))
    }

    fn fail(&self, page: u32, resp: &HttpResponse, why: String) -> StepFailure {
        StepFailure::Other {
            code: "pagination",
            message: format!("page {} ({}): the items: {why}", page + 1, display_url(&resp.url)),
        }
    }

    /// The next page's URL, or why there is none (for the trace: a missing field is named with
    /// what the page has instead, so a misspelt path is easy to find).
    fn next_request(
        &self,
        resp: &HttpResponse,
        body: &Value,
        counter: &mut u64,
        count: usize,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<After, StepFailure> {
        let mut url = resp.url.clone();
        let read = |m: &Mapping| m.path.select(body);
        match &self.next {
            Next::Link(m) => match read(m) {
                Ok(Value::String(s)) if !s.trim().is_empty() => match resp.url.join(s.trim()) {
                    Ok(u) => Ok(After::Next(u)),
                    Err(e) => Err(StepFailure::Other {
                        code: "pagination",
                        message: format!("the next link `{s}` is not a URL: {e}"),
                    }),
                },
                Ok(v @ (Value::Null | Value::String(_))) => {
                    Ok(After::Last(format!("`{}` holds no next link ({})", m.path.raw(), short(&v))))
                }
                Ok(v) => Err(StepFailure::Other {
                    code: "pagination",
                    message: format!(
                        "`{}` must hold the next page's URL, but {}; point `next_link` at the URL itself (HAL: `_links.next.href`)",
                        m.path.raw(),
                        tern_engine::dot_path::describe(&v)
                    ),
                }),
                Err(why) => Ok(After::Last(why)),
            },
            Next::LinkHeader => {
                for value in resp.headers.get_all("link") {
                    let Ok(text) = value.to_str() else { continue };
                    let links = http_link::parse_link_header(text, &resp.url).map_err(|e| StepFailure::Other {
                        code: "pagination",
                        message: format!("the Link header cannot be read (RFC 8288): {e}"),
                    })?;
                    if let Some(next) = links.into_iter().find(|l| l.rel == "next") {
                        return Ok(After::Next(next.target));
                    }
                }
                Ok(After::Last("the Link header has no rel=\"next\"".into()))
            }
            Next::Cursor { from, param } => {
                let cursor = match read(from) {
                    Ok(Value::String(s)) => s,
                    Ok(Value::Number(n)) => n.to_string(),
                    Ok(v) => return Ok(After::Last(format!("`{}` holds no cursor ({})", from.path.raw(), short(&v)))),
                    Err(why) => return Ok(After::Last(why)),
                };
                if cursor.is_empty() {
                    return Ok(After::Last(format!("`{}` is empty", from.path.raw())));
                }
                if !seen.insert(format!("cursor:{cursor}")) {
                    return Ok(After::Last(format!("`{}` repeats a cursor already followed", from.path.raw())));
                }
                set_query(&mut url, param, &cursor);
                Ok(After::Next(url))
            }
            Next::Page { param, .. } => {
                *counter = counter.saturating_add(1);
                set_query(&mut url, param, &counter.to_string());
                Ok(After::Next(url))
            }
            Next::Offset { param, .. } => {
                *counter = counter.saturating_add(count as u64);
                set_query(&mut url, param, &counter.to_string());
                Ok(After::Next(url))
            }
        }
    }
}

/// What follows a page: the next one, or nothing (and why, for the trace).
enum After {
    /// The next page's URL.
    Next(Url),
    /// This was the last page, for this reason.
    Last(String),
}

/// A value in a few words (`it is null`), for why pagination stopped.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.trim().is_empty() => "it is empty".into(),
        other => tern_engine::dot_path::describe(other),
    }
}

/// Sends the step's request: once, or page after page when the step has `paginate`. Returns
/// the (first) answer.
///
/// # Errors
/// As [`Call::perform`] and [`Paginate::run`].
pub async fn fetch(
    cx: &mut StepContext<'_>,
    call: &Call,
    paginate: Option<&Paginate>,
) -> Result<HttpResponse, StepFailure> {
    match paginate {
        Some(p) => {
            let first = call.render(cx)?;
            p.run(cx, call, first).await
        }
        None => call.perform(cx).await,
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
