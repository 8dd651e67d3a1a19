//! HTTP (plain or over TLS) on the shared port, served by hyper: `/healthz`, `/metrics`
//! (and the HTTP API in a later version). WebSocket upgrades never get
//! here: [`super::front`] answers them first.
//!
//! Requests are bounded like upgrades: a head over `limits.http_max_head`
//! (or with more than [`MAX_HEADERS`] lines) is answered 431 by hyper, a
//! body declared over `limits.http_max_body` 413, and both are counted.

use super::rewind::Rewind;
use crate::guard::reason;
use crate::hub::Hub;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every connection on the HTTP port needs.
#[derive(Debug)]
pub(crate) struct HttpState {
    pub hub: Arc<Hub>,
    pub registry: Registry,
    /// Connections not (yet) registered as WebSockets, for admission.
    pub http_open: AtomicUsize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// TLS on the HTTP and raw TCP ports; `None`: both plain.
    pub tls: Option<crate::tls::Acceptors>,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
}

impl HttpState {
    /// Connections that count against the limit: WebSockets (in the hub)
    /// and those still in HTTP.
    pub fn open_connections(&self) -> usize {
        self.hub.connection_count() + self.http_open.load(Ordering::Relaxed)
    }
}

type Body = Full<Bytes>;

/// Most header lines in a plain HTTP request (as in an upgrade).
const MAX_HEADERS: usize = 32;

/// Serves HTTP requests on one connection (plain or TLS) until it closes.
pub(crate) async fn serve<S>(io: Rewind<S>, peer: SocketAddr, state: Arc<HttpState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (max_head, max_body) = {
        let policy = state.hub.policy();
        (policy.guard.http_max_head, policy.guard.http_max_body)
    };
    let service_state = Arc::clone(&state);
    let service = hyper::service::service_fn(move |request| {
        let response = match declared_length(&request) {
            Some(length) if length > max_body => too_large(&service_state),
            _ => route(&request, &service_state),
        };
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.handshake_timeout)
        .max_buf_size(max_head)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = state.stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    match result {
        Err(error) if error.is_parse_too_large() => {
            state.hub.metrics.limit_hit(reason::HTTP_HEAD);
            tracing::info!(%peer, max_head, "http request head too large: answered 431");
        }
        Err(error) => tracing::debug!(%peer, %error, "http connection ended with an error"),
        Ok(()) => {}
    }
}

/// The body length a request declares, if it does.
fn declared_length(request: &Request<Incoming>) -> Option<usize> {
    let value = request.headers().get(header::CONTENT_LENGTH)?;
    Some(value.to_str().ok()?.trim().parse().unwrap_or(usize::MAX))
}

/// `413`, and the connection closes (its body is not read).
fn too_large(state: &HttpState) -> Response<Body> {
    state.hub.metrics.limit_hit(reason::HTTP_BODY);
    let mut response = text(StatusCode::PAYLOAD_TOO_LARGE, "request body over the limit\n");
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn route(request: &Request<Incoming>, state: &HttpState) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (_, "/ws" | "/ws/echo") => {
            text(StatusCode::BAD_REQUEST, "a WebSocket upgrade must be the first request on its connection\n")
        }
        (&Method::GET, path) if switchboard_protocol::sse::is_stream_path(path) => again_on_a_new_connection(request),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            if let Err(code) = api_key(request, state, state.hub.policy().metrics_public) {
                return unauthorized(code);
            }
            let mut response = text(StatusCode::OK, crate::metrics::render(&state.registry));
            let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// An event stream asked for on a connection that already served a
/// request (a browser reuses its connections): only a connection's first
/// request can become a stream (`super::front`), so the answer sends the
/// client to the same URL and closes this connection; the browser asks
/// again on a fresh one (`EventSource` follows redirects, `Last-Event-ID`
/// included).
fn again_on_a_new_connection(request: &Request<Incoming>) -> Response<Body> {
    let target = request.uri().path_and_query().map_or("/", |target| target.as_str());
    let mut response = text(StatusCode::TEMPORARY_REDIRECT, "an event stream must be a connection's first request\n");
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(target) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Checks the request's `Authorization: Bearer` against the API keys
/// unless `public`; returns the key's name, or the code to refuse with
/// (counted).
fn api_key(request: &Request<Incoming>, state: &HttpState, public: bool) -> Result<Option<String>, ErrorCode> {
    if public {
        return Ok(None);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let code = match presented.map(|key| state.hub.policy().api_keys.check(key).map(str::to_owned)) {
        Some(Some(name)) => return Ok(Some(name)),
        Some(None) => ErrorCode::ApiKeyInvalid,
        None => ErrorCode::ApiKeyRequired,
    };
    state.hub.metrics.auth_failed(code);
    Err(code)
}

/// 401 with `{"code", "error"}` for a missing or wrong API key.
fn unauthorized(code: ErrorCode) -> Response<Body> {
    let why = match code {
        ErrorCode::ApiKeyInvalid => "this API key is not one of auth.api_keys",
        _ => "send Authorization: Bearer <API key> (auth.api_keys)",
    };
    let body = serde_json::json!({ "code": code.as_str(), "error": why }).to_string();
    let mut response = text(StatusCode::UNAUTHORIZED, body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
