//! Presence across nodes, and node liveness.
//!
//! A room's presence is four keys under its hash tag (see [`super::keys`]):
//! which connections are in it (with an expiry), whose they are, how many
//! each user has, and each user's info. The scripts turn a user's first
//! connection into a join and their last into a leave, cluster-wide.
//!
//! Every node also records its connections in its own set and beats into
//! the node ZSET. The node holding the reaper lock removes every connection
//! of a node whose heartbeat is older than `node_timeout`, and hands back
//! the leaves so that the caller publishes them: a crashed node leaves no
//! ghost members after `node_timeout` plus one reaper round. A node shutting
//! down gracefully sets its heartbeat so that it expires after a grace
//! period instead, so users who reconnect elsewhere do not flap.

use super::payload::{self, number, text};
use super::scripts::scripts;
use super::{bounded, ClusterError, Engine};
use redis::Value;
use serde_json::value::RawValue;
use std::time::Duration;

/// Connections the reaper removes per round trip.
const REAP_BATCH: usize = 256;

/// One member of a room.
#[derive(Debug, Clone)]
pub struct PresenceMember {
    pub user: String,
    /// The info of the user's newest connection (JSON).
    pub info: Box<RawValue>,
}

/// How many are in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceCount {
    pub users: u64,
    pub connections: u64,
}

/// A user whose last connection in a room the reaper removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub room: String,
    pub user: String,
    /// The room's users after the removal (as [`PresenceChange::users`]).
    pub users: u64,
}

/// What adding or removing a connection changed in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// The user's first connection (an add) or last (a remove) in the room
    /// cluster-wide: the caller announces a join or a leave.
    pub announce: bool,
    /// The room's users cluster-wide after the change (a connection that
    /// expired but was not reaped yet still counts).
    pub users: u64,
}

impl Engine {
    /// Adds this node's connection `conn_id` of `user` to `room` (or
    /// refreshes it: then never a first), to expire after `ttl` unless
    /// refreshed. `announce` when it is the user's first connection in the
    /// room cluster-wide: the caller announces the join.
    pub async fn presence_add(
        &self,
        room: &str,
        conn_id: &str,
        user: &str,
        info: &RawValue,
        ttl: Duration,
    ) -> Result<PresenceChange, ClusterError> {
        let conn_key = self.keys().conn_key(conn_id);
        self.record_conn(&conn_key, room, true).await?;
        let keys = self.keys().presence(room);
        let mut call = scripts().presence_add.key(&keys.expiries);
        call.key(&keys.conns).key(&keys.users).key(&keys.infos);
        call.arg(&conn_key).arg(user).arg(info.get()).arg(ttl.as_millis().max(1) as u64);
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("presence_add"), call.invoke_async(&mut conn)).await?;
        match &reply {
            Value::Array(fields) if fields.len() == 2 => {
                Ok(PresenceChange { announce: number(&fields[0])? == 1, users: number(&fields[1])? })
            }
            other => Err(payload::bad("presence_add answer", other)),
        }
    }

    /// Removes this node's connection `conn_id` from `room`: `announce`
    /// when it was its user's last connection there (the caller announces
    /// the leave). An unknown connection is a no-op: None.
    pub async fn presence_remove(&self, room: &str, conn_id: &str) -> Result<Option<PresenceChange>, ClusterError> {
        let conn_key = self.keys().conn_key(conn_id);
        let removed = self.remove_conn(room, &conn_key).await?;
        self.record_conn(&conn_key, room, false).await?;
        Ok(removed.map(|(_, change)| change))
    }

    /// The users in `room` with an unexpired connection, and their info.
    pub async fn presence_list(&self, room: &str) -> Result<Vec<PresenceMember>, ClusterError> {
        let (_, rest) = self.presence_query(room, true).await?;
        let mut members = Vec::with_capacity(rest.len() / 2);
        for pair in rest.chunks_exact(2) {
            let info = RawValue::from_string(text(&pair[1])?).map_err(|e| ClusterError::BadReply(e.to_string()))?;
            members.push(PresenceMember { user: text(&pair[0])?, info });
        }
        Ok(members)
    }

    /// How many users and connections `room` has (unexpired).
    pub async fn presence_count(&self, room: &str) -> Result<PresenceCount, ClusterError> {
        Ok(self.presence_query(room, false).await?.0)
    }

    /// Records this node as alive now. Returns true when the node was not
    /// recorded (its first beat, or it was reaped as dead meanwhile: its
    /// connections are gone from presence and must be added again).
    pub async fn heartbeat(&self) -> Result<bool, ClusterError> {
        self.beat(0).await
    }

    /// A graceful shutdown: the node's connections stay in presence for
    /// `grace`, then the reaper removes them (unless the node beats again).
    pub async fn leave_after(&self, grace: Duration) -> Result<(), ClusterError> {
        let timeout = self.config().node_timeout.as_millis() as i64;
        self.beat(grace.as_millis() as i64 - timeout).await.map(drop)
    }

    /// One reaper round: when this node holds (or takes) the reaper lock,
    /// removes every connection of the nodes silent for `node_timeout` and
    /// returns the users whose last connection in a room went. Empty when
    /// another node reaps.
    pub async fn reap(&self) -> Result<Vec<Reaped>, ClusterError> {
        let config = self.config();
        let keys = self.keys();
        let nodes = keys.nodes();
        let reaper = keys.reaper();
        let mut call = scripts().reaper.key(&reaper);
        call.key(&nodes).arg(keys.node_id());
        call.arg(config.reaper_lease.as_millis() as u64).arg(config.node_timeout.as_millis() as u64);
        let mut conn = self.conn();
        let dead: Option<Vec<String>> = bounded(self.timeout(), Some("reaper"), call.invoke_async(&mut conn)).await?;
        let mut leaves = Vec::new();
        for node in dead.unwrap_or_default() {
            self.reap_node(&node, &mut leaves).await?;
        }
        Ok(leaves)
    }

    /// Removes every connection of `node`, then the node itself.
    async fn reap_node(&self, node: &str, leaves: &mut Vec<Reaped>) -> Result<(), ClusterError> {
        let set = self.keys().node_conns(node);
        loop {
            let mut conn = self.conn();
            let mut command = redis::cmd("SRANDMEMBER");
            command.arg(&set).arg(REAP_BATCH);
            let members: Vec<String> = bounded(self.timeout(), None, command.query_async(&mut conn)).await?;
            if members.is_empty() {
                break;
            }
            for member in &members {
                let Some((conn_key, room)) = member.split_once('\n') else { continue };
                if let Some((user, PresenceChange { announce: true, users })) = self.remove_conn(room, conn_key).await?
                {
                    leaves.push(Reaped { room: room.to_owned(), user, users });
                }
            }
            let mut command = redis::cmd("SREM");
            command.arg(&set).arg(&members);
            bounded::<()>(self.timeout(), None, command.query_async(&mut conn)).await?;
        }
        let mut call = scripts().forget_node.key(self.keys().nodes());
        call.arg(node).arg(self.config().node_timeout.as_millis() as u64);
        let mut conn = self.conn();
        bounded::<u64>(self.timeout(), Some("forget_node"), call.invoke_async(&mut conn)).await?;
        tracing::info!(node, "reaped the connections of a silent node");
        Ok(())
    }

    async fn beat(&self, offset_ms: i64) -> Result<bool, ClusterError> {
        let mut call = scripts().heartbeat.key(self.keys().nodes());
        call.arg(self.keys().node_id()).arg(offset_ms);
        let mut conn = self.conn();
        let added: u64 = bounded(self.timeout(), Some("heartbeat"), call.invoke_async(&mut conn)).await?;
        Ok(added == 1)
    }

    /// Adds or removes `conn_key` in `room` to this node's set of connections.
    async fn record_conn(&self, conn_key: &str, room: &str, add: bool) -> Result<(), ClusterError> {
        let mut command = redis::cmd(if add { "SADD" } else { "SREM" });
        command.arg(self.keys().node_conns(self.keys().node_id())).arg(format!("{conn_key}\n{room}"));
        let mut conn = self.conn();
        bounded::<()>(self.timeout(), None, command.query_async(&mut conn)).await
    }

    /// Runs `presence_remove`: `(user, last)` when the connection was there.
    async fn remove_conn(&self, room: &str, conn_key: &str) -> Result<Option<(String, PresenceChange)>, ClusterError> {
        let keys = self.keys().presence(room);
        let mut call = scripts().presence_remove.key(&keys.expiries);
        call.key(&keys.conns).key(&keys.users).key(&keys.infos).arg(conn_key);
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("presence_remove"), call.invoke_async(&mut conn)).await?;
        match &reply {
            Value::Nil => Ok(None),
            Value::Array(fields) if fields.len() == 3 => {
                let change = PresenceChange { announce: number(&fields[1])? == 1, users: number(&fields[2])? };
                Ok(Some((text(&fields[0])?, change)))
            }
            other => Err(payload::bad("presence_remove answer", other)),
        }
    }

    async fn presence_query(
        &self,
        room: &str,
        with_members: bool,
    ) -> Result<(PresenceCount, Vec<Value>), ClusterError> {
        let keys = self.keys().presence(room);
        let mut call = scripts().presence_list.key(&keys.expiries);
        call.key(&keys.conns).key(&keys.infos).arg(if with_members { "1" } else { "0" });
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("presence_list"), call.invoke_async(&mut conn)).await?;
        let Value::Array(mut fields) = reply else {
            return Err(payload::bad("presence_list answer", &reply));
        };
        if fields.len() < 2 {
            return Err(ClusterError::BadReply("presence_list answer too short".to_owned()));
        }
        let rest = fields.split_off(2);
        let count = PresenceCount { users: number(&fields[0])?, connections: number(&fields[1])? };
        Ok((count, rest))
    }
}
