//! The presence seam: who is in a room across every node that serves it.
//!
//! The hub counts a room's users on this node (a user with two tabs is one
//! member; see [`crate::hub::room`]) and tells the [`Presence`] manager of
//! the node-level transitions only: a user's first connection in a room on
//! this node, and their last. The manager answers whether the hub announces
//! the change to the room now:
//! - [`LocalPresence`] (one node): always, since this node's first and last
//!   connection are the user's first and last anywhere;
//! - a cluster manager: [`Announce::Later`], once it has learned from the
//!   other nodes whether this was the user's first (or last) connection
//!   anywhere, and then to the members on every node.

use serde_json::value::RawValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A room's users (with the `info` of those who have one), or why they
/// could not be listed.
pub type MemberList = Result<Vec<(Arc<str>, Option<Box<RawValue>>)>, String>;

/// Who is in a room: this node's rooms say it all, or the manager must ask.
pub enum Members {
    Here,
    Later(Pin<Box<dyn Future<Output = MemberList> + Send>>),
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Members::Here => "Members::Here",
            Members::Later(_) => "Members::Later",
        })
    }
}

/// Whether the hub announces a presence change itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Now, to this node's other members of the room.
    Now,
    /// Not here: the manager announces it when (and if) it is one
    /// cluster-wide.
    Later,
}

/// Keeps presence across nodes; see the module docs. Called under the
/// room's lock: no method waits on IO.
pub trait Presence: Send + Sync + std::fmt::Debug {
    /// `user` (whose token's `info` is `info`) has their first connection
    /// in `room` on this node.
    fn arrived(&self, room: &Arc<str>, user: &Arc<str>, info: Option<&RawValue>) -> Announce;
    /// `user`'s last connection in `room` on this node left.
    fn departed(&self, room: &Arc<str>, user: &Arc<str>) -> Announce;
    /// Who is in `room` on every node.
    fn members(&self, room: &str) -> Members;
}

/// Presence of a single node: the hub's own rooms are the whole picture.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalPresence;

impl Presence for LocalPresence {
    fn arrived(&self, _room: &Arc<str>, _user: &Arc<str>, _info: Option<&RawValue>) -> Announce {
        Announce::Now
    }

    fn departed(&self, _room: &Arc<str>, _user: &Arc<str>) -> Announce {
        Announce::Now
    }

    fn members(&self, _room: &str) -> Members {
        Members::Here
    }
}
