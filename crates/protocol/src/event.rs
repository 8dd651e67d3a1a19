//! Server events and replies, written as JSON into a caller's buffer so the
//! caller can frame them once (see [`crate::ws::encode_with`]).

use crate::codes::ErrorCode;
use serde::Serialize;
use serde_json::value::RawValue;

/// `{"ev":"hello","user":U,"conn":C}`, the greeting on every connection.
#[derive(Debug, Serialize)]
pub struct Hello<'a> {
    pub ev: &'static str,
    pub user: &'a str,
    pub conn: u64,
}

/// `{"ev":"msg",...}`, a message published to a room.
#[derive(Debug, Serialize)]
pub struct RoomMessage<'a> {
    pub ev: &'static str,
    pub room: &'a str,
    pub seq: u64,
    pub from: &'a str,
    pub ts: u64,
    pub body: &'a RawValue,
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

/// `{"ev":"join"|"leave","room":R,"user":U}`, presence changes.
#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub ev: &'static str,
    pub room: &'a str,
    pub user: &'a str,
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
    fn events_have_the_documented_shape() {
        let body = RawValue::from_string(r#"{"text":"hi"}"#.into()).expect("raw");
        let msg = RoomMessage { ev: "msg", room: "lobby", seq: 3, from: "alice", ts: 17, body: &body };
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
