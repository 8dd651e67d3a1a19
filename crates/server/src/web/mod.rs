//! The web pages: a chat for people at `/`, an operator's dashboard at
//! `/dashboard`, and the files they load under `/assets/`. HTML, CSS and
//! plain JavaScript (ES modules, no build step), embedded in the binary
//! with `include_bytes!`, so the one binary serves them with nothing to
//! install beside it.
//!
//! What this module owns:
//! - [`routes`]: the routes, which `api::router` mounts next to the HTTP
//!   API's, outside its origin guard (the pages are public files) and
//!   outside its OpenAPI document (they are not JSON for programs; see
//!   docs/ARCHITECTURE.md, "The web pages");
//! - the headers every page and file gets: its `Content-Type`,
//!   `Cache-Control: no-cache` with a strong `ETag` (a browser revalidates
//!   and gets `304 Not Modified` until the binary changes),
//!   `X-Content-Type-Options: nosniff`, and on the pages a strict
//!   [`CONTENT_SECURITY_POLICY`].
//!
//! The pages talk to the server like any client: the chat over `/ws`,
//! the dashboard over `/api/stats` and `/api/connections`; both first read
//! `/api/info` to learn whether to ask for a name, a token or an API key.

use crate::api::ApiError;
use axum::extract::Path;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::hash::{DefaultHasher, Hasher};
use std::sync::LazyLock;

/// The pages' policy: scripts, styles, images and connections (`fetch`,
/// and the WebSocket: CSP Level 3's `'self'` matches `ws:` and `wss:` to
/// the page's own host and port) from this origin only; no inline script
/// or style, no plugins, no `<base>`, no form posts, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The paths [`routes`] serves, for the `Allow` of a 405.
pub const PATHS: &[&str] = &["/", "/dashboard", "/assets/{file}"];

/// One embedded file.
#[derive(Debug)]
struct File {
    /// Its name under `/assets/`, or its page path.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const CHAT: File = File { name: "/", content_type: HTML, body: include_bytes!("assets/chat.html") };
const DASHBOARD: File = File { name: "/dashboard", content_type: HTML, body: include_bytes!("assets/dashboard.html") };

/// What the pages load, by name.
const ASSETS: &[File] = &[
    File { name: "site.css", content_type: "text/css; charset=utf-8", body: include_bytes!("assets/site.css") },
    File { name: "chat.js", content_type: JAVASCRIPT, body: include_bytes!("assets/chat.js") },
    File { name: "chat-view.js", content_type: JAVASCRIPT, body: include_bytes!("assets/chat-view.js") },
    File { name: "connection.js", content_type: JAVASCRIPT, body: include_bytes!("assets/connection.js") },
    File { name: "dashboard.js", content_type: JAVASCRIPT, body: include_bytes!("assets/dashboard.js") },
    File { name: "charts.js", content_type: JAVASCRIPT, body: include_bytes!("assets/charts.js") },
    File { name: "common.js", content_type: JAVASCRIPT, body: include_bytes!("assets/common.js") },
    File { name: "icon.svg", content_type: "image/svg+xml", body: include_bytes!("assets/icon.svg") },
];

/// Each file's `ETag`, by name (computed once).
static ETAGS: LazyLock<Vec<(&'static str, HeaderValue)>> =
    LazyLock::new(|| [CHAT, DASHBOARD].iter().chain(ASSETS).map(|file| (file.name, etag(file.body))).collect());

/// A strong validator for `body`: its hash, quoted. It changes when the
/// file does, which is when the binary does.
fn etag(body: &[u8]) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish())).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The pages and their files, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve(&CHAT, &headers) }))
        .route("/dashboard", get(|headers: HeaderMap| async move { serve(&DASHBOARD, &headers) }))
        .route("/assets/{file}", get(asset))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|file| file.name == name) {
        Some(file) => serve(file, &headers),
        None => ApiError::NotFound(format!("/assets/{}", name.chars().take(200).collect::<String>())).into_response(),
    }
}

/// `file` with its headers, or `304` when the browser's copy is current.
fn serve(file: &File, request: &HeaderMap) -> Response {
    let etag = ETAGS.iter().find(|(name, _)| *name == file.name).map(|(_, etag)| etag.clone());
    let current = match (&etag, request.get(header::IF_NONE_MATCH)) {
        (Some(etag), Some(presented)) => presented_matches(presented, etag),
        _ => false,
    };
    let mut response = match current {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => file.body.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    if file.content_type == HTML {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// Whether an `If-None-Match` value names `etag` (a list, or `*`).
fn presented_matches(presented: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(presented) = presented.to_str() else { return false };
    let wanted = etag.as_bytes();
    presented
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_distinct_etag_and_if_none_match_reads_lists() {
        let tags: std::collections::BTreeSet<_> = ETAGS.iter().map(|(_, tag)| tag.clone()).collect();
        assert_eq!(tags.len(), ASSETS.len() + 2);
        let tag = etag(b"x");
        let list =
            HeaderValue::from_str(&format!("\"other\", W/{}", tag.to_str().unwrap_or(""))).unwrap_or(tag.clone());
        assert!(presented_matches(&list, &tag));
        assert!(presented_matches(&HeaderValue::from_static("*"), &tag));
        assert!(!presented_matches(&HeaderValue::from_static("\"other\""), &tag));
    }
}
