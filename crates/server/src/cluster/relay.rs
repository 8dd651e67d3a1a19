//! Unstored events between nodes: a volatile message, or a presence change
//! decided cluster-wide. They travel on the log's own channel, so they
//! reach exactly the nodes subscribed to the room, and carry the node that
//! sent them (which already delivered them to its own members) and the user
//! whose connections must not get them (a presence event's subject).
//!
//! The payload is a JSON array whose first element is the string `"r"`
//! (a stored publication's is a number): `["r", kind, name, origin,
//! except, event]`, `except` null or a user name, `event` the event's JSON.

use super::{bounded, ClusterError, Engine};
use crate::store::{LogKey, LogKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// An event another node relayed.
#[derive(Debug, Clone)]
pub struct Relayed {
    pub log: LogKey,
    /// The node that sent it.
    pub origin: String,
    /// Whose connections do not get it.
    pub except: Option<String>,
    /// The event, as its members receive it.
    pub event: Box<RawValue>,
}

impl Engine {
    /// Publishes `event` (JSON) to every node subscribed to `log`, but for
    /// `except`'s connections there. Not stored: a node that is not
    /// subscribed now never sees it.
    pub async fn broadcast(&self, log: &LogKey, event: &[u8], except: Option<&str>) -> Result<(), ClusterError> {
        let event: &RawValue = serde_json::from_slice(event).map_err(|e| ClusterError::BadReply(e.to_string()))?;
        let payload = ("r", log.kind.code(), &*log.name, self.keys().node_id(), except, event);
        let payload = serde_json::to_vec(&payload).map_err(|e| ClusterError::BadReply(e.to_string()))?;
        let mut command = redis::cmd(self.keys().publish_command());
        command.arg(self.keys().log(log).channel).arg(payload);
        let mut conn = self.conn();
        bounded::<u64>(self.timeout(), None, command.query_async(&mut conn)).await.map(drop)
    }
}

/// Decodes a relayed event's payload, or `None` when it is not one.
pub(crate) fn relayed(payload: &[u8]) -> Option<Result<Relayed, ClusterError>> {
    if !payload.starts_with(b"[\"r\"") {
        return None;
    }
    #[derive(Deserialize)]
    struct Wire(serde::de::IgnoredAny, i64, String, String, Option<String>, Box<RawValue>);
    Some(match serde_json::from_slice::<Wire>(payload) {
        Ok(Wire(_, kind, name, origin, except, event)) => match LogKind::from_code(kind) {
            Some(kind) => Ok(Relayed { log: LogKey { kind, name: Arc::from(name) }, origin, except, event }),
            None => Err(ClusterError::BadReply(format!("relayed kind {kind}"))),
        },
        Err(error) => Err(ClusterError::BadReply(format!("relayed event: {error}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_relayed_event_and_leaves_publications_alone() {
        let relayed = relayed(br#"["r",0,"lobby","node-a","ann",{"ev":"join","user":"ann"}]"#)
            .expect("a relayed event")
            .expect("decodes");
        assert_eq!(
            (&*relayed.log.name, relayed.origin.as_str(), relayed.except.as_deref()),
            ("lobby", "node-a", Some("ann"))
        );
        assert_eq!(relayed.event.get(), r#"{"ev":"join","user":"ann"}"#);
        assert!(super::relayed(br#"[0,7,123,1,"ann","lobby",1]"#).is_none());
        assert!(super::relayed(br#"["r",9,"x","n",null,1]"#).expect("relayed").is_err());
    }
}
