//! Server-Sent Events followers once their `200` is sent (`super::follow`
//! starts them): the codec the stream driver runs them with, and the
//! heartbeat.
//!
//! A follower's queue holds JSON lines, the same shared bytes a raw TCP
//! member gets, so a fan-out costs a follower what it costs any member.
//! This codec renders them as events when it writes
//! (`switchboard_protocol::sse::render`), and keeps every followed room's
//! position, so that each message's `id` resumes all of them. A write
//! takes whole frames: what the socket did not take of their rendering
//! waits here (and the connection stays write-blocked) until it is out, so
//! the queue's bound and the slow-consumer rule apply as to any member.
//!
//! A follower sends nothing after its request: input closes it with 1008.
//! It is never pinged; the heartbeat comment every `sse.heartbeat` keeps
//! proxies from closing a quiet stream and finds a peer that is gone when
//! writing to it fails.

use super::socket::Socket;
use super::stream::Codec;
use crate::guard::reason;
use crate::hub::conn::Transport;
use crate::hub::Hub;
use crate::session::Session;
use bytes::Bytes;
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::event::{self, Encoded, Framing};
use switchboard_protocol::sse::render::{self, Head, HEARTBEAT};
use switchboard_protocol::CloseCode;
use tokio_util::sync::CancellationToken;

/// Rendered bytes gathered for one write; frames stop being taken past it.
const WRITE_BATCH: usize = 16 * 1024;

thread_local! {
    /// Each worker thread's buffer for rendering a write; empty between writes.
    static RENDERED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WRITE_BATCH + 1024));
}

/// Where one followed room's stream stands: its last message's `seq` (or
/// where the stream started), in `epoch` (none while the room has no
/// history).
#[derive(Debug)]
pub(crate) struct Cursor {
    pub room: Arc<str>,
    pub epoch: Option<u64>,
    pub seq: u64,
}

/// The codec of one follower: 24 bytes, like a WebSocket's, so that the
/// connection's task stays in the same tokio task cell (a test checks).
#[derive(Debug)]
pub(crate) struct SseCodec {
    /// Every followed room's position, in the order of the request.
    cursors: Box<[Cursor]>,
    /// Rendered bytes the socket has not taken yet; absent (one pointer)
    /// while there are none.
    unsent: Option<Box<Unsent>>,
}

/// Rendered bytes waiting for the socket.
#[derive(Debug, Default)]
struct Unsent(Vec<u8>);

impl SseCodec {
    pub fn new(cursors: Vec<Cursor>) -> Self {
        SseCodec { cursors: cursors.into_boxed_slice(), unsent: None }
    }

    /// Appends the event `frame` stands for. Frames that are not JSON lines
    /// (the heartbeat) are already in the event-stream format.
    fn render(&mut self, hub: &Hub, frame: &[u8], out: &mut Vec<u8>) {
        let Some(json) = frame.strip_suffix(b"\n").filter(|json| json.first() == Some(&b'{')) else {
            out.extend_from_slice(frame);
            return;
        };
        match render::head(json) {
            Head::Message { room, seq: Some(seq) } => {
                if let Some(cursor) = self.cursors.iter_mut().find(|cursor| *cursor.room == *room) {
                    // A room without history when the stream began has one now.
                    if cursor.epoch.is_none() {
                        cursor.epoch = hub.room_epoch(&cursor.room);
                    }
                    cursor.seq = seq;
                }
                render::write_id(out, self.cursors.iter().map(|cursor| (&*cursor.room, cursor.epoch, cursor.seq)));
                render::write_event(out, None, json);
            }
            Head::Message { seq: None, .. } | Head::Unknown => render::write_event(out, None, json),
            Head::Named(name) => render::write_event(out, Some(name), json),
        }
    }

    /// Writes `out`; what the socket does not take is kept for later.
    fn send<S: Socket>(&mut self, session: &Session, stream: &mut S, out: &[u8]) -> io::Result<()> {
        let sent = match stream.try_write_vectored(&[IoSlice::new(out)]) {
            Ok(sent) => sent,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
            Err(error) => return Err(error),
        };
        if sent > 0 {
            session.hub().metrics.wrote(sent);
        }
        if sent < out.len() {
            self.unsent.get_or_insert_with(Box::default).0.extend_from_slice(&out[sent..]);
        }
        Ok(())
    }

    /// Writes what an earlier write left; `WouldBlock` while some remains.
    fn send_unsent<S: Socket>(&mut self, session: &Session, stream: &mut S) -> io::Result<()> {
        while let Some(unsent) = self.unsent.as_mut() {
            let sent = stream.try_write_vectored(&[IoSlice::new(&unsent.0)])?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            session.hub().metrics.wrote(sent);
            unsent.0.drain(..sent);
            if unsent.0.is_empty() {
                self.unsent = None;
            }
        }
        Ok(())
    }
}

impl Codec for SseCodec {
    /// Whitespace is let pass (some clients end a request with an extra
    /// line break); anything else is not how an event stream is used.
    fn ingest(&mut self, data: &[u8], session: &mut Session) -> Result<(), CloseCode> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let conn = session.conn();
        tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer(), "an event stream sent data, closing with 1008");
        session.hub().metrics.limit_hit(reason::SSE_INPUT);
        Err(CloseCode::PolicyViolation)
    }

    /// `event: close` with `{"ev":"close","code":C,"reason":R}` (an
    /// operator's `reason` for a kick, else the code's own).
    fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes {
        Encoded::new(&event::Close::with_reason(code, reason)).framed(Framing::Line)
    }

    fn reset(&mut self) {}

    /// Renders frames from the front of the queue into the thread's buffer
    /// (up to [`WRITE_BATCH`]) and writes them with one call, after what an
    /// earlier write left. Returns the frames taken and their queued bytes:
    /// every frame rendered is consumed, whether or not the socket took all
    /// of its rendering.
    fn write_some<S: Socket>(&mut self, session: &Session, stream: &mut S) -> Option<(usize, io::Result<usize>)> {
        if let Err(error) = self.send_unsent(session, stream) {
            return Some((0, Err(error)));
        }
        RENDERED.with_borrow_mut(|out| {
            out.clear();
            let hub = session.hub();
            let (frames, taken) = session.conn().visit(|frame| {
                self.render(hub, frame, out);
                out.len() < WRITE_BATCH
            });
            if frames == 0 {
                return None;
            }
            let sent = self.send(session, stream, out.as_slice()).map(|()| taken);
            out.clear();
            Some((frames, sent))
        })
    }

    fn flush<S: Socket>(&mut self, session: &Session, stream: &mut S) -> io::Result<()> {
        self.send_unsent(session, stream)?;
        stream.flush()
    }

    fn shutdown_write<S: Socket>(&mut self, session: &Session, stream: &mut S) -> io::Result<()> {
        self.send_unsent(session, stream)?;
        stream.shutdown_write()
    }
}

/// Queues a heartbeat comment for every follower, `every` apart, until
/// `stop`. A heartbeat is not a delivery; one that does not fit a queue
/// closes that follower as a slow consumer, like any frame.
pub(crate) async fn heartbeat(hub: Arc<Hub>, every: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = Bytes::from_static(HEARTBEAT);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let limit = hub.limits().outbound_queue_bytes;
        for conn in hub.connections().iter().filter(|conn| conn.transport == Transport::Sse) {
            hub.settle(conn, conn.enqueue(beat.clone(), limit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream::Connection;
    use super::*;

    /// A follower's task stays in the same tokio task cell as a WebSocket's
    /// (see `websocket::tests::idle_connection_state_stays_small`).
    #[test]
    fn an_idle_follower_s_state_stays_small() {
        let connection = std::mem::size_of::<Connection<SseCodec>>();
        let websocket = std::mem::size_of::<Connection<super::super::websocket::WsCodec>>();
        assert!(connection <= 152, "Connection<SseCodec> is {connection} bytes");
        assert!(connection <= websocket, "{connection} bytes against a WebSocket's {websocket}");
    }
}
