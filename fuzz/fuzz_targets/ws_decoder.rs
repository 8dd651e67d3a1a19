//! Client WebSocket frames fed to `ws::Decoder` the way a socket delivers
//! them: in reads of a fixed size, with a pending buffer drained by what each
//! decode consumed, until the first error.
//!
//! Input: byte 0 = read size - 1 (1..=256), byte 1 = `max_message` selector
//! (see `switchboard_fuzz::MAX_MESSAGE_CHOICES`), the rest = the byte stream.
//!
//! Checks: `consumed` never exceeds the buffer; a message only comes with
//! consumed bytes; Text is UTF-8; data messages fit `max_message`, control
//! payloads fit 125 bytes; a close code is one RFC 6455 allows on the wire.
//! The messages, whether a complete frame is refused, and the undecoded tail
//! must match `reference_decode`, a plain RFC 6455 model that shares no code
//! with the decoder. Every decoded message is encoded as a server frame
//! (header checked byte by byte), masked and decoded again to the same
//! message. The stream itself is also round-tripped as one Binary (and, if
//! UTF-8, Text) message, decoded with `max_message` equal to its size, and
//! must be refused as `TooBig` from its header alone at one byte less. One
//! payload size at a length-form boundary (125/126, 65535/65536, ...) is
//! encoded and checked per run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{
    check_against_model, encode_checked, feed, mask_frame, max_message, message_parts, reference_decode, round_trip,
};
use switchboard_protocol::ws::{Decoder, FrameError, Message, OpCode};

/// Payload sizes on each side of the 7/16/64-bit length forms.
const BOUNDARY_LENGTHS: [usize; 8] = [0, 1, 125, 126, 127, 65535, 65536, 65537];
static ZEROS: [u8; 65537] = [0; 65537];

fuzz_target!(|data: &[u8]| {
    let [read_byte, selector, stream @ ..] = data else { return };
    let max = max_message(*selector);
    let read_len = usize::from(*read_byte) + 1;
    let outcome = feed(max, stream, || read_len);
    check_against_model(&outcome, &reference_decode(max, stream));
    let key = [*read_byte, *selector, 0xA5, 0x3C];
    for message in &outcome.messages {
        let (opcode, payload) = message_parts(message);
        round_trip(opcode, &payload, key, max, message);
    }

    // The raw stream as one payload, repeated up to 29 times so that the
    // 16-bit and 64-bit length forms are reached with ordinary input sizes.
    let payload = stream.repeat(1 + usize::from(read_byte >> 5) * 4);
    round_trip(OpCode::Binary, &payload, key, payload.len(), &Message::Binary(payload.clone().into()));
    if std::str::from_utf8(&payload).is_ok() {
        round_trip(OpCode::Text, &payload, key, payload.len(), &Message::Text(payload.clone().into()));
    }
    if let Some(limit) = payload.len().checked_sub(1) {
        let (frame, header_len) = encode_checked(OpCode::Binary, &payload);
        let client = mask_frame(&frame, header_len, key);
        // Header and mask only: an oversized frame is refused before its payload.
        let refused = Decoder::new(limit).decode(&client[..header_len + 4]);
        let expected = Err(FrameError::TooBig { size: payload.len() as u64, limit });
        assert_eq!(refused, expected, "a {}-byte frame with max_message {limit}", payload.len());
    }

    // The length-form boundaries, which inputs of libFuzzer's default size
    // rarely reach exactly: one length per run, picked by byte 1.
    let boundary = BOUNDARY_LENGTHS[usize::from(*selector >> 5)];
    encode_checked(OpCode::Binary, &ZEROS[..boundary]);
});
