//! The WebSocket connection driver: one task per connection that waits for
//! socket readiness or queued frames, reads and decodes what arrived, and
//! writes everything queued in one vectored write.
//!
//! Memory discipline, which is what lets one server hold many idle sockets:
//! - reads go into a per-thread buffer; only the bytes of an incomplete
//!   frame are kept per connection, and only until the frame completes;
//! - frames are written straight from the connection's queue (shared
//!   `Bytes`), so there is no per-connection write buffer;
//! - no per-connection timer: keepalive is a hub-wide sweep, and a timer
//!   exists only while a connection is closing;
//! - the task's future is this struct and nothing else (see [`WsConnection::run`]).

use super::{with_read_buffer, READ_BUFFER_SIZE};
use crate::hub::conn::{Outgoing, Transport};
use crate::session::Session;
use bytes::{Buf, Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_protocol::ws::{self, Decoder, FrameError, Message, OpCode};
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Reads per wake-up before yielding to other connections.
const READS_PER_WAKE: usize = 4;
/// Read/write rounds in one poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 16;
/// Frames per `writev` call.
const MAX_IOVECS: usize = 64;

/// Settings every WebSocket connection shares.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_message_size: usize,
    pub close_timeout: Duration,
}

#[derive(Debug)]
enum State {
    Open,
    /// Our close frame is queued; `sent` once it and everything before it
    /// is written and our write side is shut. Ends at EOF or the deadline.
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
}

enum Step {
    Continue,
    Done,
}

/// One WebSocket connection after the upgrade.
#[derive(Debug)]
pub(crate) struct WsConnection {
    stream: TcpStream,
    session: Session,
    decoder: Decoder,
    /// Bytes of an incomplete frame; `None` whenever a frame boundary was hit.
    /// Boxed: absent on idle connections, where it costs one pointer.
    partial: Option<Box<BytesMut>>,
    state: State,
    write_blocked: bool,
    close_code: Option<CloseCode>,
}

impl WsConnection {
    pub fn new(stream: TcpStream, session: Session) -> Self {
        let decoder = Decoder::new(session.hub().ws.max_message_size);
        WsConnection {
            stream,
            session,
            decoder,
            partial: None,
            state: State::Open,
            write_blocked: false,
            close_code: None,
        }
    }

    /// The future that drives the connection until it is closed. `early`
    /// holds bytes the client sent right behind its upgrade request; it
    /// points into hyper's read buffer, so it is consumed here, not kept.
    ///
    /// A hand-written poll loop rather than an `async fn`: an async fn keeps
    /// a second copy of its arguments in its state, which would double what
    /// every idle connection costs. For the same reason the connection's
    /// tracing span is entered on each wake-up instead of being stored.
    pub fn run(mut self, early: Bytes) -> impl Future<Output = ()> + Send {
        if !early.is_empty() {
            if let Err(error) = self.ingest(&early) {
                self.fail(&error);
            }
        }
        drop(early);
        poll_fn(move |cx| {
            let conn = self.session.conn();
            let span = tracing::debug_span!("conn", id = conn.id, peer = %conn.peer, user = %conn.user);
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
        let mut events = Events { readable: self.stream.poll_read_ready(cx).is_ready(), ..Events::default() };
        if self.write_blocked {
            events.writable = self.stream.poll_write_ready(cx).is_ready();
        } else if !matches!(self.state, State::Closing { sent: true, .. }) {
            if let Poll::Ready(outgoing) = self.session.conn().poll_outgoing(cx) {
                events.outgoing = Some(outgoing);
            }
        }
        if let State::Closing { deadline, .. } = &mut self.state {
            events.deadline = deadline.as_mut().poll(cx).is_ready();
        }
        let any = events.readable || events.writable || events.outgoing.is_some() || events.deadline;
        if any {
            Poll::Ready(events)
        } else {
            Poll::Pending
        }
    }

    fn on_events(&mut self, events: Events) -> Step {
        if events.deadline {
            tracing::debug!("close handshake timed out");
            return Step::Done;
        }
        if events.readable {
            match self.read_available() {
                Ok(true) => {}
                Ok(false) => return Step::Done,
                Err(error) => {
                    tracing::debug!(%error, "read failed");
                    return Step::Done;
                }
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
                    if let Err(error) = self.ingest(&buffer[..count]) {
                        self.fail(&error);
                    }
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

    /// Decodes and handles every complete frame in `data`, keeping the tail
    /// of an incomplete one. After a close starts, input is discarded.
    fn ingest(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if !matches!(self.state, State::Open) || self.session.conn().is_closing() {
            return Ok(());
        }
        match self.partial.take() {
            None => {
                let used = self.decode_all(data)?;
                if used < data.len() {
                    self.partial = Some(Box::new(BytesMut::from(&data[used..])));
                }
            }
            Some(mut partial) => {
                partial.extend_from_slice(data);
                let used = self.decode_all(&partial)?;
                partial.advance(used);
                if !partial.is_empty() {
                    self.partial = Some(partial);
                }
            }
        }
        Ok(())
    }

    fn decode_all(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let mut used = 0;
        while matches!(self.state, State::Open) {
            let decoded = self.decoder.decode(&input[used..])?;
            if decoded.consumed == 0 {
                break;
            }
            used += decoded.consumed;
            if let Some(message) = decoded.message {
                self.on_message(message);
            }
        }
        Ok(used)
    }

    fn on_message(&mut self, message: Message) {
        let echo = self.session.conn().transport == Transport::Echo;
        let reply = |opcode, payload: &[u8]| ws::encode(opcode, payload);
        match message {
            Message::Text(text) if echo => self.queue_own(reply(OpCode::Text, &text)),
            Message::Binary(data) if echo => self.queue_own(reply(OpCode::Binary, &data)),
            Message::Text(text) | Message::Binary(text) => match std::str::from_utf8(&text) {
                Ok(text) => self.session.handle(text),
                Err(_) => self.session.reject("binary frame is not UTF-8 JSON"),
            },
            Message::Ping(payload) => self.queue_own(reply(OpCode::Pong, &payload)),
            Message::Pong(_) => {}
            Message::Close(frame) => {
                // Echo the peer's code, as RFC 6455 suggests; 1000 for none.
                let code = frame.map_or(CloseCode::Normal, |frame| match frame.code {
                    1000 => CloseCode::Normal,
                    other => CloseCode::Other(other),
                });
                self.session.conn().close(code, false);
                self.start_close(code);
            }
        }
    }

    fn queue_own(&self, frame: Bytes) {
        self.session.hub().deliver(self.session.conn(), frame);
    }

    /// The peer broke the protocol: stop reading and close with the
    /// matching code. Answers to the valid messages before the bad frame
    /// are already queued and still go out first.
    fn fail(&mut self, error: &FrameError) {
        let conn = self.session.conn();
        tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer, %error, "closing on protocol error");
        let code = error.close_code();
        conn.close(code, false);
        self.start_close(code);
    }

    /// Leaves the hub's rooms and queues our close frame after whatever is
    /// already queued.
    fn start_close(&mut self, code: CloseCode) {
        if !matches!(self.state, State::Open) {
            return;
        }
        self.session.end();
        self.partial = None;
        self.close_code = Some(code);
        self.session.hub().metrics.closed(code.as_u16());
        self.session.conn().push_final(ws::close_frame(code));
        let deadline = Box::pin(tokio::time::sleep(self.session.hub().ws.close_timeout));
        self.state = State::Closing { deadline, sent: false };
    }

    /// Writes queued frames with as few system calls as the socket allows.
    fn write_queued(&mut self) -> Step {
        let conn = self.session.conn();
        let mut frames: [Bytes; MAX_IOVECS] = std::array::from_fn(|_| Bytes::new());
        while !self.write_blocked {
            let count = conn.peek(&mut frames);
            if count == 0 {
                break;
            }
            let slices: [IoSlice<'_>; MAX_IOVECS] = std::array::from_fn(|i| IoSlice::new(&frames[i]));
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => {
                    conn.consume(written);
                    self.session.hub().metrics.bytes_written.inc_by(written as u64);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    return Step::Done;
                }
            }
        }
        if let State::Closing { sent: sent @ false, .. } = &mut self.state {
            if conn.is_drained() {
                *sent = true;
                let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
            }
        }
        Step::Continue
    }

    fn finish(&mut self) {
        self.session.end();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection's task holds is `WsConnection` (the future
    /// returned by `run` adds nothing), and its shared state is `Conn`.
    /// Both sit just under an allocation size step (tokio rounds task cells
    /// to 128 bytes; `Arc<Conn>` fits a 160-byte malloc chunk): growing
    /// either costs every idle socket a whole step.
    #[test]
    fn idle_connection_state_stays_small() {
        let connection = std::mem::size_of::<WsConnection>();
        let conn = std::mem::size_of::<crate::hub::conn::Conn>();
        assert!(connection <= 136, "WsConnection is {connection} bytes");
        assert!(conn <= 136, "Conn is {conn} bytes");
    }
}
