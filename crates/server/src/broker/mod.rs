//! The seam between the hub and whatever orders, stores and carries stored
//! messages: the [`Broker`]. The hub hands it a publication; the broker
//! gives it the next `seq` of its log, stores it, and brings it back to the
//! hub of every node that has members for it through one entry point,
//! [`Deliveries::deliver`]. The publisher's answer is a separate call,
//! [`Deliveries::settle`], made once the broker knows the message is
//! stored (or could not be).
//!
//! Two brokers fit behind it:
//! - [`local::LocalBroker`]: one node, over the storage writer (SQLite or
//!   memory) of [`crate::store`]; every publication is delivered on this
//!   node, before it is settled;
//! - a cluster broker (Redis): one atomic step assigns `seq`, appends to
//!   the log's stream and publishes to the log's channel; a node subscribes
//!   to the rooms it has members in ([`Broker::subscribe`]) and delivers
//!   what arrives in `seq` order.
//!
//! The broker also answers what recovery needs of a log (its [`LogMeta`]:
//! epoch, retained range, what this node delivered) and reads ranges of it.
//!
//! Presence, the other thing that crosses nodes, has its own seam:
//! [`presence::Presence`].

pub mod cluster;
pub mod local;
pub mod order;
pub mod presence;

use crate::store::{LogKey, LogKind, LogMeta, ProbeAnswer, Pruned, Reader};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

pub use crate::store::Submission as Publication;

/// The two seams a hub is built over (see [`crate::hub::Hub::start`]).
pub struct Seams<T> {
    pub broker: Arc<dyn Broker<T>>,
    pub presence: Arc<dyn presence::Presence>,
}

impl<T> std::fmt::Debug for Seams<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams").field("broker", &self.broker).field("presence", &self.presence).finish()
    }
}

/// What a read of a log's history found: its metadata and a reader bound
/// to it, or nothing when the log does not exist.
pub type Found = Result<Option<(LogMeta, Arc<dyn Reader>)>, crate::store::StoreError>;

/// Where to read a log from (see [`Broker::lookup`]).
pub enum Lookup {
    /// [`Broker::meta`] and [`Broker::reader`] answer for it.
    Here,
    /// This node does not follow the log: what to await instead.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Found> + Send>>),
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookup::Here => "Lookup::Here",
            Lookup::Later(_) => "Lookup::Later",
        })
    }
}

/// What to await before this node can answer for a log (see
/// [`Broker::pending`]).
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A stored message arriving for one log, in `seq` order per log.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub key: &'a LogKey,
    /// The log's id on this node (replays deduplicate by `(log, seq)`).
    pub log: u64,
    pub epoch: u64,
    pub seq: u64,
    pub ts: u64,
    pub from: &'a str,
    /// The body as the publisher sent it (valid JSON).
    pub body: &'a RawValue,
}

/// Where a message was stored: the publisher's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stored {
    pub seq: u64,
    pub epoch: u64,
    pub ts: u64,
}

/// Why a publication was not accepted (answered at once).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("too many messages are waiting to be stored")]
    Busy,
    #[error("the broker is closed")]
    Closed,
    #[error("the cluster's Redis is unreachable")]
    Unavailable,
}

/// Why an accepted publication is not acked (answered through
/// [`Deliveries::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstored {
    /// The storage failed to write it: nothing of it was stored or
    /// delivered (logged by the broker).
    StorageFailed,
    /// A cluster could not confirm it: Redis did not answer in time, the
    /// connection broke mid-command, or fewer replicas or append-only files
    /// than configured have it. It may have been stored and delivered; a
    /// retry with the same idempotency key stores it at most once (logged
    /// by the broker).
    Unconfirmed,
    /// A cluster knew Redis unreachable when its turn came: it was never
    /// sent, so nothing of it was stored or delivered.
    Unavailable,
}

/// Orders, stores and carries stored messages; see the module docs.
/// Every method returns without waiting on IO: whatever a broker must ask
/// another process, it asks on a task or thread of its own.
pub trait Broker<T>: Send + Sync + std::fmt::Debug {
    /// Accepts a message for its log; it is delivered and settled later
    /// (a local broker may do both before returning: the caller then must
    /// hold no lock [`Deliveries`] takes).
    /// `idempotency` is the publication's idempotency scope (sender, log
    /// and key): a broker shared by several nodes stores a repeat once even
    /// when it reaches another node (the hub deduplicates on its own node).
    fn publish(&self, publication: Publication<T>, idempotency: Option<&str>) -> Result<(), PublishError>;
    /// This node has its first member of a log (a room's first member, or
    /// a user's first connection for their inbox): deliver its messages
    /// here. Called under the hub's directory lock (rooms) or users lock.
    fn subscribe(&self, kind: LogKind, name: &Arc<str>);
    /// This node's last member of a log is gone. Called under the same lock.
    fn unsubscribe(&self, kind: LogKind, name: &str);
    /// Whether this node knows where a log stands (on a cluster: its
    /// subscription is in place and its position read). `None`: it does, and
    /// [`Broker::meta`] answers for it now. Otherwise a future that ends
    /// once it does, or once the broker gave up waiting (then `meta` says
    /// what it knows, and recovery answers accordingly).
    fn pending(&self, kind: LogKind, name: &str) -> Option<Pending>;
    /// Where to read a log's history for a reader that is not one of its
    /// members here (the HTTP API): a single node knows every log; a cluster
    /// node not subscribed to it asks Redis.
    fn lookup(&self, kind: LogKind, name: &str) -> Lookup;
    /// What is known of a log, if it exists.
    fn meta(&self, kind: LogKind, name: &str) -> Option<LogMeta>;
    /// Records that a log's messages through `seq` were fanned out here.
    /// The caller holds the lock that orders fan-out with joining.
    fn mark_fanned_out(&self, kind: LogKind, name: &str, seq: u64);
    /// Records that a user's DMs through `seq` reached one of their
    /// connections (the inbox's delivery cursor).
    fn mark_delivered(&self, user: &str, seq: u64);
    /// Range reads of the logs (blocking: call from `spawn_blocking`).
    fn reader(&self) -> Arc<dyn Reader>;
    /// Proves a write would succeed now (`/readyz`); `answer` gets the
    /// outcome.
    fn probe(&self, answer: ProbeAnswer) -> Result<(), PublishError>;
    /// How many logs exist.
    fn log_count(&self) -> usize;
    /// Carries an unstored event (a volatile message) that this node
    /// already fanned out to its own members of `room` to the other nodes'.
    fn relay(&self, room: &str, event: &[u8]);
    /// Settles what was accepted and stops; later publications fail with
    /// [`PublishError::Closed`]. Blocks until done.
    fn close(&self);
}

/// The hub's side of the seam: what a broker calls.
pub trait Deliveries<T>: Send + Sync {
    /// A stored message for this node's members of `message.key`.
    fn deliver(&self, message: &Delivery<'_>);
    /// The publisher's outcome, after the message was delivered here (when
    /// it is delivered here at all).
    fn settle(&self, ticket: T, outcome: Result<Stored, Unstored>);
    /// Stored DMs were removed by `storage.inbox_max_per_sender`.
    fn pruned(&self, pruned: &Pruned);
    /// An unstored event another node relayed (a volatile message, or a
    /// presence change decided cluster-wide): fan it out to this node's
    /// members of `room`, but for `except`'s connections.
    fn relayed(&self, room: &str, event: &[u8], except: Option<&str>);
    /// The log's history was lost (a cluster's Redis began it again in a
    /// new epoch): its members here must resynchronise.
    fn history_reset(&self, key: &LogKey);
}
