//! `command::parse` on arbitrary UTF-8 (other input is skipped).
//!
//! Checks: never panics; on success a Send/Dm `body` is valid JSON, every
//! room passes `validate_room`, a DM target or hello name passes `validate_user`, an `id` is
//! a JSON string or number, and the input was a JSON object (as `parse`
//! documents); borrowed `id`/`body` slices point into the input; an error
//! always has a message, and a `bad_json` error carries no id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;
use switchboard_protocol::command::{self, Command};
use switchboard_protocol::ErrorCode;

fn assert_within(text: &str, raw: &RawValue, what: &str) {
    let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    let part = raw.get();
    let at = part.as_ptr() as usize;
    assert!(at >= start && at + part.len() <= end, "{what} {part:?} is not a slice of the input");
}

fn assert_json(raw: &RawValue, what: &str) {
    if let Err(error) = serde_json::from_str::<Value>(raw.get()) {
        panic!("{what} {:?} is not valid JSON: {error}", raw.get());
    }
}

fn assert_room(room: &str) {
    if let Err(error) = command::validate_room(room) {
        panic!("accepted room {room:?} fails validate_room: {error}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match command::parse(text) {
        Ok(request) => {
            // Syntax only (RawValue does not range-check numbers, which JSON
            // itself does not limit): the whole input must be one object.
            match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) if raw.get().starts_with('{') => {}
                other => panic!("accepted a command that is not one JSON object ({other:?}): {text:?}"),
            }
            if let Some(id) = request.id {
                assert_within(text, id, "id");
                assert!(matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')), "id {}", id.get());
                assert_json(id, "id");
            }
            match &request.command {
                Command::Send { room, body, .. } => {
                    assert_room(room);
                    assert_json(body, "send body");
                    assert_within(text, body, "send body");
                }
                Command::Dm { to, body, .. } => {
                    if let Err(error) = command::validate_user(to) {
                        panic!("accepted DM target {to:?} fails validate_user: {error}");
                    }
                    assert_json(body, "dm body");
                    assert_within(text, body, "dm body");
                }
                Command::Join { room, .. }
                | Command::Leave { room }
                | Command::History { room, .. }
                | Command::Presence { room } => assert_room(room),
                Command::Hello { name, .. } => {
                    if let Some(name) = name {
                        if let Err(error) = command::validate_user(name) {
                            panic!("accepted hello name {name:?} fails validate_user: {error}");
                        }
                    }
                }
                // Numbers only: serde has already checked their range.
                // Tokens are verified by the server, not the parser.
                Command::Inbox { .. } | Command::Ping | Command::Rooms | Command::Auth { .. } => {}
            }
        }
        Err(error) => {
            assert!(!error.message.is_empty(), "error {:?} without a message", error.code);
            if let Some(id) = error.id {
                assert_within(text, id, "error id");
                assert_ne!(error.code, ErrorCode::BadJson, "bad_json with an id");
            }
        }
    }
});
