//! What a follower is sent, in the `text/event-stream` format: the
//! response head, then one event per server event. A room message is an
//! unnamed event (what `EventSource.onmessage` sees) with an `id`; every
//! other event is named by its `ev` (`event: join`, `event: close`, ...).
//! `data` is always the JSON a WebSocket member gets for the same event.
//!
//! An id names every followed room's position, `room:epoch:seq` joined by
//! commas (room names percent-encoded, the epoch empty while the room has
//! no history), so that the `Last-Event-ID` a browser sends back resumes
//! each room where the follower was.

use crate::handshake::refusal_json;
use std::borrow::Cow;
use std::time::Duration;

/// A comment line: keeps proxies from closing a quiet stream, and finds a
/// peer that is gone when writing it fails.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// What the writer needs to know of one queued event (its JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head<'a> {
    /// A room message; `seq` is absent for a volatile one.
    Message { room: Cow<'a, str>, seq: Option<u64> },
    /// Any other event, by its `ev`.
    Named(&'a str),
    /// Not an event the server makes: sent unnamed, as it is.
    Unknown,
}

/// The `200` that starts a stream: `allow_origin` (the page's origin, when
/// it is allowed and cross-origin requests must be told so) and the
/// reconnection delay the browser should use.
pub fn response_head(allow_origin: Option<&str>, retry: Duration) -> String {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Accel-Buffering: no\r\nConnection: close\r\n",
    );
    if let Some(origin) = allow_origin {
        head.push_str("Access-Control-Allow-Origin: ");
        head.push_str(origin);
        head.push_str("\r\nVary: Origin\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&format!("retry: {}\n\n", retry.as_millis()));
    head
}

/// A refusal: the status and `{"code":CODE,"error":MESSAGE}`, as WebSocket
/// refusals answer.
pub fn refusal(status: u16, reason: &str, code: &str, message: &str) -> String {
    refusal_json(status, reason, code, message)
}

/// Reads the start of an event's JSON as the server writes it (`ev` first;
/// a message's `room` and `seq` next). Anything else is [`Head::Unknown`],
/// never an error: the event is still sent.
pub fn head(json: &[u8]) -> Head<'_> {
    let Some(rest) = json.strip_prefix(b"{\"ev\":\"") else { return Head::Unknown };
    let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\') else { return Head::Unknown };
    let (Ok(ev), b'"') = (std::str::from_utf8(&rest[..end]), rest[end]) else { return Head::Unknown };
    if ev != "msg" {
        return Head::Named(ev);
    }
    let Some(rest) = rest[end + 1..].strip_prefix(b",\"room\":") else { return Head::Unknown };
    let Some((room, rest)) = json_string(rest) else { return Head::Unknown };
    let seq = rest.strip_prefix(b",\"seq\":").and_then(|rest| {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
    });
    Head::Message { room, seq }
}

/// The JSON string at the start of `input` and what follows it.
fn json_string(input: &[u8]) -> Option<(Cow<'_, str>, &[u8])> {
    let body = input.strip_prefix(b"\"")?;
    let mut index = 0;
    let mut escaped = false;
    while index < body.len() {
        match body[index] {
            b'\\' => {
                escaped = true;
                index += 2;
                continue;
            }
            b'"' => break,
            _ => index += 1,
        }
    }
    let rest = input.get(index + 2..)?;
    let text = if escaped {
        Cow::Owned(serde_json::from_slice::<String>(&input[..index + 2]).ok()?)
    } else {
        Cow::Borrowed(std::str::from_utf8(&body[..index]).ok()?)
    };
    Some((text, rest))
}

/// Appends `id: ...\n` naming every room's position.
pub fn write_id<'a>(out: &mut Vec<u8>, rooms: impl IntoIterator<Item = (&'a str, Option<u64>, u64)>) {
    out.extend_from_slice(b"id: ");
    let mut numbers = itoa::Buffer::new();
    for (index, (room, epoch, seq)) in rooms.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        encode_room(out, room);
        out.push(b':');
        if let Some(epoch) = epoch {
            out.extend_from_slice(numbers.format(epoch).as_bytes());
        }
        out.push(b':');
        out.extend_from_slice(numbers.format(seq).as_bytes());
    }
    out.push(b'\n');
}

/// A room name in an id: ASCII letters, digits and `-._~` as they are,
/// every other byte as `%XX`, so that `,` and `:` separate and the id is
/// ASCII (it comes back as an HTTP header).
fn encode_room(out: &mut Vec<u8>, room: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in room.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
        }
    }
}

/// Appends an event: `event: NAME` when named, then `data: JSON` and the
/// blank line that ends it. A line break in the JSON (whitespace a client
/// put between a body's tokens; inside strings JSON escapes them) becomes a
/// space, since a new line would end the `data` field.
pub fn write_event(out: &mut Vec<u8>, name: Option<&str>, json: &[u8]) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let start = out.len();
    out.extend_from_slice(json);
    if memchr::memchr2(b'\n', b'\r', json).is_some() {
        for byte in &mut out[start..] {
            if matches!(byte, b'\n' | b'\r') {
                *byte = b' ';
            }
        }
    }
    out.extend_from_slice(b"\n\n");
}
