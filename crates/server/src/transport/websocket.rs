//! The WebSocket connection driver: one task per connection that waits for
//! socket readiness or queued frames, reads and decodes what arrived, and
//! writes everything queued in one vectored write.
//!
//! Memory discipline, which is what lets one server hold many idle sockets:
//! - reads go into a per-thread buffer; only the bytes of an incomplete
//!   frame are kept per connection, and only until the frame completes;
//! - the write batch is released as soon as it drains;
//! - no per-connection timer: keepalive is a hub-wide sweep, and a timer
//!   exists only while a connection is closing.

use crate::hub::conn::Outgoing;
use crate::session::Session;
use bytes::{Buf, Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_protocol::ws::{self, Decoder, FrameError, Message, OpCode};
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Size of each worker thread's shared read buffer.
const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Reads per wake-up before yielding to other connections.
const READS_PER_WAKE: usize = 4;
/// Frames per `writev` call.
const MAX_IOVECS: usize = 64;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_SIZE]);
}

/// Settings every WebSocket connection shares.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_message_size: usize,
    pub close_timeout: Duration,
}

/// Whether messages go to the JSON protocol or straight back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Protocol,
    Echo,
}

/// A held slot in the connection limit; released when dropped.
pub(crate) type Slot = Arc<tokio::sync::OwnedSemaphorePermit>;

#[derive(Debug)]
enum State {
    Open,
    /// Our close frame is queued; `sent` once it and everything before it
    /// is written and our write side is shut. Ends at EOF or the deadline.
    Closing {
        deadline: Pin<Box<Sleep>>,
        sent: bool,
    },
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
    settings: Arc<WsSettings>,
    mode: Mode,
    /// Bytes of an incomplete frame; `None` whenever a frame boundary was hit.
    partial: Option<BytesMut>,
    /// Frames taken from the queue and not yet fully written.
    batch: VecDeque<Bytes>,
    write_blocked: bool,
    state: State,
    close_code: Option<CloseCode>,
    _slot: Slot,
}

impl WsConnection {
    pub fn new(stream: TcpStream, session: Session, settings: Arc<WsSettings>, mode: Mode, slot: Slot) -> Self {
        WsConnection {
            stream,
            session,
            decoder: Decoder::new(settings.max_message_size),
            settings,
            mode,
            partial: None,
            batch: VecDeque::new(),
            write_blocked: false,
            state: State::Open,
            close_code: None,
            _slot: slot,
        }
    }

    /// Drives the connection until it is closed. `early` holds bytes the
    /// client sent right behind its upgrade request.
    pub async fn run(mut self, early: Bytes) {
        if !early.is_empty() {
            if let Err(error) = self.ingest(&early) {
                self.fail(&error);
            }
        }
        loop {
            let events = poll_fn(|cx| self.poll_events(cx)).await;
            if let Step::Done = self.on_events(events) {
                break;
            }
        }
        self.finish();
    }

    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<Events> {
        let mut events = Events { readable: self.stream.poll_read_ready(cx).is_ready(), ..Events::default() };
        if self.write_blocked {
            events.writable = self.stream.poll_write_ready(cx).is_ready();
        } else if !matches!(self.state, State::Closing { sent: true, .. }) {
            if let Poll::Ready(outgoing) = self.session.conn().poll_outgoing(cx, &mut self.batch) {
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
            tracing::debug!(conn = self.session.conn().id, "close handshake timed out");
            return Step::Done;
        }
        if events.readable {
            match self.read_available() {
                Ok(true) => {}
                Ok(false) => return Step::Done,
                Err(error) => {
                    tracing::debug!(conn = self.session.conn().id, %error, "read failed");
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
        self.write_batch()
    }

    /// Reads what the socket has. Returns `Ok(false)` at end of stream.
    fn read_available(&mut self) -> io::Result<bool> {
        for _ in 0..READS_PER_WAKE {
            let read = READ_BUFFER.with_borrow_mut(|buffer| {
                let count = self.stream.try_read(buffer)?;
                if count > 0 {
                    let hub = self.session.hub();
                    self.session.conn().heard(hub.now_ms());
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
                    self.partial = Some(BytesMut::from(&data[used..]));
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
        let conn = Arc::clone(self.session.conn());
        match (message, self.mode) {
            (Message::Text(text), Mode::Echo) => self.session.hub().deliver(&conn, ws::encode(OpCode::Text, &text)),
            (Message::Binary(data), Mode::Echo) => self.session.hub().deliver(&conn, ws::encode(OpCode::Binary, &data)),
            (Message::Text(text), Mode::Protocol) | (Message::Binary(text), Mode::Protocol) => {
                match std::str::from_utf8(&text) {
                    Ok(text) => self.session.handle(text),
                    Err(_) => self.session.reject("binary frame is not UTF-8 JSON"),
                }
            }
            (Message::Ping(payload), _) => self.session.hub().deliver(&conn, ws::encode(OpCode::Pong, &payload)),
            (Message::Pong(_), _) => {}
            (Message::Close(frame), _) => {
                let code = frame.map_or(CloseCode::Normal, |frame| match frame.code {
                    1000 => CloseCode::Normal,
                    other => CloseCode::Other(other),
                });
                conn.close(code, false);
                self.start_close(code);
            }
        }
    }

    /// The peer broke the protocol: close with the matching code at once.
    fn fail(&mut self, error: &FrameError) {
        let conn = self.session.conn();
        tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer, %error, "closing on protocol error");
        let code = error.close_code();
        conn.close(code, true);
        self.start_close(code);
    }

    /// Leaves the hub's rooms and queues our close frame after whatever is
    /// already in the batch.
    fn start_close(&mut self, code: CloseCode) {
        if !matches!(self.state, State::Open) {
            return;
        }
        self.session.end();
        self.partial = None;
        self.close_code = Some(code);
        self.session.hub().metrics.closed(code.as_u16());
        self.batch.push_back(ws::close_frame(code));
        let deadline = Box::pin(tokio::time::sleep(self.settings.close_timeout));
        self.state = State::Closing { deadline, sent: false };
    }

    /// Writes the batch with as few system calls as the socket allows.
    fn write_batch(&mut self) -> Step {
        while !self.batch.is_empty() && !self.write_blocked {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count =
                self.batch.iter().zip(slices.iter_mut()).map(|(frame, slice)| *slice = IoSlice::new(frame)).count();
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => self.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(error) => {
                    tracing::debug!(conn = self.session.conn().id, %error, "write failed");
                    return Step::Done;
                }
            }
        }
        if self.batch.is_empty() {
            // Give the batch's memory back while idle.
            self.batch = VecDeque::new();
            if let State::Closing { sent, .. } = &mut self.state {
                if !*sent {
                    *sent = true;
                    let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
                }
            }
        }
        Step::Continue
    }

    fn advance(&mut self, mut written: usize) {
        let conn = self.session.conn();
        conn.release(written);
        self.session.hub().metrics.bytes_written.inc_by(written as u64);
        while written > 0 {
            let Some(front) = self.batch.front_mut() else { break };
            if front.len() > written {
                front.advance(written);
                break;
            }
            written -= front.len();
            self.batch.pop_front();
        }
    }

    fn finish(mut self) {
        self.session.end();
        let conn = self.session.conn();
        let code = match self.close_code {
            Some(code) => code.as_u16(),
            None => {
                // 1006: the connection ended without a close handshake.
                self.session.hub().metrics.closed(1006);
                1006
            }
        };
        conn.close(CloseCode::Other(code), true);
        self.session.hub().unregister(conn);
        tracing::debug!(conn = conn.id, code, "connection finished");
    }
}
