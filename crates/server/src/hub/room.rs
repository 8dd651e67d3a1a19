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

/// Rooms with at least this many members fan out in address order (see
/// [`RoomState::members_in_address_order`]).
const ADDRESS_ORDER_MIN_MEMBERS: usize = 64;

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
    /// The members in address order, for a large room's messages (see
    /// [`RoomState::members_in_address_order`]); empty until the second
    /// message after a join or a leave.
    in_address_order: Vec<Arc<Conn>>,
    /// Whether a message went out in the hash set's order since the last
    /// join or leave (the next one sorts).
    sent_unordered: bool,
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
        self.membership_changed();
        Some(first)
    }

    /// Removes a member; returns whether it was the user's last connection
    /// here, or `None` if it was not a member.
    pub fn remove(&mut self, conn: &Conn) -> Option<bool> {
        let last = self.users.remove(conn)?;
        self.connections -= 1;
        self.membership_changed();
        Some(last)
    }

    pub fn contains(&self, conn: &Conn) -> bool {
        self.users.contains(conn)
    }

    pub fn is_empty(&self) -> bool {
        self.connections == 0
    }

    /// Member connections.
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// Users present (a user with several tabs counts once).
    pub fn user_count(&self) -> usize {
        self.users.user_count()
    }

    /// Every member connection.
    pub fn members(&self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.users.conns()
    }

    /// Every member connection, in the order their `Conn`s lie in memory
    /// when the room has at least [`ADDRESS_ORDER_MIN_MEMBERS`]: a message
    /// to a large room then touches the members' memory front to back,
    /// which the processor's prefetcher follows, instead of in the hash
    /// set's order. The order is sorted on the second message after a join
    /// or a leave and kept until the next (8 bytes a member, in rooms that
    /// get messages), so a room whose members change between every two
    /// messages never pays for a sort.
    pub fn members_in_address_order(&mut self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        if self.connections >= ADDRESS_ORDER_MIN_MEMBERS && self.in_address_order.is_empty() {
            if !self.sent_unordered {
                self.sent_unordered = true;
            } else {
                let mut order: Vec<Arc<Conn>> = self.users.conns().cloned().collect();
                order.sort_unstable_by_key(|conn| Arc::as_ptr(conn) as usize);
                self.in_address_order = order;
            }
        }
        // Small rooms, and large ones until the order is sorted: the hash set's order.
        let (ordered, hashed) = if self.in_address_order.is_empty() {
            (None, Some(self.users.conns()))
        } else {
            (Some(self.in_address_order.iter()), None)
        };
        ordered.into_iter().flatten().chain(hashed.into_iter().flatten())
    }

    fn membership_changed(&mut self) {
        self.in_address_order = Vec::new();
        self.sent_unordered = false;
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

    /// The token profiles of the users present (token mode), each user's
    /// first connection's.
    pub fn profiles(&self) -> Vec<super::UserProfile> {
        self.users.firsts().filter_map(|conn| Some((Arc::clone(&conn.user), conn.profile()?))).collect()
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

    /// Every room, unsorted.
    pub fn rooms(&self) -> impl Iterator<Item = &Arc<Room>> + '_ {
        self.rooms.iter().map(|listed| &listed.0)
    }

    /// Every room's name, unsorted.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.rooms.iter().map(|listed| &listed.0.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::conn::Transport;
    use std::net::SocketAddr;

    fn conn(id: ConnId) -> Arc<Conn> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        Arc::new(Conn::new(id, Arc::from(format!("user{id}")), peer, Transport::WebSocket, 0))
    }

    fn ids<'a>(members: impl Iterator<Item = &'a Arc<Conn>>) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = members.map(|member| member.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_large_room_fans_out_to_every_member_once_in_address_order_through_joins_and_leaves() {
        let mut state = RoomState::default();
        let conns: Vec<Arc<Conn>> = (0..ADDRESS_ORDER_MIN_MEMBERS as ConnId + 10).map(conn).collect();
        for member in &conns {
            assert_eq!(state.add(member), Some(true));
        }
        // The first message after a change goes in the hash set's order.
        assert_eq!(ids(state.members_in_address_order()), ids(conns.iter()));
        assert!(state.in_address_order.is_empty());
        let addresses: Vec<usize> = state.members_in_address_order().map(|m| Arc::as_ptr(m) as usize).collect();
        assert!(addresses.windows(2).all(|pair| pair[0] < pair[1]), "not in address order");
        assert_eq!(ids(state.members_in_address_order()), ids(conns.iter()));

        // A leave and a join after the order was built are seen at once.
        assert_eq!(state.remove(&conns[3]), Some(true));
        let late = conn(1_000);
        assert_eq!(state.add(&late), Some(true));
        let expected: Vec<Arc<Conn>> =
            conns.iter().filter(|member| member.id != 3).cloned().chain(std::iter::once(late)).collect();
        assert_eq!(ids(state.members_in_address_order()), ids(expected.iter()));
        assert!(state.in_address_order.is_empty());
        // The second message sorts again; the third reuses that order.
        assert_eq!(ids(state.members_in_address_order()), ids(expected.iter()));
        assert_eq!(state.in_address_order.len(), expected.len());
        assert_eq!(ids(state.members_in_address_order()), ids(expected.iter()));
    }

    #[test]
    fn a_small_room_fans_out_to_every_member_without_keeping_an_order() {
        let mut state = RoomState::default();
        let conns: Vec<Arc<Conn>> = (0..3).map(conn).collect();
        for member in &conns {
            state.add(member);
        }
        assert_eq!(ids(state.members_in_address_order()), vec![0, 1, 2]);
        assert!(state.in_address_order.is_empty());
    }
}
