//! A client session: turns one command (a JSON text) into hub calls and a
//! reply queued on the client's own connection. It owns the list of rooms
//! the connection joined. It knows nothing of sockets or framing, so every
//! transport that speaks the JSON protocol shares it.

use crate::hub::conn::Conn;
use crate::hub::conn::Transport;
use crate::hub::room::Room;
use crate::hub::{Hub, HubError};
use serde::Serialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;
use std::sync::Arc;
use switchboard_protocol::command::{self, Command, Request};
use switchboard_protocol::event::{self, Encoded};
use switchboard_protocol::ErrorCode;

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    /// Inline for the usual one room: no allocation per connection.
    rooms: SmallVec<[Arc<Room>; 1]>,
}

#[derive(Serialize)]
struct JoinReply<'a> {
    room: &'a str,
    /// Without stored history nothing can be replayed: a `since` is
    /// answered honestly with `recovered: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    /// False when the room is over `limits.presence_events_max_members`.
    presence_events: bool,
}

#[derive(Serialize)]
struct SentReply {
    seq: u64,
    ts: u64,
}

#[derive(Serialize)]
struct PresenceReply<'a> {
    room: &'a str,
    users: &'a [Arc<str>],
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
        let conn = &self.conn;
        self.queue(&event::Hello { ev: "hello", user: &conn.user, conn: conn.id, session: token });
    }

    /// Gives the connection a new name and transport (a TCP client's first
    /// line decides both). Only before it joins a room: its presence would
    /// otherwise change identity under the other members.
    pub fn rename(&mut self, user: Arc<str>, transport: Transport) -> Result<(), &'static str> {
        if !self.rooms.is_empty() {
            return Err("leave your rooms before changing your name");
        }
        self.conn = self.hub.rename(&self.conn, user, transport);
        Ok(())
    }

    /// A session that sends no greeting (the echo endpoint).
    pub fn silent(hub: Arc<Hub>, conn: Arc<Conn>) -> Self {
        Session { hub, conn, rooms: SmallVec::new() }
    }

    /// Queues an `error` event with no request to answer.
    pub fn error_event(&self, code: ErrorCode, message: &str) {
        self.reply_error(None, code, message);
    }

    /// The rooms this connection is in, in joining order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(|room| &*room.name)
    }

    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Handles one command and queues its reply (or error) on this connection.
    pub fn handle(&mut self, text: &str) {
        self.hub.metrics.commands.inc();
        match command::parse(text) {
            Ok(request) => self.dispatch(request),
            Err(error) => self.reply_error(error.id, error.code, &error.message),
        }
    }

    fn dispatch(&mut self, Request { id, command }: Request<'_>) {
        let result = match command {
            Command::Join { room, since } => self.join(id, &room, since),
            Command::Leave { room } => self.leave(id, &room),
            Command::Send { room, body, volatile: _ } => self.send(id, &room, body),
            Command::Dm { to, body } => {
                self.hub.direct(&self.conn, &to, body).map(|(seq, ts)| self.reply_ok(id, SentReply { seq, ts }))
            }
            Command::Presence { room } => {
                let users = self.hub.presence_of(&room);
                self.reply_ok(id, PresenceReply { room: &room, users: &users });
                Ok(())
            }
            Command::History { .. } => {
                let message = "history needs message storage, which this server version does not have yet";
                self.reply_error(id, ErrorCode::Unsupported, message);
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
                HubError::UserOffline(_) => ErrorCode::UserOffline,
                HubError::ShuttingDown => ErrorCode::ShuttingDown,
            };
            self.reply_error(id, code, &error.to_string());
        }
    }

    fn join(&mut self, id: Option<&RawValue>, room: &str, since: Option<u64>) -> Result<(), HubError> {
        let joined = self.hub.join(&self.conn, room)?;
        if let Some(room) = joined.room {
            self.rooms.push(room);
        }
        let presence_events = joined.presence_events;
        self.reply_ok(id, JoinReply { room, recovered: since.map(|_| false), presence_events });
        Ok(())
    }

    fn leave(&mut self, id: Option<&RawValue>, room: &str) -> Result<(), HubError> {
        let index = self.room_index(room)?;
        let left = self.rooms.remove(index);
        self.hub.leave(&self.conn, &left);
        self.reply_ok(id, event::Empty {});
        Ok(())
    }

    fn send(&mut self, id: Option<&RawValue>, room: &str, body: &RawValue) -> Result<(), HubError> {
        let index = self.room_index(room)?;
        let (seq, ts) = self.hub.publish(&self.conn, &self.rooms[index], body)?;
        self.reply_ok(id, SentReply { seq, ts });
        Ok(())
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
        self.hub.deliver_event(&self.conn, &Encoded::new(value));
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
