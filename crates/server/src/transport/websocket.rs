//! The WebSocket codec: RFC 6455 frames in (decoded by
//! `switchboard_protocol::ws`, inflated there when permessage-deflate was
//! agreed), JSON commands to the session or messages straight back on the
//! echo endpoint. The connection itself is driven by
//! [`super::stream::Connection`].
//!
//! A message must be complete within `limits.message_timeout` of its first
//! byte (a partial frame or the first fragment): a client cannot hold
//! memory with a message it never finishes. Pings between fragments do not
//! extend it. The timer exists only while a message is unfinished. A client
//! that sends pings while not reading its pongs is closed with 1008 once
//! the next pong would not fit its queue.

use super::stream::Codec;
use crate::guard::reason;
use crate::hub::conn::Transport;
use crate::metrics::DropReason;
use crate::session::Session;
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use switchboard_protocol::deflate::{Agreed, InflateError};
use switchboard_protocol::ws::{self, Decoder, FrameError, Message, OpCode};
use switchboard_protocol::{CloseCode, ErrorCode};
use tokio::time::Sleep;

/// Decoder state of one WebSocket connection.
#[derive(Debug)]
pub(crate) struct WsCodec {
    decoder: Decoder,
    /// An unfinished message: the bytes of an incomplete frame and the
    /// deadline. Boxed: absent on idle connections, where it costs one pointer.
    pending: Option<Box<Pending>>,
}

/// What an unfinished message holds.
#[derive(Debug)]
struct Pending {
    /// Bytes of an incomplete frame (empty between fragments).
    partial: BytesMut,
    /// When the message must be complete (none once closing: only the
    /// peer's close is still read then).
    deadline: Option<Pin<Box<Sleep>>>,
}

impl WsCodec {
    /// A codec for messages of at most `max_message_size` bytes (inflated,
    /// when `deflate` was agreed).
    pub fn new(max_message_size: usize, deflate: Option<&Agreed>) -> Self {
        let decoder = Decoder::new(max_message_size);
        let decoder = match deflate {
            Some(agreed) => decoder.with_deflate(agreed.client_no_context_takeover),
            None => decoder,
        };
        WsCodec { decoder, pending: None }
    }

    /// Decodes every complete frame in `input`; returns the bytes used.
    fn decode_all(&mut self, input: &[u8], session: &mut Session) -> Result<usize, CloseCode> {
        let mut used = 0;
        loop {
            let decoded = self.decoder.decode(&input[used..]).map_err(|error| protocol_error(&error, session))?;
            if decoded.consumed == 0 {
                return Ok(used);
            }
            used += decoded.consumed;
            if let Some(message) = decoded.message {
                on_message(message, session)?;
            }
        }
    }
}

impl Codec for WsCodec {
    fn ingest(&mut self, data: &[u8], session: &mut Session) -> Result<(), CloseCode> {
        match self.pending.take() {
            None => {
                let used = self.decode_all(data, session)?;
                if used < data.len() || self.decoder.in_message() {
                    let timeout = session.hub().policy().guard.message_timeout;
                    let deadline = Some(Box::pin(tokio::time::sleep(timeout)));
                    self.pending = Some(Box::new(Pending { partial: BytesMut::from(&data[used..]), deadline }));
                }
            }
            Some(mut pending) => {
                if pending.partial.is_empty() {
                    let used = self.decode_all(data, session)?;
                    pending.partial.extend_from_slice(&data[used..]);
                } else {
                    pending.partial.extend_from_slice(data);
                    let used = self.decode_all(&pending.partial, session)?;
                    pending.partial.advance(used);
                }
                // The deadline stays what it was: more bytes do not extend it.
                if !pending.partial.is_empty() || self.decoder.in_message() {
                    self.pending = Some(pending);
                }
            }
        }
        Ok(())
    }

    fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes {
        ws::close_frame_with(code, reason)
    }

    /// Keeps an incomplete frame (the peer's close may follow it, and
    /// without its start the rest could not be read as frames); the
    /// message's deadline ends: the close has its own.
    fn reset(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.deadline = None;
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.pending.as_mut().and_then(|pending| pending.deadline.as_mut()) {
            Some(deadline) => deadline.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// The unfinished message's time is up.
    fn on_timer(&mut self, session: &mut Session) -> Result<(), CloseCode> {
        if self.pending.take().is_none() {
            return Ok(());
        }
        let conn = session.conn();
        tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer(), "message not finished in time, closing with 1008");
        session.hub().metrics.limit_hit(reason::WS_MESSAGE_TIMEOUT);
        Err(CloseCode::PolicyViolation)
    }

    fn ingest_closing(&mut self, data: &[u8]) {
        if self.decoder.close_received() {
            return;
        }
        match self.pending.take() {
            None => {
                let used = skip_to_close(&mut self.decoder, data);
                if used < data.len() {
                    let partial = BytesMut::from(&data[used..]);
                    self.pending = Some(Box::new(Pending { partial, deadline: None }));
                }
            }
            Some(mut pending) => {
                pending.partial.extend_from_slice(data);
                let used = skip_to_close(&mut self.decoder, &pending.partial);
                pending.partial.advance(used);
                if !pending.partial.is_empty() {
                    self.pending = Some(pending);
                }
            }
        }
    }

    fn peer_closed(&self) -> bool {
        self.decoder.close_received()
    }
}

/// Decodes frames only to find the peer's close, discarding messages;
/// returns the bytes used. Input that breaks the protocol is all used: no
/// close can be recognised in it, so the connection waits for the peer's
/// end of stream or the close timeout instead.
fn skip_to_close(decoder: &mut Decoder, input: &[u8]) -> usize {
    let mut used = 0;
    while !decoder.close_received() {
        match decoder.decode(&input[used..]) {
            Ok(decoded) if decoded.consumed > 0 => used += decoded.consumed,
            Ok(_) => return used,
            Err(_) => return input.len(),
        }
    }
    used
}

/// The peer broke the protocol: log it and name the close code. Answers
/// to the valid messages before the bad frame are already queued and
/// still go out first.
fn protocol_error(error: &FrameError, session: &Session) -> CloseCode {
    let conn = session.conn();
    tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer(), %error, "closing on protocol error");
    match error {
        FrameError::Inflate(InflateError::TooBig { .. }) => {
            session.hub().metrics.dropped(DropReason::WsInflatedTooLarge, 1)
        }
        FrameError::Inflate(InflateError::Invalid(_)) => session.hub().metrics.dropped(DropReason::WsInflateFailed, 1),
        _ => {}
    }
    error.close_code()
}

/// Handles one message; `Err` when the peer asked to close.
fn on_message(message: Message, session: &mut Session) -> Result<(), CloseCode> {
    let echo = session.conn().transport == Transport::Echo;
    let queue = |frame| session.hub().queue_frame(session.conn(), frame);
    let echoed = |opcode, payload: &[u8]| session.hub().message_frame(session.conn(), opcode, payload);
    match message {
        Message::Text(text) if echo => queue(echoed(OpCode::Text, &text)),
        Message::Binary(data) if echo => queue(echoed(OpCode::Binary, &data)),
        Message::Text(text) | Message::Binary(text) => match std::str::from_utf8(&text) {
            Ok(text) => session.handle(text),
            Err(_) => session.error_event(ErrorCode::BadJson, "binary frame is not UTF-8 JSON"),
        },
        Message::Ping(payload) => {
            let pong = ws::encode(OpCode::Pong, &payload);
            // Pings from a client that does not read would fill its queue
            // with pongs: that is abuse (1008), not a slow consumer.
            if session.conn().queued_bytes() + pong.len() > session.hub().limits().outbound_queue_bytes {
                let conn = session.conn();
                tracing::info!(conn = conn.id, user = %conn.user, peer = %conn.peer(), "pings while its queue is full, closing with 1008");
                session.hub().metrics.limit_hit(reason::PING_FLOOD);
                return Err(CloseCode::PolicyViolation);
            }
            queue(pong);
        }
        Message::Pong(_) => {}
        Message::Close(frame) => {
            // Echo the peer's code, as RFC 6455 suggests; 1000 for none.
            return Err(frame.map_or(CloseCode::Normal, |frame| CloseCode::from_u16(frame.code)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::stream::Connection;
    use super::*;

    /// What an idle connection's task holds is `Connection<WsCodec>` (the
    /// future returned by `run` adds nothing), and its shared state is
    /// `Conn`. Both sit just under an allocation size step: tokio's task
    /// cell is 256 bytes for futures of 32 to 152 bytes (104 of them its
    /// own), and `Arc<Conn>` (16 bytes of counts and `Conn`) fills
    /// jemalloc's 192-byte class (160 until the connection table's byte
    /// counters, age and descriptor; docs/BENCHMARKS.md has the cost):
    /// growing either costs every idle socket a whole step.
    #[test]
    fn idle_connection_state_stays_small() {
        let connection = std::mem::size_of::<Connection<WsCodec>>();
        let conn = std::mem::size_of::<crate::hub::conn::Conn>();
        assert!(connection <= 152, "Connection<WsCodec> is {connection} bytes");
        assert!(conn <= 176, "Conn is {conn} bytes");
    }
}
