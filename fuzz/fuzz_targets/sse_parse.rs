//! `sse::parse_request` and `sse::render::head` on arbitrary bytes.
//!
//! Input: byte 0 sets `max_head` (byte0 * 64, so 128 gives the server's 8 KiB),
//! the rest is what the connection has received so far (and, for `head`, an
//! event's JSON).
//!
//! Checks: never panics; `Incomplete` only while the input fits `max_head`;
//! `HeadTooLarge` names `max_head`; every refusal maps to 400, 406 or 431; on
//! `Follow`: `head_len` is within the input and `max_head`, the head ends with
//! a newline, the rooms are valid, distinct and non-empty, the resume
//! positions are aligned with them, epochs are below 2^53, a `name` passes
//! `validate_user`, the head alone parses to the same request, and its
//! prefixes are `Incomplete`. An id written for the rooms reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::command;
use switchboard_protocol::sse::{self, render, FollowError, Parsed, MAX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let [head_byte, input @ ..] = data else { return };
    let max_head = usize::from(*head_byte) * 64;
    let _ = render::head(input);
    let result = sse::parse_request(input, max_head);
    match &result {
        Ok(Parsed::Incomplete) => {
            assert!(input.len() <= max_head, "Incomplete with {} bytes over max_head {max_head}", input.len())
        }
        Ok(Parsed::Other) => {}
        Ok(Parsed::Follow(follow)) => {
            let head_len = follow.head_len;
            assert!(head_len <= input.len() && head_len <= max_head, "head_len {head_len}");
            assert!(head_len > 0 && input[head_len - 1] == b'\n', "head does not end with a newline");
            assert!(!follow.rooms.is_empty(), "no rooms");
            assert_eq!(follow.rooms.len(), follow.resume.len(), "resume not aligned");
            for (index, room) in follow.rooms.iter().enumerate() {
                assert!(command::validate_room(room).is_ok(), "accepted room {room:?}");
                assert!(!follow.rooms[..index].contains(room), "room {room:?} twice");
            }
            for position in follow.resume.iter().flatten() {
                assert!(position.epoch.is_none_or(|epoch| epoch <= MAX_EPOCH), "epoch {position:?}");
            }
            if let Some(name) = &follow.caller.name {
                assert!(command::validate_user(name).is_ok(), "accepted name {name:?}");
            }
            assert_eq!(sse::parse_request(&input[..head_len], max_head), result, "the head alone");
            for cut in [head_len - 1, head_len / 2] {
                assert_eq!(sse::parse_request(&input[..cut], max_head), Ok(Parsed::Incomplete), "prefix of {cut}");
            }
            let mut id = Vec::new();
            render::write_id(&mut id, follow.rooms.iter().map(|room| (room.as_str(), Some(7), 9)));
            let text = std::str::from_utf8(&id).expect("ids are ASCII");
            let parsed = sse::parse_id(text.trim_start_matches("id: ").trim_end()).expect("an id reads back");
            assert!(parsed.iter().map(|(room, _)| room).eq(follow.rooms.iter()), "rooms read back");
        }
        Err(error) => {
            if let FollowError::HeadTooLarge(limit) = error {
                assert_eq!(*limit, max_head);
            }
            assert!(matches!(error.status().0, 400 | 406 | 431), "{error}: status {:?}", error.status());
        }
    }
});
