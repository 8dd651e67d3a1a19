//! A client session: turns one command (a JSON text) into hub calls and a
//! reply queued on the client's own connection. It owns the list of rooms
//! the connection joined. It knows nothing of sockets or framing, so every
//! transport that speaks the JSON protocol shares it. Every command is
//! charged to the connection's rate budget first (`crate::guard::rate`).

mod recovery;

pub use recovery::Followed;

use crate::auth::{AuthError, Permission, Profile};
use crate::broker::presence::{MemberList, Members};
use crate::guard::rate::{Budget, Exceeded, Verdict};
use crate::guard::reason;
use crate::hub::conn::Conn;
use crate::hub::conn::Transport;
use crate::hub::room::Room;
use crate::hub::{Hub, HubError, Outgoing};
use crate::policy::Admission;
use serde::Serialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;
use std::sync::Arc;
use switchboard_protocol::command::{self, Command, Request};
use switchboard_protocol::event::{self, Encoded};
use switchboard_protocol::{CloseCode, ErrorCode};

/// Queues the `hello`: ahead of the held frames (and ending the hold) when
/// it had to wait for the inbox's position.
fn hello(hub: &Hub, conn: &Conn, token: Option<&str>, held: bool) {
    let inbox = hub.inbox_status(&conn.user);
    let hello = Encoded::new(&event::Hello { ev: "hello", user: &conn.user, conn: conn.id, session: token, inbox });
    if !held {
        return hub.reply(conn, &hello);
    }
    hub.reply_before_replay(conn, &hello);
    recovery::end_recovery(hub, conn);
}

/// Answers `presence` with `members`, or `unavailable` when a cluster
/// could not list them.
fn reply_presence(hub: &Hub, conn: &Conn, id: Option<&RawValue>, room: &str, members: MemberList) {
    let Some(re) = id else { return };
    let members = match members {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(room, %error, "presence could not be listed");
            let text = "the cluster cannot reach Redis to list presence; retry";
            return hub.reply(conn, &Encoded::new(&event::Error::new(Some(re), ErrorCode::Unavailable, text)));
        }
    };
    let users: Vec<Arc<str>> = members.iter().map(|(user, _)| Arc::clone(user)).collect();
    let info = members
        .iter()
        .filter_map(|(user, info)| Some((user.to_string(), serde_json::from_str(info.as_deref()?.get()).ok()?)))
        .collect();
    hub.reply(conn, &Encoded::new(&event::Ok { re, ok: true, data: PresenceReply { room, users: &users, info } }));
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    /// Inline for the usual one room: no allocation per connection.
    rooms: SmallVec<[Arc<Room>; 1]>,
    /// Commands and bytes this connection may still send (16 bytes).
    budget: Budget,
}

#[derive(Serialize)]
struct LeaveReply<'a> {
    room: &'a str,
}

#[derive(Serialize)]
struct VolatileReply {
    ts: u64,
    volatile: bool,
}

#[derive(Serialize)]
struct PresenceReply<'a> {
    room: &'a str,
    users: &'a [Arc<str>],
    /// The public `info` of users whose token has one (token mode).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    info: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct RoomsReply<'a> {
    rooms: &'a [Arc<str>],
}

#[derive(Serialize)]
struct AuthReply {
    /// The new token's `exp`, if it has one.
    exp: Option<u64>,
}

impl Session {
    /// A session for a connection already registered with the hub; queues
    /// the `hello` greeting.
    pub fn start(hub: Arc<Hub>, conn: Arc<Conn>) -> Self {
        let session = Session::silent(hub, conn);
        session.greet(None);
        session
    }

    /// Queues the `hello` event (with the UDP session token, if any).
    pub fn greet(&self, token: Option<&str>) {
        let Some(pending) = self.hub.pending(crate::store::LogKind::Inbox, &self.conn.user) else {
            return hello(&self.hub, &self.conn, token, false);
        };
        // A cluster node that just subscribed to the user's inbox: the
        // `hello` (with the inbox's position) waits, and comes first.
        recovery::hold_live_frames(&self.conn);
        let (hub, conn, token) = (Arc::clone(&self.hub), Arc::clone(&self.conn), token.map(ToOwned::to_owned));
        tokio::spawn(async move {
            pending.await;
            hello(&hub, &conn, token.as_deref(), true);
        });
    }

    /// Queues the `hello` of an event stream follower: no inbox status, as
    /// a follower reads rooms, not the user's DMs.
    pub fn greet_follower(&self) {
        let conn = &self.conn;
        self.queue(&event::Hello { ev: "hello", user: &conn.user, conn: conn.id, session: None, inbox: None });
    }

    /// Gives the connection a new name and transport (a TCP client's first
    /// line decides both). Only before it joins a room: its presence would
    /// otherwise change identity under the other members.
    pub fn rename(&mut self, user: Arc<str>, transport: Transport) -> Result<(), &'static str> {
        if !self.rooms.is_empty() {
            return Err("leave your rooms before changing your name");
        }
        if self.conn.has_pending_requests() {
            // Their answers are addressed to the connection as it is named now.
            return Err("wait for the answers to your messages before changing your name");
        }
        self.conn = self.hub.rename(&self.conn, user, transport);
        Ok(())
    }

    /// Lets in a raw TCP or UDP client that presented `name` and `token` on
    /// its first line (see [`crate::policy::Policy::admit`]), naming the
    /// connection after it. A refusal is answered (`id`, if any) and counted;
    /// the caller closes.
    pub fn admit(
        &mut self,
        id: Option<&RawValue>,
        name: Option<String>,
        token: Option<&str>,
        transport: Transport,
    ) -> Result<(), AuthError> {
        let admitted = self.hub.policy().admit(name, token);
        let (user, profile) = match admitted {
            Ok(Admission::Named(name)) => (name.map(Arc::from).unwrap_or_else(|| Arc::clone(&self.conn.user)), None),
            Ok(Admission::Verified(identity)) => (identity.user, Some(identity.profile)),
            Err(error) => {
                self.refused(id, &error);
                return Err(error);
            }
        };
        // The first line: in no room yet, nothing in flight, so it cannot fail.
        let _ = self.rename(user, transport);
        if let Some(profile) = profile {
            self.hub.identify(&self.conn, profile);
        }
        Ok(())
    }

    /// A session that sends no greeting (the echo endpoint).
    pub fn silent(hub: Arc<Hub>, conn: Arc<Conn>) -> Self {
        let budget = Budget::new(hub.now_ms());
        Session { hub, conn, rooms: SmallVec::new(), budget }
    }

    /// Queues an `error` event with no request to answer.
    pub fn error_event(&self, code: ErrorCode, message: &str) {
        self.reply_error(None, code, message);
    }

    /// The rooms this connection is in, in joining order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(|room| &*room.name)
    }

    /// The names of the rooms this connection is in, in joining order (the
    /// rooms' own, to share).
    pub fn room_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.rooms.iter().map(|room| &room.name)
    }

    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Handles one command and queues its reply (or error) on this
    /// connection, unless the connection is over its rate: then the
    /// command is answered `rate_limited` (see [`Session::charge`]).
    pub fn handle(&mut self, text: &str) {
        if self.conn.is_closing() {
            return;
        }
        let verdict = self.charge(text.len());
        self.run(text, verdict);
    }

    /// Handles a command already charged to the budget (text mode charges
    /// the line a person typed, then runs what it stands for).
    pub fn handle_admitted(&mut self, text: &str) {
        if !self.conn.is_closing() {
            self.run(text, Verdict::Admit);
        }
    }

    fn run(&mut self, text: &str, verdict: Verdict) {
        self.hub.metrics.commands.inc();
        match (command::parse(text), verdict) {
            (Ok(request), Verdict::Admit) => self.dispatch(request),
            (Err(error), Verdict::Admit) => self.reply_error(error.id, error.code, &error.message),
            (Ok(Request { id, .. }), refused) | (Err(command::CommandError { id, .. }), refused) => {
                self.refuse(id, refused);
            }
        }
    }

    /// Charges one command of `bytes` bytes to the connection's budget, at
    /// the time of the read that brought it (the budget's clock wraps at 32
    /// bits like that one). A refusal is counted here; answering it is the
    /// caller's.
    pub fn charge(&mut self, bytes: usize) -> Verdict {
        let verdict = self.budget.charge(bytes, self.conn.heard_at_ms(), &self.hub.policy().guard.rates);
        match verdict {
            Verdict::Admit => {}
            Verdict::Refuse(Exceeded::Messages) | Verdict::Close(Exceeded::Messages) => {
                self.hub.metrics.limit_hit(reason::RATE_MESSAGES);
            }
            Verdict::Refuse(Exceeded::Bytes) | Verdict::Close(Exceeded::Bytes) => {
                self.hub.metrics.limit_hit(reason::RATE_BYTES);
            }
        }
        verdict
    }

    /// Answers a command the budget refused with `rate_limited`; closes the
    /// connection with 1008 when it keeps on.
    pub fn refuse(&mut self, id: Option<&RawValue>, verdict: Verdict) {
        let (Verdict::Refuse(exceeded) | Verdict::Close(exceeded)) = verdict else { return };
        let message = match exceeded {
            Exceeded::Messages => "too many commands per second: slow down",
            Exceeded::Bytes => "too many bytes per second: slow down",
        };
        self.reply_error(id, ErrorCode::RateLimited, message);
        if let Verdict::Close(_) = verdict {
            let conn = &self.conn;
            tracing::warn!(conn = conn.id, user = %conn.user, peer = %conn.peer(), ?exceeded,
                "rate limit: commands kept coming after refusals, closing with 1008");
            self.hub.metrics.limit_hit(reason::RATE_CLOSE);
            conn.close(CloseCode::PolicyViolation, false);
        }
    }

    fn dispatch(&mut self, Request { id, command }: Request<'_>) {
        let result = match command {
            Command::Join { room, since, epoch } => {
                self.permit(&room, Permission::Join).and_then(|()| self.join(id, &room, since, epoch))
            }
            Command::Leave { room } => self.leave(id, &room),
            Command::Send { room, body, volatile, idempotency_key } => {
                let message = Outgoing { body, id, idempotency_key: idempotency_key.as_deref() };
                self.send(&room, message, volatile)
            }
            Command::Dm { to, body, idempotency_key } => {
                self.hub.direct(&self.conn, &to, Outgoing { body, id, idempotency_key: idempotency_key.as_deref() })
            }
            Command::Presence { room } => self.permit(&room, Permission::Presence).map(|()| self.presence(id, &room)),
            Command::History { room, before, limit } => self.permit(&room, Permission::History).and_then(|()| {
                self.hub.spawn_history(Arc::clone(&self.conn), id.map(ToOwned::to_owned), room, before, limit)
            }),
            Command::Inbox { since, epoch } => self.inbox(id, since.unwrap_or(0), epoch),
            Command::Rooms => {
                self.reply_ok(id, RoomsReply { rooms: &self.visible_rooms() });
                Ok(())
            }
            Command::Auth { token } => {
                self.refresh(id, &token);
                Ok(())
            }
            Command::Hello { .. } => {
                let message = "hello is only valid as the first command of a TCP or UDP client";
                self.reply_error(id, ErrorCode::BadRequest, message);
                Ok(())
            }
            Command::Ping => {
                match id {
                    Some(_) => self.reply_ok(id, event::Empty {}),
                    None => self.queue(&PongEvent { ev: "pong" }),
                }
                Ok(())
            }
        };
        if let Err(error) = result {
            let code = match error {
                HubError::NotMember(_) => ErrorCode::NotMember,
                HubError::Forbidden(..) => ErrorCode::Forbidden,
                HubError::ShuttingDown => ErrorCode::ShuttingDown,
                HubError::Unavailable => ErrorCode::Unavailable,
                HubError::StorageBusy | HubError::TooManyPending => ErrorCode::Overloaded,
            };
            self.reply_error(id, code, &error.to_string());
        }
    }

    fn leave(&mut self, id: Option<&RawValue>, room: &str) -> Result<(), HubError> {
        let index = self.room_index(room)?;
        let left = self.rooms.remove(index);
        self.hub.leave(&self.conn, &left);
        // The room, as in a join reply: text mode shows it ("* you left ROOM").
        self.reply_ok(id, LeaveReply { room });
        Ok(())
    }

    fn send(&mut self, room: &str, message: Outgoing<'_>, volatile: bool) -> Result<(), HubError> {
        let index = self.room_index(room)?;
        self.permit(room, Permission::Send)?;
        if volatile {
            let ts = self.hub.publish_volatile(&self.conn, &self.rooms[index], message.body)?;
            self.reply_ok(message.id, VolatileReply { ts, volatile: true });
        } else {
            // Acked by the hub once stored.
            self.hub.publish(&self.conn, &self.rooms[index], message)?;
        }
        Ok(())
    }

    /// Whether this connection may do `permission` in `room`: in token mode
    /// what its token allows; in open mode anything, except that `history`
    /// and `presence` need membership.
    fn permit(&self, room: &str, permission: Permission) -> Result<(), HubError> {
        match self.conn.profile() {
            Some(profile) if profile.allows(room, permission) => Ok(()),
            Some(_) => Err(HubError::Forbidden(room.to_owned(), permission.as_str())),
            None if matches!(permission, Permission::History | Permission::Presence) => {
                self.room_index(room).map(|_| ())
            }
            None => Ok(()),
        }
    }

    /// The server's rooms (those with members), sorted; in token mode only
    /// those the connection's token lets it join.
    pub fn visible_rooms(&self) -> Vec<Arc<str>> {
        let profile = self.conn.profile();
        let mut rooms = self.hub.room_names();
        rooms.retain(|name| profile.as_ref().is_none_or(|profile| profile.allows(name, Permission::Join)));
        rooms
    }

    /// Answers `presence`: the users, and the `info` of those who have one.
    fn presence(&self, id: Option<&RawValue>, room: &str) {
        let list = match self.hub.members(room) {
            Members::Here => return reply_presence(&self.hub, &self.conn, id, room, Ok(self.hub.local_members(room))),
            Members::Later(list) => list,
        };
        if !self.conn.begin_request(false) {
            self.hub.metrics.dropped(crate::metrics::DropReason::TooManyPending, 1);
            return self.reply_error(id, ErrorCode::Overloaded, &HubError::TooManyPending.to_string());
        }
        let (hub, conn, id, room) =
            (Arc::clone(&self.hub), Arc::clone(&self.conn), id.map(ToOwned::to_owned), room.to_owned());
        tokio::spawn(async move {
            let mut members = list.await;
            if let Ok(members) = &mut members {
                members.sort_by(|a, b| a.0.cmp(&b.0));
            }
            reply_presence(&hub, &conn, id.as_deref(), &room, members);
            conn.end_request();
        });
    }

    /// Answers `auth`: a fresh token for the same user replaces the
    /// connection's profile (new `exp`, `info` and rooms); rooms the new
    /// token does not let it join are left, each with a `removed` event.
    fn refresh(&mut self, id: Option<&RawValue>, token: &str) {
        let verified = match &self.hub.policy().auth {
            Some(auth) => auth.verify(token),
            None => return self.reply_error(id, ErrorCode::BadRequest, "this server runs in open mode: no tokens"),
        };
        let identity = match verified {
            Ok(identity) if identity.user == self.conn.user => identity,
            Ok(_) => return self.refused(id, &AuthError::OtherUser),
            Err(error) => return self.refused(id, &error),
        };
        let expires_at = identity.profile.expires_at();
        self.hub.identify(&self.conn, Arc::clone(&identity.profile));
        self.leave_forbidden_rooms(&identity.profile);
        self.reply_ok(id, AuthReply { exp: expires_at });
    }

    /// Answers a refused token and counts it.
    pub(crate) fn refused(&self, id: Option<&RawValue>, error: &AuthError) {
        self.hub.metrics.auth_failed(error.code());
        self.reply_error(id, error.code(), &error.to_string());
    }

    fn leave_forbidden_rooms(&mut self, profile: &Profile) {
        let mut left = Vec::new();
        self.rooms.retain(|room| {
            let allowed = profile.allows(&room.name, Permission::Join);
            if !allowed {
                left.push(Arc::clone(room));
            }
            allowed
        });
        for room in left {
            self.hub.leave(&self.conn, &room);
            let why = "your refreshed token does not allow this room";
            self.queue(&event::Removed {
                ev: "removed",
                room: &room.name,
                code: ErrorCode::Forbidden.as_str(),
                reason: why,
            });
        }
    }

    fn room_index(&self, room: &str) -> Result<usize, HubError> {
        self.rooms.iter().position(|joined| &*joined.name == room).ok_or_else(|| HubError::NotMember(room.to_owned()))
    }

    fn reply_ok(&self, id: Option<&RawValue>, data: impl Serialize) {
        if let Some(re) = id {
            self.queue(&event::Ok { re, ok: true, data });
        }
    }

    fn reply_error(&self, id: Option<&RawValue>, code: ErrorCode, message: &str) {
        self.hub.metrics.command_errors.get_or_create(&crate::metrics::ErrorLabel { code: code.as_str() }).inc();
        self.queue(&event::Error::new(id, code, message));
    }

    fn queue(&self, value: &impl Serialize) {
        self.hub.reply(&self.conn, &Encoded::new(value));
    }

    /// Leaves every room (announcing departures) and unregisters. Called
    /// once, when the connection starts closing.
    pub fn end(&mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.hub.leave(&self.conn, &room);
        }
    }
}

#[derive(Serialize)]
struct PongEvent {
    ev: &'static str,
}
