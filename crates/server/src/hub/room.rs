//! A room: its members and its presence (users, not connections). A
//! message is framed once and queued for every member under the room's
//! lock, so every member sees the room's messages in the same order (stored
//! messages in `seq` order: the storage writer hands them over in order).

use super::conn::{Conn, ConnId};
use smallvec::SmallVec;
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
    /// Members grouped by user. Presence counts users, so a user with two
    /// tabs joins with the first and leaves with the last. One map serves
    /// both fan-out and presence; the usual one connection per user is
    /// stored inline.
    users: HashMap<Arc<str>, SmallVec<[Arc<Conn>; 1]>>,
    connections: usize,
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
        let tabs = self.users.entry(Arc::clone(&conn.user)).or_default();
        if tabs.iter().any(|member| member.id == conn.id) {
            return None;
        }
        tabs.push(Arc::clone(conn));
        self.connections += 1;
        Some(tabs.len() == 1)
    }

    /// Removes a member; returns whether it was the user's last connection
    /// here, or `None` if it was not a member.
    pub fn remove(&mut self, conn: &Conn) -> Option<bool> {
        let tabs = self.users.get_mut(&conn.user)?;
        let index = tabs.iter().position(|member| member.id == conn.id)?;
        tabs.swap_remove(index);
        self.connections -= 1;
        if !tabs.is_empty() {
            return Some(false);
        }
        self.users.remove(&conn.user);
        Some(true)
    }

    pub fn contains(&self, conn: &Conn) -> bool {
        self.users.get(&conn.user).is_some_and(|tabs| tabs.iter().any(|member| member.id == conn.id))
    }

    pub fn is_empty(&self) -> bool {
        self.connections == 0
    }

    /// Users present (a user with several tabs counts once).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Every member connection.
    pub fn members(&self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.users.values().flatten()
    }

    /// Members other than `except`, for presence events.
    pub fn others(&self, except: ConnId) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.members().filter(move |member| member.id != except)
    }

    /// The users present, sorted for stable output.
    pub fn user_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.users.keys().cloned().collect();
        names.sort();
        names
    }
}
