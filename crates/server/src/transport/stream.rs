//! The stream connection driver shared by WebSocket and raw TCP: one task
//! per connection that waits for socket readiness, queued frames or a codec
//! timer; reads into the thread's shared buffer and hands the bytes to the
//! codec; and writes everything queued in one vectored write.
//!
//! Memory discipline, which is what lets one server hold many idle sockets:
//! - reads go into a per-thread buffer; a codec keeps only the bytes of an
//!   incomplete frame or line, and only until it completes;
//! - small frames are gathered from the connection's queue into the
//!   thread's write buffer for one write, larger ones are written straight
//!   from the queue (shared `Bytes`), so there is no per-connection write
//!   buffer;
//! - no per-connection timer while idle: keepalive is a hub-wide sweep, and
//!   timers exist only while a connection is closing or a codec waits;
//! - the task's future is [`Connection`] and nothing else (see [`Connection::run`]).
//!
//! The driver runs over any [`Socket`]: a plain `TcpStream` (the calls it
//! always made) or TLS (`super::tls_socket`), chosen by the type parameter,
//! so the plain path carries no TLS branch.

use super::socket::Socket;
use super::{with_read_buffer, with_write_buffer, READ_BUFFER_SIZE};
use crate::hub::conn::{Gathered, Outgoing};
use crate::session::Session;
use bytes::Bytes;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Reads per wake-up before yielding to other connections.
const READS_PER_WAKE: usize = 4;
/// Read/write rounds in one poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 16;
/// Frames per vectored write.
const MAX_IOVECS: usize = 64;

/// What differs between stream transports: how bytes become commands, and
/// how a close is announced.
pub(crate) trait Codec: Send + 'static {
    /// Handles bytes read from the socket. `Err(code)` closes the connection
    /// with `code` after what is already queued.
    fn ingest(&mut self, data: &[u8], session: &mut Session) -> Result<(), CloseCode>;
    /// The last frame sent, announcing a close with `code` and `reason`
    /// (the code's own, or an operator's for a kick).
    fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes;
    /// Drops partial input once the connection starts closing.
    fn reset(&mut self);
    /// Input that arrives once the connection is closing: only the peer's
    /// half of a close handshake still matters (see [`Codec::peer_closed`]);
    /// the rest is discarded.
    fn ingest_closing(&mut self, _data: &[u8]) {}
    /// Whether the peer has closed its side (a WebSocket close frame). Once
    /// ours is sent too, the handshake is complete and the connection ends
    /// without waiting for the peer's end of stream (RFC 6455 section 5.5.1).
    fn peer_closed(&self) -> bool {
        false
    }
    /// A codec's own deadline (a partial line's pause); ready when it fired.
    fn poll_timer(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    /// Called when [`Codec::poll_timer`] fired.
    fn on_timer(&mut self, _session: &mut Session) -> Result<(), CloseCode> {
        Ok(())
    }
    /// Whether the peer's end of input (a TCP half-close) leaves the
    /// connection open until every request is answered. Without it, end of
    /// input ends the connection at once.
    fn drains_on_end_of_input(&self) -> bool {
        false
    }
    /// Called once when the connection ends, before it is unregistered.
    fn on_end(&mut self, _session: &Session) {}
    /// One write from the front of the queue: how many frames it offered
    /// and how many queued bytes the socket took (`None`: nothing is
    /// queued). Every codec but Server-Sent Events writes the frames as
    /// they are queued ([`write_frames`]).
    #[inline(always)]
    fn write_some<S: Socket>(&mut self, session: &Session, stream: &mut S) -> Option<(usize, io::Result<usize>)> {
        write_frames(session, stream)
    }
    /// Sends what was taken but not sent yet (TLS records; nothing for a
    /// plain socket). `WouldBlock` until all of it is out.
    #[inline(always)]
    fn flush<S: Socket>(&mut self, _session: &Session, stream: &mut S) -> io::Result<()> {
        stream.flush()
    }
    /// Ends our direction once everything taken is sent.
    #[inline(always)]
    fn shutdown_write<S: Socket>(&mut self, _session: &Session, stream: &mut S) -> io::Result<()> {
        stream.shutdown_write()
    }
}

#[derive(Debug)]
enum State {
    Open,
    /// The peer sent all it will send; answers still due are awaited (at
    /// most until the deadline), then the close follows.
    Draining {
        deadline: Pin<Box<Sleep>>,
    },
    /// Our close frame is queued; `sent` once it and everything before it
    /// is written and our write side is shut. Ends when the peer's close has
    /// arrived too, at EOF, or at the deadline.
    Closing {
        deadline: Pin<Box<Sleep>>,
        sent: bool,
    },
    Finished,
}

#[derive(Debug, Default)]
struct Events {
    readable: bool,
    writable: bool,
    outgoing: Option<Outgoing>,
    deadline: bool,
    timer: bool,
    /// Draining, and nothing is queued or pending any more.
    drained: bool,
}

impl State {
    /// Our close frame and everything before it are written and our write
    /// side is shut.
    fn mark_sent(&mut self) {
        if let State::Closing { sent, .. } = self {
            *sent = true;
        }
    }
}

enum Step {
    Continue,
    Done,
}

/// One stream connection after its transport's handshake.
#[derive(Debug)]
pub(crate) struct Connection<C, S = TcpStream> {
    stream: S,
    session: Session,
    codec: C,
    state: State,
    write_blocked: bool,
    close_code: Option<CloseCode>,
    /// The flush clock's window of the last write (see `hub::flush`).
    wrote_in: u32,
    /// Windows between fan-out writes: 1, more while traffic is heavy.
    span: u8,
}

impl<C: Codec, S: Socket> Connection<C, S> {
    pub fn new(stream: S, session: Session, codec: C) -> Self {
        Connection {
            stream,
            session,
            codec,
            state: State::Open,
            write_blocked: false,
            close_code: None,
            wrote_in: u32::MAX,
            span: 1,
        }
    }

    /// The future that drives the connection until it is closed. `early`
    /// holds bytes read before the connection was handed over (behind a
    /// WebSocket upgrade request, or decrypted during a TLS handshake); it
    /// is consumed here, not kept.
    ///
    /// A hand-written poll loop rather than an `async fn`: an async fn keeps
    /// a second copy of its arguments in its state, which would double what
    /// every idle connection costs. For the same reason the connection's
    /// tracing span is entered on each wake-up instead of being stored.
    pub fn run(mut self, early: Bytes) -> impl Future<Output = ()> + Send {
        if !early.is_empty() {
            self.session.conn().received(early.len());
            self.ingest(&early);
        }
        drop(early);
        poll_fn(move |cx| {
            let conn = self.session.conn();
            let span = tracing::debug_span!("conn", id = conn.id, peer = %conn.peer(), user = %conn.user);
            let _entered = span.entered();
            self.poll_run(cx)
        })
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            if let State::Finished = self.state {
                return Poll::Ready(());
            }
            let Poll::Ready(events) = self.poll_events(cx) else {
                return Poll::Pending;
            };
            if let Step::Done = self.on_events(events) {
                self.finish();
                return Poll::Ready(());
            }
        }
        // Still busy: let other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<Events> {
        let draining = matches!(self.state, State::Draining { .. });
        // At end of input the socket stays readable: stop asking.
        let mut events =
            Events { readable: !draining && self.stream.poll_read_ready(cx).is_ready(), ..Events::default() };
        if self.write_blocked {
            events.writable = self.stream.poll_write_ready(cx).is_ready();
        } else if !matches!(self.state, State::Closing { sent: true, .. }) {
            match self.session.conn().poll_outgoing(cx) {
                Poll::Ready(Outgoing::Frames) if !events.readable && self.coalesce(cx) => {}
                Poll::Ready(outgoing) => events.outgoing = Some(outgoing),
                // The waker is registered: the last answer will wake us.
                Poll::Pending => events.drained = draining && !self.session.conn().has_pending_requests(),
            }
        }
        match &mut self.state {
            State::Closing { deadline, .. } | State::Draining { deadline } => {
                events.deadline = deadline.as_mut().poll(cx).is_ready();
            }
            _ => events.timer = self.codec.poll_timer(cx).is_ready(),
        }
        let any = events.readable
            || events.writable
            || events.outgoing.is_some()
            || events.deadline
            || events.timer
            || events.drained;
        if any {
            Poll::Ready(events)
        } else {
            Poll::Pending
        }
    }

    /// Whether frames others queued for this connection wait for the flush
    /// clock, because it wrote less than its span of windows ago; if so the
    /// clock will wake the task. Only while open and not closing, and never
    /// when an answer to the connection's own request is queued.
    fn coalesce(&mut self, cx: &mut Context<'_>) -> bool {
        let clock = self.session.hub().flush_clock();
        let conn = self.session.conn();
        if !clock.enabled() || !matches!(self.state, State::Open) || conn.is_closing() {
            return false;
        }
        // Wrapping: a connection quiet for longer than the u32 of windows
        // may wait one span once, which is harmless.
        let wait =
            clock.window().wrapping_sub(self.wrote_in) < u32::from(self.span) && conn.wait_unless_reply(cx.waker());
        if wait {
            clock.park(cx.waker(), self.wrote_in.wrapping_add(u32::from(self.span)));
        }
        wait
    }

    fn on_events(&mut self, events: Events) -> Step {
        let draining = matches!(self.state, State::Draining { .. });
        if draining && (events.drained || events.deadline) {
            if events.deadline {
                tracing::debug!("answers still pending after the peer's end of input; closing anyway");
            }
            self.close(CloseCode::Normal);
        } else if events.deadline {
            tracing::debug!("close handshake timed out");
            return Step::Done;
        }
        if events.readable {
            match self.read_available() {
                Ok(true) => {}
                Ok(false) => return self.end_of_input(),
                Err(error) => {
                    tracing::debug!(%error, "read failed");
                    return Step::Done;
                }
            }
        }
        if events.timer && matches!(self.state, State::Open) {
            if let Err(code) = self.codec.on_timer(&mut self.session) {
                self.close(code);
            }
        }
        if events.writable {
            self.write_blocked = false;
        }
        if let Some(Outgoing::Close(code)) = events.outgoing {
            self.start_close(code);
        }
        self.write_queued()
    }

    /// Reads what the socket has. Returns `Ok(false)` at end of stream.
    fn read_available(&mut self) -> io::Result<bool> {
        for _ in 0..READS_PER_WAKE {
            let read = with_read_buffer(|buffer| {
                let count = self.stream.try_read(buffer)?;
                if count > 0 {
                    self.session.conn().heard(self.session.hub().now_ms());
                    self.session.conn().received(count);
                    self.ingest(&buffer[..count]);
                }
                Ok::<_, io::Error>(count)
            });
            match read {
                Ok(0) => return Ok(false),
                Ok(count) if count < READ_BUFFER_SIZE => return Ok(true),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// The peer will send nothing more: either wait for the answers still
    /// due (raw TCP) or end now.
    fn end_of_input(&mut self) -> Step {
        if !matches!(self.state, State::Open) || !self.codec.drains_on_end_of_input() {
            return Step::Done;
        }
        // A last line without its newline counts as a line.
        if let Err(code) = self.codec.on_timer(&mut self.session) {
            self.close(code);
            return Step::Continue;
        }
        let deadline = Box::pin(tokio::time::sleep(self.session.hub().limits().close_timeout));
        self.state = State::Draining { deadline };
        Step::Continue
    }

    /// Hands input to the codec while open; once closing, only to look for
    /// the peer's close.
    fn ingest(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Open) || self.session.conn().is_closing() {
            self.codec.ingest_closing(data);
            return;
        }
        if let Err(code) = self.codec.ingest(data, &mut self.session) {
            self.close(code);
        }
    }

    /// Closes with `code` after the answers already queued.
    fn close(&mut self, code: CloseCode) {
        self.session.conn().close(code, false);
        self.start_close(code);
    }

    /// Leaves the hub's rooms and queues our close frame after whatever is
    /// already queued.
    fn start_close(&mut self, code: CloseCode) {
        if !matches!(self.state, State::Open | State::Draining { .. }) {
            return;
        }
        self.session.end();
        self.codec.reset();
        self.close_code = Some(code);
        self.session.hub().metrics.closed(code.as_u16());
        let reason = self.session.hub().close_reason(self.session.conn(), code);
        self.session.conn().push_final(self.codec.close_frame(code, &reason));
        let deadline = Box::pin(tokio::time::sleep(self.session.hub().limits().close_timeout));
        self.state = State::Closing { deadline, sent: false };
    }

    /// Writes queued frames with as few system calls as the socket allows,
    /// then sets the span from how many frames the first write carried.
    fn write_queued(&mut self) -> Step {
        let conn = self.session.conn();
        let hub = self.session.hub();
        let mut first_write = None;
        while !self.write_blocked {
            let Some((frames, sent)) = self.codec.write_some(&self.session, &mut self.stream) else {
                break;
            };
            match sent {
                Ok(written) => {
                    conn.consume(written);
                    first_write.get_or_insert(frames);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    return Step::Done;
                }
            }
        }
        if let Some(frames) = first_write {
            let clock = hub.flush_clock();
            let now = clock.window();
            let span = clock.next_span(self.span, frames, now.wrapping_sub(self.wrote_in));
            if span > self.span {
                hub.metrics.write_windows_grown.inc();
            }
            (self.span, self.wrote_in) = (span, now);
        }
        self.flush_or_shut()
    }

    /// Sends what the socket took but still holds (TLS records; nothing for
    /// plain TCP), or, once closing and everything is queued out, ends our
    /// direction. Until the socket has sent it all, the connection stays
    /// write-blocked.
    fn flush_or_shut(&mut self) -> Step {
        if self.write_blocked {
            return Step::Continue;
        }
        let shut = matches!(self.state, State::Closing { sent: false, .. }) && self.session.conn().is_drained();
        let result = if shut {
            self.codec.shutdown_write(&self.session, &mut self.stream)
        } else {
            self.codec.flush(&self.session, &mut self.stream)
        };
        match result {
            Ok(()) if shut => self.state.mark_sent(),
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
            Err(error) => {
                tracing::debug!(%error, "write failed");
                return Step::Done;
            }
        }
        // Both closes crossed: the server closes the connection first, at
        // once, instead of waiting for the peer's end of stream (a client
        // may hold its socket until then, which once held every shutdown
        // for the whole close timeout).
        if matches!(self.state, State::Closing { sent: true, .. }) && self.codec.peer_closed() {
            return Step::Done;
        }
        Step::Continue
    }

    fn finish(&mut self) {
        self.session.end();
        self.codec.on_end(&self.session);
        self.state = State::Finished;
        let hub = self.session.hub();
        let conn = self.session.conn();
        let code = match self.close_code {
            Some(code) => code.as_u16(),
            None => {
                // 1006: the connection ended without a close handshake.
                hub.metrics.closed(1006);
                1006
            }
        };
        conn.close(CloseCode::Other(code), true);
        hub.unregister(conn);
        tracing::debug!(code, "connection finished");
    }
}

/// One write from the front of `session`'s queue: small frames copied into
/// the thread's write buffer and sent as one slice, or, when the head is
/// large, up to [`MAX_IOVECS`] frames sent by reference. Returns how many
/// frames were offered and what the socket took (counted); `None` when
/// nothing is queued.
#[inline(always)]
pub(crate) fn write_frames<S: Socket>(session: &Session, stream: &mut S) -> Option<(usize, io::Result<usize>)> {
    let conn = session.conn();
    let (frames, sent) = with_write_buffer(|buffer| match conn.gather(buffer, MAX_IOVECS) {
        Gathered::Nothing => None,
        Gathered::Copied { frames } => Some((frames, stream.try_write_vectored(&[IoSlice::new(buffer)]))),
        Gathered::HeadTooLarge => {
            let mut frames: [Bytes; MAX_IOVECS] = std::array::from_fn(|_| Bytes::new());
            // A discard from another task may have emptied the queue since.
            let count = conn.peek(&mut frames);
            if count == 0 {
                return None;
            }
            let slices: [IoSlice<'_>; MAX_IOVECS] = std::array::from_fn(|i| IoSlice::new(&frames[i]));
            Some((count, stream.try_write_vectored(&slices[..count])))
        }
    })?;
    if let Ok(written) = sent {
        session.hub().metrics.wrote(written);
    }
    Some((frames, sent))
}
