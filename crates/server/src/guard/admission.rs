//! The per-address checks where connections begin: at accept on the HTTP
//! and raw TCP ports, and at the WebSocket upgrade when the peer is a
//! trusted proxy (only then is the client's address known, from its
//! headers; an event stream request likewise). A refusal is answered on the spot: `429` with `Retry-After`
//! on the HTTP port, a close line with code 1008 on raw TCP.

use super::ip::{IpRefusal, IpTable};
use super::{admit_address, proxy};
use crate::hub::Hub;
use std::net::{IpAddr, SocketAddr};
use switchboard_protocol::event::{self, Encoded, Framing};
use switchboard_protocol::handshake::{self, Forwarded};
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;

/// Which port a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// WebSocket and HTTP: a trusted proxy's clients are checked at the upgrade.
    Http,
    /// Raw TCP: no headers, so a trusted proxy's connections are not limited.
    Tcp,
}

/// A counted connection of one address, released when dropped unless
/// [`Slot::keep`] hands it to a registered connection (whose unregistering
/// releases it).
#[derive(Debug)]
pub struct Slot<'a> {
    table: &'a IpTable,
    ip: Option<IpAddr>,
}

impl<'a> Slot<'a> {
    /// The slot of `ip` if it was counted.
    pub fn new(table: &'a IpTable, ip: IpAddr, counted: bool) -> Self {
        Slot { table, ip: counted.then_some(ip) }
    }

    /// The connection is registered: it releases the count itself.
    pub fn keep(&mut self) {
        self.ip = None;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(ip) = self.ip.take() {
            self.table.release(ip);
        }
    }
}

/// Checks a just-accepted connection against its address's limits. Returns
/// whether it was counted, or `None` after answering a refusal (the caller
/// drops the socket). A trusted proxy is not limited here.
pub fn admit_at_accept(hub: &Hub, stream: &TcpStream, peer: SocketAddr, listener: Listener) -> Option<bool> {
    if proxy::is_trusted(peer.ip(), &hub.policy().guard.trusted_proxies) {
        return Some(false);
    }
    match admit_address(hub, peer.ip()) {
        Ok(counted) => Some(counted),
        Err(refusal) => {
            let answer = match listener {
                Listener::Http => http_refusal(refusal).into_bytes(),
                Listener::Tcp => tcp_refusal(refusal).to_vec(),
            };
            // Best effort and without waiting: the answer fits any fresh socket buffer.
            let _ = stream.try_write(&answer);
            None
        }
    }
}

/// The client of a WebSocket upgrade or an event stream request: the
/// address a trusted proxy's headers name (`forwarded`; then checked
/// against its limits, and `slot` becomes its count), else the peer. `Err`
/// is the refusal to answer.
pub fn admit_forwarded<'a>(
    hub: &'a Hub,
    peer: SocketAddr,
    forwarded: Option<&Forwarded>,
    slot: &mut Slot<'a>,
) -> Result<SocketAddr, String> {
    let client = proxy::client_address(peer, forwarded, &hub.policy().guard.trusted_proxies);
    if client.ip() == peer.ip() {
        return Ok(peer);
    }
    match admit_address(hub, client.ip()) {
        Ok(counted) => {
            *slot = Slot::new(hub.ips(), client.ip(), counted);
            Ok(client)
        }
        Err(refusal) => Err(http_refusal(refusal)),
    }
}

/// `429 Too Many Requests` with `Retry-After: 1`.
fn http_refusal(refusal: IpRefusal) -> String {
    handshake::refusal(429, "Too Many Requests", refusal.text())
}

/// The raw TCP close line for a refusal: code 1008 and the reason.
fn tcp_refusal(refusal: IpRefusal) -> bytes::Bytes {
    let close = event::Close { ev: "close", code: CloseCode::PolicyViolation.as_u16(), reason: refusal.text() };
    Encoded::new(&close).framed(Framing::Line)
}
