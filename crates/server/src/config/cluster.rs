//! The `[cluster]` section: several nodes serving the same rooms through
//! Redis (see `crate::broker::cluster` and docs/ARCHITECTURE.md, "Cluster").

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// Where Redis is; empty: a single node, with its own storage.
    pub redis: String,
    /// The first part of every Redis key and channel.
    pub prefix: String,
    /// This node's name in Redis; empty: the host name and process id, and
    /// a random suffix.
    pub node_id: String,
    /// Messages each room's stream keeps in Redis, at least.
    pub history_max_len: u64,
    /// A node silent this long is dead: its users leave presence.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    /// How long a node that shuts down keeps its users in presence, so
    /// that those who reconnect elsewhere do not leave and join again.
    #[serde(with = "humantime_serde")]
    pub presence_grace: Duration,
    /// The bound on every Redis command: past it a publish fails with
    /// `unavailable`.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Replicas that must have a message before it is acked (`WAIT`): a
    /// failover to one of them then loses no acked message. 0: none.
    pub wait_replicas: u32,
    /// Whether a message must also be in the master's append-only file
    /// before it is acked (`WAITAOF`, Redis 7.2 and later).
    pub wait_aof: bool,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            redis: String::new(),
            prefix: "sb".to_owned(),
            node_id: String::new(),
            history_max_len: 10_000,
            node_timeout: Duration::from_secs(30),
            presence_grace: Duration::from_secs(10),
            command_timeout: Duration::from_secs(2),
            wait_replicas: 0,
            wait_aof: false,
        }
    }
}

impl Cluster {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis.is_empty()
    }
}
