//! Decoding what Redis hands back: stream entries (history reads) and the
//! compact publication payload the `publish` script sends.
//!
//! The payload is a JSON array built by the script without re-encoding the
//! body: `[kind, seq, epoch, ts, from, name, body]`, `kind` 0 for a room and
//! 1 for an inbox (`LogKind::code`), `body` the message's JSON as published.

use super::ClusterError;
use crate::store::{LogKey, LogKind, StoredMessage};
use redis::Value;
use serde_json::value::RawValue;
use std::sync::Arc;

/// One publication as it arrived from Redis.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The log it was appended to.
    pub log: LogKey,
    /// The log's epoch when it was appended.
    pub epoch: u64,
    /// The message, as history would return it.
    pub message: StoredMessage,
}

/// Decodes a publication payload.
pub(crate) fn publication(payload: &[u8]) -> Result<Publication, ClusterError> {
    type Wire<'a> = (i64, u64, u64, u64, String, String, Box<RawValue>);
    let (kind, seq, epoch, ts, from, name, body): Wire<'_> =
        serde_json::from_slice(payload).map_err(|e| ClusterError::BadReply(format!("publication: {e}")))?;
    let kind = LogKind::from_code(kind).ok_or_else(|| ClusterError::BadReply(format!("publication kind {kind}")))?;
    Ok(Publication {
        log: LogKey { kind, name: Arc::from(name) },
        epoch,
        message: StoredMessage { seq, ts, from, body },
    })
}

/// Decodes `XRANGE`/`XREVRANGE` entries (`[[id, [field, value, ...]], ...]`).
pub(crate) fn entries(reply: Value) -> Result<Vec<StoredMessage>, ClusterError> {
    let Value::Array(entries) = reply else {
        return Err(bad("stream range", &reply));
    };
    entries.into_iter().map(entry).collect()
}

fn entry(value: Value) -> Result<StoredMessage, ClusterError> {
    let Value::Array(mut parts) = value else {
        return Err(bad("stream entry", &value));
    };
    let (Some(fields), Some(id), None) = (parts.pop(), parts.pop(), parts.pop()) else {
        return Err(ClusterError::BadReply("stream entry is not [id, fields]".to_owned()));
    };
    let seq = stream_seq(&text(&id)?)?;
    let (mut ts, mut from, mut body) = (None, None, None);
    let pairs = match fields {
        Value::Array(fields) => fields,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => return Err(bad("stream fields", &other)),
    };
    let mut pairs = pairs.into_iter();
    while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
        match text(&field)?.as_str() {
            "t" => ts = Some(number(&value)?),
            "f" => from = Some(text(&value)?),
            "b" => {
                body = Some(RawValue::from_string(text(&value)?).map_err(|e| ClusterError::BadReply(e.to_string()))?)
            }
            _ => {}
        }
    }
    match (ts, from, body) {
        (Some(ts), Some(from), Some(body)) => Ok(StoredMessage { seq, ts, from, body }),
        _ => Err(ClusterError::BadReply(format!("stream entry {seq} lacks t, f or b"))),
    }
}

/// The seq of a stream id `<seq>-0`.
pub(crate) fn stream_seq(id: &str) -> Result<u64, ClusterError> {
    id.split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| ClusterError::BadReply(format!("stream id {id:?}")))
}

/// A bulk or simple string reply as text.
pub(crate) fn text(value: &Value) -> Result<String, ClusterError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(|e| ClusterError::BadReply(e.to_string())),
        Value::SimpleString(text) => Ok(text.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(bad("string", other)),
    }
}

/// An integer reply, or a string holding one.
pub(crate) fn number(value: &Value) -> Result<u64, ClusterError> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| bad("non-negative integer", value)),
        other => text(other)?.parse().map_err(|_| bad("integer", other)),
    }
}

pub(crate) fn bad(what: &str, value: &Value) -> ClusterError {
    ClusterError::BadReply(format!("expected {what}, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_publication_without_touching_the_body() {
        let publication =
            publication(br#"[0,7,123,1700000000000,"ann","lobby",{"text":"hi \/ there"}]"#).expect("decodes");
        assert_eq!((publication.log.kind, &*publication.log.name), (LogKind::Room, "lobby"));
        assert_eq!((publication.epoch, publication.message.seq, publication.message.ts), (123, 7, 1_700_000_000_000));
        assert_eq!(publication.message.body.get(), r#"{"text":"hi \/ there"}"#);
    }

    #[test]
    fn refuses_broken_payloads() {
        assert!(publication(b"[5,1,1,1,\"a\",\"b\",1]").is_err());
        assert!(publication(b"not json").is_err());
    }

    #[test]
    fn decodes_stream_entries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("42-0"),
            Value::Array(vec![bulk("t"), bulk("5"), bulk("f"), bulk("bob"), bulk("b"), bulk("[1]")]),
        ]);
        let messages = entries(Value::Array(vec![entry])).expect("decodes");
        assert_eq!((messages[0].seq, messages[0].ts, messages[0].from.as_str()), (42, 5, "bob"));
        assert_eq!(messages[0].body.get(), "[1]");
    }
}
