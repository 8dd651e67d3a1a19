//! Joining and catching up: `join` (and a Server-Sent Events follower's
//! rooms) with or without `since`, and `inbox`.
//!
//! What a `since` recovers is planned once this node knows where the log
//! stands: at once on a single node, and in a cluster once the broker's
//! subscription to the room is in place and its position read
//! ([`crate::broker::Broker::pending`]). Live frames are held from before
//! the connection becomes a member until the answer (and any replay) is
//! queued, so the answer always comes first and nothing is seen twice.

use super::Session;
use crate::broker::Pending;
use crate::hub::conn::Conn;
use crate::hub::{Hub, HubError, Recovery};
use crate::metrics::DropReason;
use crate::store::{LogKey, LogKind};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::event::{self, Encoded};

#[derive(Serialize)]
struct JoinReply<'a> {
    /// `joined` when it is an event, announcing a Server-Sent Events
    /// follower's room; absent in a reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    ev: Option<&'static str>,
    room: &'a str,
    /// The room's epoch; `null` while it has no stored message.
    epoch: Option<u64>,
    /// The newest stored `seq` when the join was handled.
    seq: u64,
    /// Present when `since` was given: whether every message after it is
    /// replayed (they follow this reply, then a `replayed` event).
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    /// False when the room is over `limits.presence_events_max_members`.
    presence_events: bool,
}

#[derive(Serialize)]
struct InboxReply {
    epoch: Option<u64>,
    seq: u64,
    recovered: bool,
}

/// A join to answer: a command's reply (`id`) or a follower's `joined`
/// event (`ev`).
#[derive(Debug, Clone, Copy)]
struct JoinAnswer<'a> {
    id: Option<&'a RawValue>,
    ev: Option<&'static str>,
    room: &'a str,
    since: Option<u64>,
    epoch: Option<u64>,
    presence_events: bool,
    /// Whether live frames are held for this answer (a recovery is under way).
    held: bool,
}

/// A [`JoinAnswer`] kept until the broker knows where the room stands.
struct LaterAnswer {
    id: Option<Box<RawValue>>,
    ev: Option<&'static str>,
    room: Arc<str>,
    since: Option<u64>,
    epoch: Option<u64>,
    presence_events: bool,
    held: bool,
}

impl LaterAnswer {
    fn keep(answer: JoinAnswer<'_>) -> Self {
        LaterAnswer {
            id: answer.id.map(ToOwned::to_owned),
            ev: answer.ev,
            room: Arc::from(answer.room),
            since: answer.since,
            epoch: answer.epoch,
            presence_events: answer.presence_events,
            held: answer.held,
        }
    }

    fn answer(&self) -> JoinAnswer<'_> {
        JoinAnswer {
            id: self.id.as_deref(),
            ev: self.ev,
            room: &self.room,
            since: self.since,
            epoch: self.epoch,
            presence_events: self.presence_events,
            held: self.held,
        }
    }
}

/// What following a room found: planned now, or once the broker is ready.
pub enum Followed {
    Planned(Recovery),
    /// Await `wait`, then [`Session::follow_planned`].
    Pending {
        wait: Pending,
        presence_events: bool,
    },
}

impl std::fmt::Debug for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Followed::Planned(plan) => f.debug_tuple("Planned").field(plan).finish(),
            Followed::Pending { presence_events, .. } => {
                f.debug_struct("Pending").field("presence_events", presence_events).finish_non_exhaustive()
            }
        }
    }
}

impl Session {
    /// Joins `room`; answers once what `since` recovers is planned.
    pub(super) fn join(
        &mut self,
        id: Option<&RawValue>,
        room: &str,
        since: Option<u64>,
        epoch: Option<u64>,
    ) -> Result<(), HubError> {
        let (presence_events, pending) = self.enter(room, since)?;
        let held = since.is_some() || pending.is_some();
        let answer = JoinAnswer { id, ev: None, room, since, epoch, presence_events, held };
        match pending {
            None => {
                answer_join(&self.hub, &self.conn, answer);
            }
            Some(pending) => {
                let (hub, conn, answer) = (Arc::clone(&self.hub), Arc::clone(&self.conn), LaterAnswer::keep(answer));
                tokio::spawn(async move {
                    pending.await;
                    answer_join(&hub, &conn, answer.answer());
                });
            }
        }
        Ok(())
    }

    /// Follows `room` for a Server-Sent Events stream: a join (with `since`
    /// and `epoch`, a recovery) announced by a `joined` event instead of a
    /// reply. Returns what was recovered and where the live stream starts,
    /// or what to await before [`Session::follow_planned`].
    pub fn follow(&mut self, room: &str, since: Option<u64>, epoch: Option<u64>) -> Result<Followed, HubError> {
        self.permit(room, crate::auth::Permission::Join)?;
        let (presence_events, pending) = self.enter(room, since)?;
        let held = since.is_some() || pending.is_some();
        let answer = JoinAnswer { id: None, ev: Some("joined"), room, since, epoch, presence_events, held };
        Ok(match pending {
            None => Followed::Planned(answer_join(&self.hub, &self.conn, answer)),
            Some(wait) => Followed::Pending { wait, presence_events },
        })
    }

    /// Plans and announces a followed room once its [`Followed::Pending`]
    /// is over.
    pub fn follow_planned(
        &self,
        room: &str,
        since: Option<u64>,
        epoch: Option<u64>,
        presence_events: bool,
    ) -> Recovery {
        let answer = JoinAnswer { id: None, ev: Some("joined"), room, since, epoch, presence_events, held: true };
        answer_join(&self.hub, &self.conn, answer)
    }

    /// Makes the connection a member of `room`. With `since`, live frames
    /// are held from before it becomes one; when the broker does not know
    /// yet where the room stands, from then on. Returns whether the room
    /// sends presence events, and what to await before planning.
    fn enter(&mut self, room: &str, since: Option<u64>) -> Result<(bool, Option<Pending>), HubError> {
        if since.is_some() {
            self.begin_recovery()?;
        }
        let joined = self.hub.join(&self.conn, room).inspect_err(|_| {
            if since.is_some() {
                end_recovery(&self.hub, &self.conn);
            }
        })?;
        if let Some(room) = joined.room {
            self.rooms.push(room);
        }
        let pending = self.hub.pending(LogKind::Room, room);
        if pending.is_some() && since.is_none() {
            // The member is in already: no refusing it now.
            hold_live_frames(&self.conn);
        }
        Ok((joined.presence_events, pending))
    }

    /// Answers `inbox`: the reply, then the user's DMs after `since`. The
    /// user's connections receive DMs live all along, so holding starts now.
    pub(super) fn inbox(&mut self, id: Option<&RawValue>, since: u64, epoch: Option<u64>) -> Result<(), HubError> {
        self.begin_recovery()?;
        let user = Arc::clone(&self.conn.user);
        let plan = self.hub.recovery(LogKind::Inbox, &user, Some(since), epoch);
        let reply = InboxReply { epoch: plan.epoch, seq: plan.seq, recovered: plan.recovered.unwrap_or(false) };
        let answer = id.map(|re| Encoded::new(&event::Ok { re, ok: true, data: reply }));
        reply_then_replay(&self.hub, &self.conn, answer, LogKey { kind: LogKind::Inbox, name: user }, plan);
        Ok(())
    }

    /// Counts a recovery as a pending request and starts holding live frames.
    fn begin_recovery(&self) -> Result<(), HubError> {
        if !self.conn.begin_request(false) {
            self.hub.metrics.dropped(DropReason::TooManyPending, 1);
            return Err(HubError::TooManyPending);
        }
        self.conn.begin_replay();
        Ok(())
    }
}

/// Plans what the join's `since` recovers and queues its answer: ahead of
/// the held frames, followed by the replay, when frames are held.
fn answer_join(hub: &Arc<Hub>, conn: &Arc<Conn>, join: JoinAnswer<'_>) -> Recovery {
    let plan = hub.recovery(LogKind::Room, join.room, join.since, join.epoch);
    let reply = JoinReply {
        ev: join.ev,
        room: join.room,
        epoch: plan.epoch,
        seq: plan.seq,
        recovered: plan.recovered,
        presence_events: join.presence_events,
    };
    let answer = match (join.ev, join.id) {
        (Some(_), _) => Some(Encoded::new(&reply)),
        (None, Some(re)) => Some(Encoded::new(&event::Ok { re, ok: true, data: reply })),
        (None, None) => None,
    };
    match (join.held, answer) {
        (true, answer) => {
            let key = LogKey { kind: LogKind::Room, name: Arc::from(join.room) };
            reply_then_replay(hub, conn, answer, key, plan);
        }
        (false, Some(answer)) => hub.reply(conn, &answer),
        (false, None) => {}
    }
    plan
}

/// Holds the connection's live frames until an answer that must come
/// first is queued, counted as a pending request (never refused).
pub(super) fn hold_live_frames(conn: &Conn) {
    conn.begin_request(true);
    conn.begin_replay();
}

/// Ends a recovery that replays nothing: held frames follow the reply.
pub(super) fn end_recovery(hub: &Hub, conn: &Conn) {
    let dropped = conn.end_replay(0, 0);
    if dropped > 0 {
        hub.metrics.dropped(DropReason::Closing, dropped);
    }
    conn.end_request();
}

/// Sends `answer` ahead of held frames, then the replay `plan` asks for
/// (which ends the recovery), or ends the recovery at once.
fn reply_then_replay(hub: &Arc<Hub>, conn: &Arc<Conn>, answer: Option<Encoded>, key: LogKey, plan: Recovery) {
    if let Some(answer) = answer {
        hub.reply_before_replay(conn, &answer);
    }
    match plan.replay {
        Some(range) => hub.spawn_replay(Arc::clone(conn), key, range),
        None => end_recovery(hub, conn),
    }
}
