//! Framing an event for one member: the shared WebSocket frame of a plain
//! member, a compressed one (shared as well) for a member that agreed to
//! permessage-deflate, a text line, a JSON line or a datagram.

use super::conn::{Conn, Transport};
use super::Hub;
use crate::metrics::DropReason;
use bytes::Bytes;
use switchboard_protocol::event::{Encoded, Framing};
use switchboard_protocol::{deflate, text, ws};

impl Hub {
    /// The event framed for `conn`'s transport, or `None` if it cannot be
    /// sent there (counted). Inlined into fan-out loops: a plain WebSocket
    /// member, the common case, costs a clone of the event's shared frame.
    #[inline]
    pub(super) fn frame_for(&self, conn: &Conn, event: &Encoded) -> Option<Bytes> {
        match (conn.transport, conn.deflate_window()) {
            (Transport::WebSocket | Transport::Echo, None) => Some(event.framed(Framing::WebSocket)),
            (Transport::WebSocket | Transport::Echo, Some(bits)) => Some(self.deflate_frame(event, bits)),
            _ => self.tcp_or_udp_frame(conn, event),
        }
    }

    /// The event framed for a TCP or UDP member, or `None` if it is too
    /// large for a datagram (counted).
    #[inline(never)]
    fn tcp_or_udp_frame(&self, conn: &Conn, event: &Encoded) -> Option<Bytes> {
        match conn.transport {
            Transport::TcpText => text::render(event.json()).map(Bytes::from),
            // The datagram is the JSON and its newline.
            Transport::Udp if event.json().len() + 1 > self.limits.udp_max_event_bytes => {
                self.metrics.dropped(DropReason::UdpOversize, 1);
                tracing::debug!(conn = conn.id, bytes = event.json().len(), "event too large for a UDP member");
                None
            }
            transport => Some(event.framed(transport.framing())),
        }
    }

    /// An event's WebSocket frame for a member that agreed to
    /// permessage-deflate with window `bits`: compressed when the event
    /// reaches the threshold and compression makes it smaller. The
    /// compressed frame is shared like the plain one.
    #[inline(never)]
    fn deflate_frame(&self, event: &Encoded, bits: u8) -> Bytes {
        let json_len = event.json().len();
        let counted = || {
            self.metrics.compressions.inc();
        };
        let compressed =
            (json_len >= self.limits.compression_threshold).then(|| event.deflated(bits, counted)).flatten();
        match compressed {
            Some(frame) => self.count_compressed(ws::frame_len(json_len), frame),
            None => event.framed(Framing::WebSocket),
        }
    }

    /// A message's frame for `conn` (the echo endpoint), compressed on the
    /// same terms as events, but for this connection alone.
    pub fn message_frame(&self, conn: &Conn, opcode: ws::OpCode, payload: &[u8]) -> Bytes {
        let compressed =
            conn.deflate_window().filter(|_| payload.len() >= self.limits.compression_threshold).and_then(|bits| {
                self.metrics.compressions.inc();
                deflate::compress_frame(opcode, payload, deflate::effective_window(payload.len(), bits))
            });
        match compressed {
            Some(frame) => self.count_compressed(ws::frame_len(payload.len()), frame),
            None => ws::encode(opcode, payload),
        }
    }

    /// Counts a compressed frame and the bytes it saved against a plain
    /// frame of `plain_len` bytes.
    fn count_compressed(&self, plain_len: usize, frame: Bytes) -> Bytes {
        self.metrics.compressed_frames.inc();
        self.metrics.compression_saved_bytes.inc_by(plain_len.saturating_sub(frame.len()) as u64);
        frame
    }
}
