//! Helpers shared by the WebSocket fuzz targets.
//!
//! Input layout of `ws_decoder` and `ws_split` (the same, so their corpora
//! can be swapped): byte 0 picks how the stream is cut into reads, byte 1
//! picks the decoder's `max_message`, and the rest is the client byte stream.

use switchboard_protocol::ws::{self, Decoder, FrameError, Message, OpCode, MAX_CONTROL_PAYLOAD};

/// `max_message` values worth testing: tiny ones, the length-encoding
/// boundaries (125/126, 65535/65536) and the server's default (65536).
pub const MAX_MESSAGE_CHOICES: [usize; 8] = [1, 2, 7, 16, 125, 126, 65535, 65536];

/// The `max_message` picked by a selector byte.
pub fn max_message(selector: u8) -> usize {
    MAX_MESSAGE_CHOICES[usize::from(selector) % MAX_MESSAGE_CHOICES.len()]
}

/// What decoding a byte stream produced, up to the first error.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub messages: Vec<Message>,
    pub error: Option<FrameError>,
    /// Bytes left undecoded at the end and whether a fragmented message was
    /// still open; `None` after an error (a split stream may not have been
    /// fed in full when the error came).
    pub tail: Option<(usize, bool)>,
}

/// Feeds `input` to a fresh decoder the way a socket read loop does: append
/// each read to a pending buffer, decode while frames complete, drain what
/// was consumed, stop at the first error. `next_read` gives each read's
/// length (clamped to 1..=remaining). Every decode result is checked.
pub fn feed(max_message: usize, input: &[u8], next_read: impl FnMut() -> usize) -> Outcome {
    feed_decoder(Decoder::new(max_message), max_message, input, next_read)
}

/// [`feed`] with a decoder of the caller's (one that accepts compressed
/// messages, say) whose limit is `max_message`.
pub fn feed_decoder(
    mut decoder: Decoder,
    max_message: usize,
    input: &[u8],
    mut next_read: impl FnMut() -> usize,
) -> Outcome {
    let mut pending: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let take = next_read().clamp(1, rest.len());
        pending.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            let decoded = match decoder.decode(&pending) {
                Ok(decoded) => decoded,
                Err(error) => return Outcome { messages, error: Some(error), tail: None },
            };
            assert!(decoded.consumed <= pending.len(), "consumed {} of only {} bytes", decoded.consumed, pending.len());
            if decoded.consumed == 0 {
                assert!(decoded.message.is_none(), "a message with nothing consumed: {decoded:?}");
                break;
            }
            // The smallest client frame is 2 header bytes plus a 4-byte mask.
            assert!(decoded.consumed >= 6, "a frame of {} bytes", decoded.consumed);
            pending.drain(..decoded.consumed);
            if let Some(message) = decoded.message {
                check_message(&message, max_message);
                messages.push(message);
            }
        }
    }
    let tail = Some((pending.len(), decoder.in_message()));
    Outcome { messages, error: None, tail }
}

/// The invariants every decoded message must meet.
pub fn check_message(message: &Message, max_message: usize) {
    match message {
        Message::Text(text) => {
            assert!(std::str::from_utf8(text).is_ok(), "Text message is not UTF-8: {text:?}");
            assert!(text.len() <= max_message, "Text of {} bytes over max_message {max_message}", text.len());
        }
        Message::Binary(data) => {
            assert!(data.len() <= max_message, "Binary of {} bytes over max_message {max_message}", data.len());
        }
        // Control frames are bounded by RFC 6455 (125 bytes), not by max_message.
        Message::Ping(data) | Message::Pong(data) => {
            assert!(data.len() <= MAX_CONTROL_PAYLOAD, "control payload of {} bytes", data.len());
        }
        Message::Close(None) => {}
        Message::Close(Some(close)) => {
            assert!(close_code_allowed(close.code), "close code {} not allowed on the wire", close.code);
            assert!(2 + close.reason.len() <= MAX_CONTROL_PAYLOAD, "close reason of {} bytes", close.reason.len());
        }
    }
}

/// The opcode and payload a message would be sent back with.
pub fn message_parts(message: &Message) -> (OpCode, Vec<u8>) {
    match message {
        Message::Text(data) => (OpCode::Text, data.to_vec()),
        Message::Binary(data) => (OpCode::Binary, data.to_vec()),
        Message::Ping(data) => (OpCode::Ping, data.to_vec()),
        Message::Pong(data) => (OpCode::Pong, data.to_vec()),
        Message::Close(None) => (OpCode::Close, Vec::new()),
        Message::Close(Some(close)) => {
            let mut payload = close.code.to_be_bytes().to_vec();
            payload.extend_from_slice(close.reason.as_bytes());
            (OpCode::Close, payload)
        }
    }
}

/// RFC 6455 opcode numbers, written out here rather than taken from the
/// crate so the encoder is checked against the RFC, not against itself.
pub fn opcode_number(opcode: OpCode) -> u8 {
    match opcode {
        OpCode::Continuation => 0x0,
        OpCode::Text => 0x1,
        OpCode::Binary => 0x2,
        OpCode::Close => 0x8,
        OpCode::Ping => 0x9,
        OpCode::Pong => 0xA,
    }
}

/// Encodes a server frame, checks its header byte by byte and returns the
/// frame with the header's length.
pub fn encode_checked(opcode: OpCode, payload: &[u8]) -> (Vec<u8>, usize) {
    let frame = ws::encode(opcode, payload).to_vec();
    let len = payload.len();
    let header_len = match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    assert_eq!(frame.len(), header_len + len, "frame length for a {len}-byte payload");
    assert_eq!(frame[0], 0x80 | opcode_number(opcode), "first header byte (FIN, RSV, opcode)");
    assert_eq!(frame[1] & 0x80, 0, "server frames must not be masked");
    match header_len {
        2 => assert_eq!(usize::from(frame[1]), len, "7-bit length"),
        4 => {
            assert_eq!(frame[1], 126, "16-bit length marker");
            assert_eq!(usize::from(u16::from_be_bytes([frame[2], frame[3]])), len, "16-bit length");
        }
        _ => {
            assert_eq!(frame[1], 127, "64-bit length marker");
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&frame[2..10]);
            assert_eq!(u64::from_be_bytes(raw), len as u64, "64-bit length");
        }
    }
    assert_eq!(&frame[header_len..], payload, "payload copied unchanged");
    (frame, header_len)
}

/// Turns a server frame into the client frame a browser would send: mask
/// bit set, the key after the length, the payload XORed with the key.
pub fn mask_frame(frame: &[u8], header_len: usize, key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..header_len]);
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(frame[header_len..].iter().zip(key.iter().cycle()).map(|(byte, k)| byte ^ k));
    out
}

/// Encodes `payload` as a server frame, masks it and decodes it with a fresh
/// decoder: the decoder must consume exactly the frame and give back `expected`.
pub fn round_trip(opcode: OpCode, payload: &[u8], key: [u8; 4], max_message: usize, expected: &Message) {
    let (frame, header_len) = encode_checked(opcode, payload);
    let client = mask_frame(&frame, header_len, key);
    let decoded = Decoder::new(max_message).decode(&client);
    match decoded {
        Ok(decoded) => {
            assert_eq!(decoded.consumed, client.len(), "round trip consumed");
            assert_eq!(decoded.message.as_ref(), Some(expected), "round trip message");
        }
        Err(error) => panic!("round trip of {opcode:?} ({} bytes) failed: {error}", payload.len()),
    }
}

/// A small xorshift generator for read lengths: deterministic per input.
#[derive(Debug)]
pub struct Reads {
    state: u32,
    bound: usize,
}

impl Reads {
    /// Read lengths in 1..=bound, driven by `seed`.
    pub fn new(seed: u8, bound: usize) -> Self {
        Reads { state: 0x9E37_79B9 ^ u32::from(seed).wrapping_mul(0x0101_0101), bound: bound.max(1) }
    }

    pub fn next_len(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + self.state as usize % self.bound
    }
}

/// Close codes a peer may send, from RFC 6455 section 7.4 and the IANA
/// registry (1012-1014), written out independently of the crate's
/// `CloseCode::is_valid_on_wire`. 1004-1006 and 1015 are never sent; 1016-2999
/// are reserved; 3000-4999 are for libraries and applications.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What the reference model expects from a whole byte stream.
#[derive(Debug)]
pub struct Expected {
    pub messages: Vec<Message>,
    /// A complete frame header (or frame) breaks the protocol.
    pub error: bool,
    /// The stream ends inside a frame header: whether that is already an
    /// error depends on how early the decoder checks, so either is accepted.
    pub undetermined: bool,
    /// Bytes left undecoded and whether a fragmented message is open.
    pub tail: (usize, bool),
}

/// A deliberately plain RFC 6455 server-side decoder over the whole stream,
/// sharing no code with `ws::Decoder`: the oracle for `ws_decoder`.
pub fn reference_decode(max_message: usize, stream: &[u8]) -> Expected {
    let mut messages = Vec::new();
    // (is_text, data) of a fragmented message in progress.
    let mut open: Option<(bool, Vec<u8>)> = None;
    let mut rest = stream;
    let stop = |messages, error, undetermined, rest: &[u8], open: &Option<(bool, Vec<u8>)>| Expected {
        messages,
        error,
        undetermined,
        tail: (rest.len(), open.is_some()),
    };
    loop {
        if rest.len() < 2 {
            return stop(messages, false, !rest.is_empty(), rest, &open);
        }
        let (fin, rsv, opcode, masked) = (rest[0] & 0x80 != 0, rest[0] & 0x70, rest[0] & 0x0F, rest[1] & 0x80 != 0);
        let (len, ext) = match rest[1] & 0x7F {
            126 if rest.len() >= 4 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 2),
            127 if rest.len() >= 10 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(raw), 8)
            }
            126 | 127 => return stop(messages, false, true, rest, &open),
            short => (u64::from(short), 0),
        };
        let header_len = 2 + ext + 4;
        if rest.len() < header_len {
            return stop(messages, false, true, rest, &open);
        }
        let control = opcode >= 0x8;
        let open_len = open.as_ref().map_or(0, |(_, data)| data.len() as u64);
        let broken = rsv != 0
            || !masked
            || !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA)
            || len >> 63 != 0
            || (control && (!fin || len > 125))
            || (opcode == 0x0 && open.is_none())
            || (matches!(opcode, 0x1 | 0x2) && open.is_some())
            || (!control && open_len + len > max_message as u64);
        if broken {
            return stop(messages, true, false, rest, &open);
        }
        if ((rest.len() - header_len) as u64) < len {
            return stop(messages, false, false, rest, &open);
        }
        let key = &rest[2 + ext..header_len];
        let end = header_len + len as usize;
        let payload: Vec<u8> = rest[header_len..end].iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k).collect();
        rest = &rest[end..];
        // A text message fails as soon as its bytes so far can never be UTF-8.
        let hopeless = |data: &[u8]| matches!(std::str::from_utf8(data), Err(e) if e.error_len().is_some());
        let message = match opcode {
            0x9 => Some(Message::Ping(payload.into())),
            0xA => Some(Message::Pong(payload.into())),
            0x8 => match payload.as_slice() {
                [] => Some(Message::Close(None)),
                [high, low, reason @ ..] => {
                    let code = u16::from_be_bytes([*high, *low]);
                    match std::str::from_utf8(reason) {
                        Ok(reason) if close_code_allowed(code) => {
                            Some(Message::Close(Some(ws::CloseFrame { code, reason: reason.to_owned() })))
                        }
                        _ => return stop(messages, true, false, rest, &open),
                    }
                }
                [_] => return stop(messages, true, false, rest, &open),
            },
            _ => {
                let (is_text, mut data) = match open.take() {
                    Some(open) => open,
                    None => (opcode == 0x1, Vec::new()),
                };
                data.extend_from_slice(&payload);
                if is_text && (hopeless(&data) || (fin && std::str::from_utf8(&data).is_err())) {
                    return stop(messages, true, false, rest, &open);
                }
                if fin {
                    Some(if is_text { Message::Text(data.into()) } else { Message::Binary(data.into()) })
                } else {
                    open = Some((is_text, data));
                    None
                }
            }
        };
        messages.extend(message);
    }
}

/// Compares what the decoder did with a stream against the reference model.
pub fn check_against_model(outcome: &Outcome, expected: &Expected) {
    assert_eq!(outcome.messages, expected.messages, "messages differ from the RFC 6455 model");
    if !expected.undetermined {
        assert_eq!(
            outcome.error.is_some(),
            expected.error,
            "error {:?}, model expected one: {}",
            outcome.error,
            expected.error
        );
    }
    if let Some(tail) = outcome.tail {
        assert_eq!(tail, expected.tail, "undecoded tail / open message differ from the model");
    }
}
