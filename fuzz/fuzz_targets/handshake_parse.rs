//! `handshake::parse_request` on arbitrary bytes.
//!
//! Input: byte 0 sets `max_head` (byte0 * 64, so 128 gives the server's 8 KiB),
//! the rest is what the connection has received so far.
//!
//! Checks: never panics; `Incomplete` only while the input fits `max_head`
//! (the bound on what the server buffers); `HeadTooLarge` names `max_head`;
//! on `Upgrade`: `head_len` is within the input and `max_head`, the head ends
//! with a newline, `accept` is 28 characters of base64 (a 20-byte SHA-1), a
//! `name` passes `validate_user`, the head alone parses to the same upgrade,
//! and shorter prefixes of it are `Incomplete` (bytes arriving one read at a
//! time never get a different answer before the head is complete).
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::command;
use switchboard_protocol::handshake::{parse_request, HandshakeError, Parsed};

fuzz_target!(|data: &[u8]| {
    let [head_byte, input @ ..] = data else { return };
    let max_head = usize::from(*head_byte) * 64;
    let result = parse_request(input, max_head);
    match &result {
        Ok(Parsed::Incomplete) => {
            assert!(input.len() <= max_head, "Incomplete with {} bytes over max_head {max_head}", input.len())
        }
        Ok(Parsed::Other) => {}
        Ok(Parsed::Upgrade(upgrade)) => {
            let head_len = upgrade.head_len;
            assert!(head_len <= input.len(), "head_len {head_len} over the input's {} bytes", input.len());
            assert!(head_len <= max_head, "head_len {head_len} over max_head {max_head}");
            assert!(head_len > 0 && input[head_len - 1] == b'\n', "head does not end with a newline");
            assert_eq!(upgrade.accept.len(), 28, "accept {:?}", upgrade.accept);
            match STANDARD.decode(&upgrade.accept) {
                Ok(raw) => assert_eq!(raw.len(), 20, "accept {:?} is not a SHA-1", upgrade.accept),
                Err(error) => panic!("accept {:?} is not base64: {error}", upgrade.accept),
            }
            if let Some(name) = &upgrade.caller.name {
                assert!(command::validate_user(name).is_ok(), "accepted name {name:?}");
            }
            assert_eq!(parse_request(&input[..head_len], max_head), result, "the head alone");
            for cut in [head_len - 1, head_len / 2] {
                assert_eq!(parse_request(&input[..cut], max_head), Ok(Parsed::Incomplete), "prefix of {cut} bytes");
            }
        }
        Err(error) => {
            if let HandshakeError::HeadTooLarge(limit) = error {
                assert_eq!(*limit, max_head);
            }
            assert!(matches!(error.status().0, 400 | 405 | 426 | 431), "{error}: status {:?}", error.status());
        }
    }
});
