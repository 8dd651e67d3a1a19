//! What the HTTP API asks of the hub that sessions do not: publishing
//! without a connection (volatile; stored ones go through
//! [`Hub::submit_from_api`](super::Hub::submit_from_api)), the list of rooms
//! with their member counts, and history pages that can go forward
//! (`after`) as well as back (`before`).

use super::replay::HISTORY_MAX_LIMIT;
use super::room::RoomState;
use super::{lock, Hub};
use crate::broker::Lookup;
use crate::store::{LogKind, StoreError, StoredMessage};
use crate::util::unix_ms;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::event::{self, Encoded};

/// A room and how many are in it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub name: Arc<str>,
    /// Member connections.
    pub connections: usize,
    /// Users present (several tabs of one user count once).
    pub users: usize,
}

/// Which part of a room's history to read.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery {
    /// Only messages with a smaller `seq`.
    pub before: Option<u64>,
    /// Only messages with a greater `seq`; the page then starts right after
    /// it (the oldest first), otherwise it ends at `before` (the newest).
    pub after: Option<u64>,
    /// At most this many, 1 to [`HISTORY_MAX_LIMIT`].
    pub limit: u64,
}

/// One page of a room's history, oldest first.
#[derive(Debug)]
pub struct HistoryPage {
    /// The room's epoch; `None` while it never stored a message.
    pub epoch: Option<u64>,
    /// The oldest retained `seq` (`last_seq + 1` when none is) and the
    /// newest stored (0 and 0 for a room that never stored a message).
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: Vec<StoredMessage>,
    /// More messages lie beyond the page in its direction: older ones
    /// without `after`, newer ones (below `before`) with it.
    pub more: bool,
}

impl Hub {
    /// Delivers a volatile message from `from` to `room`'s members at once,
    /// unstored and without a `seq` (nobody when the room has no members);
    /// returns its `ts`.
    pub fn publish_volatile_from(&self, room: &str, from: &str, body: &RawValue) -> u64 {
        let found = lock(&self.rooms).get(room).cloned();
        match found {
            Some(room) => self.fan_out_volatile(&mut room.lock(), &room.name, from, body),
            None => {
                // No member here; a cluster's other nodes may have some.
                let ts = unix_ms();
                self.broker.relay(room, volatile_event(room, from, ts, body).json());
                ts
            }
        }
    }

    /// Fans a volatile message out to the members of a room whose state
    /// the caller locked, and relays it to a cluster's other nodes; returns
    /// its `ts`.
    pub(super) fn fan_out_volatile(&self, state: &mut RoomState, room: &str, from: &str, body: &RawValue) -> u64 {
        let ts = unix_ms();
        let encoded = volatile_event(room, from, ts, body);
        self.fan_out(state.members_in_address_order(), &encoded);
        // The other nodes' members (a cluster); nothing to do on one node.
        self.broker.relay(room, encoded.json());
        self.metrics.messages_published.inc();
        ts
    }

    /// Every room with its member counts, sorted by name.
    pub fn room_summaries(&self) -> Vec<RoomSummary> {
        let rooms: Vec<Arc<super::room::Room>> = lock(&self.rooms).rooms().cloned().collect();
        let mut summaries: Vec<RoomSummary> = rooms
            .into_iter()
            .map(|room| {
                let state = room.lock();
                RoomSummary {
                    name: Arc::clone(&room.name),
                    connections: state.connection_count(),
                    users: state.user_count(),
                }
            })
            .filter(|summary| summary.connections > 0)
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        summaries
    }

    /// Reads one page of `room`'s history (on the blocking pool), within
    /// half of `limits.outbound_queue_bytes` of bodies, as `history` does.
    pub async fn history_page(&self, room: &str, query: PageQuery) -> Result<HistoryPage, StoreError> {
        let found = match self.broker.lookup(LogKind::Room, room) {
            Lookup::Here => self.broker.meta(LogKind::Room, room).map(|meta| (meta, self.broker.reader())),
            Lookup::Later(found) => found.await?,
        };
        let Some((meta, reader)) = found else {
            return Ok(HistoryPage { epoch: None, first_seq: 0, last_seq: 0, messages: Vec::new(), more: false });
        };
        let limit = query.limit.clamp(1, HISTORY_MAX_LIMIT) as usize;
        let log = meta.id;
        let read = tokio::task::spawn_blocking(move || match query.after {
            Some(after) => reader.after(log, after, limit),
            None => reader.before(log, query.before.unwrap_or(u64::MAX), limit),
        });
        let mut messages = read.await.unwrap_or(Err(StoreError::Stopped))?;
        let forward = query.after.is_some();
        let before = query.before.unwrap_or(u64::MAX);
        messages.retain(|message| message.seq < before);
        let trimmed = self.trim_to_budget(&mut messages, room.len(), forward);
        let more = trimmed
            || match (forward, messages.first(), messages.last()) {
                (false, Some(oldest), _) => meta.first_seq < oldest.seq,
                (true, _, Some(newest)) => newest.seq < meta.last_seq.min(before.saturating_sub(1)),
                _ => false,
            };
        Ok(HistoryPage { epoch: Some(meta.epoch), first_seq: meta.first_seq, last_seq: meta.last_seq, messages, more })
    }

    /// Drops messages from the far end of a page (the oldest going back,
    /// the newest going forward) until it fits half the outbound queue
    /// bound; the message next to the cursor always stays. Returns whether
    /// any was dropped.
    fn trim_to_budget(&self, messages: &mut Vec<StoredMessage>, room_len: usize, forward: bool) -> bool {
        let budget = self.limits.outbound_queue_bytes / 2;
        let (mut used, mut keep) = (0, 0);
        let from_cursor: Box<dyn Iterator<Item = &StoredMessage>> =
            if forward { Box::new(messages.iter()) } else { Box::new(messages.iter().rev()) };
        for message in from_cursor {
            used += message.body.get().len() + message.from.len() + room_len + 96;
            if used > budget && keep > 0 {
                break;
            }
            keep += 1;
        }
        let dropped = messages.len() - keep;
        if forward {
            messages.truncate(keep);
        } else {
            messages.drain(..dropped);
        }
        dropped > 0
    }
}

/// A volatile message's event: no `seq`, `"volatile": true`.
fn volatile_event(room: &str, from: &str, ts: u64, body: &RawValue) -> Encoded {
    Encoded::new(&event::RoomMessage { ev: "msg", room, seq: None, from, ts, body, volatile: Some(true) })
}
