//! The connection table, the "diary" of `GET /api/connections`: every open
//! connection with its socket's file descriptor, transport, peer, user,
//! rooms, bytes in and out, queued bytes and age. And kicks: an operator
//! closing connections by id or by user with close code 4010 and a reason
//! of their own, logged and counted.
//!
//! Nothing here is on a message's path: the table is built on request from
//! the users directory and the rooms (locked one at a time, in the hub's
//! order), and a kick's reason waits in a small map until the connection's
//! close frame is written.

use super::conn::{Conn, ConnId};
use super::Hub;
use crate::util::lock;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use switchboard_protocol::{ws, CloseCode};

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRow {
    pub id: ConnId,
    /// The socket's file descriptor; for a UDP session, the shared socket's.
    pub fd: Option<i32>,
    pub transport: &'static str,
    pub peer: SocketAddr,
    pub user: Arc<str>,
    /// The rooms it is a member of, sorted.
    pub rooms: Vec<Arc<str>>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes waiting in its outbound queue.
    pub queued_bytes: usize,
    pub age_ms: u64,
}

/// Which connections the table lists.
#[derive(Debug, Default, Clone)]
pub struct TableFilter {
    pub user: Option<String>,
    pub room: Option<String>,
}

/// Reasons operators gave for kicks, until each connection's close is sent.
#[derive(Debug, Default)]
pub(crate) struct Kicks(Mutex<HashMap<ConnId, Arc<str>>>);

impl Hub {
    /// The table's rows, by id, filtered.
    pub fn connection_table(&self, filter: &TableFilter) -> Vec<ConnectionRow> {
        let mut conns = match &filter.user {
            Some(user) => lock(&self.users).get(user).to_vec(),
            None => self.connections(),
        };
        let rooms = self.rooms_by_connection();
        if let Some(room) = &filter.room {
            conns.retain(|conn| rooms.get(&conn.id).is_some_and(|names| names.iter().any(|name| &**name == room)));
        }
        conns.sort_by_key(|conn| conn.id);
        let now = self.now_ms();
        conns
            .iter()
            .map(|conn| ConnectionRow {
                id: conn.id,
                fd: conn.fd(),
                transport: conn.transport.as_str(),
                peer: conn.peer(),
                user: Arc::clone(&conn.user),
                rooms: rooms.get(&conn.id).cloned().unwrap_or_default(),
                bytes_in: conn.bytes_in(),
                bytes_out: conn.bytes_out(),
                queued_bytes: conn.queued_bytes(),
                age_ms: now.saturating_sub(conn.born_ms()),
            })
            .collect()
    }

    /// Bytes waiting in every connection's outbound queue (each queue
    /// locked in turn, none while the users directory is).
    pub fn queued_bytes_total(&self) -> usize {
        self.connections().iter().map(|conn| conn.queued_bytes()).sum()
    }

    /// Each connection's rooms, sorted: one room locked at a time.
    fn rooms_by_connection(&self) -> HashMap<ConnId, Vec<Arc<str>>> {
        let rooms: Vec<_> = lock(&self.rooms).rooms().cloned().collect();
        let mut by_conn: HashMap<ConnId, Vec<Arc<str>>> = HashMap::new();
        for room in rooms {
            let state = room.lock();
            for member in state.members() {
                by_conn.entry(member.id).or_default().push(Arc::clone(&room.name));
            }
        }
        by_conn.values_mut().for_each(|names| names.sort());
        by_conn
    }

    /// Closes connection `id` with 4010 and `reason` (the code's own when
    /// `None`); false when no such connection is open.
    pub fn kick(&self, id: ConnId, reason: Option<&str>) -> bool {
        let found = self.connections().into_iter().find(|conn| conn.id == id);
        found.is_some_and(|conn| self.kick_conn(&conn, reason))
    }

    /// Closes every connection of `user` as [`Hub::kick`] does; returns how
    /// many were open.
    pub fn kick_user(&self, user: &str, reason: Option<&str>) -> usize {
        let conns = lock(&self.users).get(user).to_vec();
        conns.iter().filter(|conn| self.kick_conn(conn, reason)).count()
    }

    fn kick_conn(&self, conn: &Conn, reason: Option<&str>) -> bool {
        if conn.is_closing() {
            return false;
        }
        let reason = reason.map(|reason| ws::truncate_reason(reason.trim())).filter(|reason| !reason.is_empty());
        if let Some(reason) = reason {
            lock(&self.kicks.0).insert(conn.id, Arc::from(reason));
        }
        tracing::info!(
            conn = conn.id,
            user = %conn.user,
            peer = %conn.peer(),
            reason = reason.unwrap_or(CloseCode::Kicked.reason()),
            "kicked by an operator, closing with 4010"
        );
        self.metrics.kicks.inc();
        conn.close(CloseCode::Kicked, false);
        true
    }

    /// The reason to send with a close of `conn` with `code`: an operator's
    /// for a kick (taken: it is sent once), the code's own otherwise.
    pub(crate) fn close_reason(&self, conn: &Conn, code: CloseCode) -> Cow<'static, str> {
        if code == CloseCode::Kicked {
            if let Some(reason) = lock(&self.kicks.0).remove(&conn.id) {
                return Cow::Owned(reason.to_string());
            }
        }
        Cow::Borrowed(code.reason())
    }

    /// Forgets a kick's reason that was never sent (the connection ended
    /// before its close frame).
    pub(crate) fn forget_kick(&self, id: ConnId) {
        let mut kicks = lock(&self.kicks.0);
        if !kicks.is_empty() {
            kicks.remove(&id);
        }
    }
}
