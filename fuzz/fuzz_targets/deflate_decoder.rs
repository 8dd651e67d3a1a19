//! Client frames fed to a `ws::Decoder` that accepts permessage-deflate
//! messages: the inflate path on arbitrary (mostly invalid) deflate data.
//!
//! Input: byte 0 = bit 0: the client offered `client_no_context_takeover`
//! (thread-shared inflater) or keeps context (a window of its own); bits
//! 1-7: read size - 1; byte 1 = `max_message` selector (see
//! `switchboard_fuzz::MAX_MESSAGE_CHOICES`); the rest = the byte stream.
//!
//! Checks: fed like a socket, every decoded message meets the invariants of
//! `check_message` (Text is UTF-8, data messages fit `max_message` once
//! inflated, control payloads fit 125 bytes); a compression bomb ends in an
//! error, never in a message over the limit. The stream itself, compressed by
//! the server's `compress_frame` (window from byte 1) and masked as a client
//! would send it, must inflate back to itself with `max_message` equal to its
//! length, and be refused as `Inflate(TooBig)` at one byte less.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{feed_decoder, mask_frame, max_message};
use switchboard_protocol::deflate::{self, InflateError};
use switchboard_protocol::ws::{Decoder, FrameError, Message, OpCode};

fuzz_target!(|data: &[u8]| {
    let [flags, selector, stream @ ..] = data else { return };
    let alone = flags & 1 == 1;
    let max = max_message(*selector);
    let read_len = usize::from(flags >> 1) + 1;
    let decoder = Decoder::new(max).with_deflate(alone);
    feed_decoder(decoder, max, stream, || read_len);

    // Window bits 9..=15 from the selector.
    let bits = 9 + selector % 7;
    let Some(frame) = deflate::compress_frame(OpCode::Binary, stream, bits) else { return };
    assert_eq!(frame[0], 0xC2, "FIN, RSV1, binary");
    let header_len = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let client = mask_frame(&frame, header_len, [*flags, *selector, 0x5A, 0xC3]);
    let decoded = Decoder::new(stream.len()).with_deflate(alone).decode(&client);
    match decoded {
        Ok(decoded) => {
            assert_eq!(decoded.consumed, client.len(), "round trip consumed");
            assert_eq!(decoded.message, Some(Message::Binary(stream.to_vec().into())), "round trip message");
        }
        Err(error) => panic!("a compressed frame of {} bytes did not inflate: {error}", stream.len()),
    }
    if let Some(limit) = stream.len().checked_sub(1) {
        let refused = Decoder::new(limit).with_deflate(alone).decode(&client);
        assert_eq!(refused, Err(FrameError::Inflate(InflateError::TooBig { limit })), "{} bytes", stream.len());
    }
});
