//! [`Client`]: the high-level client. A handle (cheap to clone, usable from
//! many tasks) to a background task that owns the connection, reconnects
//! with backoff and full jitter when it drops, rejoins every room with the
//! `since` and `epoch` of the last message it saw, and resends `send`s and
//! `dm`s that were not acknowledged (each carries an idempotency key, so
//! the server stores it once). What happens to the connection arrives on
//! [`Events`] with the messages, as [`Event::Connected`],
//! [`Event::Reconnecting`] and [`Event::Recovered`]; a recovery that lost
//! messages says `recovered: false` there, never hidden.

use crate::backoff::{Backoff, Jitter};
use crate::driver::{Control, Driver, Options, Request};
use crate::endpoint::Endpoint;
use crate::error::{Error, ServerError};
use crate::link::Link;
use crate::wire::{
    Ack, Command, DirectMessage, Hello, HistoryPage, InboxReply, Joined, Message, Presence, PresenceChange, Removed,
    TokenExpiring,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the client tells its caller, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A connection is open: the first one, or again after a drop
    /// (`reconnected`). Rejoins and resends follow.
    Connected { hello: Hello, reconnected: bool },
    /// The connection dropped (or an attempt failed); attempt `attempt`
    /// (from 1) starts after `delay`.
    Reconnecting { attempt: u32, delay: Duration, reason: String },
    /// A room (or, with `room: None`, the DM inbox) was caught up after a
    /// reconnect.
    Recovered(Recovery),
    /// A room message.
    Message(Message),
    /// A direct message.
    Direct(DirectMessage),
    /// Another user arrived in a room.
    UserJoined(PresenceChange),
    /// Another user left a room.
    UserLeft(PresenceChange),
    /// The client is no longer in a room (its refreshed token does not allow it).
    Removed(Removed),
    /// The token runs out soon: [`Client::auth`] with a fresh one.
    TokenExpiring(TokenExpiring),
    /// A command without an id failed (the client gives every command one,
    /// so this is rare).
    ServerError(ServerError),
    /// An event this version does not know, as JSON.
    Other(Value),
    /// The client stopped for good (closed, gave up reconnecting, or was
    /// refused); the last event.
    Closed { reason: String },
}

/// How a reconnect caught a room (or the inbox) up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The room, or `None` for the DM inbox.
    pub room: Option<String>,
    /// Whether every message missed while disconnected was replayed. False
    /// when the server's history no longer reaches back that far, or was
    /// lost or reset (`epoch_changed`): some messages were missed for good.
    pub recovered: bool,
    /// Messages replayed (they arrived as [`Event::Message`] or
    /// [`Event::Direct`] before this event).
    pub replayed: u64,
    /// The history has another epoch (a memory-storage server restarted, or
    /// an operator reset the room): numbering starts over.
    pub epoch_changed: bool,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    /// Waiting for, or making, attempt `attempt` (from 1).
    Reconnecting {
        attempt: u32,
    },
    Closed,
}

/// Where the client stands in a room: the history's epoch and the last
/// message it delivered. Saved, it resumes a later client with
/// [`Client::join_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub room: String,
    /// `None` until the room has a stored message (and the client learned
    /// its epoch).
    pub epoch: Option<u64>,
    pub seq: u64,
}

/// What the handles can read of the driver's state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: ConnectionState,
    pub hello: Option<Hello>,
    /// Joined rooms in joining order.
    pub rooms: Vec<Position>,
}

/// Options for [`Client`], from [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    endpoint: Result<Endpoint, Error>,
    options: Options,
    jitter: Option<Jitter>,
    event_capacity: usize,
}

impl ClientBuilder {
    /// Connect as `name` (open mode).
    pub fn name(mut self, name: &str) -> Self {
        self.endpoint = self.endpoint.map(|endpoint| endpoint.with_name(name));
        self
    }

    /// Connect with `token` (token mode).
    pub fn token(mut self, token: &str) -> Self {
        self.endpoint = self.endpoint.map(|endpoint| endpoint.with_token(token));
        self
    }

    /// TLS settings for `wss://` and `tls://` (default: Mozilla's roots;
    /// see [`crate::tls_trusting_pem`] for a private CA).
    pub fn tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.endpoint = self.endpoint.map(|endpoint| endpoint.with_tls(tls));
        self
    }

    /// The reconnect policy (default: [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Seeds the reconnect jitter, for reproducible delays.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Some(Jitter::seeded(seed));
        self
    }

    /// How long after its first attempt an unacknowledged `send` or `dm` may
    /// still be resent (default 4 minutes: within the server's 5-minute
    /// idempotency window, `api.idempotency_window`). Older ones fail with
    /// [`Error::Unacknowledged`] instead.
    pub fn resend_window(mut self, window: Duration) -> Self {
        self.options.resend_window = window;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Events held for a caller that does not read them (default 4,096).
    /// When full, the client stops reading the socket until the caller
    /// reads; a server whose queue for the client fills closes it (4008),
    /// and the client reconnects and recovers.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Connects (one attempt: a server that cannot be reached now is an
    /// error here, not a retry) and starts the client.
    pub async fn connect(self) -> Result<(Client, Events), Error> {
        let endpoint = self.endpoint?;
        let timeout = self.options.connect_timeout;
        let (link, hello) =
            tokio::time::timeout(timeout, Link::open(&endpoint)).await.map_err(|_| Error::Timeout(timeout))??;
        let hello: Hello = serde_json::from_value(hello)?;
        let shared = Shared { state: ConnectionState::Connected, hello: Some(hello.clone()), rooms: Vec::new() };
        let shared = Arc::new(Mutex::new(shared));
        let (controls, control_receiver) = mpsc::channel(256);
        let (event_sender, events) = mpsc::channel(self.event_capacity);
        let jitter = self.jitter.unwrap_or_else(Jitter::from_entropy);
        let driver = Driver::new(endpoint, self.options, jitter, control_receiver, event_sender, Arc::clone(&shared));
        tokio::spawn(driver.run(link, hello));
        let key_prefix = Jitter::from_entropy().next_u128();
        let keys = Arc::new(Keys { prefix: format!("{key_prefix:032x}"), next: AtomicU64::new(1) });
        Ok((Client { controls, shared, keys }, Events { receiver: events }))
    }
}

/// Idempotency keys: this client's random prefix and a counter.
#[derive(Debug)]
struct Keys {
    prefix: String,
    next: AtomicU64,
}

/// A connection to a Switchboard server that survives drops. Clone it to
/// use it from several tasks; the connection closes when the last clone is
/// dropped or [`Client::close`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    controls: mpsc::Sender<Control>,
    shared: Arc<Mutex<Shared>>,
    keys: Arc<Keys>,
}

impl Client {
    /// Options before connecting to `url` (`ws://`, `wss://`, `tcp://`, `tls://`).
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            endpoint: Endpoint::parse(url),
            options: Options::default(),
            jitter: None,
            event_capacity: 4_096,
        }
    }

    /// Connects to `url` with the default options.
    pub async fn connect(url: &str) -> Result<(Client, Events), Error> {
        Client::builder(url).connect().await
    }

    /// Joins `room`; the client rejoins it after every reconnect until
    /// [`Client::leave`].
    pub async fn join(&self, room: &str) -> Result<Joined, Error> {
        self.typed(Command::Join { room: room.into(), since: None, epoch: None }).await
    }

    /// Joins `room` from `since` (and `epoch`), a position saved earlier:
    /// the messages after it are replayed first.
    pub async fn join_since(&self, room: &str, since: u64, epoch: Option<u64>) -> Result<Joined, Error> {
        self.typed(Command::Join { room: room.into(), since: Some(since), epoch }).await
    }

    pub async fn leave(&self, room: &str) -> Result<(), Error> {
        self.request(Command::Leave { room: room.into() }).await.map(drop)
    }

    /// Publishes `body` to `room` and waits until it is stored. Resent
    /// after a reconnect if the ack was lost: the server stores it once.
    pub async fn send(&self, room: &str, body: impl Serialize) -> Result<Ack, Error> {
        self.send_keyed(room, body, &self.new_key()).await
    }

    /// [`Client::send`] with the caller's own idempotency key (1 to 256
    /// bytes), for an outbox that outlives the process.
    pub async fn send_keyed(&self, room: &str, body: impl Serialize, key: &str) -> Result<Ack, Error> {
        let body = serde_json::to_value(body)?;
        let command = Command::Send { room: room.into(), body, idempotency_key: Some(key.into()), volatile: false };
        self.typed(command).await
    }

    /// Publishes `body` to `room` live, never stored (typing indicators):
    /// answered at once with the server's time, and not resent.
    pub async fn send_volatile(&self, room: &str, body: impl Serialize) -> Result<u64, Error> {
        let body = serde_json::to_value(body)?;
        let command = Command::Send { room: room.into(), body, idempotency_key: None, volatile: true };
        let reply = self.request(command).await?;
        Ok(reply["ts"].as_u64().unwrap_or_default())
    }

    /// Sends a direct message to `to`, kept in their inbox; resent like
    /// [`Client::send`].
    pub async fn dm(&self, to: &str, body: impl Serialize) -> Result<Ack, Error> {
        let body = serde_json::to_value(body)?;
        self.typed(Command::Dm { to: to.into(), body, idempotency_key: Some(self.new_key()) }).await
    }

    /// Up to `limit` (server default 50) stored messages of `room` before
    /// `before` (default: the newest), oldest first.
    pub async fn history(&self, room: &str, before: Option<u64>, limit: Option<u64>) -> Result<HistoryPage, Error> {
        self.typed(Command::History { room: room.into(), before, limit }).await
    }

    /// Who is in `room`.
    pub async fn presence(&self, room: &str) -> Result<Presence, Error> {
        self.typed(Command::Presence { room: room.into() }).await
    }

    /// Replays the user's DMs after `since` as [`Event::Direct`] events.
    pub async fn inbox(&self, since: u64, epoch: Option<u64>) -> Result<InboxReply, Error> {
        self.typed(Command::Inbox { since, epoch }).await
    }

    /// A round trip to the server.
    pub async fn ping(&self) -> Result<(), Error> {
        self.request(Command::Ping).await.map(drop)
    }

    /// Hands the connection a fresh token (token mode), which later
    /// reconnects present too. Returns its `exp`.
    pub async fn auth(&self, token: &str) -> Result<Option<u64>, Error> {
        let reply = self.request(Command::Auth { token: token.into() }).await?;
        Ok(reply["exp"].as_u64())
    }

    /// Any command; the reply's fields (`{"re", "ok", ...}`) on success.
    pub async fn request(&self, command: Command) -> Result<Value, Error> {
        let (reply, answer) = oneshot::channel();
        let control = Control::Request(Request { command, reply });
        self.controls.send(control).await.map_err(|_| Error::ClientClosed)?;
        answer.await.map_err(|_| Error::ClientClosed)?
    }

    async fn typed<T: DeserializeOwned>(&self, command: Command) -> Result<T, Error> {
        Ok(serde_json::from_value(self.request(command).await?)?)
    }

    /// The server's rooms that have members (in token mode, those the
    /// token allows joining), sorted.
    pub async fn rooms(&self) -> Result<Vec<String>, Error> {
        let reply = self.request(Command::Rooms).await?;
        Ok(serde_json::from_value(reply["rooms"].clone())?)
    }

    /// The rooms the client is in (and rejoins after a reconnect), in
    /// joining order.
    pub fn joined(&self) -> Vec<String> {
        self.shared().rooms.iter().map(|position| position.room.clone()).collect()
    }

    /// Where the client stands in `room`, if it is in it.
    pub fn position(&self, room: &str) -> Option<Position> {
        self.shared().rooms.iter().find(|position| position.room == room).cloned()
    }

    /// The latest connection's `hello` (who the server says the client is).
    pub fn hello(&self) -> Option<Hello> {
        self.shared().hello.clone()
    }

    pub fn state(&self) -> ConnectionState {
        self.shared().state
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic elsewhere cannot leave these few fields half-written.
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the connection politely and stops the client; requests still
    /// waiting fail with [`Error::ClientClosed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.controls.send(Control::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    fn new_key(&self) -> String {
        format!("{}-{}", self.keys.prefix, self.keys.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The client's events, in order; `None` after [`Event::Closed`]. Also a
/// [`futures_util::Stream`].
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.receiver.poll_recv(cx)
    }
}
