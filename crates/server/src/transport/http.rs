//! Plain HTTP (or HTTPS) on the shared port: the hyper connection that
//! carries every request that is not a WebSocket upgrade to the HTTP API's
//! router ([`crate::api`]: `/healthz`, `/readyz`, `/metrics`, `/api/...`).
//! WebSocket upgrades never get here: [`super::front`] answers them first.
//!
//! Requests are bounded like upgrades: a head over `limits.http_max_head`
//! (or with more than [`MAX_HEADERS`] lines) is answered 431 by hyper, a
//! body declared over `limits.http_max_body` 413 before the router sees it
//! (a chunked one is cut at the same bound as the router reads it), and all
//! are counted.

use super::rewind::Rewind;
use crate::api::auth::Peer;
use crate::api::ApiError;
use crate::guard::reason;
use crate::hub::Hub;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What every connection on the HTTP port needs.
#[derive(Debug)]
pub(crate) struct HttpState {
    pub hub: Arc<Hub>,
    /// The HTTP API (`crate::api::router`), cloned per request (a reference count).
    pub api: axum::Router,
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
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let refused = match declared_length(&request) {
            Some(length) if length > max_body => Some(too_large(&service_state, max_body)),
            _ => not_first_request(&request),
        };
        request.extensions_mut().insert(Peer(peer));
        let router = service_state.api.clone();
        async move {
            match refused {
                Some(response) => Ok::<_, Infallible>(response),
                None => router.oneshot(request).await,
            }
        }
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
fn too_large(state: &HttpState, limit: usize) -> Response {
    state.hub.metrics.limit_hit(reason::HTTP_BODY);
    let mut response = ApiError::TooLarge { what: "the request body", limit }.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The answer to a request only a connection's first request may make
/// ([`super::front`] takes those): `400` for an upgrade to `/ws`, and a
/// redirect to a fresh connection for an event stream.
fn not_first_request(request: &Request<Incoming>) -> Option<Response> {
    let path = request.uri().path();
    if matches!(path, "/ws" | "/ws/echo") {
        let why = "a WebSocket upgrade must be the first request on its connection";
        return Some(ApiError::bad(ErrorCode::BadRequest, why).into_response());
    }
    (request.method() == Method::GET && switchboard_protocol::sse::is_stream_path(path))
        .then(|| again_on_a_new_connection(request))
}

/// An event stream asked for on a connection that already served a
/// request (a browser reuses its connections): only a connection's first
/// request can become a stream (`super::front`), so the answer sends the
/// client to the same URL and closes this connection; the browser asks
/// again on a fresh one (`EventSource` follows redirects, `Last-Event-ID`
/// included).
fn again_on_a_new_connection(request: &Request<Incoming>) -> Response {
    let target = request.uri().path_and_query().map_or("/", |target| target.as_str());
    let mut response =
        (StatusCode::TEMPORARY_REDIRECT, "an event stream must be a connection's first request\n").into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(target) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
