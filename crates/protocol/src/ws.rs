//! RFC 6455 framing for the server side: a [`Decoder`] for client frames and
//! encoders for server frames.
//!
//! The decoder never owns a read buffer: the caller hands it whatever bytes it
//! has and it reports how many it consumed. It keeps state only while a
//! fragmented message is being assembled (and, with permessage-deflate, the
//! inflate state of a client that keeps context). Server frames are
//! unmasked, so a frame built once by [`encode_with`] is byte-for-byte the
//! same for every subscriber and can be shared as [`Bytes`].

use crate::codes::CloseCode;
use crate::deflate::{self, InflateError, Window};
use bytes::{Bytes, BytesMut};

/// Largest header a server frame needs: 2 bytes plus an 8-byte length.
pub const MAX_SERVER_HEADER: usize = 10;
/// Control frames carry at most this many payload bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes defined by RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_u8(value: u8) -> Result<Self, FrameError> {
        Ok(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(FrameError::ReservedOpcode(other)),
        })
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A complete message from the client. Text is guaranteed valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

/// The status code and reason of a received close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// Every way a client frame can break the protocol, with the close code it earns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits {0:#x} set but no extension was negotiated")]
    ReservedBits(u8),
    #[error("opcode {0:#x} is reserved")]
    ReservedOpcode(u8),
    #[error("client frames must be masked")]
    Unmasked,
    #[error("control frames must not be fragmented")]
    FragmentedControl,
    #[error("control frame payload of {0} bytes is over 125")]
    ControlTooLong(u64),
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is still in progress")]
    ExpectedContinuation,
    #[error("payload length has its most significant bit set")]
    BadLength,
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooBig { size: u64, limit: usize },
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("close frame payload of one byte cannot hold a status code")]
    CloseOneByte,
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    #[error("control frames must not be compressed (RSV1 set)")]
    CompressedControl,
    #[error("RSV1 set on a continuation frame: only a message's first frame says it is compressed")]
    CompressedContinuation,
    #[error(transparent)]
    Inflate(#[from] InflateError),
}

impl FrameError {
    /// The close code the server answers this error with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooBig { .. } | FrameError::Inflate(InflateError::TooBig { .. }) => CloseCode::TooBig,
            FrameError::InvalidUtf8
            | FrameError::InvalidCloseReason
            | FrameError::Inflate(InflateError::Invalid(_)) => CloseCode::InvalidPayload,
            _ => CloseCode::Protocol,
        }
    }
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of input that were used and must be dropped by the caller.
    /// Zero means the next frame is not complete yet.
    pub consumed: usize,
    /// A complete message, if the consumed frame finished one.
    pub message: Option<Message>,
}

struct Header {
    fin: bool,
    /// RSV1: with permessage-deflate, the message is compressed.
    compressed: bool,
    opcode: OpCode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: u64,
}

/// A message being assembled from fragments.
#[derive(Debug)]
struct Fragmented {
    is_text: bool,
    /// Compressed: `data` is deflate data, inflated when the message ends.
    compressed: bool,
    data: BytesMut,
    /// Prefix of `data` already checked as UTF-8 (text only), for fail-fast.
    utf8_checked: usize,
}

/// What a decoder holds beyond its settings, only while it needs it.
#[derive(Debug, Default)]
struct Extra {
    /// A message being assembled from fragments.
    fragmented: Option<Fragmented>,
    /// The inflate window of a client that keeps context between its
    /// compressed messages: from its first one until the connection ends.
    window: Option<Window>,
}

/// How compressed messages (RSV1, permessage-deflate) are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deflate {
    /// Not negotiated: RSV1 is a protocol error.
    Off,
    /// Each message compressed on its own: the thread's inflater serves.
    Alone,
    /// The client keeps context: the connection needs a window of its own.
    Context,
}

/// Server-side decoder for client frames. Holds state only mid-fragmentation
/// and, for a client that compresses with context, its inflate window.
#[derive(Debug)]
pub struct Decoder {
    /// 32 bits (the server's limit is under 2 GiB), so that with the mode
    /// beside it an idle decoder is two words.
    max_message: u32,
    deflate: Deflate,
    /// A close frame was decoded: the peer will send nothing more (it fits
    /// beside `deflate`, so an idle decoder stays two words).
    close_received: bool,
    /// Boxed and absent while idle: an idle connection pays one pointer.
    extra: Option<Box<Extra>>,
}

impl Decoder {
    /// A decoder that rejects messages over `max_message` bytes (after
    /// reassembly; at most `u32::MAX`).
    pub fn new(max_message: usize) -> Self {
        let max_message = u32::try_from(max_message).unwrap_or(u32::MAX);
        Decoder { max_message, deflate: Deflate::Off, close_received: false, extra: None }
    }

    /// Accepts compressed messages (permessage-deflate was negotiated), whose
    /// compressed and inflated sizes must both fit the message limit. A client
    /// that offered `client_no_context_takeover` needs no window of its own.
    pub fn with_deflate(mut self, client_no_context_takeover: bool) -> Self {
        self.deflate = if client_no_context_takeover { Deflate::Alone } else { Deflate::Context };
        self
    }

    /// Whether this decoder holds a client's inflate window.
    pub fn holds_inflate_window(&self) -> bool {
        self.extra.as_ref().is_some_and(|extra| extra.window.is_some())
    }

    /// Decodes at most one frame from the front of `input`.
    ///
    /// Frame headers are validated as soon as they are complete, so an
    /// oversized or malformed frame is refused before its payload arrives.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, FrameError> {
        const INCOMPLETE: Decoded = Decoded { consumed: 0, message: None };
        let Some(header) = parse_header(input, self.deflate != Deflate::Off)? else {
            return Ok(INCOMPLETE);
        };
        self.check_header(&header)?;
        let total = header.header_len as u64 + header.payload_len;
        if (input.len() as u64) < total {
            return Ok(INCOMPLETE);
        }
        let total = total as usize;
        let mut payload = BytesMut::from(&input[header.header_len..total]);
        unmask(&mut payload, header.mask);
        let message = self.on_frame(&header, payload)?;
        Ok(Decoded { consumed: total, message })
    }

    /// Whether the peer's close frame has been decoded. After it and our own
    /// close, RFC 6455 section 5.5.1 has the server close the TCP connection.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether a fragmented message is being assembled (the fuzz targets
    /// compare this with a reference decoder).
    pub fn in_message(&self) -> bool {
        self.fragmented().is_some()
    }

    fn fragmented(&self) -> Option<&Fragmented> {
        self.extra.as_ref().and_then(|extra| extra.fragmented.as_ref())
    }

    /// Drops the extra state once it holds nothing.
    fn release(&mut self) {
        if self.extra.as_ref().is_some_and(|extra| extra.fragmented.is_none() && extra.window.is_none()) {
            self.extra = None;
        }
    }

    fn check_header(&self, header: &Header) -> Result<(), FrameError> {
        if header.compressed && header.opcode.is_control() {
            return Err(FrameError::CompressedControl);
        }
        if header.compressed && header.opcode == OpCode::Continuation {
            return Err(FrameError::CompressedContinuation);
        }
        if header.opcode.is_control() {
            if !header.fin {
                return Err(FrameError::FragmentedControl);
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::ControlTooLong(header.payload_len));
            }
            return Ok(());
        }
        let already = match (self.fragmented(), header.opcode) {
            (None, OpCode::Continuation) => return Err(FrameError::UnexpectedContinuation),
            (Some(_), OpCode::Text | OpCode::Binary) => return Err(FrameError::ExpectedContinuation),
            (Some(fragmented), _) => fragmented.data.len() as u64,
            (None, _) => 0,
        };
        let size = already + header.payload_len;
        if size > u64::from(self.max_message) {
            return Err(FrameError::TooBig { size, limit: self.max_message as usize });
        }
        Ok(())
    }

    fn on_frame(&mut self, header: &Header, payload: BytesMut) -> Result<Option<Message>, FrameError> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => {
                let close = parse_close(&payload)?;
                self.close_received = true;
                Ok(Some(Message::Close(close)))
            }
            OpCode::Text | OpCode::Binary if header.fin => {
                Ok(Some(self.finish_message(header.opcode == OpCode::Text, header.compressed, payload)?))
            }
            OpCode::Text | OpCode::Binary => {
                let mut fragmented = Fragmented {
                    is_text: header.opcode == OpCode::Text,
                    compressed: header.compressed,
                    data: payload,
                    utf8_checked: 0,
                };
                fragmented.check_utf8_prefix()?;
                self.extra.get_or_insert_with(Box::default).fragmented = Some(fragmented);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(fragmented) = self.extra.as_mut().and_then(|extra| extra.fragmented.as_mut()) else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                fragmented.data.extend_from_slice(&payload);
                fragmented.check_utf8_prefix()?;
                if !header.fin {
                    return Ok(None);
                }
                let Some(done) = self.extra.as_mut().and_then(|extra| extra.fragmented.take()) else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                self.release();
                Ok(Some(self.finish_message(done.is_text, done.compressed, done.data)?))
            }
        }
    }

    /// A complete data message: inflated if compressed, then UTF-8 checked if text.
    fn finish_message(&mut self, is_text: bool, compressed: bool, payload: BytesMut) -> Result<Message, FrameError> {
        let limit = self.max_message as usize;
        let payload = match (self.deflate, compressed) {
            (Deflate::Alone, true) => Bytes::from(deflate::inflate_alone(&payload, limit)?),
            (Deflate::Context, true) => {
                let extra = self.extra.get_or_insert_with(Box::default);
                Bytes::from(extra.window.get_or_insert_with(Window::new).inflate(&payload, limit)?)
            }
            _ => payload.freeze(),
        };
        if is_text {
            std::str::from_utf8(&payload).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Message::Text(payload))
        } else {
            Ok(Message::Binary(payload))
        }
    }
}

impl Fragmented {
    /// Fails fast on bytes that can never become valid UTF-8, while allowing
    /// a code point split across fragments. Compressed text is checked once
    /// inflated.
    fn check_utf8_prefix(&mut self) -> Result<(), FrameError> {
        if !self.is_text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(error) if error.error_len().is_none() => self.utf8_checked += error.valid_up_to(),
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }
}

/// RSV1, which permessage-deflate uses to mark a compressed message.
const RSV1: u8 = 0x40;

/// Parses a frame header; `deflate` allows RSV1 (its placement is checked by
/// [`Decoder::check_header`]).
fn parse_header(input: &[u8], deflate: bool) -> Result<Option<Header>, FrameError> {
    let [first, second, rest @ ..] = input else {
        return Ok(None);
    };
    let allowed = if deflate { RSV1 } else { 0 };
    let rsv = first & 0x70 & !allowed;
    if rsv != 0 {
        return Err(FrameError::ReservedBits((first & 0x70) >> 4));
    }
    let opcode = OpCode::from_u8(first & 0x0F)?;
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload_len, len_bytes) = match second & 0x7F {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                (u64::from_be_bytes(raw), 8)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    if payload_len >> 63 != 0 {
        return Err(FrameError::BadLength);
    }
    let Some(mask_bytes) = rest.get(len_bytes..len_bytes + 4) else {
        return Ok(None);
    };
    let mut mask = [0u8; 4];
    mask.copy_from_slice(mask_bytes);
    let header_len = 2 + len_bytes + 4;
    Ok(Some(Header { fin: first & 0x80 != 0, compressed: first & RSV1 != 0, opcode, mask, header_len, payload_len }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (byte, key) in chunk.iter_mut().zip(mask) {
            *byte ^= key;
        }
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::CloseOneByte),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !CloseCode::is_valid_on_wire(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(Some(CloseFrame { code, reason: reason.to_owned() }))
        }
    }
}

/// The header of a server (unmasked, final) frame: bytes and how many are used.
pub(crate) fn server_header(opcode: OpCode, payload_len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = 0x80 | opcode.as_u8();
    let used = match payload_len {
        0..=125 => {
            header[1] = payload_len as u8;
            2
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

/// The length of a server frame with a `payload_len`-byte payload.
pub fn frame_len(payload_len: usize) -> usize {
    server_header(OpCode::Text, payload_len).1 + payload_len
}

/// Builds one server frame whose payload is written by `write_payload`,
/// without copying the payload: the header is placed in room reserved in
/// front of it. The result can be cloned cheaply for every subscriber.
pub fn encode_with(opcode: OpCode, write_payload: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    frame_around(opcode, 0, write_payload)
}

/// Like [`encode_with`], for a payload that `write_payload` compresses:
/// the frame has RSV1 set (permessage-deflate).
pub fn encode_compressed(opcode: OpCode, write_payload: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    frame_around(opcode, RSV1, write_payload)
}

fn frame_around(opcode: OpCode, rsv: u8, write_payload: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut buffer = Vec::with_capacity(MAX_SERVER_HEADER + 128);
    buffer.resize(MAX_SERVER_HEADER, 0);
    write_payload(&mut buffer);
    let payload_len = buffer.len() - MAX_SERVER_HEADER;
    let (mut header, used) = server_header(opcode, payload_len);
    header[0] |= rsv;
    let start = MAX_SERVER_HEADER - used;
    buffer[start..MAX_SERVER_HEADER].copy_from_slice(&header[..used]);
    Bytes::from(buffer).slice(start..)
}

/// Builds one server frame around a copy of `payload`.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    encode_with(opcode, |out| out.extend_from_slice(payload))
}

/// Builds a close frame with the code and its standard reason.
pub fn close_frame(code: CloseCode) -> Bytes {
    close_frame_with(code, code.reason())
}

/// The longest close reason: a control frame carries at most 125 bytes,
/// two of them the code (RFC 6455 section 5.5).
pub const MAX_CLOSE_REASON: usize = 123;

/// Builds a close frame with the code and `reason`, cut to
/// [`MAX_CLOSE_REASON`] bytes at a character boundary.
pub fn close_frame_with(code: CloseCode, reason: &str) -> Bytes {
    let reason = truncate_reason(reason);
    encode_with(OpCode::Close, |out| {
        out.extend_from_slice(&code.as_u16().to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
    })
}

/// `reason` cut to [`MAX_CLOSE_REASON`] bytes without splitting a character.
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
