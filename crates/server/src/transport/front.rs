//! The front door of the HTTP port. Every accepted connection starts here:
//! the request head is read into the thread's shared buffer and parsed
//! there (`switchboard_protocol::handshake`). A WebSocket upgrade is
//! answered directly and the socket becomes a WebSocket [`Connection`]; any other
//! request is handed to hyper with the bytes already read put back.
//!
//! Answering upgrades here rather than through hyper keeps a handshake
//! from allocating hyper's per-connection buffers (about 16 KiB), whose
//! freed holes would otherwise stay resident after every connect burst.

use super::http::{self, HttpState};
use super::rewind::Rewind;
use super::stream::Connection;
use super::websocket::WsCodec;
use super::with_read_buffer;
use crate::guard;
use crate::hub::conn::Transport;
use crate::session::Session;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::deflate::Agreed;
use switchboard_protocol::handshake::{self, Endpoint, HandshakeError, Parsed, Upgrade};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head accepted for an upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// How long a refused client gets to read our answer before we close.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How a connection began.
enum Start {
    Upgrade(Upgrade, Bytes),
    Http(Bytes),
    Refuse(HandshakeError),
    Closed,
    NeedMore,
}

/// Counts one connection that is not (yet) a registered WebSocket.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted connection from its first byte. `counted`: its
/// address's count was taken at accept (see `crate::guard`).
pub(crate) async fn serve(mut stream: TcpStream, peer: SocketAddr, counted: bool, state: Arc<HttpState>) {
    let _counted = Counted::new(&state.http_open);
    let mut slot = guard::Slot::new(state.hub.ips(), peer.ip(), counted);
    let deadline = tokio::time::Instant::now() + state.handshake_timeout;
    let mut pending = Vec::new();
    let start = loop {
        if tokio::time::timeout_at(deadline, stream.readable()).await.is_err() {
            state.hub.metrics.refused("handshake_timeout");
            let body = "no complete request within the handshake timeout";
            refuse(stream, &handshake::refusal(408, "Request Timeout", body)).await;
            return;
        }
        match read_start(&stream, &mut pending) {
            Ok(Start::NeedMore) => {}
            Ok(start) => break start,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => {
                tracing::debug!(%peer, %error, "read failed before the request head");
                return;
            }
        }
    };
    match start {
        Start::Upgrade(upgrade, early) => {
            let client = match guard::admit_upgrade(&state.hub, peer, &upgrade, &mut slot) {
                Ok(client) => client,
                Err(answer) => return refuse(stream, &answer).await,
            };
            if state.hub.is_shutting_down() {
                state.hub.metrics.refused("shutting_down");
                let answer = handshake::refusal(503, "Service Unavailable", "server is shutting down");
                return refuse(stream, &answer).await;
            }
            let deflate = upgrade.deflate.filter(|_| state.hub.limits().compression);
            let answer = handshake::switching_protocols(&upgrade.accept, deflate.as_ref());
            if let Err(error) = stream.write_all(answer.as_bytes()).await {
                tracing::debug!(%peer, %error, "could not answer the upgrade");
                return;
            }
            start_session(stream, early, client, upgrade, deflate, &state);
            slot.keep();
        }
        Start::Http(prefix) => http::serve(Rewind::new(prefix, stream), peer, state.clone()).await,
        Start::Refuse(error) => {
            state.hub.metrics.refused("handshake");
            tracing::debug!(%peer, %error, "websocket upgrade refused");
            let (code, reason) = error.status();
            refuse(stream, &handshake::refusal(code, reason, &error.to_string())).await;
        }
        Start::Closed | Start::NeedMore => {}
    }
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
        Ok(match handshake::parse_request(input, MAX_HEAD) {
            Ok(Parsed::Upgrade(upgrade)) => {
                let early = Bytes::copy_from_slice(&input[upgrade.head_len..]);
                Start::Upgrade(upgrade, early)
            }
            Ok(Parsed::Other) => Start::Http(Bytes::copy_from_slice(input)),
            Ok(Parsed::Incomplete) => {
                if !continued {
                    pending.extend_from_slice(&buffer[..count]);
                }
                Start::NeedMore
            }
            Err(error) => Start::Refuse(error),
        })
    })
}

/// Sends a complete HTTP answer, shuts our side and lets the client read
/// it before the socket closes (closing with unread input would reset it).
async fn refuse(mut stream: TcpStream, answer: &str) {
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

/// Starts the connection's task; `deflate` is the permessage-deflate agreed
/// in our answer, if any.
fn start_session(
    stream: TcpStream,
    early: Bytes,
    peer: SocketAddr,
    upgrade: Upgrade,
    deflate: Option<Agreed>,
    state: &HttpState,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let hub = Arc::clone(&state.hub);
    let id = hub.next_conn_id();
    let user: Arc<str> = upgrade.name.map_or_else(|| Arc::from(format!("guest-{id}")), Arc::from);
    let transport = match upgrade.endpoint {
        Endpoint::Protocol => Transport::WebSocket,
        Endpoint::Echo => Transport::Echo,
    };
    let conn = hub.register_websocket(id, user, peer, transport, deflate.map(|agreed| agreed.server_window_bits));
    let compression = deflate.is_some();
    tracing::debug!(conn = id, %peer, user = %conn.user, transport = transport.as_str(), compression, "websocket open");
    let session = match transport {
        Transport::Echo => Session::silent(hub, conn),
        _ => Session::start(hub, conn),
    };
    let codec = WsCodec::new(state.hub.limits().max_message_size, deflate.as_ref());
    state.tracker.spawn(Connection::new(stream, session, codec).run(early));
}
