//! Server events and replies, written as JSON into a caller's buffer so the
//! caller can frame them once (see [`crate::ws::encode_with`]), and
//! compressed at most once per window size (see [`Encoded::deflated`]).

use crate::codes::{CloseCode, ErrorCode};
use crate::deflate::{self, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::ws::{self, OpCode, MAX_SERVER_HEADER};
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::OnceLock;

/// How a connection wants its events framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A WebSocket text frame.
    WebSocket,
    /// The JSON followed by a newline (TCP).
    Line,
    /// The JSON followed by a newline, as one UDP datagram: the newline
    /// costs a byte and lets `nc -u` show one event per line (JSON parsers
    /// skip trailing whitespace).
    Datagram,
}

/// One event serialized once, laid out in a single allocation as
/// `[WebSocket header][JSON]['\n']`, so every framing is a view of the
/// same bytes: recipients on different transports share one encoding.
/// Its permessage-deflate frames are built on first use, one per window
/// size, and shared the same way.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `[WebSocket header][JSON]['\n']`.
    bytes: Bytes,
    /// The WebSocket frame, a view of `bytes` cut once: most recipients
    /// take it, and cloning a view is cheaper than cutting one each
    /// (about 60 of the 820 user-space instructions per delivery at 20
    /// deliveries per write, `bench/instructions.sh 50 1000`).
    websocket: Bytes,
    header_len: usize,
    /// The compressed frame per window size (index: bits - 9); `None`
    /// inside when compressing did not make the frame smaller.
    deflated: [OnceLock<Option<Bytes>>; (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1) as usize],
}

impl Encoded {
    /// Serializes `value` once.
    pub fn new(value: &impl Serialize) -> Self {
        let mut buffer = Vec::with_capacity(MAX_SERVER_HEADER + 128);
        buffer.resize(MAX_SERVER_HEADER, 0);
        write(&mut buffer, value);
        let json_len = buffer.len() - MAX_SERVER_HEADER;
        buffer.push(b'\n');
        let (header, header_len) = ws::server_header(OpCode::Text, json_len);
        let start = MAX_SERVER_HEADER - header_len;
        buffer[start..MAX_SERVER_HEADER].copy_from_slice(&header[..header_len]);
        let bytes = Bytes::from(buffer).slice(start..);
        let websocket = bytes.slice(..bytes.len() - 1);
        Encoded { bytes, websocket, header_len, deflated: Default::default() }
    }

    /// The WebSocket frame compressed for a client that agreed to
    /// `window_bits`, or `None` when compression would not make it smaller.
    /// Compressed on the first call for a window and shared after that; most
    /// events fit every window (see [`deflate::effective_window`]), so one
    /// compression usually serves every compressing subscriber.
    /// `compressing` runs when this call is the one that compresses.
    pub fn deflated(&self, window_bits: u8, compressing: impl FnOnce()) -> Option<Bytes> {
        let bits = deflate::effective_window(self.json().len(), window_bits);
        let slot = &self.deflated[usize::from(bits - MIN_WINDOW_BITS)];
        slot.get_or_init(|| {
            compressing();
            deflate::compress_frame(OpCode::Text, self.json(), bits)
        })
        .clone()
    }

    /// The event framed for `framing` (a cheap view, no copy).
    #[inline]
    pub fn framed(&self, framing: Framing) -> Bytes {
        match framing {
            Framing::WebSocket => self.websocket.clone(),
            Framing::Line | Framing::Datagram => self.bytes.slice(self.header_len..),
        }
    }

    /// The JSON text alone.
    #[inline]
    pub fn json(&self) -> &[u8] {
        &self.bytes[self.header_len..self.bytes.len() - 1]
    }
}

/// `{"ev":"close","code":C,"reason":R}`: the last line or datagram on
/// transports that have no close frame of their own (TCP, UDP).
#[derive(Debug, Serialize)]
pub struct Close<'a> {
    pub ev: &'static str,
    pub code: u16,
    pub reason: &'a str,
}

impl Close<'static> {
    pub fn new(code: CloseCode) -> Self {
        Close { ev: "close", code: code.as_u16(), reason: code.reason() }
    }
}

impl<'a> Close<'a> {
    /// The close line with a reason of the server's (an operator's kick).
    pub fn with_reason(code: CloseCode, reason: &'a str) -> Self {
        Close { ev: "close", code: code.as_u16(), reason }
    }
}

/// The line a raw TCP connection gets when it has sent nothing for
/// `tcp_options.greeting_delay` (open mode): a JSON event, so that a
/// JSON-lines client that waits before its first line can read (and
/// ignore) it, with words a person in nc or telnet reads as a greeting.
pub const TCP_GREETING: &str = "{\"ev\":\"greeting\",\"text\":\"welcome to switchboard: type /help and press \
    Enter for the commands, or send JSON lines (see docs/PROTOCOL.md)\"}\n";
/// [`TCP_GREETING`] on a server in token mode, where the first line
/// must authenticate.
pub const TCP_GREETING_TOKEN: &str = "{\"ev\":\"greeting\",\"text\":\"welcome to switchboard: this server \
    wants a token first: type /auth TOKEN and press Enter (then /help lists the commands), or send JSON lines \
    starting with a hello that carries the token (see docs/PROTOCOL.md)\"}\n";

/// `{"ev":"hello","user":U,"conn":C}`, the greeting on every connection.
#[derive(Debug, Serialize)]
pub struct Hello<'a> {
    pub ev: &'static str,
    pub user: &'a str,
    pub conn: u64,
    /// The UDP session token, which every later datagram must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    /// The user's DM inbox, when it has ever received one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox: Option<InboxStatus>,
}

/// Where a user's inbox stands: fetch with `{"op":"inbox","since":..}`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InboxStatus {
    pub epoch: u64,
    /// The newest DM's `seq`.
    pub seq: u64,
    /// DMs stored since one was last queued to any of the user's connections.
    pub waiting: u64,
}

/// `{"ev":"replayed",...}`: the end of a replay started by `join` or
/// `inbox` with `since`; live messages follow.
#[derive(Debug, Serialize)]
pub struct Replayed<'a> {
    pub ev: &'static str,
    /// The room, or absent for the inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox: Option<bool>,
    /// Messages replayed.
    pub count: u64,
    /// False if retention removed messages while the replay ran.
    pub recovered: bool,
}

/// `{"ev":"msg",...}`, a message published to a room. A volatile message
/// has no `seq` (it is not stored) and says `"volatile": true`.
#[derive(Debug, Serialize)]
pub struct RoomMessage<'a> {
    pub ev: &'static str,
    pub room: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub from: &'a str,
    pub ts: u64,
    pub body: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volatile: Option<bool>,
}

/// `{"ev":"dm",...}`, a direct message.
#[derive(Debug, Serialize)]
pub struct DirectMessage<'a> {
    pub ev: &'static str,
    pub from: &'a str,
    pub to: &'a str,
    pub seq: u64,
    pub ts: u64,
    pub body: &'a RawValue,
}

/// `{"ev":"join"|"leave","room":R,"user":U,"info":I?}`, presence changes;
/// `info` is the public part of the user's token, in token mode.
#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub ev: &'static str,
    pub room: &'a str,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<&'a RawValue>,
}

/// `{"ev":"removed","room":R,"code":C,"reason":TEXT}`: the connection is no
/// longer a member of `room` (its refreshed token does not allow it).
#[derive(Debug, Serialize)]
pub struct Removed<'a> {
    pub ev: &'static str,
    pub room: &'a str,
    pub code: &'static str,
    pub reason: &'a str,
}

/// `{"ev":"token_expiring","exp":E,"seconds_left":S}`: send
/// `{"op":"auth","token":..}` with a fresh token before `exp`, or the
/// connection is closed with 4005.
#[derive(Debug, Serialize)]
pub struct TokenExpiring {
    pub ev: &'static str,
    /// The token's `exp`, in Unix seconds.
    pub exp: u64,
    pub seconds_left: u64,
}

/// `{"re":id,"ok":true,...data}`: a successful reply; `data`'s fields are
/// flattened in.
#[derive(Debug, Serialize)]
pub struct Ok<'a, T: Serialize> {
    pub re: &'a RawValue,
    pub ok: bool,
    #[serde(flatten)]
    pub data: T,
}

/// No extra fields in a reply.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// `{"re":id,"ok":false,"code":..,"error":..}`, or, when the command had no
/// id, `{"ev":"error","code":..,"error":..}`.
#[derive(Debug, Serialize)]
pub struct Error<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub re: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ev: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    pub code: &'static str,
    pub error: &'a str,
}

impl<'a> Error<'a> {
    /// An error answering `id`, or an `error` event when there is no id.
    pub fn new(id: Option<&'a RawValue>, code: ErrorCode, message: &'a str) -> Self {
        Error {
            re: id,
            ev: id.is_none().then_some("error"),
            ok: id.is_some().then_some(false),
            code: code.as_str(),
            error: message,
        }
    }
}

/// Appends `value` as JSON to `out`. Serializing these types cannot fail:
/// they hold only strings, integers and already-valid raw JSON.
pub fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    if let Err(error) = serde_json::to_writer(&mut *out, value) {
        debug_assert!(false, "event serialization failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        let mut out = Vec::new();
        write(&mut out, value);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn one_encoding_serves_every_framing() {
        let encoded = Encoded::new(&Presence { ev: "join", room: "r", user: "bob", info: None });
        let json = br#"{"ev":"join","room":"r","user":"bob"}"#;
        assert_eq!(encoded.json(), json);
        assert_eq!(encoded.framed(Framing::Line), [&json[..], b"\n"].concat());
        assert_eq!(encoded.framed(Framing::Datagram), encoded.framed(Framing::Line), "nc -u shows one a line");
        let frame = encoded.framed(Framing::WebSocket);
        assert_eq!(&frame[..2], &[0x81, json.len() as u8]);
        assert_eq!(&frame[2..], json);
        let big = "x".repeat(300);
        let long = Encoded::new(&Presence { ev: "join", room: &big, user: "bob", info: None });
        let frame = long.framed(Framing::WebSocket);
        assert_eq!(&frame[..2], &[0x81, 126]);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]) as usize, long.json().len());
    }

    #[test]
    fn the_tcp_greetings_are_one_json_event_a_line() {
        for greeting in [TCP_GREETING, TCP_GREETING_TOKEN] {
            let (line, rest) = greeting.split_once('\n').expect("a newline");
            assert!(rest.is_empty(), "one line");
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
            assert_eq!(value["ev"], "greeting");
            assert!(value["text"].as_str().is_some_and(|text| text.contains("/help")), "{value}");
        }
    }

    #[test]
    fn events_have_the_documented_shape() {
        let body = RawValue::from_string(r#"{"text":"hi"}"#.into()).expect("raw");
        let msg =
            RoomMessage { ev: "msg", room: "lobby", seq: Some(3), from: "alice", ts: 17, body: &body, volatile: None };
        assert_eq!(json(&msg), r#"{"ev":"msg","room":"lobby","seq":3,"from":"alice","ts":17,"body":{"text":"hi"}}"#);
        let id = RawValue::from_string("\"x\"".into()).expect("raw");
        assert_eq!(json(&Ok { re: &id, ok: true, data: Empty {} }), r#"{"re":"x","ok":true}"#);
        assert_eq!(
            json(&Error::new(Some(&id), ErrorCode::NotMember, "join first")),
            r#"{"re":"x","ok":false,"code":"not_member","error":"join first"}"#
        );
        assert_eq!(
            json(&Error::new(None, ErrorCode::BadJson, "oops")),
            r#"{"ev":"error","code":"bad_json","error":"oops"}"#
        );
    }
}
