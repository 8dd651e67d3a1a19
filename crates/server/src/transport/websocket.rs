//! The WebSocket codec: RFC 6455 frames in (decoded by
//! `switchboard_protocol::ws`, inflated there when permessage-deflate was
//! agreed), JSON commands to the session or messages straight back on the
//! echo endpoint. The connection itself is driven by
//! [`super::stream::Connection`].

use super::stream::Codec;
use crate::hub::conn::Transport;
use crate::session::Session;
use bytes::{Buf, Bytes, BytesMut};
use switchboard_protocol::deflate::{Agreed, InflateError};
use switchboard_protocol::ws::{self, Decoder, FrameError, Message, OpCode};
use switchboard_protocol::{CloseCode, ErrorCode};

/// Decoder state of one WebSocket connection.
#[derive(Debug)]
pub(crate) struct WsCodec {
    decoder: Decoder,
    /// Bytes of an incomplete frame; `None` whenever a frame boundary was hit.
    /// Boxed: absent on idle connections, where it costs one pointer.
    partial: Option<Box<BytesMut>>,
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
        WsCodec { decoder, partial: None }
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
        match self.partial.take() {
            None => {
                let used = self.decode_all(data, session)?;
                if used < data.len() {
                    self.partial = Some(Box::new(BytesMut::from(&data[used..])));
                }
            }
            Some(mut partial) => {
                partial.extend_from_slice(data);
                let used = self.decode_all(&partial, session)?;
                partial.advance(used);
                if !partial.is_empty() {
                    self.partial = Some(partial);
                }
            }
        }
        Ok(())
    }

    fn close_frame(&self, code: CloseCode) -> Bytes {
        ws::close_frame(code)
    }

    /// Keeps an incomplete frame: the peer's close may follow it, and
    /// without its start the rest could not be read as frames.
    fn reset(&mut self) {}

    fn ingest_closing(&mut self, data: &[u8]) {
        if self.decoder.close_received() {
            return;
        }
        match self.partial.take() {
            None => {
                let used = skip_to_close(&mut self.decoder, data);
                if used < data.len() {
                    self.partial = Some(Box::new(BytesMut::from(&data[used..])));
                }
            }
            Some(mut partial) => {
                partial.extend_from_slice(data);
                let used = skip_to_close(&mut self.decoder, &partial);
                partial.advance(used);
                if !partial.is_empty() {
                    self.partial = Some(partial);
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
        FrameError::Inflate(InflateError::TooBig { .. }) => session.hub().metrics.dropped("ws_inflated_too_large", 1),
        FrameError::Inflate(InflateError::Invalid(_)) => session.hub().metrics.dropped("ws_inflate_failed", 1),
        _ => {}
    }
    error.close_code()
}

/// Handles one message; `Err` when the peer asked to close.
fn on_message(message: Message, session: &mut Session) -> Result<(), CloseCode> {
    let echo = session.conn().transport == Transport::Echo;
    let queue = |frame| session.hub().deliver(session.conn(), frame);
    let echoed = |opcode, payload: &[u8]| session.hub().message_frame(session.conn(), opcode, payload);
    match message {
        Message::Text(text) if echo => queue(echoed(OpCode::Text, &text)),
        Message::Binary(data) if echo => queue(echoed(OpCode::Binary, &data)),
        Message::Text(text) | Message::Binary(text) => match std::str::from_utf8(&text) {
            Ok(text) => session.handle(text),
            Err(_) => session.error_event(ErrorCode::BadJson, "binary frame is not UTF-8 JSON"),
        },
        Message::Ping(payload) => queue(ws::encode(OpCode::Pong, &payload)),
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
    /// `Conn`. Both sit just under an allocation size step (tokio rounds
    /// task cells to 128 bytes; `Arc<Conn>` fits a 160-byte malloc chunk):
    /// growing either costs every idle socket a whole step.
    #[test]
    fn idle_connection_state_stays_small() {
        let connection = std::mem::size_of::<Connection<WsCodec>>();
        let conn = std::mem::size_of::<crate::hub::conn::Conn>();
        assert!(connection <= 136, "Connection<WsCodec> is {connection} bytes");
        assert!(conn <= 136, "Conn is {conn} bytes");
    }
}
