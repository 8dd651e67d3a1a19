//! Every Redis key and channel the engine uses, built in one place.
//!
//! All keys of one log share a hash tag, `{r:<room>}` or `{u:<user>}`, so that
//! one script touches one slot on Redis Cluster; a room's presence keys share
//! its tag too. Inside the tag the name is percent-encoded (`%`, `{`, `}`,
//! control characters and non-ASCII bytes), so that no name can end the tag
//! early and no two names or suffixes can produce the same key.
//!
//! | key | type | what |
//! |---|---|---|
//! | `<p>:{r:<room>}:m` | HASH | `e` epoch, `s` top seq, `t` newest ts |
//! | `<p>:{r:<room>}:x` | STREAM | the history; entry id `<seq>-0`, fields `t`, `f`, `b` |
//! | `<p>:{r:<room>}:i:<scope>` | STRING | idempotency: `<seq>:<epoch>:<ts>` of the first attempt |
//! | `<p>:{r:<room>}:c` | channel | publications of the log (`SPUBLISH` on Redis Cluster) |
//! | `<p>:{r:<room>}:pz` | ZSET | presence: connection → expiry (ms) |
//! | `<p>:{r:<room>}:pc` | HASH | presence: connection → user |
//! | `<p>:{r:<room>}:pu` | HASH | presence: user → connections in the room |
//! | `<p>:{r:<room>}:pi` | HASH | presence: user → info (JSON) |
//! | `<p>:{nodes}` | ZSET | node → last heartbeat (ms, Redis clock) |
//! | `<p>:{n:<node>}:c` | SET | a node's connections: `<conn key>\n<room>` |
//! | `<p>:{n:<node>}:p` | channel | the node's liveness probe echo |
//! | `<p>:{nodes}:reaper` | STRING | the reaper lock, held by the node reaping (`SET PX`) |
//!
//! Inboxes use `{u:<user>}` in place of `{r:<room>}` for `m`, `x`, `i`, `c`.

use super::ClusterError;
use crate::store::{LogKey, LogKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// What is escaped inside a hash tag.
const TAG: &AsciiSet = &CONTROLS.add(b'%').add(b'{').add(b'}');

/// Key and channel names under one prefix, for one node.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    node_id: String,
    sharded: bool,
}

/// The keys of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKeys {
    /// `e`, `s`, `t`.
    pub meta: String,
    /// The history.
    pub stream: String,
    /// Where its publications go.
    pub channel: String,
    base: String,
}

impl LogKeys {
    /// The idempotency key of `scope` (the caller's: who, target, key).
    pub fn idempotency(&self, scope: &str) -> String {
        format!("{}:i:{scope}", self.base)
    }
}

/// The presence keys of one room, in the order the scripts take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceKeys {
    pub expiries: String,
    pub conns: String,
    pub users: String,
    pub infos: String,
}

impl Keys {
    /// Names under `prefix` for `node_id`; `sharded` when Redis is a
    /// Redis Cluster (channels then take `SPUBLISH`/`SSUBSCRIBE`).
    pub fn new(prefix: &str, node_id: &str, sharded: bool) -> Result<Keys, ClusterError> {
        if prefix.is_empty() || prefix.contains(['{', '}', '\n']) {
            return Err(ClusterError::Config(format!(
                "prefix {prefix:?} must be non-empty, without braces or newlines"
            )));
        }
        if node_id.is_empty() || node_id.contains(['\n', ':']) {
            return Err(ClusterError::Config(format!(
                "node id {node_id:?} must be non-empty, without ':' or newlines"
            )));
        }
        Ok(Keys { prefix: prefix.to_owned(), node_id: node_id.to_owned(), sharded })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether channels are sharded (Redis Cluster).
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// `PUBLISH`, or `SPUBLISH` on Redis Cluster.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The keys of `log`.
    pub fn log(&self, log: &LogKey) -> LogKeys {
        let kind = match log.kind {
            LogKind::Room => 'r',
            LogKind::Inbox => 'u',
        };
        let base = self.tagged(kind, &log.name);
        LogKeys { meta: format!("{base}:m"), stream: format!("{base}:x"), channel: format!("{base}:c"), base }
    }

    /// The presence keys of `room`.
    pub fn presence(&self, room: &str) -> PresenceKeys {
        let base = self.tagged('r', room);
        PresenceKeys {
            expiries: format!("{base}:pz"),
            conns: format!("{base}:pc"),
            users: format!("{base}:pu"),
            infos: format!("{base}:pi"),
        }
    }

    /// The node liveness ZSET (same slot as the reaper lock).
    pub fn nodes(&self) -> String {
        format!("{}:{{nodes}}", self.prefix)
    }

    /// The reaper lock.
    pub fn reaper(&self) -> String {
        format!("{}:{{nodes}}:reaper", self.prefix)
    }

    /// The set of `node`'s connections.
    pub fn node_conns(&self, node: &str) -> String {
        format!("{}:c", self.tagged('n', node))
    }

    /// This node's probe channel.
    pub fn probe_channel(&self) -> String {
        format!("{}:p", self.tagged('n', &self.node_id))
    }

    /// A connection's presence key: `<node>:<conn id>`.
    pub fn conn_key(&self, conn_id: &str) -> String {
        format!("{}:{conn_id}", self.node_id)
    }

    fn tagged(&self, kind: char, name: &str) -> String {
        format!("{}:{{{kind}:{}}}", self.prefix, utf8_percent_encode(name, TAG))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn room(name: &str) -> LogKey {
        LogKey { kind: LogKind::Room, name: Arc::from(name) }
    }

    #[test]
    fn names_cannot_end_the_hash_tag_early() {
        let keys = Keys::new("sb", "n1", false).expect("valid prefix and node id");
        assert_eq!(keys.log(&room("lobby")).meta, "sb:{r:lobby}:m");
        let tricky = keys.log(&room("a}:i:x{"));
        assert_eq!(tricky.meta, "sb:{r:a%7D:i:x%7B}:m");
        assert_ne!(keys.log(&room("a")).idempotency("x}:m"), tricky.meta);
        assert_eq!(keys.log(&room("é %")).stream, "sb:{r:%C3%A9 %25}:x");
    }

    #[test]
    fn rooms_and_inboxes_do_not_share_keys() {
        let keys = Keys::new("sb", "n1", true).expect("valid prefix and node id");
        let inbox = LogKey { kind: LogKind::Inbox, name: Arc::from("lobby") };
        assert_ne!(keys.log(&inbox).meta, keys.log(&room("lobby")).meta);
        assert_eq!(keys.publish_command(), "SPUBLISH");
    }

    #[test]
    fn bad_prefix_and_node_ids_are_refused() {
        assert!(Keys::new("s{b", "n", false).is_err());
        assert!(Keys::new("", "n", false).is_err());
        assert!(Keys::new("sb", "a:b", false).is_err());
        assert!(Keys::new("sb", "", false).is_err());
    }
}
