//! Browsers and the HTTP API: `auth.allowed_origins` (the list WebSocket
//! upgrades are checked against) decides which pages may call it.
//!
//! - [`guard`]: a request with an `Origin` the list does not allow (by
//!   default any but the server's own) is refused with 403
//!   `origin_not_allowed` before anything runs, preflights included.
//!   Requests without `Origin` (programs, not browsers) pass.
//! - [`layer`]: tower-http's CORS layer answers allowed preflights and puts
//!   `Access-Control-Allow-Origin` on answers to allowed origins. The policy
//!   is read per request, so SIGHUP changes the list without a restart.

use super::error::ApiError;
use super::ApiState;
use crate::hub::Hub;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{request::Parts, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Whether the request's `Origin` (if any) may call the API.
fn allowed(hub: &Hub, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
    let text = |value: Option<&HeaderValue>| value.and_then(|value| value.to_str().ok()).map(str::to_owned);
    let (origin, host) = (text(origin), text(host));
    hub.policy().origins.allows(origin.as_deref(), host.as_deref())
}

/// Refuses requests from pages of origins that may not call the API (403).
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !allowed(&state.hub, headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()).unwrap_or("");
        tracing::info!(origin, path = request.uri().path(), "HTTP API request from a page of another origin refused");
        return ApiError::OriginNotAllowed.into_response();
    }
    next.run(request).await
}

/// The CORS layer: answers preflights and adds the `Access-Control-*`
/// headers for allowed origins.
pub fn layer(hub: &Arc<Hub>) -> CorsLayer {
    let hub = Arc::clone(hub);
    let origin = AllowOrigin::predicate(move |origin: &HeaderValue, parts: &Parts| {
        allowed(&hub, Some(origin), parts.headers.get(header::HOST))
    });
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("last-event-id")])
        .expose_headers([header::RETRY_AFTER, header::ALLOW, HeaderName::from_static("idempotent-replayed")])
        .max_age(PREFLIGHT_MAX_AGE)
}
