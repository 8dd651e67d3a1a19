//! The protocol's commands, events and replies as typed values
//! (docs/PROTOCOL.md). The protocol crate's own types are borrowed,
//! serialize-only views the server encodes once per fan-out; these are
//! owned and read from JSON. Codes ([`ErrorCode`], [`CloseCode`]) and name
//! rules are the protocol crate's. Unknown fields are ignored and unknown
//! events kept as JSON ([`ServerEvent::Other`]), as the protocol asks of
//! clients.
//!
//! [`ErrorCode`]: switchboard_protocol::ErrorCode
//! [`CloseCode`]: switchboard_protocol::CloseCode

use crate::error::ServerError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A command to the server (`op`). The client adds the `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Joins a room; with `since` (and `epoch`) replays what came after it.
    Join {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    Leave {
        room: String,
    },
    /// Publishes `body` to a room the client is in. With an
    /// `idempotency_key`, a repeat within the server's window is acked
    /// with the first ack and stored once.
    Send {
        room: String,
        body: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        volatile: bool,
    },
    /// A direct message, kept in `to`'s inbox.
    Dm {
        to: String,
        body: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    History {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    },
    Presence {
        room: String,
    },
    /// The server's rooms that have members (that the token allows joining).
    Rooms,
    /// Replays the user's DMs after `since`.
    Inbox {
        since: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    Ping,
    /// A fresh token for the connection (token mode).
    Auth {
        token: String,
    },
}

impl Command {
    /// The `op` name.
    pub fn op(&self) -> &'static str {
        match self {
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Send { .. } => "send",
            Command::Dm { .. } => "dm",
            Command::History { .. } => "history",
            Command::Presence { .. } => "presence",
            Command::Rooms => "rooms",
            Command::Inbox { .. } => "inbox",
            Command::Ping => "ping",
            Command::Auth { .. } => "auth",
        }
    }

    /// The idempotency key of a `send` or `dm`: such a command may be sent
    /// again after a reconnect, since the server stores it once.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Command::Send { idempotency_key, volatile: false, .. } | Command::Dm { idempotency_key, .. } => {
                idempotency_key.as_deref()
            }
            _ => None,
        }
    }

    /// The command as one JSON text with `id`.
    pub fn to_text(&self, id: u64) -> String {
        #[derive(Serialize)]
        struct WithId<'a> {
            #[serde(flatten)]
            command: &'a Command,
            id: u64,
        }
        serde_json::to_string(&WithId { command: self, id }).unwrap_or_default()
    }
}

/// `{"ev":"hello"}`: the greeting on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hello {
    pub user: String,
    /// The connection's number, unique for the life of the server process.
    pub conn: u64,
    /// Where the user's DM inbox stands, if they ever received a DM.
    #[serde(default)]
    pub inbox: Option<InboxStatus>,
}

/// The `hello`'s `inbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct InboxStatus {
    pub epoch: u64,
    /// The newest DM's `seq`.
    pub seq: u64,
    /// DMs stored since one was last delivered to any of the user's connections.
    pub waiting: u64,
}

/// `{"ev":"msg"}`: a room message (also a `history` page's entries).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    pub room: String,
    /// Absent for a volatile message (never stored).
    #[serde(default)]
    pub seq: Option<u64>,
    pub from: String,
    /// The server's clock, Unix milliseconds.
    pub ts: u64,
    pub body: Value,
    #[serde(default)]
    pub volatile: bool,
}

/// `{"ev":"dm"}`: a direct message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DirectMessage {
    pub from: String,
    pub to: String,
    /// Its place in `to`'s inbox.
    pub seq: u64,
    pub ts: u64,
    pub body: Value,
}

/// `{"ev":"join"}` or `{"ev":"leave"}`: another user arrived in or left a room.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PresenceChange {
    pub room: String,
    pub user: String,
    /// The token's public `info` (token mode).
    #[serde(default)]
    pub info: Option<Value>,
}

/// `{"ev":"replayed"}`: the end of a replay after `join` or `inbox` with `since`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Replayed {
    /// The room, or `None` for the inbox.
    #[serde(default)]
    pub room: Option<String>,
    pub count: u64,
    pub recovered: bool,
}

/// `{"ev":"removed"}`: the connection is no longer in `room`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Removed {
    pub room: String,
    pub code: String,
    pub reason: String,
}

/// `{"ev":"token_expiring"}`: refresh with [`crate::Client::auth`] before `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TokenExpiring {
    /// Unix seconds.
    pub exp: u64,
    pub seconds_left: u64,
}

/// An event from the server, by its `ev`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Hello(Hello),
    Message(Message),
    Direct(DirectMessage),
    Joined(PresenceChange),
    Left(PresenceChange),
    Replayed(Replayed),
    Removed(Removed),
    TokenExpiring(TokenExpiring),
    /// An `error` event: a command without an `id` failed.
    Error(ServerError),
    Pong,
    /// Anything else (a newer server's event, raw TCP's greeting), as sent.
    Other(Value),
}

impl ServerEvent {
    /// Reads an event; one this version does not know is kept as JSON.
    pub fn from_json(value: Value) -> ServerEvent {
        fn typed<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<T> {
            T::deserialize(value).ok()
        }
        let parsed = match value["ev"].as_str() {
            Some("hello") => typed(&value).map(ServerEvent::Hello),
            Some("msg") => typed(&value).map(ServerEvent::Message),
            Some("dm") => typed(&value).map(ServerEvent::Direct),
            Some("join") => typed(&value).map(ServerEvent::Joined),
            Some("leave") => typed(&value).map(ServerEvent::Left),
            Some("replayed") => typed(&value).map(ServerEvent::Replayed),
            Some("removed") => typed(&value).map(ServerEvent::Removed),
            Some("token_expiring") => typed(&value).map(ServerEvent::TokenExpiring),
            Some("error") => Some(ServerEvent::Error(server_error(&value))),
            Some("pong") => Some(ServerEvent::Pong),
            _ => None,
        };
        parsed.unwrap_or(ServerEvent::Other(value))
    }
}

/// The reply to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Joined {
    pub room: String,
    /// The room's epoch; `None` before its first stored message.
    pub epoch: Option<u64>,
    /// Every stored message after this `seq` reaches the client live.
    pub seq: u64,
    /// With `since`: whether every message after it is replayed.
    #[serde(default)]
    pub recovered: Option<bool>,
    /// False in rooms too large for join/leave events.
    #[serde(default)]
    pub presence_events: bool,
}

/// The ack of a stored `send` or `dm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Ack {
    /// Its `seq` in the room (or the recipient's inbox).
    pub seq: u64,
    pub ts: u64,
    /// True when the server had stored it already (a resend with the same
    /// idempotency key) and answered with the first ack.
    #[serde(default)]
    pub duplicate: bool,
}

/// The reply to `history`: messages oldest first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryPage {
    pub room: String,
    pub epoch: Option<u64>,
    pub messages: Vec<Message>,
    /// Older messages are retained: ask again with `before` = the first `seq`.
    pub more: bool,
}

/// The reply to `presence`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Presence {
    pub room: String,
    /// Sorted.
    pub users: Vec<String>,
    /// The token `info` of users who have one (token mode).
    #[serde(default)]
    pub info: Map<String, Value>,
}

/// The reply to `inbox`; the DMs follow as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct InboxReply {
    pub epoch: Option<u64>,
    pub seq: u64,
    pub recovered: bool,
}

/// A refusal as [`ServerError`], from a reply or an `error` event.
pub(crate) fn server_error(value: &Value) -> ServerError {
    ServerError {
        code: value["code"].as_str().unwrap_or("unknown").to_owned(),
        message: value["error"].as_str().unwrap_or_default().to_owned(),
    }
}

/// A reply's outcome: its fields, or the server's refusal.
pub(crate) fn reply_outcome(reply: Value) -> Result<Value, ServerError> {
    match reply["ok"].as_bool() {
        Some(true) => Ok(reply),
        _ => Err(server_error(&reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_written_as_the_protocol_says() {
        let send = Command::Send { room: "r".into(), body: json!({"t": 1}), idempotency_key: None, volatile: false };
        assert_eq!(send.to_text(3), r#"{"op":"send","room":"r","body":{"t":1},"id":3}"#);
        let keyed = Command::Dm { to: "bob".into(), body: json!("hi"), idempotency_key: Some("k".into()) };
        assert_eq!(keyed.to_text(4), r#"{"op":"dm","to":"bob","body":"hi","idempotency_key":"k","id":4}"#);
        let join = Command::Join { room: "r".into(), since: Some(5), epoch: None };
        assert_eq!(join.to_text(1), r#"{"op":"join","room":"r","since":5,"id":1}"#);
        assert_eq!(Command::Ping.to_text(2), r#"{"op":"ping","id":2}"#);
        assert_eq!(keyed.idempotency_key(), Some("k"));
        assert_eq!(join.idempotency_key(), None);
    }

    #[test]
    fn events_are_read_and_unknown_ones_kept() {
        let msg = ServerEvent::from_json(json!({"ev":"msg","room":"r","seq":2,"from":"a","ts":9,"body":"x","new":1}));
        let ServerEvent::Message(message) = msg else { panic!("a message: {msg:?}") };
        assert_eq!((message.seq, message.from.as_str(), message.volatile), (Some(2), "a", false));
        let error = ServerEvent::from_json(json!({"ev":"error","code":"bad_json","error":"oops"}));
        assert!(matches!(error, ServerEvent::Error(ref e) if e.is(switchboard_protocol::ErrorCode::BadJson)));
        let future = json!({"ev":"weather","sunny":true});
        assert_eq!(ServerEvent::from_json(future.clone()), ServerEvent::Other(future));
        let refused = reply_outcome(json!({"re":1,"ok":false,"code":"not_member","error":"join first"}));
        assert_eq!(refused.map_err(|e| e.code), Err("not_member".to_owned()));
    }
}
