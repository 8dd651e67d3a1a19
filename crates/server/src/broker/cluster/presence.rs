//! Presence across the nodes of a cluster, in Redis ([`crate::cluster`]'s
//! presence scripts), behind the [`Presence`] seam.
//!
//! The hub reports node-level arrivals and departures; one task applies
//! them to Redis in the order they happened and learns whether each was
//! the user's first (or last) connection in the room anywhere. Only then is
//! the join (or leave) announced: to this node's members at once, and to
//! the other nodes' through the room's channel; not at all when the room
//! has more users cluster-wide than `limits.presence_events_max_members`
//! (each script answers the room's count). The same task keeps the
//! node alive in Redis (a heartbeat every third of `node_timeout`),
//! refreshes this node's entries before their TTL runs out, and runs the
//! reaper, which removes the entries of nodes silent for `node_timeout`
//! and announces their users' leaves: a crashed node leaves no ghosts for
//! longer than twice `node_timeout` (a reaper lock it held lasts half of
//! one).

use crate::broker::presence::{Announce, Members, Presence};
use crate::broker::Deliveries;
use crate::cluster::{ClusterError, Engine, PresenceChange};
use crate::metrics::{DropReason, Metrics};
use crate::store::LogKey;
use crate::util::lock;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchboard_protocol::event::{self, Encoded};
use tokio::sync::mpsc;

/// A change to apply in Redis, in order.
#[derive(Debug)]
enum Change {
    Arrived { room: Arc<str>, user: Arc<str> },
    Departed { room: Arc<str>, user: Arc<str> },
}

/// A room and a user in it.
type Entry = (Arc<str>, Arc<str>);

/// This node's entries and the info each was added with.
type Here = Arc<Mutex<HashMap<Entry, Option<Box<RawValue>>>>>;

/// Cluster-wide presence; see the module docs.
#[derive(Debug)]
pub struct ClusterPresence {
    engine: Engine,
    changes: mpsc::UnboundedSender<Change>,
    here: Here,
    /// Shutting down: departures stay in Redis for the grace period.
    leaving: AtomicBool,
}

/// What the presence task needs.
struct Task<T> {
    engine: Engine,
    here: Here,
    deliveries: Weak<dyn Deliveries<T>>,
    metrics: Arc<Metrics>,
    /// How long an entry lives in Redis unless refreshed.
    ttl: Duration,
    /// Rooms with more users than this get no join or leave events (0: no
    /// limit), as on a single node.
    events_max_members: usize,
}

impl ClusterPresence {
    /// Starts the presence task (call within the runtime); announcements go
    /// to `deliveries` here and through Redis to the other nodes, in rooms
    /// of at most `events_max_members` users (0: any).
    pub fn start<T: Send + 'static>(
        engine: Engine,
        metrics: Arc<Metrics>,
        deliveries: Weak<dyn Deliveries<T>>,
        events_max_members: usize,
    ) -> ClusterPresence {
        let (changes, receiver) = mpsc::unbounded_channel();
        let here = Here::default();
        let ttl = engine.config().node_timeout * 4;
        let here_too = Arc::clone(&here);
        let task = Task { engine: engine.clone(), here: here_too, deliveries, metrics, ttl, events_max_members };
        tokio::spawn(task.run(receiver));
        ClusterPresence { engine, changes, here, leaving: AtomicBool::new(false) }
    }

    /// A graceful shutdown: this node's entries stay for `grace`, so users
    /// who reconnect to another node meanwhile do not leave and join again.
    /// From now on the departures of this node's users (their connections
    /// closing as the node drains) are not applied: the reaper removes them
    /// once `grace` has passed, unless the users are back elsewhere.
    pub async fn leave_after(&self, grace: Duration) -> Result<(), ClusterError> {
        self.leaving.store(true, Ordering::Release);
        self.engine.leave_after(grace).await
    }
}

impl Presence for ClusterPresence {
    fn arrived(&self, room: &Arc<str>, user: &Arc<str>, info: Option<&RawValue>) -> Announce {
        let key = (Arc::clone(room), Arc::clone(user));
        lock(&self.here).insert(key, info.map(ToOwned::to_owned));
        let _ = self.changes.send(Change::Arrived { room: Arc::clone(room), user: Arc::clone(user) });
        Announce::Later
    }

    fn departed(&self, room: &Arc<str>, user: &Arc<str>) -> Announce {
        if self.leaving.load(Ordering::Acquire) {
            return Announce::Later;
        }
        lock(&self.here).remove(&(Arc::clone(room), Arc::clone(user)));
        let _ = self.changes.send(Change::Departed { room: Arc::clone(room), user: Arc::clone(user) });
        Announce::Later
    }

    fn members(&self, room: &str) -> Members {
        let (engine, room) = (self.engine.clone(), room.to_owned());
        Members::Later(Box::pin(async move {
            let members = engine.presence_list(&room).await.map_err(|error| error.to_string())?;
            Ok(members.into_iter().map(|member| (Arc::from(member.user), Some(member.info))).collect())
        }))
    }
}

impl<T: Send + 'static> Task<T> {
    async fn run(self, mut changes: mpsc::UnboundedReceiver<Change>) {
        let timeout = self.engine.config().node_timeout;
        let mut heartbeat = tokio::time::interval(timeout / 3);
        let mut refresh = tokio::time::interval(self.ttl / 3);
        let mut reaper = tokio::time::interval(timeout / 2);
        for timer in [&mut heartbeat, &mut refresh, &mut reaper] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => self.apply(change).await,
                    None => return,
                },
                _ = heartbeat.tick() => self.beat().await,
                _ = refresh.tick() => self.refresh().await,
                _ = reaper.tick() => self.reap().await,
            }
        }
    }

    async fn apply(&self, change: Change) {
        match change {
            Change::Arrived { room, user } => {
                // Departed meanwhile: its removal follows in order.
                let info = lock(&self.here).get(&(Arc::clone(&room), Arc::clone(&user))).cloned();
                let Some(info) = info else { return };
                self.add(&room, &user, info.as_deref()).await;
            }
            Change::Departed { room, user } => {
                if lock(&self.here).contains_key(&(Arc::clone(&room), Arc::clone(&user))) {
                    // Arrived again since: still here.
                    return;
                }
                match self.engine.presence_remove(&room, &user).await {
                    Ok(Some(change)) => self.announce(&room, "leave", &user, None, change),
                    Ok(None) => {}
                    Err(error) => self.failed("remove", &room, &error),
                }
            }
        }
    }

    /// Adds (or refreshes) `user` in `room`; announces a first connection.
    async fn add(&self, room: &str, user: &str, info: Option<&RawValue>) {
        let null = RawValue::NULL;
        let stored = info.unwrap_or(null);
        match self.engine.presence_add(room, user, user, stored, self.ttl).await {
            Ok(change) => self.announce(room, "join", user, info, change),
            Err(error) => self.failed("add", room, &error),
        }
    }

    /// Announces a presence event to this node's members of `room` and to
    /// the other nodes', when the change calls for one and the room is not
    /// over the limit.
    fn announce(&self, room: &str, ev: &'static str, user: &str, info: Option<&RawValue>, change: PresenceChange) {
        let limit = self.events_max_members as u64;
        if !change.announce || (limit != 0 && change.users > limit) {
            return;
        }
        let encoded = Encoded::new(&event::Presence { ev, room, user, info });
        if let Some(deliveries) = self.deliveries.upgrade() {
            deliveries.relayed(room, encoded.json(), Some(user));
        }
        let (engine, key) = (self.engine.clone(), LogKey::room(room));
        let json = encoded.json().to_vec();
        let user = user.to_owned();
        tokio::spawn(async move {
            if let Err(error) = engine.broadcast(&key, &json, Some(&user)).await {
                tracing::warn!(room = %key.name, %error, "a presence event did not reach the other nodes");
            }
        });
    }

    fn failed(&self, what: &str, room: &str, error: &ClusterError) {
        self.metrics.dropped(DropReason::ClusterUnavailable, 1);
        tracing::warn!(room, %error, "presence {what} failed in Redis; the next refresh repairs it");
    }

    async fn beat(&self) {
        match self.engine.heartbeat().await {
            // Reaped as dead meanwhile (or the first beat): add back what is here.
            Ok(true) => self.refresh().await,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "presence heartbeat failed"),
        }
    }

    /// Adds every entry of this node again before its TTL runs out (and
    /// after an outage): a lost one is announced as a join again.
    async fn refresh(&self) {
        let entries: Vec<(Entry, Option<Box<RawValue>>)> =
            lock(&self.here).iter().map(|(key, info)| (key.clone(), info.clone())).collect();
        for ((room, user), info) in entries {
            self.add(&room, &user, info.as_deref()).await;
        }
    }

    async fn reap(&self) {
        match self.engine.reap().await {
            Ok(leaves) => {
                for leave in leaves {
                    let change = PresenceChange { announce: true, users: leave.users };
                    self.announce(&leave.room, "leave", &leave.user, None, change);
                }
            }
            Err(error) => tracing::warn!(%error, "presence reaper failed"),
        }
    }
}
