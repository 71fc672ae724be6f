//! The banner every console page shows while a channel accepts messages without credentials
//! (`--insecure-open-channel`): a layer over the console's routes that puts it at the top of
//! each HTML page's `<main>`, so that no page can forget it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::server::AppState;

/// Largest console page the banner is put into (pages are far smaller; a larger one is passed
/// on unchanged).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Adds the banner to HTML answers while any channel is open.
pub async fn banner(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let open = state.channel_service.open_channels();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if open.is_empty() || !is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "could not read a console page to add the open-channel banner");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let names: Vec<String> = open.iter().map(ToString::to_string).collect();
    let notice = maud::html! {
        p.banner.bad role="alert" #open-channels {
            strong { "Insecure: " }
            "channel " (names.join(", ")) " accepts messages without credentials (--insecure-open-channel): anyone who can reach this server can start runs on it. Restart without the option to close it."
        }
    };
    let page = String::from_utf8_lossy(&bytes).replacen("<main>", &format!("<main>{}", notice.into_string()), 1);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(page))
}
