//! Presence in the hub: a room's node-level arrivals and departures told
//! to the presence manager (`crate::broker::presence`), the join and leave
//! events announced to a room's members, and who is in a room.

use super::conn::Conn;
use super::room::RoomState;
use super::{lock, Hub};
use crate::broker::presence::{Announce, MemberList, Members};
use std::sync::Arc;
use switchboard_protocol::event::{self, Encoded};

impl Hub {
    /// Tells the presence manager of a user's first connection in `room` here.
    pub(super) fn arrived(&self, room: &Arc<str>, conn: &Conn) -> Announce {
        let profile = conn.profile();
        self.presence.arrived(room, &conn.user, profile.as_ref().and_then(|profile| profile.info()))
    }

    pub(super) fn presence_events(&self, state: &RoomState) -> bool {
        let limit = self.limits.presence_events_max_members;
        limit == 0 || state.user_count() <= limit
    }

    pub(super) fn announce_presence(&self, state: &RoomState, conn: &Conn, ev: &'static str, room: &str) {
        let profile = conn.profile();
        let info = profile.as_ref().and_then(|profile| profile.info());
        let encoded = Encoded::new(&event::Presence { ev, room, user: &conn.user, info });
        self.fan_out(state.others(conn.id), &encoded);
    }

    /// Who is in `room`: on one node, the room's own users (answered
    /// with [`Hub::local_members`]); in a cluster, what the presence
    /// manager will find.
    pub fn members(&self, room: &str) -> Members {
        self.presence.members(room)
    }

    /// The users present in `room` on this node, sorted, each with their
    /// token's `info` (empty if the room does not exist).
    pub fn local_members(&self, room: &str) -> Vec<(Arc<str>, Option<Box<serde_json::value::RawValue>>)> {
        let Some(room) = lock(&self.rooms).get(room).cloned() else { return Vec::new() };
        let (users, profiles) = {
            let state = room.lock();
            (state.user_names(), state.profiles())
        };
        let info_of = |user: &Arc<str>| {
            let profile = profiles.iter().find(|(name, _)| name == user)?;
            profile.1.info().map(ToOwned::to_owned)
        };
        users.into_iter().map(|user| (Arc::clone(&user), info_of(&user))).collect()
    }

    /// [`Hub::members`], awaited: sorted by name.
    pub async fn members_of(&self, room: &str) -> MemberList {
        let mut members = match self.members(room) {
            Members::Here => return Ok(self.local_members(room)),
            Members::Later(list) => list.await?,
        };
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(members)
    }
}
