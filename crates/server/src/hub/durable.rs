//! Stored messages in the hub: publishing room messages and DMs to the
//! [`Broker`](crate::broker::Broker), and, as the broker's [`Deliveries`],
//! fanning out each stored message that arrives and answering its
//! publisher. Also what a `since` can recover, decided from what the broker
//! knows of the log.

use super::conn::{Conn, Transport};
use super::room::Room;
use super::{lock, Hub, HubError};
use crate::broker::{Deliveries, Delivery, Publication, PublishError, Stored, Unstored};
use crate::idempotency::{Claim, First, Seen};
use crate::metrics::DropReason;
use crate::store::{LogKey, LogKind, LogMeta, Pruned};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::event::{self, Encoded, InboxStatus};
use switchboard_protocol::ErrorCode;
use tokio::sync::oneshot;

/// What a publisher is told when the cluster did not send its message:
/// Redis was known unreachable.
pub const UNAVAILABLE: &str = "the cluster cannot reach Redis: the message was not stored or delivered; retry";

/// What a publisher is told when a cluster could not confirm its message.
pub const UNCONFIRMED: &str = "the cluster could not confirm the message (Redis did not answer in time, or fewer replicas or append-only files than configured have it): it may have been stored and delivered; retry with the same idempotency key";

/// Who to answer once a message is stored (or could not be).
#[derive(Debug)]
pub enum Ticket {
    /// A client's `send` or `dm`: the ack (if it had an `id`) goes into its
    /// connection's queue, and its pending request ends. With an
    /// `idempotency_key`, `first` records where it was stored for repeats.
    Conn { conn: Arc<Conn>, id: Option<Box<RawValue>>, first: Option<First<Stored>> },
    /// An HTTP request waiting for the outcome (`api`'s publish endpoints).
    Http(oneshot::Sender<Result<Stored, Unstored>>),
}

#[derive(Serialize)]
struct StoredReply {
    seq: u64,
    ts: u64,
}

/// What a `join` or `inbox` with `since` can recover. Planned after the
/// connection became a member, from the log's `fanned_out`: every message
/// after it reaches the connection live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The log's epoch (absent while it has no history).
    pub epoch: Option<u64>,
    /// Every message after this `seq` arrives live.
    pub seq: u64,
    /// `None` when no `since` was given.
    pub recovered: Option<bool>,
    /// `(log, after, through)`: replay `log`'s messages with
    /// `after < seq <= through`.
    pub replay: Option<(u64, u64, u64)>,
}

impl Recovery {
    /// Decides from `meta` what `since` (in `epoch`) can recover. Messages
    /// that retention kept are replayed even when some before them are
    /// gone; `recovered` says whether the range is whole.
    pub fn plan(meta: Option<LogMeta>, since: Option<u64>, epoch: Option<u64>) -> Recovery {
        let Some(meta) = meta else {
            let recovered = since.map(|since| since == 0 && epoch.is_none());
            return Recovery { epoch: None, seq: 0, recovered, replay: None };
        };
        let live_after = meta.fanned_out;
        let mut plan = Recovery { epoch: Some(meta.epoch), seq: live_after, recovered: None, replay: None };
        let Some(since) = since else { return plan };
        // A `since` past what was fanned out was never seen in this epoch.
        if epoch.is_some_and(|epoch| epoch != meta.epoch) || since > live_after {
            plan.recovered = Some(false);
            return plan;
        }
        // Retention removed nothing after `since`: neither from the front
        // nor one sender's older DMs from the middle of an inbox.
        plan.recovered = Some(since + 1 >= meta.first_seq && since >= meta.dropped_through);
        let after = since.max(meta.first_seq - 1);
        if after < live_after {
            plan.replay = Some((meta.id, after, live_after));
        }
        plan
    }
}

/// A client's `send` or `dm` as the hub stores it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub body: &'a RawValue,
    /// The command's `id`, to answer.
    pub id: Option<&'a RawValue>,
    /// Its `idempotency_key`: a repeat within the window is answered with
    /// the first ack and stores nothing.
    pub idempotency_key: Option<&'a str>,
}

/// The ack of a repeated `idempotency_key`: the first attempt's `seq` and
/// `ts`, saying it is a duplicate.
#[derive(Serialize)]
struct RepeatReply {
    seq: u64,
    ts: u64,
    duplicate: bool,
}

impl Hub {
    /// Queues a message to be stored in `room`, of which `conn` is a member
    /// (the session's own list of rooms says so); the ack and the fan-out
    /// follow the commit.
    pub fn publish(self: &Arc<Self>, conn: &Arc<Conn>, room: &Room, message: Outgoing<'_>) -> Result<(), HubError> {
        self.submit(LogKey { kind: LogKind::Room, name: Arc::clone(&room.name) }, conn, message)
    }

    /// Queues a DM to be stored in `to`'s inbox; it is pushed to `to`'s
    /// open connections once stored, and kept for when they connect.
    pub fn direct(self: &Arc<Self>, from: &Arc<Conn>, to: &str, message: Outgoing<'_>) -> Result<(), HubError> {
        self.submit(LogKey { kind: LogKind::Inbox, name: Arc::from(to) }, from, message)
    }

    fn submit(self: &Arc<Self>, key: LogKey, conn: &Arc<Conn>, message: Outgoing<'_>) -> Result<(), HubError> {
        // Scoped by sender, target and key: names hold no newline.
        let scope = message
            .idempotency_key
            .map(|idempotency_key| format!("{}\n{}\n{}\n{idempotency_key}", conn.user, key.kind.code(), key.name));
        let first = match &scope {
            None => None,
            Some(scope) => match self.idempotency.claim(scope.clone(), &self.metrics) {
                Claim::First(first) => Some(first),
                Claim::Seen(seen) => return self.answer_repeat(conn, message.id, seen),
            },
        };
        if !conn.begin_request(false) {
            self.metrics.dropped(DropReason::TooManyPending, 1);
            return Err(HubError::TooManyPending);
        }
        let ticket = Ticket::Conn { conn: Arc::clone(conn), id: message.id.map(ToOwned::to_owned), first };
        let from = Arc::clone(&conn.user);
        let publication = Publication { key, from, body: message.body.to_owned(), ticket };
        // A cluster's broker checks the scope again in Redis, for a repeat
        // that reaches another node.
        self.broker.publish(publication, scope.as_deref()).map_err(|error| {
            conn.end_request();
            self.submit_failed(Some(conn.id), error)
        })
    }

    /// Answers a repeated `idempotency_key` with the first attempt's ack, at
    /// once or when that attempt is stored. A first attempt that failed
    /// (its client was answered `storage_failed` or `overloaded`) answers
    /// the repeat `storage_failed`: nothing was stored, and sending again
    /// with the same key stores.
    fn answer_repeat(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        id: Option<&RawValue>,
        seen: Seen<Stored>,
    ) -> Result<(), HubError> {
        if let Some(stored) = seen.ready() {
            self.ack_repeat(conn, id, Some(stored));
            return Ok(());
        }
        if !conn.begin_request(false) {
            self.metrics.dropped(DropReason::TooManyPending, 1);
            return Err(HubError::TooManyPending);
        }
        let (hub, conn, id) = (Arc::clone(self), Arc::clone(conn), id.map(ToOwned::to_owned));
        tokio::spawn(async move {
            let stored = seen.answer().await;
            hub.ack_repeat(&conn, id.as_deref(), stored);
            conn.end_request();
        });
        Ok(())
    }

    fn ack_repeat(&self, conn: &Conn, id: Option<&RawValue>, stored: Option<Stored>) {
        self.metrics.idempotent_repeats.inc();
        let Some(re) = id else { return };
        let reply = match stored {
            Some(Stored { seq, ts, .. }) => {
                Encoded::new(&event::Ok { re, ok: true, data: RepeatReply { seq, ts, duplicate: true } })
            }
            None => {
                let text = "the first attempt with this idempotency_key was not stored; send it again";
                Encoded::new(&event::Error::new(Some(re), ErrorCode::StorageFailed, text))
            }
        };
        self.reply(conn, &reply);
    }

    /// Queues a message from the HTTP API, `from` whoever the caller says,
    /// to be stored in a room's history or a user's inbox; it is fanned out
    /// like any other once stored. The receiver gets where it was stored,
    /// or `Err` why not. `idempotency` is the request's scope, which a
    /// cluster's broker checks in Redis (the node's own window is the
    /// API's, `api::idempotency`).
    pub fn submit_from_api(
        &self,
        kind: LogKind,
        name: &str,
        from: Arc<str>,
        body: Box<RawValue>,
        idempotency: Option<&str>,
    ) -> Result<oneshot::Receiver<Result<Stored, Unstored>>, HubError> {
        let (answer, receiver) = oneshot::channel();
        let key = LogKey { kind, name: Arc::from(name) };
        let publication = Publication { key, from, body, ticket: Ticket::Http(answer) };
        self.broker.publish(publication, idempotency).map_err(|error| self.submit_failed(None, error))?;
        Ok(receiver)
    }

    /// Proves the storage takes a write: a probe queued behind whatever the
    /// writer has to do (`/readyz`). The receiver gets `Err(reason)` when the
    /// backend could not write.
    pub fn probe_storage(&self) -> Result<oneshot::Receiver<Result<(), String>>, PublishError> {
        let (answer, receiver) = oneshot::channel();
        self.broker.probe(Box::new(move |outcome| {
            let _ = answer.send(outcome);
        }))?;
        Ok(receiver)
    }

    fn submit_failed(&self, conn: Option<u64>, error: PublishError) -> HubError {
        match error {
            PublishError::Busy => {
                self.metrics.dropped(DropReason::StorageBusy, 1);
                tracing::warn!(conn, "storage queue full: message refused with `overloaded`");
                HubError::StorageBusy
            }
            PublishError::Closed => HubError::ShuttingDown,
            PublishError::Unavailable => {
                self.metrics.dropped(DropReason::ClusterUnavailable, 1);
                tracing::warn!(conn, "Redis unreachable: message refused with `unavailable`");
                HubError::Unavailable
            }
        }
    }

    /// What to await before [`Hub::recovery`] can answer for a log (see
    /// [`crate::broker::Broker::pending`]); `None` on a single node.
    pub fn pending(&self, kind: LogKind, name: &str) -> Option<crate::broker::Pending> {
        self.broker.pending(kind, name)
    }

    /// What `since` can recover in a log.
    pub fn recovery(&self, kind: LogKind, name: &str, since: Option<u64>, epoch: Option<u64>) -> Recovery {
        Recovery::plan(self.broker.meta(kind, name), since, epoch)
    }

    /// The epoch of `room`'s history, once it has one.
    pub fn room_epoch(&self, room: &str) -> Option<u64> {
        self.broker.meta(LogKind::Room, room).map(|meta| meta.epoch)
    }

    /// The user's inbox for the `hello`, if it ever received a DM.
    pub fn inbox_status(&self, user: &str) -> Option<InboxStatus> {
        let meta = self.broker.meta(LogKind::Inbox, user)?;
        let read = meta.delivered.max(meta.first_seq.saturating_sub(1));
        let waiting = meta.last_seq.saturating_sub(read).min(meta.retained());
        Some(InboxStatus { epoch: meta.epoch, seq: meta.last_seq, waiting })
    }

    /// Records that the user's DMs through `seq` reached a connection.
    pub(super) fn inbox_delivered(&self, user: &str, seq: u64) {
        self.broker.mark_delivered(user, seq);
    }

    /// Fans a stored message out to `room`'s members and records it as
    /// fanned out under the same lock that orders joins (see
    /// `docs/ARCHITECTURE.md`, "Recovery").
    fn fan_out_room(&self, room: Option<&Arc<Room>>, message: &Delivery<'_>, encoded: &Encoded) {
        self.metrics.messages_published.inc();
        if let Some(room) = room {
            let mut state = room.lock();
            if !state.removed {
                self.deliver_and_mark(state.members_in_address_order(), message, encoded);
                return;
            }
        }
        // No room, or it was removed since it was looked up: look again
        // under the directory lock, which a joiner needs to create it.
        let directory = lock(&self.rooms);
        let current = directory.get(&message.key.name).map(|room| room.lock());
        self.deliver_and_mark(current.iter().flat_map(|state| state.members()), message, encoded);
    }

    fn fan_out_inbox(&self, message: &Delivery<'_>, encoded: &Encoded) {
        let users = lock(&self.users);
        // A Server-Sent Events follower reads rooms, not the user's DMs: a
        // DM it was sent would move the inbox's cursor past what the user's
        // clients have seen.
        let conns = users.get(&message.key.name).iter().filter(|conn| conn.transport != Transport::Sse);
        let delivered = self.deliver_and_mark(conns, message, encoded);
        drop(users);
        if delivered {
            self.inbox_delivered(&message.key.name, message.seq);
        }
    }

    /// Queues a stored message for `members` and records it as fanned out.
    /// The caller holds the lock that orders this with joining (the room's,
    /// the directory's, or the users directory's), so no joiner slips
    /// between the two. Returns whether anyone got it.
    fn deliver_and_mark<'a>(
        &self,
        members: impl Iterator<Item = &'a Arc<Conn>>,
        message: &Delivery<'_>,
        encoded: &Encoded,
    ) -> bool {
        let (mut delivered, mut queued) = (false, 0);
        for member in members {
            queued += self.deliver_stored(member, encoded, message.log, message.seq);
            delivered = true;
        }
        self.metrics.deliveries.inc_by(queued);
        self.broker.mark_fanned_out(message.key.kind, &message.key.name, message.seq);
        delivered
    }
}

impl Deliveries<Ticket> for Hub {
    fn deliver(&self, message: &Delivery<'_>) {
        let (name, body, from, seq, ts) = (&*message.key.name, message.body, message.from, message.seq, message.ts);
        match message.key.kind {
            LogKind::Room => {
                // Looked up now, not when the message was sent, so a room
                // created since still gets it (see `docs/ARCHITECTURE.md`).
                let room = lock(&self.rooms).get(name).cloned();
                let event =
                    event::RoomMessage { ev: "msg", room: name, seq: Some(seq), from, ts, body, volatile: None };
                self.fan_out_room(room.as_ref(), message, &Encoded::new(&event));
            }
            LogKind::Inbox => {
                let event = event::DirectMessage { ev: "dm", from, to: name, seq, ts, body };
                self.fan_out_inbox(message, &Encoded::new(&event));
            }
        }
    }

    fn settle(&self, ticket: Ticket, outcome: Result<Stored, Unstored>) {
        match outcome {
            Ok(stored) => self.acknowledge(ticket, stored),
            Err(reason) => self.refuse_unstored(ticket, reason),
        }
    }

    fn relayed(&self, room: &str, event: &[u8], except: Option<&str>) {
        let Some(room) = lock(&self.rooms).get(room).cloned() else { return };
        let Ok(event) = serde_json::from_slice::<&RawValue>(event) else {
            return tracing::warn!(room = %room.name, "a relayed event is not JSON; dropped");
        };
        let encoded = Encoded::new(&event);
        let mut state = room.lock();
        match except {
            Some(user) => self.fan_out(state.members().filter(|member| &*member.user != user), &encoded),
            None => self.fan_out(state.members_in_address_order(), &encoded),
        }
    }

    fn history_reset(&self, key: &LogKey) {
        let members: Vec<Arc<Conn>> = match key.kind {
            LogKind::Room => lock(&self.rooms)
                .get(&key.name)
                .map(|room| room.lock().members().cloned().collect())
                .unwrap_or_default(),
            LogKind::Inbox => lock(&self.users).get(&key.name).to_vec(),
        };
        tracing::warn!(log = %key.name, members = members.len(), "history lost: closing its members here with 4012");
        for member in members {
            member.close(switchboard_protocol::CloseCode::HistoryReset, false);
        }
    }

    fn pruned(&self, pruned: &Pruned) {
        self.metrics.dropped(DropReason::InboxPerSender, pruned.removed as usize);
        self.metrics.limit_hits_by(crate::guard::reason::INBOX_PER_SENDER, pruned.removed);
        tracing::warn!(
            inbox = %pruned.inbox,
            sender = %pruned.sender,
            removed = pruned.removed,
            through = pruned.through,
            "inbox over storage.inbox_max_per_sender: the sender's oldest DMs there were removed"
        );
    }
}

impl Hub {
    /// Answers the publisher of a stored message.
    fn acknowledge(&self, ticket: Ticket, stored: Stored) {
        self.metrics.messages_stored.inc();
        match ticket {
            Ticket::Conn { conn, id, first } => {
                if let Some(first) = first {
                    first.settle(stored);
                }
                if let Some(id) = &id {
                    let reply = event::Ok { re: id, ok: true, data: StoredReply { seq: stored.seq, ts: stored.ts } };
                    self.reply(&conn, &Encoded::new(&reply));
                }
                conn.end_request();
            }
            // The request may have gone (its client left): the message is stored all the same.
            Ticket::Http(answer) => {
                let _ = answer.send(Ok(stored));
            }
        }
    }

    /// Answers the publisher of a message that could not be stored.
    fn refuse_unstored(&self, ticket: Ticket, reason: Unstored) {
        let (drop, code, text) = match reason {
            Unstored::StorageFailed => (
                DropReason::StorageError,
                ErrorCode::StorageFailed,
                "the message could not be stored and was not delivered",
            ),
            Unstored::Unconfirmed => (DropReason::ClusterUnavailable, ErrorCode::Unavailable, UNCONFIRMED),
            Unstored::Unavailable => (DropReason::ClusterUnavailable, ErrorCode::Unavailable, UNAVAILABLE),
        };
        self.metrics.dropped(drop, 1);
        self.metrics.command_errors.get_or_create(&crate::metrics::ErrorLabel { code: code.as_str() }).inc();
        match ticket {
            // A keyed attempt's `first` goes with it: repeats learn it failed.
            Ticket::Conn { conn, id, .. } => {
                self.reply(&conn, &Encoded::new(&event::Error::new(id.as_deref(), code, text)));
                conn.end_request();
            }
            Ticket::Http(answer) => {
                let _ = answer.send(Err(reason));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with messages `first_seq..=last_seq` stored, of which those up
    /// to `fanned_out` were fanned out.
    fn meta(first_seq: u64, last_seq: u64, fanned_out: u64) -> Option<LogMeta> {
        Some(LogMeta { first_seq, last_seq, fanned_out, ..LogMeta::new(7, 42) })
    }

    #[test]
    fn since_inside_retention_replays_up_to_what_was_fanned_out() {
        let plan = Recovery::plan(meta(1, 10, 10), Some(4), None);
        assert_eq!((plan.recovered, plan.replay, plan.epoch, plan.seq), (Some(true), Some((7, 4, 10)), Some(42), 10));
        let in_flight = Recovery::plan(meta(1, 12, 10), Some(4), None);
        assert_eq!((in_flight.replay, in_flight.seq), (Some((7, 4, 10)), 10), "11 and 12 will arrive live");
        let caught_up = Recovery::plan(meta(1, 10, 10), Some(10), Some(42));
        assert_eq!((caught_up.recovered, caught_up.replay), (Some(true), None));
    }

    #[test]
    fn retention_gaps_epochs_and_the_future_are_not_recovered() {
        let trimmed = Recovery::plan(meta(6, 10, 10), Some(2), None);
        assert_eq!((trimmed.recovered, trimmed.replay), (Some(false), Some((7, 5, 10))), "what is left is still sent");
        let edge = Recovery::plan(meta(6, 10, 10), Some(5), None);
        assert_eq!(edge.recovered, Some(true));
        let other_epoch = Recovery::plan(meta(1, 10, 10), Some(3), Some(41));
        assert_eq!((other_epoch.recovered, other_epoch.replay), (Some(false), None));
        let pruned = Some(LogMeta { dropped_through: 6, holes: 3, ..meta(1, 10, 10).expect("meta") });
        let across = Recovery::plan(pruned, Some(5), None);
        assert_eq!((across.recovered, across.replay), (Some(false), Some((7, 5, 10))), "a gap in the middle");
        assert_eq!(Recovery::plan(pruned, Some(6), None).recovered, Some(true), "after the gap");
        let ahead = Recovery::plan(meta(1, 10, 10), Some(11), None);
        assert_eq!(ahead.recovered, Some(false));
        assert_eq!(Recovery::plan(None, Some(0), None).recovered, Some(true));
        assert_eq!(Recovery::plan(None, Some(3), None).recovered, Some(false));
        assert_eq!(Recovery::plan(meta(1, 10, 10), None, None).recovered, None);
    }
}
