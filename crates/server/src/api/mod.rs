//! The HTTP API, on axum: every plain HTTP request on the HTTP port
//! (`transport::http` hands each one to [`router`]). WebSocket upgrades never
//! get here: the front door (`transport::front`) answers them itself.
//!
//! What this module owns:
//! - [`ApiState`]: what handlers share (the hub, the metrics registry, the
//!   rate limiter, the idempotency window, the readiness checks);
//! - [`router`]: the routes, the fallback (404) and the layers every request
//!   passes: request metrics and JSON errors ([`observe`]), the origin guard
//!   and CORS ([`cors`]); authentication and rates are the [`auth::Caller`]
//!   extractor, so each handler says whether it needs them;
//! - [`ApiError`] ([`error`]): `{"code", "error"}` with the right status.
//!
//! # Adding routes
//! A module lists its routes as [`Endpoint`]s (path, method, handler and
//! the OpenAPI operation describing it) in a function `endpoints()`, and
//! that function goes into [`MODULES`]. Both the router and
//! `/api/openapi.json` are built from that one list, so a route cannot be
//! served undocumented or documented unserved; `tests/it/api_openapi.rs`
//! requests every documented operation to prove it. Routes another part
//! of the server serves (the front door's Server-Sent Events) are described
//! in `openapi::SERVED_ELSEWHERE` instead, by name. Handlers that need an
//! API key take a [`auth::Caller`] argument; request bodies are
//! [`body::JsonBody`].

pub mod auth;
pub mod body;
mod connections;
mod cors;
mod error;
mod health;
mod openapi;
mod publish;
mod rooms;
mod stats;
mod users;

pub use error::ApiError;
pub use health::ReadyCheck;

use crate::hub::Hub;
use crate::metrics::HttpLabel;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use bytes::Bytes;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One route: what the router serves and what `/api/openapi.json` says of it.
#[derive(Debug)]
pub struct Endpoint {
    pub method: Method,
    /// The path in axum's and OpenAPI's shared syntax (`/api/rooms/{room}`).
    pub path: &'static str,
    pub handler: MethodRouter<ApiState>,
    /// The OpenAPI 3.1 operation object.
    pub operation: serde_json::Value,
}

/// Every module's routes. The router and the OpenAPI document both read
/// this list (see the module docs).
const MODULES: &[fn() -> Vec<Endpoint>] = &[
    health::endpoints,
    rooms::endpoints,
    users::endpoints,
    connections::endpoints,
    stats::endpoints,
    openapi::endpoints,
];

/// Every endpoint the router serves.
fn endpoints() -> Vec<Endpoint> {
    MODULES.iter().flat_map(|endpoints| endpoints()).collect()
}

/// What every handler shares. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub hub: Arc<Hub>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registry: Registry,
    /// Seconds from a publish's submission to the writer's answer (not volatile ones).
    publish_seconds: Histogram,
    limiter: auth::Limiter,
    idempotency: crate::idempotency::Window<publish::Answer>,
    ready: Vec<Box<dyn ReadyCheck>>,
    ready_timeout: Duration,
    /// `/api/openapi.json`, rendered once.
    openapi: Bytes,
    /// Each route's methods, for the `Allow` of a 405 (axum leaves it
    /// empty on routes behind layers).
    allow: HashMap<&'static str, String>,
}

impl ApiState {
    /// The state for a server with `hub`, exposing `registry` at `/metrics`.
    pub fn new(hub: Arc<Hub>, mut registry: Registry, api: &crate::config::Api) -> ApiState {
        // 0.25 ms to about 4 s: an fsync under load is milliseconds, a stuck disk seconds.
        let publish_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
        registry.register(
            "api_publish_seconds",
            "HTTP API publishes (not volatile): seconds from submission to the storage writer's answer",
            publish_seconds.clone(),
        );
        let shared = Shared {
            registry,
            publish_seconds,
            limiter: auth::Limiter::default(),
            idempotency: crate::idempotency::Window::new(
                api.idempotency_window,
                api.idempotency_max_keys,
                crate::guard::reason::API_IDEMPOTENCY_EVICTED,
            ),
            ready: health::checks(),
            ready_timeout: api.ready_timeout,
            openapi: openapi::render(&endpoints()),
            allow: allowed_methods(&endpoints()),
        };
        ApiState { hub, shared: Arc::new(shared) }
    }
}

/// Each path's methods as an `Allow` value (`HEAD` wherever `GET` is),
/// the web pages' included.
fn allowed_methods(endpoints: &[Endpoint]) -> HashMap<&'static str, String> {
    let mut methods: HashMap<&'static str, Vec<&str>> = HashMap::new();
    for page in crate::web::PATHS {
        methods.entry(page).or_default().push("GET");
    }
    for endpoint in endpoints {
        let listed = methods.entry(endpoint.path).or_default();
        listed.push(endpoint.method.as_str());
    }
    for listed in methods.values_mut() {
        if listed.contains(&"GET") {
            listed.push("HEAD");
        }
    }
    methods
        .into_iter()
        .map(|(path, mut listed)| {
            (path, {
                listed.sort_unstable();
                listed.join(", ")
            })
        })
        .collect()
}

/// The HTTP API's router over `state`, with the web pages (`crate::web`)
/// beside it: they pass the request metrics, not the API's origin guard and
/// CORS (they are public files a browser navigates to).
pub fn router(state: ApiState) -> Router {
    let routes = MODULES.iter().fold(Router::new(), |router, endpoints| {
        endpoints().into_iter().fold(router, |router, endpoint| router.route(endpoint.path, endpoint.handler))
    });
    let api = routes.fallback(not_found).layer(axum::middleware::from_fn_with_state(state.clone(), cors::guard));
    crate::web::routes()
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(request.uri().path().chars().take(200).collect())
}

/// Counts every answer by route template, method and status, and turns
/// the plain-text errors axum makes itself (405 from a route with other
/// methods, with its `Allow`; a path or query parameter it could not read)
/// into `{"code", "error"}` answers with the same status.
async fn observe(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let response = match is_plain_error(&response) {
        true => as_json(response, method, state.shared.allow.get(route.as_str())).await,
        false => response,
    };
    let label = HttpLabel { route, method, status: response.status().as_u16() };
    state.hub.metrics.http_requests.get_or_create(&label).inc();
    response
}

/// A bounded label for a request method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn is_plain_error(response: &Response) -> bool {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    (response.status().is_client_error() || response.status().is_server_error()) && !json
}

/// An error axum answered in plain text, as the API's JSON error.
async fn as_json(response: Response, method: &'static str, allow: Option<&String>) -> Response {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed { method: method.to_owned(), allow: allow.cloned().unwrap_or_default() }
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { what: "the request body", limit: 0 },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::NOT_FOUND => ApiError::NotFound(text),
        _ => ApiError::bad(switchboard_protocol::ErrorCode::BadRequest, text),
    };
    let mut response = error.into_response();
    // A status with no error of its own (a path parameter axum could not read, say) stays as it was.
    if !matches!(status.as_u16(), 400 | 404 | 405 | 413 | 415) {
        *response.status_mut() = status;
    }
    response
}
