//! A TCP proxy in front of a server that can lose the server's replies and
//! then cut the connections: an ack lost with its connection, the case a
//! client resends with its idempotency key. It reads what the client sends
//! (raw TCP JSON lines are plain text; WebSocket frames from clients are
//! masked), to start losing replies exactly at a command.

#![allow(dead_code)] // Only some test binaries put a proxy in front.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards 127.0.0.1:`address.port()` to `upstream`.
pub struct Proxy {
    pub address: SocketAddr,
    mute: Arc<Mute>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let address = listener.local_addr().expect("address");
        let mute = Arc::new(Mute::default());
        let links = Arc::new(Mutex::new(Vec::new()));
        let accepting = tokio::spawn(accept(listener, upstream, Arc::clone(&mute), Arc::clone(&links)));
        Proxy { address, mute, links, accepting }
    }

    /// From the client's next bytes that contain `marker` on, the
    /// server's bytes are read and thrown away.
    pub fn lose_replies_from(&self, marker: &'static [u8]) {
        *self.mute.marker.lock().expect("marker") = Some(marker);
    }

    /// Closes every connection open now, then forwards replies again (for
    /// the connections that come next).
    pub async fn cut(&self) {
        let links: Vec<JoinHandle<()>> = std::mem::take(&mut *self.links.lock().expect("links"));
        for link in links {
            link.abort();
            let _ = link.await;
        }
        *self.mute.marker.lock().expect("marker") = None;
        self.mute.on.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        for link in self.links.lock().map(|mut links| std::mem::take(&mut *links)).unwrap_or_default() {
            link.abort();
        }
    }
}

/// When replies are lost.
#[derive(Default)]
struct Mute {
    /// What starts it, in the client's bytes.
    marker: Mutex<Option<&'static [u8]>>,
    on: AtomicBool,
}

impl Mute {
    /// Notes the client's `bytes` (before they are forwarded).
    fn client_sent(&self, bytes: &[u8]) {
        let marker = *self.marker.lock().expect("marker");
        if marker.is_some_and(|marker| bytes.windows(marker.len()).any(|window| window == marker)) {
            self.on.store(true, Ordering::SeqCst);
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mute: Arc<Mute>, links: Arc<Mutex<Vec<JoinHandle<()>>>>) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = TcpStream::connect(upstream).await else { continue };
        let link = tokio::spawn(forward(client, server, Arc::clone(&mute)));
        links.lock().expect("links").push(link);
    }
}

/// Both directions until either side closes; the server's bytes are
/// dropped while `mute` is on.
async fn forward(client: TcpStream, server: TcpStream, mute: Arc<Mute>) {
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    let requests = pump(client_in, server_out, |bytes| {
        mute.client_sent(bytes);
        true
    });
    let replies = pump(server_in, client_out, |_| !mute.on.load(Ordering::SeqCst));
    let _ = tokio::select! {
        done = requests => done,
        done = replies => done,
    };
}

/// Copies `from` to `to` until `from` ends, each read passed on if `pass`
/// says so.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, pass: impl Fn(&[u8]) -> bool) -> std::io::Result<()> {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        if pass(&buffer[..read]) {
            to.write_all(&buffer[..read]).await?;
        }
    }
}
