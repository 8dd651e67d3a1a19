//! A TCP proxy between a client and a server, for the client library's
//! reconnect tests: it can cut every connection at once (both sockets
//! dropped, as a network failure would), refuse new ones for a while, stop
//! passing the server's bytes on (an ack lost with the connection), and
//! send new connections to another server (a restarted one).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    target: Mutex<Option<SocketAddr>>,
    /// New connections are closed at once while set.
    holding: AtomicBool,
    /// The server's bytes are read and dropped while set.
    swallowing: AtomicBool,
    /// Connections passed to a server so far.
    passed: AtomicUsize,
    pumps: Mutex<Vec<AbortHandle>>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accepting: AbortHandle,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        *state.target.lock().expect("lock") = Some(target);
        let accepting = tokio::spawn(accept(listener, Arc::clone(&state))).abort_handle();
        Proxy { addr, state, accepting }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every open connection, both sides.
    pub fn cut(&self) {
        for pump in self.state.pumps.lock().expect("lock").drain(..) {
            pump.abort();
        }
    }

    /// Closes new connections at once until [`Proxy::release`].
    pub fn hold(&self) {
        self.state.holding.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.state.holding.store(false, Ordering::SeqCst);
    }

    /// Whether the server's bytes stop here (for connections open now and new ones).
    pub fn swallow(&self, swallowing: bool) {
        self.state.swallowing.store(swallowing, Ordering::SeqCst);
    }

    /// Sends new connections to `target`.
    pub fn retarget(&self, target: SocketAddr) {
        *self.state.target.lock().expect("lock") = Some(target);
    }

    /// Connections passed to a server so far.
    pub fn passed(&self) -> usize {
        self.state.passed.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { return };
        if state.holding.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let target = state.target.lock().expect("lock").expect("a target");
        let Ok(server) = TcpStream::connect(target).await else { continue };
        state.passed.fetch_add(1, Ordering::SeqCst);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let upstream = tokio::spawn(pump(client_read, server_write, None));
        let downstream = tokio::spawn(pump(server_read, client_write, Some(Arc::clone(&state))));
        state.pumps.lock().expect("lock").extend([upstream.abort_handle(), downstream.abort_handle()]);
    }
}

/// Copies `from` to `to`; with `state`, drops what arrives while swallowing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Option<Arc<State>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if state.as_ref().is_some_and(|state| state.swallowing.load(Ordering::SeqCst)) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
