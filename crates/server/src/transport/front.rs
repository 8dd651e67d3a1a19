//! The front door of the HTTP port. Every accepted connection starts here:
//! the request head is read into the thread's shared buffer and parsed
//! there (`switchboard_protocol::handshake`, then `::sse`). A WebSocket
//! upgrade is answered directly and the socket becomes a WebSocket
//! [`Connection`]; a Server-Sent Events request becomes a follower the
//! same way (`super::follow`); any other request is handed to hyper with
//! the bytes already read put back.
//!
//! Answering upgrades here rather than through hyper keeps a handshake
//! from allocating hyper's per-connection buffers (about 16 KiB), whose
//! freed holes would otherwise stay resident after every connect burst.
//!
//! With TLS on, the TLS handshake comes first (`tls_socket::accept`, within
//! the same deadline as the head), and the head is read through
//! tokio-rustls; what follows is the same for both.

use super::follow;
use super::http::{self, HttpState};
use super::rewind::Rewind;
use super::socket::Accepted;
use super::stream::Connection;
use super::tls_socket;
use super::websocket::WsCodec;
use super::with_read_buffer;
use crate::auth::Profile;
use crate::guard;
use crate::hub::conn::{ConnId, Transport};
use crate::hub::Hub;
use crate::policy::Admission;
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::deflate::Agreed;
use switchboard_protocol::handshake::{self, Caller, Endpoint, HandshakeError, Parsed, Upgrade};
use switchboard_protocol::sse::{self, Follow, FollowError};
use switchboard_protocol::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// Longest request head accepted for an upgrade or an event stream.
const MAX_HEAD: usize = 8 * 1024;
/// How long a refused client gets to read our answer before we close.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How a connection began.
enum Start {
    Upgrade(Upgrade, Bytes),
    /// A Server-Sent Events request (boxed: the largest variant by far).
    Follow(Box<Follow>, Bytes),
    Http(Bytes),
    Refuse(HandshakeError),
    RefuseFollow(FollowError),
    TimedOut,
    Closed,
    NeedMore,
}

/// Counts one connection that is not (yet) a registered connection.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a client that does not speak TLS is told on the HTTPS port.
fn plain_on_tls() -> String {
    handshake::refusal(400, "Bad Request", "this port speaks TLS: use https:// or wss://")
}

/// Serves one accepted connection from its first byte. `counted`: its
/// address's count was taken at accept (see `crate::guard`); it is released
/// when the connection ends, unless a registered connection takes it over.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, counted: bool, state: Arc<HttpState>) {
    let _counted = Counted::new(&state.http_open);
    let mut slot = guard::Slot::new(state.hub.ips(), peer.ip(), counted);
    let deadline = Instant::now() + state.handshake_timeout;
    match &state.tls {
        None => {
            let start = read_head(&stream, peer, deadline).await;
            dispatch(stream, start, peer, &mut slot, &state).await;
        }
        Some(tls) => {
            let metrics = &state.hub.metrics;
            let Some(mut stream) = tls_socket::accept(&tls.http, stream, peer, deadline, metrics, plain_on_tls).await
            else {
                return;
            };
            let start = read_head_tls(&mut stream, peer, deadline).await;
            dispatch(stream, start, peer, &mut slot, &state).await;
        }
    }
}

/// Reads a plain connection's request head into the thread's buffer.
async fn read_head(stream: &TcpStream, peer: SocketAddr, deadline: Instant) -> Start {
    let mut pending = Vec::new();
    loop {
        if tokio::time::timeout_at(deadline, stream.readable()).await.is_err() {
            return Start::TimedOut;
        }
        match read_start(stream, &mut pending) {
            Ok(Start::NeedMore) => {}
            Ok(start) => return start,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => {
                tracing::debug!(%peer, %error, "read failed before the request head");
                return Start::Closed;
            }
        }
    }
}

/// Reads the request head through TLS. Unlike the plain path this holds
/// a buffer of its own while the head arrives: rustls has the socket.
async fn read_head_tls(stream: &mut TlsStream<TcpStream>, peer: SocketAddr, deadline: Instant) -> Start {
    let mut pending = Vec::new();
    loop {
        pending.reserve(2048);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut pending)).await {
            Err(_) => return Start::TimedOut,
            Ok(Ok(0)) => return Start::Closed,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "read failed before the request head");
                return Start::Closed;
            }
        }
        match start_from(&pending) {
            Start::NeedMore => {}
            start => return start,
        }
    }
}

/// Answers what the head asked for: an upgrade becomes a WebSocket
/// connection, anything else goes to hyper.
async fn dispatch<'a, S: Accepted>(
    mut stream: S,
    start: Start,
    peer: SocketAddr,
    slot: &mut guard::Slot<'a>,
    state: &'a Arc<HttpState>,
) {
    match start {
        Start::Upgrade(mut upgrade, early) => {
            // Behind a trusted proxy the client is the one its headers name.
            let client = match guard::admit_forwarded(&state.hub, peer, upgrade.caller.forwarded.as_ref(), slot) {
                Ok(client) => client,
                Err(answer) => return refuse(stream, &answer).await,
            };
            let admission = match admit(state, &mut upgrade, client) {
                Ok(admission) => admission,
                Err(answer) => return refuse(stream, &answer).await,
            };
            let deflate = upgrade.deflate.filter(|_| state.hub.limits().compression);
            let answer = handshake::switching_protocols(&upgrade.accept, deflate.as_ref());
            if !self::answer(&mut stream, &answer, peer).await {
                return;
            }
            start_session(stream, early, client, &upgrade, admission, deflate, state);
            slot.keep();
        }
        Start::Follow(request, early) => follow::serve(stream, *request, early, peer, slot, state).await,
        Start::Http(prefix) => http::serve(Rewind::new(prefix, stream), peer, Arc::clone(state)).await,
        Start::RefuseFollow(error) => {
            state.hub.metrics.refused("handshake");
            tracing::debug!(%peer, %error, "event stream refused");
            let (code, reason) = error.status();
            refuse(stream, &sse::render::refusal(code, reason, error.code().as_str(), &error.to_string())).await;
        }
        Start::Refuse(error) => {
            state.hub.metrics.refused("handshake");
            tracing::debug!(%peer, %error, "websocket upgrade refused");
            let (code, reason) = error.status();
            refuse(stream, &handshake::refusal(code, reason, &error.to_string())).await;
        }
        Start::TimedOut => {
            state.hub.metrics.refused("handshake_timeout");
            let body = "no complete request within the handshake timeout";
            refuse(stream, &handshake::refusal(408, "Request Timeout", body)).await;
        }
        Start::Closed | Start::NeedMore => {}
    }
}

/// Writes the answer that starts a connection (the `101` of an upgrade, the
/// `200` of an event stream); false, logged, when the client is gone. The
/// flush pushes TLS records out; on plain TCP it does nothing.
pub(crate) async fn answer<S: Accepted>(stream: &mut S, answer: &str, peer: SocketAddr) -> bool {
    let written = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await
    };
    match written.await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%peer, %error, "could not answer the request");
            false
        }
    }
}

/// Decides whether an upgrade may proceed and as whom, or the HTTP answer
/// that refuses it: while shutting down (503), from a page of another
/// origin (403), without a valid token in token mode (401, naming why).
fn admit(state: &HttpState, upgrade: &mut Upgrade, peer: SocketAddr) -> Result<Admission, String> {
    let hub = &state.hub;
    if hub.is_shutting_down() {
        hub.metrics.refused("shutting_down");
        return Err(handshake::refusal(503, "Service Unavailable", "server is shutting down"));
    }
    admit_caller(hub, &mut upgrade.caller, peer, "upgrade")
}

/// Who the caller of an upgrade or an event stream (`what`) may be, or the
/// refusal with `{"code","error"}`: a page of an origin that may not
/// connect (403), a missing or refused token in token mode (401). Counted
/// and logged here.
pub(crate) fn admit_caller(hub: &Hub, caller: &mut Caller, peer: SocketAddr, what: &str) -> Result<Admission, String> {
    let policy = hub.policy();
    if !policy.origins.allows(caller.origin.as_deref(), caller.host.as_deref()) {
        hub.metrics.refused("origin");
        tracing::info!(%peer, origin = caller.origin.as_deref(), "{what} from a page of another origin refused");
        let why = "this page's origin may not connect here (auth.allowed_origins)";
        return Err(handshake::refusal_json(403, "Forbidden", ErrorCode::OriginNotAllowed.as_str(), why));
    }
    policy.admit(caller.name.take(), caller.token.as_deref()).map_err(|error| {
        hub.metrics.refused("auth");
        hub.metrics.auth_failed(error.code());
        tracing::info!(%peer, code = error.code().as_str(), "{what} refused: {error}");
        handshake::refusal_json(401, "Unauthorized", error.code().as_str(), &error.to_string())
    })
}

/// Reads what is available and decides how the connection starts. Bytes
/// are kept in `pending` only when the head spans several reads.
fn read_start(stream: &TcpStream, pending: &mut Vec<u8>) -> io::Result<Start> {
    with_read_buffer(|buffer| {
        let count = stream.try_read(buffer)?;
        if count == 0 {
            return Ok(Start::Closed);
        }
        let continued = !pending.is_empty();
        if continued {
            pending.extend_from_slice(&buffer[..count]);
        }
        let input = if continued { &pending[..] } else { &buffer[..count] };
        let start = start_from(input);
        if matches!(start, Start::NeedMore) && !continued {
            pending.extend_from_slice(&buffer[..count]);
        }
        Ok(start)
    })
}

/// How a connection whose first bytes are `input` starts.
fn start_from(input: &[u8]) -> Start {
    match handshake::parse_request(input, MAX_HEAD) {
        Ok(Parsed::Upgrade(upgrade)) => {
            let early = Bytes::copy_from_slice(&input[upgrade.head_len..]);
            Start::Upgrade(upgrade, early)
        }
        Ok(Parsed::Other) => match sse::parse_request(input, MAX_HEAD) {
            Ok(sse::Parsed::Follow(follow)) => {
                let early = Bytes::copy_from_slice(&input[follow.head_len..]);
                Start::Follow(Box::new(follow), early)
            }
            Ok(sse::Parsed::Other) => Start::Http(Bytes::copy_from_slice(input)),
            Ok(sse::Parsed::Incomplete) => Start::NeedMore,
            Err(error) => Start::RefuseFollow(error),
        },
        Ok(Parsed::Incomplete) => Start::NeedMore,
        Err(error) => Start::Refuse(error),
    }
}

/// Sends a complete answer, shuts our side (after close_notify, with TLS)
/// and lets the client read it before the socket closes (closing with
/// unread input would reset it).
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &str) {
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(count) if count > 0) {}
    })
    .await;
}

/// Starts the connection's task as the client `admission` let in;
/// `deflate` is the permessage-deflate agreed in our answer, if any.
fn start_session<S: Accepted>(
    stream: S,
    early: Bytes,
    peer: SocketAddr,
    upgrade: &Upgrade,
    admission: Admission,
    deflate: Option<Agreed>,
    state: &HttpState,
) {
    let Some((socket, early, fd)) = take_socket(stream, early, peer) else { return };
    let hub = Arc::clone(&state.hub);
    let id = hub.next_conn_id();
    let (user, profile) = identity(admission, id);
    let transport = match upgrade.endpoint {
        Endpoint::Protocol => Transport::WebSocket,
        Endpoint::Echo => Transport::Echo,
    };
    let conn = hub.register_websocket(id, user, peer, transport, deflate.map(|agreed| agreed.server_window_bits));
    conn.set_fd(fd);
    if let Some(profile) = profile {
        hub.identify(&conn, profile);
    }
    let compression = deflate.is_some();
    tracing::debug!(conn = id, %peer, user = %conn.user, transport = transport.as_str(), compression, "websocket open");
    let session = match transport {
        Transport::Echo => Session::silent(hub, conn),
        _ => Session::start(hub, conn),
    };
    let codec = WsCodec::new(state.hub.limits().max_message_size, deflate.as_ref());
    state.tracker.spawn(Connection::new(socket, session, codec).run(early));
}

/// What the connection driver runs on once a connection is answered, with
/// TCP_NODELAY set, and the bytes that came after the request (`early`,
/// and what TLS decrypted but nobody read yet); `None`, logged, when TLS
/// failed at the hand-over; with the socket's file descriptor, for the
/// connection table.
pub(crate) fn take_socket<S: Accepted>(stream: S, early: Bytes, peer: SocketAddr) -> Option<(S::Socket, Bytes, RawFd)> {
    if let Err(error) = stream.tcp().set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let fd = stream.tcp().as_raw_fd();
    match stream.into_socket() {
        Ok((socket, decrypted)) => Some((socket, join(early, decrypted), fd)),
        Err(error) => {
            tracing::debug!(%peer, %error, "TLS failed after the request was answered");
            None
        }
    }
}

/// The user a new connection is registered as (open mode: the name asked
/// for, else `guest-<id>`), and its token's profile.
pub(crate) fn identity(admission: Admission, id: ConnId) -> (Arc<str>, Option<Arc<Profile>>) {
    match admission {
        Admission::Named(name) => (name.map_or_else(|| Arc::from(format!("guest-{id}")), Arc::from), None),
        Admission::Verified(identity) => (identity.user, Some(identity.profile)),
    }
}

/// `first` then `second`, copying only when both have bytes.
pub(crate) fn join(first: Bytes, second: Bytes) -> Bytes {
    match (first.is_empty(), second.is_empty()) {
        (_, true) => first,
        (true, false) => second,
        (false, false) => {
            let mut joined = BytesMut::with_capacity(first.len() + second.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&second);
            joined.freeze()
        }
    }
}
