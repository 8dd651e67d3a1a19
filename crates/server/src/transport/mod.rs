//! Transports: how bytes reach the hub. Each owns its sockets and framing
//! and hands complete commands to a [`crate::session::Session`].
//!
//! - [`front`]: every connection on the HTTP port starts here; WebSocket
//!   upgrades are answered directly, Server-Sent Events requests become
//!   followers (`follow`, [`sse`]), everything else goes to [`http`].
//! - [`http`]: hyper serving `/healthz`, `/metrics` and later the HTTP API.
//! - [`stream`]: the connection driver shared by WebSocket, raw TCP and SSE,
//!   over a [`socket::Socket`]: plain TCP or [`tls_socket`].
//! - [`websocket`], [`tcp`]: their codecs.
//! - [`udp`]: datagram sessions.

mod follow;
pub(crate) mod front;
pub(crate) mod http;
mod rewind;
pub(crate) mod socket;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod tls_socket;
pub(crate) mod udp;
mod udp_out;
pub(crate) mod websocket;

use std::cell::RefCell;

/// Size of each worker thread's shared read buffer.
pub(crate) const READ_BUFFER_SIZE: usize = 64 * 1024;

/// Capacity of each worker thread's shared write buffer.
pub(crate) const WRITE_BUFFER_SIZE: usize = 16 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_SIZE]);
    static WRITE_BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WRITE_BUFFER_SIZE));
}

/// Runs `f` with this thread's read buffer. Connections read into it and
/// keep only what they cannot consume at once, so an idle connection holds
/// no read buffer of its own. `f` must not call this function again.
pub(crate) fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with_borrow_mut(|buffer| f(buffer))
}

/// Runs `f` with this thread's write buffer (empty, [`WRITE_BUFFER_SIZE`]
/// of capacity). Connections gather small queued frames into it for one
/// write and keep nothing there between writes. `f` must not call this
/// function again.
pub(crate) fn with_write_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    WRITE_BUFFER.with_borrow_mut(|buffer| f(buffer))
}
