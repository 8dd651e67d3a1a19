//! Connections grouped by user name, in a set that costs 16 bytes a user.
//!
//! Both the users directory and every room keep "user → that user's
//! connections". A `HashMap<Arc<str>, SmallVec<[Arc<Conn>; 1]>>` stores the
//! name a second time beside the connections and takes 40 bytes a slot. The
//! name is already in every `Conn`, so [`TabSet`] is a set of [`Tabs`],
//! each hashed and compared by its first connection's user name, and looked
//! up by `&str` through `Borrow<str>`: 16 bytes a slot, and the usual one
//! connection per user needs no allocation of its own. Up to eight users
//! are a plain vector (a room of one costs 16 bytes instead of 96).

use super::conn::{Conn, ConnId};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One user's connections; never empty.
#[derive(Debug)]
enum Tabs {
    /// The usual case, inline.
    One(Arc<Conn>),
    /// Two or more, all with the same user name. Boxed so that the set's
    /// slot stays two words (a `Vec` would make it four).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Arc<Conn>>>),
}

impl Tabs {
    fn as_slice(&self) -> &[Arc<Conn>] {
        match self {
            Tabs::One(conn) => std::slice::from_ref(conn),
            Tabs::Many(conns) => conns,
        }
    }

    /// The user name all of them share.
    fn user(&self) -> &str {
        match self {
            Tabs::One(conn) => &conn.user,
            // Many is never empty; an empty name would only miss lookups.
            Tabs::Many(conns) => conns.first().map_or("", |conn| &conn.user),
        }
    }

    fn push(self, conn: Arc<Conn>) -> Tabs {
        match self {
            Tabs::One(first) => Tabs::Many(Box::new(vec![first, conn])),
            Tabs::Many(mut conns) => {
                conns.push(conn);
                Tabs::Many(conns)
            }
        }
    }

    /// Without connection `id`; `None` when it was the last one.
    fn without(self, id: ConnId) -> Option<Tabs> {
        match self {
            Tabs::One(_) => None,
            Tabs::Many(mut conns) => {
                conns.retain(|conn| conn.id != id);
                match conns.len() {
                    0 => None,
                    1 => conns.pop().map(Tabs::One),
                    _ => Some(Tabs::Many(conns)),
                }
            }
        }
    }
}

impl Borrow<str> for Tabs {
    fn borrow(&self) -> &str {
        self.user()
    }
}

impl Hash for Tabs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as hashing the `&str` a lookup borrows.
        self.user().hash(state);
    }
}

impl PartialEq for Tabs {
    fn eq(&self, other: &Self) -> bool {
        self.user() == other.user()
    }
}

impl Eq for Tabs {}

/// Users up to which a [`TabSet`] is a plain vector: most rooms are small,
/// and a vector of one costs 16 bytes where the smallest hash set costs 96.
const FEW: usize = 8;

/// The users: a vector while few, a hash set from the ninth on.
#[derive(Debug)]
enum Users {
    Few(Vec<Tabs>),
    Many(HashSet<Tabs>),
}

impl Default for Users {
    fn default() -> Self {
        Users::Few(Vec::new())
    }
}

impl Users {
    fn get(&self, user: &str) -> Option<&Tabs> {
        match self {
            Users::Few(few) => few.iter().find(|tabs| tabs.user() == user),
            Users::Many(many) => many.get(user),
        }
    }

    fn take(&mut self, user: &str) -> Option<Tabs> {
        match self {
            Users::Few(few) => {
                let index = few.iter().position(|tabs| tabs.user() == user)?;
                Some(few.swap_remove(index))
            }
            Users::Many(many) => many.take(user),
        }
    }

    /// Adds `tabs`, whose user must not be present.
    // Tabs hash by the user name alone, which never changes; the
    // connections' interior mutability does not touch it.
    #[allow(clippy::mutable_key_type)]
    fn insert(&mut self, tabs: Tabs) {
        match self {
            Users::Few(few) if few.len() < FEW => {
                // Exactly: a vector's first push would make room for four.
                few.reserve_exact(1);
                few.push(tabs);
            }
            Users::Few(few) => {
                let mut many: HashSet<Tabs> = few.drain(..).collect();
                many.insert(tabs);
                *self = Users::Many(many);
            }
            Users::Many(many) => {
                many.insert(tabs);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Users::Few(few) => few.len(),
            Users::Many(many) => many.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Tabs> + '_ {
        let (few, many) = match self {
            Users::Few(few) => (&few[..], None),
            Users::Many(many) => (&[][..], Some(many)),
        };
        few.iter().chain(many.into_iter().flatten())
    }
}

/// Connections grouped by user name.
#[derive(Debug, Default)]
pub(crate) struct TabSet {
    users: Users,
}

impl TabSet {
    /// Adds `conn` under its user name; returns whether it is that user's
    /// first connection here, or `None` if it was already present.
    pub fn add(&mut self, conn: &Arc<Conn>) -> Option<bool> {
        let Some(tabs) = self.users.take(&conn.user) else {
            self.users.insert(Tabs::One(Arc::clone(conn)));
            return Some(true);
        };
        let present = tabs.as_slice().iter().any(|member| member.id == conn.id);
        let tabs = if present { tabs } else { tabs.push(Arc::clone(conn)) };
        self.users.insert(tabs);
        (!present).then_some(false)
    }

    /// Removes `conn`; returns whether it was its user's last connection
    /// here, or `None` if it was not present.
    pub fn remove(&mut self, conn: &Conn) -> Option<bool> {
        if !self.contains(conn) {
            return None;
        }
        let rest = self.users.take(&conn.user).and_then(|tabs| tabs.without(conn.id));
        let last = rest.is_none();
        if let Some(rest) = rest {
            self.users.insert(rest);
        }
        Some(last)
    }

    pub fn contains(&self, conn: &Conn) -> bool {
        self.get(&conn.user).iter().any(|member| member.id == conn.id)
    }

    /// The connections of `user` (empty when none).
    pub fn get(&self, user: &str) -> &[Arc<Conn>] {
        self.users.get(user).map(Tabs::as_slice).unwrap_or_default()
    }

    /// Users present (a user with several connections counts once).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Every connection.
    pub fn conns(&self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.users.iter().flat_map(Tabs::as_slice)
    }

    /// The user names, unsorted.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.firsts().map(|conn| &conn.user)
    }

    /// Each user's first connection, unsorted.
    pub fn firsts(&self) -> impl Iterator<Item = &Arc<Conn>> + '_ {
        self.users.iter().filter_map(|tabs| tabs.as_slice().first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::conn::Transport;
    use std::net::SocketAddr;

    fn conn(id: ConnId, user: &str) -> Arc<Conn> {
        Arc::new(Conn::new(id, Arc::from(user), SocketAddr::from(([127, 0, 0, 1], 1)), Transport::WebSocket, 0))
    }

    #[test]
    fn a_set_slot_is_two_words() {
        assert_eq!(std::mem::size_of::<Tabs>(), 16);
    }

    #[test]
    fn first_and_last_connection_of_a_user() {
        let (a1, a2, b) = (conn(1, "alice"), conn(2, "alice"), conn(3, "bob"));
        let mut set = TabSet::default();
        assert_eq!(set.add(&a1), Some(true));
        assert_eq!(set.add(&a2), Some(false));
        assert_eq!(set.add(&a2), None, "already present");
        assert_eq!(set.add(&b), Some(true));
        assert_eq!((set.user_count(), set.conns().count()), (2, 3));
        assert_eq!(set.get("alice").len(), 2);
        assert_eq!(set.remove(&a1), Some(false));
        assert_eq!(set.remove(&a1), None, "already gone");
        assert!(set.contains(&a2) && !set.contains(&a1));
        assert_eq!(set.remove(&a2), Some(true));
        assert!(set.get("alice").is_empty());
        let names: Vec<&Arc<str>> = set.names().collect();
        assert_eq!(names, [&Arc::<str>::from("bob")]);
    }

    #[test]
    fn many_users_move_from_the_vector_to_the_set() {
        let conns: Vec<_> = (0..20).map(|id| conn(id, &format!("user{id}"))).collect();
        let mut set = TabSet::default();
        conns.iter().for_each(|conn| assert_eq!(set.add(conn), Some(true)));
        assert!(matches!(set.users, Users::Many(_)));
        assert_eq!((set.user_count(), set.conns().count()), (20, 20));
        assert_eq!(set.get("user13")[0].id, 13);
        conns.iter().for_each(|conn| assert_eq!(set.remove(conn), Some(true)));
        assert_eq!(set.user_count(), 0);
    }

    #[test]
    fn three_tabs_shrink_back_to_one() {
        let tabs: Vec<_> = (1..=3).map(|id| conn(id, "carol")).collect();
        let mut set = TabSet::default();
        tabs.iter().for_each(|tab| assert!(set.add(tab).is_some()));
        assert_eq!(set.remove(&tabs[1]), Some(false));
        assert_eq!(set.remove(&tabs[0]), Some(false));
        assert_eq!(set.get("carol").iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
        assert_eq!(set.remove(&tabs[2]), Some(true));
        assert_eq!(set.user_count(), 0);
    }
}
