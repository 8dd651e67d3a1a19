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

use super::address::PackedAddr;
use super::outbound::{len32, HeldFrame, Outbound};
use crate::auth::Profile;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use switchboard_protocol::CloseCode;

pub use super::transport_kind::{ConnId, Transport};

/// Requests one connection may have in flight (waiting for storage or a
/// read); more are answered `overloaded`.
pub const MAX_PENDING_REQUESTS: u16 = 4096;

/// Shared state of one open connection.
#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub user: Arc<str>,
    peer: PackedAddr,
    pub transport: Transport,
    /// The window (bits) of the permessage-deflate agreed with this
    /// WebSocket client; 0 when none was.
    deflate: u8,
    outbound: Mutex<Outbound>,
    /// Milliseconds since the hub's start when the peer was last heard
    /// from, truncated to 32 bits (compared with wrapping arithmetic, which
    /// is exact for gaps under 24 days) to keep `Conn` in a smaller
    /// allocation class.
    last_heard_ms: AtomicU32,
    /// Whether a ping went out since the peer was last heard from.
    pinged: AtomicBool,
    /// Whether an answer to one of the connection's own requests (a reply or
    /// replayed history) was queued since its task last took frames: it is
    /// written without waiting for the flush clock. Set under the queue's lock.
    reply_queued: AtomicBool,
    /// The close code requested (0: none). Written only under the queue's
    /// lock; outside the `Outbound` so that it stays in a 64-byte size.
    close: AtomicU16,
    /// Requests answered asynchronously and not answered yet (stores,
    /// replays, history reads); a half-closed raw TCP connection waits for
    /// them before it closes.
    pending: AtomicU16,
    /// How many frames the write that last emptied the queue took (see
    /// [`Conn::offer`]). Written under the queue's lock; kept here, in
    /// `Conn`'s padding, because a byte more in `Outbound` would grow it
    /// past 64 bytes and `Conn` past its allocation class.
    last_drain: AtomicU8,
    /// What the connection's token says (token mode; `None` in open mode).
    /// Swapped whole when the client sends a fresh token.
    profile: ArcSwapOption<Profile>,
    /// Bytes read from the client (from a stream's socket after its
    /// handshake: WebSocket frames, raw TCP lines; a UDP session's
    /// datagrams, its hello included) and written to it (the same way,
    /// framing included), for the connection table. Only the connection's own task (the
    /// UDP transport's, for sessions) adds to them.
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// The hub's clock (milliseconds) when the connection was registered.
    born_ms: u64,
    /// The socket's file descriptor (a UDP session: the shared socket's);
    /// -1 until the transport says.
    fd: AtomicI32,
}

/// Larger frames are written by reference ([`Conn::peek`]), not copied by
/// [`Conn::gather`]: past this the kernel's per-frame cost is small beside a copy.
pub const GATHER_FRAME_MAX: usize = 1024;

/// What [`Conn::gather`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gathered {
    /// The queue is empty.
    Nothing,
    /// This many frames were copied.
    Copied { frames: usize },
    /// The head is larger than [`GATHER_FRAME_MAX`] or the buffer: write it from the queue.
    HeadTooLarge,
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

/// Where an offered frame goes.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A live frame, tagged when it is a stored message.
    Live(Option<(u64, u64)>),
    /// History being replayed: ahead of held frames.
    Replayed,
    /// An answer to the connection's own request.
    Reply,
}

/// What the connection's task found when it looked at its queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Frames are waiting to be written.
    Frames,
    /// The queue is empty and the connection must close with this code.
    Close(CloseCode),
}

impl Conn {
    pub(crate) fn new(id: ConnId, user: Arc<str>, peer: SocketAddr, transport: Transport, now_ms: u64) -> Self {
        Conn {
            id,
            user,
            peer: PackedAddr::from(peer),
            transport,
            deflate: 0,
            outbound: Mutex::new(Outbound::default()),
            last_heard_ms: AtomicU32::new(now_ms as u32),
            pinged: AtomicBool::new(false),
            reply_queued: AtomicBool::new(false),
            close: AtomicU16::new(0),
            pending: AtomicU16::new(0),
            last_drain: AtomicU8::new(0),
            profile: ArcSwapOption::empty(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            born_ms: now_ms,
            fd: AtomicI32::new(-1),
        }
    }

    /// Records the file descriptor of the connection's socket (right after
    /// registering: transports register before they hand the socket over).
    pub(crate) fn set_fd(&self, fd: i32) {
        self.fd.store(fd, Ordering::Relaxed);
    }

    /// The same connection under a new name (a raw TCP client's first line):
    /// its file descriptor, age and byte counts carry over from `old`.
    pub(crate) fn continuing(mut self, old: &Conn) -> Self {
        self.fd = AtomicI32::new(old.fd.load(Ordering::Relaxed));
        self.born_ms = old.born_ms;
        self.bytes_in = AtomicU64::new(old.bytes_in());
        self.bytes_out = AtomicU64::new(old.bytes_out());
        self
    }

    /// The socket's file descriptor, if known.
    pub fn fd(&self) -> Option<i32> {
        let fd = self.fd.load(Ordering::Relaxed);
        (fd >= 0).then_some(fd)
    }

    /// The hub's clock (milliseconds) when the connection was registered.
    pub fn born_ms(&self) -> u64 {
        self.born_ms
    }

    /// Counts `bytes` read from the client.
    pub(crate) fn received(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes written to the client so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// What the connection's token says; `None` in open mode.
    pub fn profile(&self) -> Option<Arc<Profile>> {
        self.profile.load_full()
    }

    /// Installs the profile of a verified token (at the start, or a refresh).
    pub(crate) fn set_profile(&self, profile: Arc<Profile>) {
        self.profile.store(Some(profile));
    }

    /// The same connection, sending compressed frames with a window of
    /// `window_bits` (permessage-deflate was agreed).
    pub(crate) fn with_deflate(mut self, window_bits: u8) -> Self {
        self.deflate = window_bits;
        self
    }

    /// The window of the permessage-deflate agreed with this client, if any.
    pub fn deflate_window(&self) -> Option<u8> {
        (self.deflate != 0).then_some(self.deflate)
    }

    /// Counts a request that will be answered later; false (and not
    /// counted) when [`MAX_PENDING_REQUESTS`] are in flight, unless `always`.
    pub(crate) fn begin_request(&self, always: bool) -> bool {
        let limit = if always { u16::MAX } else { MAX_PENDING_REQUESTS };
        self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    /// A request counted by [`Conn::begin_request`] was answered. Wakes the
    /// task when it was the last, in case it waits to close.
    pub(crate) fn end_request(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Whether requests are still waiting for their answers.
    pub(crate) fn has_pending_requests(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::from(self.peer)
    }

    /// The close code requested, if any.
    fn requested_close(&self) -> Option<CloseCode> {
        match self.close.load(Ordering::Acquire) {
            0 => None,
            code => Some(CloseCode::from_u16(code)),
        }
    }

    /// Records a close request; call with the queue locked.
    fn set_close(&self, code: CloseCode) {
        self.close.store(code.as_u16(), Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Outbound> {
        // A panic while holding this lock cannot leave the queue half-updated
        // in a way that matters more than losing the connection, so recover.
        self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Releases the lock, then wakes the task if it was waiting. The waker
    /// is present only when the task saw an empty queue or waits for the
    /// flush clock, and it is taken here, so this wakes the task once per
    /// batch, not once per frame.
    fn unlock_and_wake(&self, mut outbound: MutexGuard<'_, Outbound>) {
        let waker = outbound.waker.take();
        // A replay waiting for room stops once the connection is closing.
        let closing = self.requested_close().is_some();
        let replays = match outbound.hold.as_mut() {
            Some(hold) if closing => std::mem::take(&mut hold.replay_wakers),
            _ => Vec::new(),
        };
        drop(outbound);
        for waker in waker.into_iter().chain(replays) {
            waker.wake();
        }
    }

    /// Queues `frame` unless that would pass `limit` bytes.
    pub fn enqueue(&self, frame: Bytes, limit: usize) -> Enqueued {
        self.offer(frame, limit, Route::Live(None))
    }

    /// Queues an answer to one of this connection's requests (an ack, a
    /// reply, an error): like [`Conn::enqueue`], but written without
    /// waiting for the flush clock.
    pub fn enqueue_reply(&self, frame: Bytes, limit: usize) -> Enqueued {
        self.offer(frame, limit, Route::Reply)
    }

    /// Before the task waits for the flush clock with frames queued: returns
    /// false if an answer is queued (write now), else keeps `waker` so that
    /// an answer queued during the wait wakes the task at once.
    pub(crate) fn wait_unless_reply(&self, waker: &Waker) -> bool {
        let mut outbound = self.lock();
        if self.reply_queued.load(Ordering::Relaxed) {
            return false;
        }
        outbound.keep_waker(waker);
        true
    }

    /// Queues the frame of stored message `(log, seq)`; while a replay runs
    /// it is held, and dropped if the replay already sent it.
    pub fn enqueue_stored(&self, frame: Bytes, limit: usize, log: u64, seq: u64) -> Enqueued {
        self.offer(frame, limit, Route::Live(Some((log, seq))))
    }

    /// Queues a replayed frame ahead of anything held; like an answer, it does not wait for the flush clock.
    pub(crate) fn enqueue_replayed(&self, frame: Bytes, limit: usize) -> Enqueued {
        self.offer(frame, limit, Route::Replayed)
    }

    fn offer(&self, frame: Bytes, limit: usize, route: Route) -> Enqueued {
        let mut outbound = self.lock();
        if self.requested_close().is_some() {
            return Enqueued::Closed;
        }
        if outbound.bytes as usize + frame.len() > limit {
            self.set_close(CloseCode::SlowConsumer);
            let dropped = outbound.discard() + 1;
            self.unlock_and_wake(outbound);
            return Enqueued::Overflow { dropped };
        }
        let state = &mut *outbound;
        // While a replay runs, everything but the replay itself is held.
        if let (Route::Live(_) | Route::Reply, Some(hold)) = (route, state.hold.as_mut()) {
            let tag = if let Route::Live(tag) = route { tag } else { None };
            hold.bytes = hold.bytes.saturating_add(len32(&frame));
            state.bytes = state.bytes.saturating_add(len32(&frame));
            hold.frames.push_back(HeldFrame { frame, tag });
            return Enqueued::Queued;
        }
        let was_empty = state.frames.is_empty();
        if state.frames.capacity() == 0 {
            // Room for as many frames as the last write that emptied the
            // queue took: a busy connection's queue is allocated once per
            // write, not grown from four slots by doubling.
            state.frames.reserve_exact(usize::from(self.last_drain.load(Ordering::Relaxed)).max(4));
        }
        state.push(frame);
        let reply = matches!(route, Route::Reply | Route::Replayed);
        if reply {
            self.reply_queued.store(true, Ordering::Relaxed);
        }
        // A task that already knows frames wait is woken again only for an
        // answer: it may be waiting for the flush clock (see `wait_unless_reply`).
        if was_empty || reply {
            self.unlock_and_wake(outbound);
        }
        Enqueued::Queued
    }

    /// Starts holding live frames back: a replay is about to be queued.
    pub(crate) fn begin_replay(&self) {
        self.lock().hold.get_or_insert_with(Box::default).replays += 1;
    }

    /// Ends a replay that sent `log`'s messages through `through`: held
    /// copies of those are dropped, and when no other replay runs the rest
    /// join the queue. Returns how many held frames were discarded because
    /// the connection is closing.
    pub(crate) fn end_replay(&self, log: u64, through: u64) -> usize {
        let mut outbound = self.lock();
        let closing = self.requested_close().is_some();
        let Some(hold) = outbound.hold.as_mut() else { return 0 };
        let before = hold.bytes;
        hold.frames.retain(|held| !held.tag.is_some_and(|(held_log, seq)| held_log == log && seq <= through));
        hold.bytes = hold.frames.iter().map(|held| len32(&held.frame)).sum();
        let released = before - hold.bytes;
        hold.replays -= 1;
        let done = hold.replays == 0;
        outbound.bytes -= released;
        if !done {
            return 0;
        }
        let Some(hold) = outbound.hold.take() else { return 0 };
        outbound.bytes -= hold.bytes;
        if closing {
            // The close frame may already be queued: nothing may follow it.
            return hold.frames.len();
        }
        // What was held finishes the replay's answer (and may hold an ack):
        // like the replay, it does not wait for the flush clock.
        if !hold.frames.is_empty() {
            self.reply_queued.store(true, Ordering::Relaxed);
        }
        for held in hold.frames {
            outbound.push(held.frame);
        }
        self.unlock_and_wake(outbound);
        0
    }

    /// Ready once fewer than `below` bytes wait to be written (or the
    /// connection is closing): how a replay paces itself.
    pub(crate) fn poll_replay_room(&self, cx: &mut Context<'_>, below: usize) -> Poll<()> {
        let mut outbound = self.lock();
        if self.requested_close().is_some() || (outbound.queued_bytes() as usize) < below {
            return Poll::Ready(());
        }
        if let Some(hold) = outbound.hold.as_mut() {
            if !hold.replay_wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
                hold.replay_wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// Asks the connection to close with `code` once already-queued frames
    /// are sent (or at once, dropping them, when `discard_queue`). The first
    /// close request wins. Returns how many queued frames were dropped.
    pub fn close(&self, code: CloseCode, discard_queue: bool) -> usize {
        let mut outbound = self.lock();
        if self.requested_close().is_some() {
            return 0;
        }
        self.set_close(code);
        let dropped = if discard_queue { outbound.discard() } else { 0 };
        self.unlock_and_wake(outbound);
        dropped
    }

    /// Queues the closing frame after everything else, bound or not: it is
    /// the last frame this connection will send.
    pub(crate) fn push_final(&self, frame: Bytes) {
        self.lock().push(frame);
    }

    /// Moves the queue, with how much of its head is already written, to
    /// `other`, a new connection replacing this one (a rename), ahead of
    /// anything `other` already holds (which was never written).
    pub(crate) fn move_queue_to(&self, other: &Conn) {
        let mut old = self.lock();
        let mut target = other.lock();
        let mut frames = std::mem::take(&mut old.frames);
        frames.append(&mut target.frames);
        target.frames = frames;
        target.bytes = target.bytes.saturating_add(std::mem::take(&mut old.bytes));
        target.head_written = std::mem::take(&mut old.head_written);
    }

    /// Whether a close has been requested.
    pub fn is_closing(&self) -> bool {
        self.requested_close().is_some()
    }

    /// The close code requested, if any.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.requested_close()
    }

    /// Reports whether frames wait or a close is due, or registers the
    /// task's waker when there is nothing to do.
    pub(crate) fn poll_outgoing(&self, cx: &mut Context<'_>) -> Poll<Outgoing> {
        let mut outbound = self.lock();
        if !outbound.frames.is_empty() {
            return Poll::Ready(Outgoing::Frames);
        }
        if let Some(code) = self.requested_close() {
            return Poll::Ready(Outgoing::Close(code));
        }
        outbound.keep_waker(cx.waker());
        Poll::Pending
    }

    /// Fills `out` with handles to the front frames (the head without its
    /// written prefix) and returns how many. Cheap: `Bytes` clones.
    pub(crate) fn peek(&self, out: &mut [Bytes]) -> usize {
        let outbound = self.lock();
        self.reply_queued.store(false, Ordering::Relaxed);
        let mut count = 0;
        for (slot, frame) in out.iter_mut().zip(outbound.frames.iter()) {
            *slot = if count == 0 { frame.slice(outbound.head_written as usize..) } else { frame.clone() };
            count += 1;
        }
        count
    }

    /// Copies the front frames (the head without its written prefix) into
    /// `out`, which is cleared first: at most `max_frames`, each at most
    /// [`GATHER_FRAME_MAX`] bytes, while they fit in `out`'s capacity. One
    /// contiguous buffer costs the kernel one copy per write instead of one
    /// per frame, and takes no `Bytes` handle.
    pub(crate) fn gather(&self, out: &mut Vec<u8>, max_frames: usize) -> Gathered {
        out.clear();
        let outbound = self.lock();
        self.reply_queued.store(false, Ordering::Relaxed);
        let mut frames = 0;
        for frame in outbound.frames.iter().take(max_frames) {
            let part = if frames == 0 { &frame[outbound.head_written as usize..] } else { &frame[..] };
            if part.len() > GATHER_FRAME_MAX || out.len() + part.len() > out.capacity() {
                break;
            }
            out.extend_from_slice(part);
            frames += 1;
        }
        match (frames, outbound.frames.is_empty()) {
            (0, true) => Gathered::Nothing,
            (0, false) => Gathered::HeadTooLarge,
            (frames, _) => Gathered::Copied { frames },
        }
    }

    /// Hands the front frames (the head without its written prefix) to
    /// `visit` under the queue's lock, until it returns false or the queue
    /// ends; returns how many it saw and their bytes. For a writer that
    /// transforms frames before writing them (Server-Sent Events), which
    /// then consumes every frame it saw, whole.
    pub(crate) fn visit(&self, mut visit: impl FnMut(&[u8]) -> bool) -> (usize, usize) {
        let outbound = self.lock();
        self.reply_queued.store(false, Ordering::Relaxed);
        let (mut frames, mut bytes) = (0, 0);
        for frame in &outbound.frames {
            let part = if frames == 0 { &frame[outbound.head_written as usize..] } else { &frame[..] };
            frames += 1;
            bytes += part.len();
            if !visit(part) {
                break;
            }
        }
        (frames, bytes)
    }

    /// Removes `written` bytes from the front of the queue.
    pub(crate) fn consume(&self, written: usize) {
        self.bytes_out.fetch_add(written as u64, Ordering::Relaxed);
        let mut outbound = self.lock();
        if let Some(taken) = outbound.consume(u32::try_from(written).unwrap_or(u32::MAX)) {
            self.last_drain.store(u8::try_from(taken).unwrap_or(u8::MAX), Ordering::Relaxed);
        }
        // Replays paced on the queue look again.
        let replays = outbound.hold.as_mut().map(|hold| std::mem::take(&mut hold.replay_wakers)).unwrap_or_default();
        drop(outbound);
        replays.into_iter().for_each(Waker::wake);
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_drained(&self) -> bool {
        self.lock().frames.is_empty()
    }

    /// Bytes waiting to be written, for the connection table and tests.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes as usize
    }

    pub(crate) fn heard(&self, now_ms: u64) {
        self.last_heard_ms.store(now_ms as u32, Ordering::Relaxed);
        self.pinged.store(false, Ordering::Relaxed);
    }

    /// When the peer was last heard from: the hub's clock in milliseconds,
    /// truncated to 32 bits. A command's rate is charged at this time, the
    /// read that brought it, so that charging reads no clock of its own.
    pub(crate) fn heard_at_ms(&self) -> u64 {
        u64::from(self.last_heard_ms.load(Ordering::Relaxed))
    }

    /// Milliseconds since the peer was last heard from.
    /// A read on another thread may record a time after the caller's
    /// `now_ms` (the keepalive sweep reads the clock once, then walks every
    /// connection): that is no silence at all, not a wrapped-around 49 days.
    pub(crate) fn silent_for_ms(&self, now_ms: u64) -> u64 {
        let silent = (now_ms as u32).wrapping_sub(self.last_heard_ms.load(Ordering::Relaxed));
        if silent > u32::MAX / 2 {
            0
        } else {
            u64::from(silent)
        }
    }

    /// Whether a ping is due: silent for `interval_ms` and not pinged since
    /// it was last heard from. Marks the ping as sent.
    pub(crate) fn ping_due(&self, now_ms: u64, interval_ms: u64) -> bool {
        self.silent_for_ms(now_ms) >= interval_ms && !self.pinged.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
