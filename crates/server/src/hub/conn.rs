//! One connection's shared state: identity, liveness and the bounded
//! outbound queue that publishers push into and the connection's task drains.
//!
//! The queue holds `Bytes` that are usually shared with every other
//! subscriber of the same message. It is bounded in bytes: a push that would
//! go over the bound drops the queue and asks the connection to close with
//! 4008 (slow consumer) instead of growing or slowing the publisher.
//!
//! One `std::sync::Mutex` guards the queue. It is held only to push or to
//! take frames, never across an await or a system call, so contention is a
//! few nanoseconds and a blocking mutex is cheaper than an async one.

use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use switchboard_protocol::CloseCode;

/// Server-wide unique connection number, shown to clients as `conn`.
pub type ConnId = u64;

/// The transport a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws`: the JSON protocol over WebSocket.
    WebSocket,
    /// `/ws/echo`: every message echoed back, no protocol.
    Echo,
}

impl Transport {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Echo => "echo",
        }
    }
}

/// Shared state of one open connection.
#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub user: Arc<str>,
    pub peer: SocketAddr,
    pub transport: Transport,
    outbound: Mutex<Outbound>,
    /// Milliseconds since the hub's start when the peer was last heard from.
    last_heard_ms: AtomicU64,
    /// Milliseconds since the hub's start when we last pinged the peer.
    last_ping_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes queued here plus bytes taken by the task but not yet written.
    bytes: usize,
    waker: Option<Waker>,
    close: Option<CloseCode>,
}

/// What happened to a frame offered to [`Conn::enqueue`].
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// The frame would have passed the byte bound. The queue was dropped
    /// (`dropped` frames including this one) and the connection is closing.
    Overflow {
        dropped: usize,
    },
    /// The connection is already closing; the frame was not queued.
    Closed,
}

/// What the connection's task found when it looked at its queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Frames were moved into the caller's batch.
    Frames,
    /// The queue is empty and the connection must close with this code.
    Close(CloseCode),
}

impl Conn {
    pub(crate) fn new(id: ConnId, user: Arc<str>, peer: SocketAddr, transport: Transport, now_ms: u64) -> Self {
        Conn {
            id,
            user,
            peer,
            transport,
            outbound: Mutex::new(Outbound::default()),
            last_heard_ms: AtomicU64::new(now_ms),
            last_ping_ms: AtomicU64::new(now_ms),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Outbound> {
        // A panic while holding this lock cannot leave the queue half-updated
        // in a way that matters more than losing the connection, so recover.
        self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `frame` unless that would pass `limit` bytes.
    pub fn enqueue(&self, frame: Bytes, limit: usize) -> Enqueued {
        let waker = {
            let mut outbound = self.lock();
            if outbound.close.is_some() {
                return Enqueued::Closed;
            }
            if outbound.bytes + frame.len() > limit {
                let dropped = outbound.frames.len() + 1;
                outbound.bytes -= outbound.frames.iter().map(Bytes::len).sum::<usize>();
                outbound.frames = VecDeque::new();
                outbound.close = Some(CloseCode::SlowConsumer);
                let waker = outbound.waker.take();
                drop(outbound);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Enqueued::Overflow { dropped };
            }
            outbound.bytes += frame.len();
            outbound.frames.push_back(frame);
            outbound.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Enqueued::Queued
    }

    /// Asks the connection to close with `code` once already-queued frames
    /// are sent (or at once, dropping them, when `discard_queue`). The first
    /// close request wins. Returns how many queued frames were dropped.
    pub fn close(&self, code: CloseCode, discard_queue: bool) -> usize {
        let (waker, dropped) = {
            let mut outbound = self.lock();
            if outbound.close.is_some() {
                return 0;
            }
            outbound.close = Some(code);
            let mut dropped = 0;
            if discard_queue {
                dropped = outbound.frames.len();
                outbound.bytes -= outbound.frames.iter().map(Bytes::len).sum::<usize>();
                outbound.frames = VecDeque::new();
            }
            (outbound.waker.take(), dropped)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        dropped
    }

    /// Whether a close has been requested.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Moves queued frames into `batch` (appending), or registers the task's
    /// waker when there is nothing to do.
    pub(crate) fn poll_outgoing(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Bytes>) -> Poll<Outgoing> {
        let mut outbound = self.lock();
        if !outbound.frames.is_empty() {
            if batch.is_empty() {
                std::mem::swap(batch, &mut outbound.frames);
            } else {
                batch.append(&mut outbound.frames);
            }
            return Poll::Ready(Outgoing::Frames);
        }
        if let Some(code) = outbound.close {
            return Poll::Ready(Outgoing::Close(code));
        }
        match &outbound.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => outbound.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Records that `written` bytes of taken frames reached the socket.
    pub(crate) fn release(&self, written: usize) {
        let mut outbound = self.lock();
        outbound.bytes = outbound.bytes.saturating_sub(written);
    }

    /// Bytes waiting to be written, for the connection table and tests.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub(crate) fn heard(&self, now_ms: u64) {
        self.last_heard_ms.store(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn last_heard_ms(&self) -> u64 {
        self.last_heard_ms.load(Ordering::Relaxed)
    }

    /// Whether a ping is due: silent for `interval_ms` and not pinged since.
    pub(crate) fn ping_due(&self, now_ms: u64, interval_ms: u64) -> bool {
        let last_ping = self.last_ping_ms.load(Ordering::Relaxed);
        let quiet_since = self.last_heard_ms().max(last_ping);
        if now_ms.saturating_sub(quiet_since) < interval_ms {
            return false;
        }
        self.last_ping_ms.store(now_ms, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn conn() -> Conn {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        Conn::new(1, Arc::from("alice"), peer, Transport::WebSocket, 0)
    }

    #[test]
    fn overflow_drops_the_queue_and_requests_slow_consumer_close() {
        let conn = conn();
        assert_eq!(conn.enqueue(Bytes::from_static(&[0; 6]), 10), Enqueued::Queued);
        assert_eq!(conn.enqueue(Bytes::from_static(&[0; 4]), 10), Enqueued::Queued);
        assert_eq!(conn.enqueue(Bytes::from_static(&[0; 1]), 10), Enqueued::Overflow { dropped: 3 });
        assert_eq!(conn.queued_bytes(), 0);
        assert_eq!(conn.enqueue(Bytes::from_static(&[0; 1]), 10), Enqueued::Closed);
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        let polled = conn.poll_outgoing(&mut cx, &mut batch);
        assert_eq!(polled, Poll::Ready(Outgoing::Close(CloseCode::SlowConsumer)));
    }

    #[test]
    fn bytes_stay_counted_until_written() {
        let conn = conn();
        conn.enqueue(Bytes::from_static(&[0; 8]), 10);
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        assert_eq!(conn.poll_outgoing(&mut cx, &mut batch), Poll::Ready(Outgoing::Frames));
        assert_eq!(conn.enqueue(Bytes::from_static(&[0; 4]), 10), Enqueued::Overflow { dropped: 1 });
        conn.release(8);
        assert_eq!(conn.queued_bytes(), 0);
    }

    #[test]
    fn graceful_close_keeps_queued_frames() {
        let conn = conn();
        conn.enqueue(Bytes::from_static(b"last words"), 100);
        assert_eq!(conn.close(CloseCode::GoingAway, false), 0);
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        assert_eq!(conn.poll_outgoing(&mut cx, &mut batch), Poll::Ready(Outgoing::Frames));
        assert_eq!(batch.len(), 1);
        let polled = conn.poll_outgoing(&mut cx, &mut batch);
        assert_eq!(polled, Poll::Ready(Outgoing::Close(CloseCode::GoingAway)));
    }
}
