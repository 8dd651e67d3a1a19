//! The UDP sending side: one task sends for every UDP session, batching
//! datagrams to many addresses into one `sendmmsg` system call.
//!
//! A session's connection queue wakes a per-connection waker that puts the
//! connection on a shared ready list and wakes the sender. The sender takes
//! handles to queued frames from the ready connections (at most
//! [`PER_CONN`] from each per round, so one member cannot hog a batch),
//! sends up to [`BATCH`] of them at once, and consumes what was sent.
//! Measured before this existed: one `send_to` per datagram per member was
//! what capped the relay (docs/BENCHMARKS.md).

use crate::hub::conn::{Conn, ConnId, Outgoing};
use crate::hub::Hub;
use bytes::Bytes;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use switchboard_protocol::event::{self, Encoded, Framing};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Datagrams per `sendmmsg`.
const BATCH: usize = 64;
/// Frames taken from one connection per round.
const PER_CONN: usize = 16;

/// Connections with something to send, and the sender task's waker.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    ready: Mutex<Vec<Arc<Conn>>>,
    sender: Mutex<Option<Waker>>,
}

use crate::util::lock;

impl Outbox {
    /// Marks `conn` as having something to send.
    pub fn ready(&self, conn: Arc<Conn>) {
        lock(&self.ready).push(conn);
        if let Some(waker) = lock(&self.sender).take() {
            waker.wake();
        }
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Vec<Arc<Conn>>> {
        let mut ready = lock(&self.ready);
        if ready.is_empty() {
            *lock(&self.sender) = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(std::mem::take(&mut *ready))
    }
}

/// What a connection's queue wakes: it puts the connection on the ready
/// list. Holds the connection weakly: the queue holds this waker.
struct ConnWake {
    conn: Weak<Conn>,
    outbox: Arc<Outbox>,
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        if let Some(conn) = self.conn.upgrade() {
            self.outbox.ready(conn);
        }
    }
}

/// One datagram of the batch being built.
struct Datagram {
    frame: Bytes,
    to: SockaddrStorage,
    peer: std::net::SocketAddr,
    conn: usize,
}

/// Sends for every UDP session until `stop` and every session has closed.
pub(crate) async fn send_loop(socket: Arc<UdpSocket>, outbox: Arc<Outbox>, hub: Arc<Hub>, stop: CancellationToken) {
    let mut wakers: HashMap<ConnId, Waker> = HashMap::new();
    loop {
        let ready = tokio::select! {
            ready = poll_fn(|cx| outbox.poll_take(cx)) => ready,
            () = stop.cancelled(), if wakers.is_empty() => return,
        };
        let mut pending = ready;
        while !pending.is_empty() {
            let (conns, batch) = gather(&mut pending, &mut wakers, &outbox, &socket, &hub);
            let sent = send_batch(&socket, &batch).await;
            account(&conns, &batch, sent, &hub);
            // Connections whose frames did not all fit go round again.
            pending.extend(conns);
        }
    }
}

/// Takes up to [`BATCH`] datagrams from the ready connections (each once).
/// Returns the connections that contributed and the datagrams.
fn gather(
    pending: &mut Vec<Arc<Conn>>,
    wakers: &mut HashMap<ConnId, Waker>,
    outbox: &Arc<Outbox>,
    socket: &UdpSocket,
    hub: &Hub,
) -> (Vec<Arc<Conn>>, Vec<Datagram>) {
    let mut seen = HashSet::new();
    let (mut conns, mut batch) = (Vec::new(), Vec::with_capacity(BATCH));
    let mut frames: [Bytes; PER_CONN] = std::array::from_fn(|_| Bytes::new());
    while batch.len() < BATCH {
        let Some(conn) = pending.pop() else { break };
        if !seen.insert(conn.id) {
            continue;
        }
        let waker = wakers.entry(conn.id).or_insert_with(|| {
            Waker::from(Arc::new(ConnWake { conn: Arc::downgrade(&conn), outbox: Arc::clone(outbox) }))
        });
        match conn.poll_outgoing(&mut Context::from_waker(waker)) {
            Poll::Pending => {}
            Poll::Ready(Outgoing::Close(code)) => {
                let reason = hub.close_reason(&conn, code);
                let close = Encoded::new(&event::Close::with_reason(code, &reason));
                let _ = socket.try_send_to(&close.framed(Framing::Datagram), conn.peer());
                wakers.remove(&conn.id);
            }
            Poll::Ready(Outgoing::Frames) => {
                let (to, peer, index) = (SockaddrStorage::from(conn.peer()), conn.peer(), conns.len());
                let room = PER_CONN.min(BATCH - batch.len());
                let count = conn.peek(&mut frames[..room]);
                batch.extend(frames[..count].iter().map(|frame| Datagram {
                    frame: frame.clone(),
                    to,
                    peer,
                    conn: index,
                }));
                conns.push(conn);
            }
        }
    }
    pending.retain(|conn| !seen.contains(&conn.id));
    (conns, batch)
}

/// Sends the batch; returns how many datagrams the kernel took (a full
/// socket buffer is waited out).
async fn send_batch(socket: &UdpSocket, batch: &[Datagram]) -> usize {
    if batch.is_empty() {
        return 0;
    }
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|datagram| [IoSlice::new(&datagram.frame)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = batch.iter().map(|datagram| Some(datagram.to)).collect();
    let no_control: [ControlMessage<'_>; 0] = [];
    loop {
        let attempt = socket.try_io(Interest::WRITABLE, || {
            // Built per call: it holds raw pointers, so it cannot live
            // across an await in a task that may move between threads.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
            sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addresses, no_control, MsgFlags::MSG_DONTWAIT)
                .map(Iterator::count)
                .map_err(io::Error::from)
        });
        match attempt {
            Ok(sent) => return sent,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return 0;
                }
            }
            Err(error) => {
                // One bad destination fails the call: fall back to one by one.
                tracing::debug!(%error, "sendmmsg failed; sending the batch one datagram at a time");
                for datagram in batch {
                    let _ = socket.try_send_to(&datagram.frame, datagram.peer);
                }
                return batch.len();
            }
        }
    }
}

/// Consumes what was sent from each connection's queue.
fn account(conns: &[Arc<Conn>], batch: &[Datagram], sent: usize, hub: &Hub) {
    let mut bytes = vec![0usize; conns.len()];
    for datagram in &batch[..sent] {
        bytes[datagram.conn] += datagram.frame.len();
    }
    for (conn, bytes) in conns.iter().zip(bytes) {
        conn.consume(bytes);
        hub.metrics.bytes_written.inc_by(bytes as u64);
    }
}
