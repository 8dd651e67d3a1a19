//! A room: its members and its presence (users, not connections). A
//! message is framed once and queued for every member under the room's
//! lock, so every member sees the room's messages in the same order (stored
//! messages in `seq` order: the storage writer hands them over in order).

use super::conn::{Conn, ConnId};
use super::tabs::TabSet;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
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
    users: TabSet,
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
        let first = self.users.add(conn)?;
        self.connections += 1;
        Some(first)
    }

    /// Removes a member; returns whether it was the user's last connection
    /// here, or `None` if it was not a member.
    pub fn remove(&mut self, conn: &Conn) -> Option<bool> {
        let last = self.users.remove(conn)?;
        self.connections -= 1;
        Some(last)
    }

    pub fn contains(&self, conn: &Conn) -> bool {
        self.users.contains(conn)
    }

    pub fn is_empty(&self) -> bool {
        self.connections == 0
    }

    /// Users present (a user with several tabs counts once).
    pub fn user_count(&self) -> usize {
        self.users.user_count()
    }

    /// Every member connection.
    pub fn members(&self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.users.conns()
    }

    /// Members other than `except`, for presence events.
    pub fn others(&self, except: ConnId) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.members().filter(move |member| member.id != except)
    }

    /// The users present, sorted for stable output.
    pub fn user_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.users.names().cloned().collect();
        names.sort();
        names
    }
}

/// The rooms by name: a set of `Arc<Room>` looked up by the name each room
/// holds (8 bytes a slot, where a map from a second copy of the name took 24).
#[derive(Debug, Default)]
pub(crate) struct Directory {
    rooms: HashSet<Listed>,
}

/// A room in the directory, hashed and compared by its name.
#[derive(Debug)]
struct Listed(Arc<Room>);

impl Borrow<str> for Listed {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl Hash for Listed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as hashing the `&str` a lookup borrows.
        self.0.name.hash(state);
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Listed {}

impl Directory {
    pub fn get(&self, name: &str) -> Option<&Arc<Room>> {
        self.rooms.get(name).map(|listed| &listed.0)
    }

    /// Adds `room`, replacing any room of the same name.
    pub fn insert(&mut self, room: Arc<Room>) {
        self.rooms.replace(Listed(room));
    }

    pub fn remove(&mut self, name: &str) {
        self.rooms.remove(name);
    }

    /// Every room's name, unsorted.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.rooms.iter().map(|listed| &listed.0.name)
    }
}
