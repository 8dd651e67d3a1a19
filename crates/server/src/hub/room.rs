//! A room: its members, its presence (users, not connections) and its
//! message sequence. Everything published to a room is framed once here,
//! under the room's lock, so every member sees the room's messages in `seq`
//! order.

use super::conn::{Conn, ConnId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A named room. Created on first join, removed when its last member leaves.
#[derive(Debug)]
pub struct Room {
    pub name: Arc<str>,
    state: Mutex<RoomState>,
}

#[derive(Debug, Default)]
pub(crate) struct RoomState {
    pub seq: u64,
    pub members: HashMap<ConnId, Arc<Conn>>,
    /// Connections per user in this room: presence counts users, so a user
    /// with two tabs joins on the first and leaves with the last.
    pub users: HashMap<Arc<str>, u32>,
    /// Set when the room was removed from the directory; a joiner that finds
    /// it set looks the room up again.
    pub removed: bool,
}

impl Room {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Room { name, state: Mutex::new(RoomState::default()) }
    }

    /// Locks the room. The lock is held while framing and queueing one
    /// message for every member (no IO, no await), which is what keeps the
    /// members' views in the same order.
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RoomState {
    /// Adds a member; returns whether it is the user's first connection here,
    /// or `None` if the connection was already a member.
    pub fn add(&mut self, conn: &Arc<Conn>) -> Option<bool> {
        if self.members.insert(conn.id, Arc::clone(conn)).is_some() {
            return None;
        }
        let count = self.users.entry(Arc::clone(&conn.user)).or_insert(0);
        *count += 1;
        Some(*count == 1)
    }

    /// Removes a member; returns whether it was the user's last connection
    /// here, or `None` if it was not a member.
    pub fn remove(&mut self, conn: &Conn) -> Option<bool> {
        self.members.remove(&conn.id)?;
        let Some(count) = self.users.get_mut(&conn.user) else {
            return Some(true);
        };
        *count -= 1;
        if *count > 0 {
            return Some(false);
        }
        self.users.remove(&conn.user);
        Some(true)
    }

    /// Members other than `except`, for presence events.
    pub fn others<'a>(&'a self, except: ConnId) -> impl Iterator<Item = &'a Arc<Conn>> + 'a {
        self.members.values().filter(move |member| member.id != except)
    }

    /// The users present, sorted for stable output.
    pub fn user_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.users.keys().cloned().collect();
        names.sort();
        names
    }
}
