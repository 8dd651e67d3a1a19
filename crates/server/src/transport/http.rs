//! The HTTP/1.1 front door, served by hyper: the WebSocket upgrade at `/ws`
//! and `/ws/echo`, `/healthz` and `/metrics`.
//!
//! After a successful upgrade the hyper connection is finished and its
//! buffers freed; the raw `TcpStream` is taken back and handed to a
//! [`WsConnection`], which holds nothing while the client is idle.

use super::websocket::{Mode, Slot, WsConnection, WsSettings};
use crate::hub::conn::Transport;
use crate::hub::Hub;
use crate::session::Session;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::{command, handshake};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What every HTTP connection needs.
#[derive(Debug)]
pub(crate) struct HttpState {
    pub hub: Arc<Hub>,
    pub registry: Registry,
    pub ws: Arc<WsSettings>,
    pub handshake_timeout: Duration,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
}

type Body = Full<Bytes>;

/// Serves one accepted TCP connection until it closes or is upgraded.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<HttpState>, slot: Slot) {
    let service_state = Arc::clone(&state);
    let service = hyper::service::service_fn(move |request| {
        let response = route(request, peer, &service_state, &slot);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = state.stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "http connection ended with an error");
    }
}

fn route(request: Request<Incoming>, peer: SocketAddr, state: &Arc<HttpState>, slot: &Slot) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/ws") => upgrade(request, peer, state, slot, Mode::Protocol),
        (&Method::GET, "/ws/echo") => upgrade(request, peer, state, slot, Mode::Echo),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            let mut response = text(StatusCode::OK, crate::metrics::render(&state.registry));
            let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Why an upgrade request was refused, as an HTTP answer.
fn refuse(state: &HttpState, status: StatusCode, why: &str) -> Response<Body> {
    state.hub.metrics.refused("handshake");
    tracing::debug!(%status, why, "websocket upgrade refused");
    text(status, format!("{why}\n"))
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

fn upgrade(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<HttpState>,
    slot: &Slot,
    mode: Mode,
) -> Response<Body> {
    let headers = request.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return refuse(state, StatusCode::BAD_REQUEST, "expected a WebSocket upgrade (Upgrade: websocket)");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(handshake::VERSION.as_bytes()) {
        let mut response = refuse(state, StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported");
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static(handshake::VERSION));
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|key| handshake::is_valid_key(key.as_bytes())) else {
        return refuse(state, StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key");
    };
    let accept = handshake::accept_key(key.as_bytes());
    let name = match requested_name(request.uri().query()) {
        Ok(name) => name,
        Err(why) => return refuse(state, StatusCode::BAD_REQUEST, &why),
    };
    if state.hub.is_shutting_down() {
        return refuse(state, StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_state = Arc::clone(state);
    let slot = Arc::clone(slot);
    state.tracker.spawn(async move {
        match on_upgrade.await.map(|upgraded| upgraded.downcast::<TokioIo<TcpStream>>()) {
            Ok(Ok(parts)) => start_session(parts.io.into_inner(), parts.read_buf, peer, name, &task_state, slot, mode),
            Ok(Err(_)) => tracing::error!(%peer, "upgraded connection is not a TcpStream"),
            Err(error) => tracing::debug!(%peer, %error, "upgrade did not complete"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The `name` query parameter, validated; `None` when absent.
fn requested_name(query: Option<&str>) -> Result<Option<String>, String> {
    let Some(query) = query else { return Ok(None) };
    let Some((_, name)) = form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "name") else {
        return Ok(None);
    };
    command::validate_user(&name)?;
    Ok(Some(name.into_owned()))
}

fn start_session(
    stream: TcpStream,
    early: Bytes,
    peer: SocketAddr,
    name: Option<String>,
    state: &HttpState,
    slot: Slot,
    mode: Mode,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let hub = Arc::clone(&state.hub);
    let id = hub.next_conn_id();
    let user: Arc<str> = name.map_or_else(|| Arc::from(format!("guest-{id}")), Arc::from);
    let transport = if mode == Mode::Echo { Transport::Echo } else { Transport::WebSocket };
    let conn = hub.register(id, user, peer, transport);
    let span = tracing::debug_span!("conn", id, %peer, user = %conn.user, transport = transport.as_str());
    let session = match mode {
        Mode::Protocol => Session::start(hub, conn),
        Mode::Echo => Session::silent(hub, conn),
    };
    let connection = WsConnection::new(stream, session, Arc::clone(&state.ws), mode, slot);
    state.tracker.spawn(connection.run(early).instrument(span));
}
