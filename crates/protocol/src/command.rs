//! Client commands, parsed from one JSON object each.
//!
//! Parsing goes field by field so that a malformed command still yields its
//! `id` and an error that names the field, and so that `body` is kept as raw
//! JSON text: the server never re-encodes a message body.

use crate::codes::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest user name, in bytes.
pub const MAX_USER_LEN: usize = 64;
/// Longest `idempotency_key` (of `send`, `dm` and the HTTP API's publishes), in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// The client's `id`, echoed verbatim in the reply's `re` (a string or number).
pub type RequestId<'a> = &'a RawValue;

/// One parsed client command with its optional request id.
#[derive(Debug)]
pub struct Request<'a> {
    pub id: Option<RequestId<'a>>,
    pub command: Command<'a>,
}

/// What a client asks for. Names follow `docs/PROTOCOL.md`.
#[derive(Debug)]
pub enum Command<'a> {
    Join {
        room: String,
        /// Replay stored messages with a greater `seq` before live ones.
        since: Option<u64>,
        /// The epoch `since` belongs to; a different one means that
        /// history is gone.
        epoch: Option<u64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        body: &'a RawValue,
        volatile: bool,
        /// A repeat with the same key (same user and room, within the
        /// server's window) is answered with the first ack, stored once.
        idempotency_key: Option<String>,
    },
    Dm {
        to: String,
        body: &'a RawValue,
        /// As for `Send`, scoped to the recipient.
        idempotency_key: Option<String>,
    },
    History {
        room: String,
        before: Option<u64>,
        limit: Option<u64>,
    },
    Presence {
        room: String,
    },
    /// The server's rooms (those with members) that the connection may join.
    Rooms,
    /// Replays the user's stored DMs with a greater `seq`.
    Inbox {
        since: Option<u64>,
        epoch: Option<u64>,
    },
    Ping,
    /// Names (open mode) or authenticates (token mode) a TCP or UDP
    /// client; only valid as its first command.
    Hello {
        name: Option<String>,
        token: Option<String>,
    },
    /// A fresh token for the connection's user, before the current one
    /// expires.
    Auth {
        token: String,
    },
}

/// Why a command was refused, with the id to answer (if one could be read).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError<'a> {
    pub id: Option<RequestId<'a>>,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(borrow)]
    before: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    volatile: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

/// Parses one command. The input must be a single JSON object.
pub fn parse(text: &str) -> Result<Request<'_>, CommandError<'_>> {
    let bad_json = |message: String| CommandError { id: None, code: ErrorCode::BadJson, message };
    // serde would also read a struct from an array of its fields in order.
    if !text.trim_start().starts_with('{') {
        return Err(bad_json("expected one JSON object".into()));
    }
    let fields: Fields<'_> =
        serde_json::from_str(text).map_err(|error| bad_json(format!("expected one JSON object: {error}")))?;
    let id = fields.id;
    let fail = |code, message: String| CommandError { id, code, message };
    if let Some(raw) = id {
        if !matches!(raw.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')) {
            return Err(fail(ErrorCode::BadRequest, "`id` must be a string or a number".into()));
        }
    }
    let op: String = required(fields.op, "op").map_err(|m| fail(ErrorCode::BadRequest, m))?;
    let command = fields.command(&op).map_err(|(code, message)| fail(code, message))?;
    Ok(Request { id, command })
}

impl<'a> Fields<'a> {
    fn command(&self, op: &str) -> Result<Command<'a>, (ErrorCode, String)> {
        let bad = |message: String| (ErrorCode::BadRequest, message);
        let room = || -> Result<String, (ErrorCode, String)> {
            let room: String = required(self.room, "room").map_err(bad)?;
            validate_room(&room).map_err(|m| (ErrorCode::BadRoom, m))?;
            Ok(room)
        };
        let idempotency_key = || -> Result<Option<String>, (ErrorCode, String)> {
            let key: Option<String> = optional(self.idempotency_key, "idempotency_key").map_err(bad)?;
            if let Some(key) = &key {
                check_idempotency_key(key).map_err(bad)?;
            }
            Ok(key)
        };
        let body = || {
            let body = self.body.ok_or_else(|| bad(format!("`{op}` needs a `body`")))?;
            check_body(body).map_err(bad)?;
            Ok(body)
        };
        Ok(match op {
            "join" => Command::Join {
                room: room()?,
                since: optional(self.since, "since").map_err(bad)?,
                epoch: optional(self.epoch, "epoch").map_err(bad)?,
            },
            "leave" => Command::Leave { room: room()? },
            "send" => {
                let volatile = optional(self.volatile, "volatile").map_err(bad)?.unwrap_or(false);
                let idempotency_key = idempotency_key()?;
                if volatile && idempotency_key.is_some() {
                    return Err(bad("`idempotency_key` is for stored messages, not volatile ones".into()));
                }
                Command::Send { room: room()?, body: body()?, volatile, idempotency_key }
            }
            "dm" => {
                let to: String = required(self.to, "to").map_err(bad)?;
                validate_user(&to).map_err(|m| (ErrorCode::BadUser, m))?;
                Command::Dm { to, body: body()?, idempotency_key: idempotency_key()? }
            }
            "history" => Command::History {
                room: room()?,
                before: optional(self.before, "before").map_err(bad)?,
                limit: optional(self.limit, "limit").map_err(bad)?,
            },
            "presence" => Command::Presence { room: room()? },
            "rooms" => Command::Rooms,
            "inbox" => Command::Inbox {
                since: optional(self.since, "since").map_err(bad)?,
                epoch: optional(self.epoch, "epoch").map_err(bad)?,
            },
            "ping" => Command::Ping,
            "hello" => {
                let name: Option<String> = optional(self.name, "name").map_err(bad)?;
                if let Some(name) = &name {
                    validate_user(name).map_err(|m| (ErrorCode::BadUser, m))?;
                }
                Command::Hello { name, token: optional(self.token, "token").map_err(bad)? }
            }
            "auth" => Command::Auth { token: required(self.token, "token").map_err(bad)? },
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err((ErrorCode::UnknownOp, format!("unknown op `{shown}`")));
            }
        })
    }
}

/// Checks a message `body` the way every transport does. Bodies are
/// forwarded verbatim, so what strict JSON readers reject (such as numbers
/// beyond the range of a double) is refused here.
pub fn check_body(body: &RawValue) -> Result<(), String> {
    serde_json::from_str::<Checked>(body.get()).map(|_| ()).map_err(|error| format!("invalid `body`: {error}"))
}

/// Deserializes any JSON value without keeping it, so that numbers are
/// range-checked as `serde_json::Value` would, without allocating.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Field `name`, which must be present, as a `T`; the error names the field.
pub fn required<T: for<'de> Deserialize<'de>>(raw: Option<&RawValue>, name: &str) -> Result<T, String> {
    let raw = raw.ok_or_else(|| format!("missing field `{name}`"))?;
    typed(raw, name)
}

/// Field `name` as a `T` when present and not `null`; the error names the field.
pub fn optional<T: for<'de> Deserialize<'de>>(raw: Option<&RawValue>, name: &str) -> Result<Option<T>, String> {
    match raw {
        Some(raw) if raw.get() != "null" => typed(raw, name).map(Some),
        _ => Ok(None),
    }
}

fn typed<T: for<'de> Deserialize<'de>>(raw: &RawValue, name: &str) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|_| {
        let expected = std::any::type_name::<T>().rsplit("::").next().unwrap_or("value");
        format!("field `{name}` has the wrong type (expected {expected})")
    })
}

/// Idempotency keys: 1 to [`MAX_IDEMPOTENCY_KEY`] bytes.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(format!("`idempotency_key` must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"));
    }
    Ok(())
}

/// Room names: 1 to 128 bytes with no control characters.
pub fn validate_room(room: &str) -> Result<(), String> {
    if room.is_empty() || room.len() > MAX_ROOM_LEN {
        return Err(format!("room name must be 1 to {MAX_ROOM_LEN} bytes"));
    }
    if room.chars().any(char::is_control) {
        return Err("room name must not contain control characters".into());
    }
    Ok(())
}

/// User names: 1 to 64 characters from `[A-Za-z0-9_.@-]`.
pub fn validate_user(user: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-');
    if user.is_empty() || user.len() > MAX_USER_LEN || !user.chars().all(allowed) {
        return Err(format!("user name must be 1 to {MAX_USER_LEN} characters from [A-Za-z0-9_.@-]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let send = parse(r#"{"op":"send","room":"lobby","body":{"t":"hi"},"id":7}"#).expect("valid");
        assert_eq!(send.id.map(RawValue::get), Some("7"));
        match send.command {
            Command::Send { room, body, volatile, idempotency_key } => {
                assert_eq!((room.as_str(), body.get(), volatile), ("lobby", r#"{"t":"hi"}"#, false));
                assert_eq!(idempotency_key, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        let join = parse(r#"{"op":"join","room":"r","since":5}"#).expect("valid").command;
        assert!(matches!(join, Command::Join { ref room, since: Some(5), epoch: None } if room == "r"));
        let dm = parse(r#"{"op":"dm","to":"bob","body":"yo"}"#).expect("valid").command;
        assert!(matches!(dm, Command::Dm { ref to, .. } if to == "bob"));
        assert!(matches!(parse(r#"{"op":"ping"}"#).expect("valid").command, Command::Ping));
        assert!(matches!(parse(r#"{"op":"rooms","id":1}"#).expect("valid").command, Command::Rooms));
        let leave = parse(r#"{"op":"leave","room":"r"}"#).expect("valid").command;
        assert!(matches!(leave, Command::Leave { ref room } if room == "r"));
        let presence = parse(r#"{"op":"presence","room":"r"}"#).expect("valid").command;
        assert!(matches!(presence, Command::Presence { ref room } if room == "r"));
        let hello = parse(r#"{"op":"hello","token":"t.o.k"}"#).expect("valid").command;
        assert!(matches!(hello, Command::Hello { name: None, token: Some(ref t) } if t == "t.o.k"));
        let auth = parse(r#"{"op":"auth","token":"a.b.c","id":1}"#).expect("valid").command;
        assert!(matches!(auth, Command::Auth { ref token } if token == "a.b.c"));
        let missing = parse(r#"{"op":"auth","id":2}"#).expect_err("no token");
        assert_eq!((missing.code, missing.message.contains("token")), (ErrorCode::BadRequest, true));
        let volatile = parse(r#"{"op":"send","room":"r","body":1,"volatile":true}"#).expect("valid").command;
        assert!(matches!(volatile, Command::Send { volatile: true, .. }));
        let history = parse(r#"{"op":"history","room":"r","before":9,"limit":3}"#).expect("valid").command;
        assert!(matches!(history, Command::History { ref room, before: Some(9), limit: Some(3) } if room == "r"));
        let newest = parse(r#"{"op":"history","room":"r"}"#).expect("valid").command;
        assert!(matches!(newest, Command::History { before: None, limit: None, .. }));
        let inbox = parse(r#"{"op":"inbox","since":4,"epoch":77}"#).expect("valid").command;
        assert!(matches!(inbox, Command::Inbox { since: Some(4), epoch: Some(77) }));
        assert!(matches!(
            parse(r#"{"op":"inbox"}"#).expect("valid").command,
            Command::Inbox { since: None, epoch: None }
        ));
        let hello = parse(r#"{"op":"hello","name":"sensor-1"}"#).expect("valid").command;
        assert!(matches!(hello, Command::Hello { name: Some(ref name), token: None } if name == "sensor-1"));
        assert!(matches!(
            parse(r#"{"op":"hello"}"#).expect("valid").command,
            Command::Hello { name: None, token: None }
        ));
        let keyed = parse(r#"{"op":"send","room":"r","body":1,"idempotency_key":"k-1"}"#).expect("valid").command;
        assert!(matches!(keyed, Command::Send { idempotency_key: Some(ref key), .. } if key == "k-1"));
        let keyed_dm = parse(r#"{"op":"dm","to":"bob","body":1,"idempotency_key":"k"}"#).expect("valid").command;
        assert!(matches!(keyed_dm, Command::Dm { idempotency_key: Some(ref key), .. } if key == "k"));
        let rejoin = parse(r#"{"op":"join","room":"r","since":5,"epoch":8}"#).expect("valid").command;
        assert!(matches!(rejoin, Command::Join { since: Some(5), epoch: Some(8), .. }));
    }

    #[test]
    fn errors_name_the_problem_and_keep_the_id() {
        let error = parse("{nope").expect_err("bad json");
        assert_eq!((error.code, error.id.is_none()), (ErrorCode::BadJson, true));

        let error = parse(r#"{"op":"fly","id":"a1"}"#).expect_err("unknown op");
        assert_eq!(error.code, ErrorCode::UnknownOp);
        assert_eq!(error.id.map(RawValue::get), Some(r#""a1""#));
        assert!(error.message.contains("fly"));

        let error = parse(r#"{"op":"send","room":"r","id":1}"#).expect_err("no body");
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(error.message.contains("body"), "{}", error.message);

        let long = format!(r#"{{"op":"send","room":"r","body":1,"idempotency_key":"{}"}}"#, "k".repeat(257));
        for bad_key in [r#"{"op":"send","room":"r","body":1,"idempotency_key":""}"#, &long] {
            let error = parse(bad_key).expect_err("key length");
            assert!(error.message.contains("idempotency_key"), "{}", error.message);
        }
        let volatile_key = r#"{"op":"send","room":"r","body":1,"volatile":true,"idempotency_key":"k"}"#;
        assert_eq!(parse(volatile_key).expect_err("volatile with a key").code, ErrorCode::BadRequest);

        let error = parse(r#"{"op":"join","room":5,"id":1}"#).expect_err("room type");
        assert!(error.message.contains("`room`"), "{}", error.message);

        let error = parse(r#"{"op":"join","room":""}"#).expect_err("empty room");
        assert_eq!(error.code, ErrorCode::BadRoom);

        let error = parse(r#"{"op":"dm","to":"a b","body":1}"#).expect_err("bad user");
        assert_eq!(error.code, ErrorCode::BadUser);

        let error = parse(r#"{"op":"ping","id":{"x":1}}"#).expect_err("object id");
        assert_eq!(error.code, ErrorCode::BadRequest);

        assert_eq!(parse("[1,2]").expect_err("array").code, ErrorCode::BadJson);
        // Found by fuzzing: serde reads a struct from an array of its fields.
        let array = r#"["ping",null,null,null,null,null,null,null,null,null]"#;
        assert_eq!(parse(array).expect_err("array of fields").code, ErrorCode::BadJson);
        // Found by fuzzing: a body strict JSON readers cannot read back.
        let huge = parse(r#"{"op":"send","room":"r","body":{"n":[1e400]},"id":1}"#).expect_err("huge number");
        assert_eq!((huge.code, huge.id.is_some()), (ErrorCode::BadRequest, true));
        assert!(huge.message.contains("body"), "{}", huge.message);
    }
}
