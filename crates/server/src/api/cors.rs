//! Browsers and the HTTP API: `auth.allowed_origins` (the list WebSocket
//! upgrades are checked against) decides which pages may call it. One
//! middleware, [`guard`], does all of it:
//!
//! - a request with an `Origin` the list does not allow (by default any but
//!   the server's own) is refused with 403 `origin_not_allowed` before
//!   anything runs, preflights included;
//! - an allowed preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//!   answered 200 with the methods, headers and max age the API allows;
//! - any other answer to an allowed origin gets `Access-Control-Allow-Origin`
//!   and the headers a page may read;
//! - requests without `Origin` (programs, not browsers) pass untouched but
//!   for `Vary`, so a cache never serves their answer to a page.
//!
//! The policy is read per request, so SIGHUP changes the list without a
//! restart. Written here rather than taken from tower-http's `CorsLayer`,
//! which cost about 5,500 instructions a request (axum clones the layer
//! with the route for every request, and it rebuilds `Vary`): a tenth of
//! an HTTP publish (see `docs/ARCHITECTURE.md`).

use super::error::ApiError;
use super::ApiState;
use crate::hub::Hub;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("600");
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD, POST, DELETE");
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("authorization, content-type, last-event-id");
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("retry-after, allow, idempotent-replayed");
/// What an answer depends on besides the URL, for caches.
const VARY: HeaderValue =
    HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers");

/// Whether the request's `Origin` (if any) may call the API.
fn allowed(hub: &Hub, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
    fn text(value: Option<&HeaderValue>) -> Option<&str> {
        value.and_then(|value| value.to_str().ok())
    }
    hub.policy().origins.allows(text(origin), text(host))
}

/// Refuses requests from pages of origins that may not call the API (403),
/// answers allowed preflights, and adds the CORS headers to the rest.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN).cloned() else {
        let mut response = next.run(request).await;
        response.headers_mut().append(header::VARY, VARY);
        return response;
    };
    if !allowed(&state.hub, Some(&origin), headers.get(header::HOST)) {
        let shown = origin.to_str().unwrap_or("");
        tracing::info!(
            origin = shown,
            path = request.uri().path(),
            "HTTP API request from a page of another origin refused"
        );
        return ApiError::OriginNotAllowed.into_response();
    }
    let preflight = request.method() == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match preflight {
        true => preflight_answer(),
        false => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, VARY);
    if !preflight {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    }
    response
}

/// An allowed preflight's answer (the origin and `Vary` are added by the caller).
fn preflight_answer() -> Response {
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    (StatusCode::OK, headers).into_response()
}
