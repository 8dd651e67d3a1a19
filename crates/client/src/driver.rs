//! The task behind a [`crate::Client`]: it owns the connection, matches
//! replies to requests, keeps each room's position (epoch and last `seq`),
//! and when the connection drops it reconnects with backoff, rejoins every
//! room from that position, catches the DM inbox up, and resends what is
//! safe to resend.
//!
//! What is resent: a `send` or `dm` not yet acknowledged, which always
//! carries an idempotency key, so a server that had stored it answers with
//! the first ack and stores nothing (within its window; past
//! [`Options::resend_window`] it fails with [`Error::Unacknowledged`]).
//! Every other command in flight fails with [`Error::Disconnected`]: a
//! `join` or `leave` may or may not have happened, and the caller decides.

use crate::backoff::{Backoff, Jitter};
use crate::client::{ConnectionState, Event, Position, Recovery, Shared};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::link::Link;
use crate::wire::{self, Command, Hello, InboxReply, Joined, ServerEvent};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The driver's settings (see [`crate::ClientBuilder`]).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub backoff: Backoff,
    pub resend_window: Duration,
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff: Backoff::default(),
            resend_window: Duration::from_secs(240),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A caller's command and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Value, Error>>,
}

/// What a handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Control {
    Request(Request),
    Close(oneshot::Sender<()>),
}

/// A command sent and not yet answered.
#[derive(Debug)]
struct Pending {
    command: Command,
    purpose: Purpose,
    /// When it was first sent (resends keep it).
    first_sent: Instant,
}

#[derive(Debug)]
enum Purpose {
    Caller(oneshot::Sender<Result<Value, Error>>),
    /// The driver's own rejoin of a room after a reconnect.
    Rejoin {
        since: u64,
    },
    /// A one-message `history` to learn a room's epoch (see [`Cursor`]).
    LearnEpoch,
    /// The driver's own inbox fetch after a reconnect.
    InboxCatchUp,
}

/// Where the client stands in one room's history.
#[derive(Debug, Default)]
struct Cursor {
    /// The history's epoch. A room joined before its first stored message
    /// has none yet; the first message makes the driver ask for it, since a
    /// rejoin without it could not tell a new history from the old one.
    epoch: Option<u64>,
    /// The last `seq` delivered to the caller; older ones are duplicates.
    last_seq: u64,
    /// A rejoin's replay is running: its `replayed` event ends the recovery.
    awaiting_replay: bool,
    learning_epoch: bool,
}

/// Where the client stands in the user's DM inbox.
#[derive(Debug, Clone, Copy)]
struct InboxCursor {
    /// Unknown when the first DM arrived after the `hello` (which had no inbox).
    epoch: Option<u64>,
    last_seq: u64,
    awaiting_replay: bool,
}

/// Why a connection's session ended.
enum Ended {
    /// The caller closed the client (or dropped every handle).
    Closed,
    /// The connection was lost.
    Lost(Error),
}

pub(crate) struct Driver {
    endpoint: Endpoint,
    options: Options,
    jitter: Jitter,
    controls: mpsc::Receiver<Control>,
    events: mpsc::Sender<Event>,
    shared: Arc<Mutex<Shared>>,
    /// Joined rooms by name, with the order they were joined in.
    rooms: BTreeMap<String, (u64, Cursor)>,
    joins: u64,
    inbox: Option<InboxCursor>,
    pending: HashMap<u64, Pending>,
    /// `send`s and `dm`s waiting for a connection, oldest first.
    queued: VecDeque<Pending>,
    next_id: u64,
}

impl Driver {
    pub fn new(
        endpoint: Endpoint,
        options: Options,
        jitter: Jitter,
        controls: mpsc::Receiver<Control>,
        events: mpsc::Sender<Event>,
        shared: Arc<Mutex<Shared>>,
    ) -> Driver {
        Driver {
            endpoint,
            options,
            jitter,
            controls,
            events,
            shared,
            rooms: BTreeMap::new(),
            joins: 0,
            inbox: None,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Runs the client from its first connection until it is closed or
    /// gives up.
    pub async fn run(mut self, link: Link, hello: Hello) {
        let mut connection = Some((link, hello));
        let mut reconnected = false;
        let reason = loop {
            let Some((link, hello)) = connection.take() else { break "closed".to_owned() };
            match self.session(link, hello, reconnected).await {
                Ended::Closed => break "closed by the caller".to_owned(),
                Ended::Lost(error) if error.is_fatal() => break error.to_string(),
                Ended::Lost(error) => {
                    tracing::info!(%error, "connection lost; reconnecting");
                    self.disconnected();
                    match self.reconnect(error).await {
                        Ok(opened) => connection = Some(opened),
                        Err(reason) => break reason,
                    }
                    reconnected = true;
                }
            }
        };
        self.finish(reason).await;
    }

    /// Tries to connect again until it works, the policy gives up, or the
    /// caller closes. Returns why it stopped otherwise.
    async fn reconnect(&mut self, mut error: Error) -> Result<(Link, Hello), String> {
        for attempt in 0.. {
            if self.options.backoff.max_attempts.is_some_and(|max| attempt >= max) {
                return Err(format!("gave up after {attempt} attempts: {error}"));
            }
            let delay = self.options.backoff.delay(attempt, &mut self.jitter);
            self.set_state(ConnectionState::Reconnecting { attempt: attempt + 1 });
            self.emit(Event::Reconnecting { attempt: attempt + 1, delay, reason: error.to_string() }).await;
            if !self.wait_offline(delay).await {
                return Err("closed by the caller".into());
            }
            let timeout = self.options.connect_timeout;
            let opened = tokio::time::timeout(timeout, Link::open(&self.endpoint)).await;
            match opened.map_err(|_| Error::Timeout(timeout)).and_then(|opened| opened) {
                Ok((link, hello)) => match serde_json::from_value(hello) {
                    Ok(hello) => return Ok((link, hello)),
                    Err(bad) => error = Error::Json(bad),
                },
                Err(failed) if failed.is_fatal() => return Err(failed.to_string()),
                Err(failed) => error = failed,
            }
        }
        Err(error.to_string())
    }

    /// Waits `delay` while disconnected, taking requests meanwhile: `send`s
    /// and `dm`s queue for the next connection, others fail at once.
    /// Returns false when the caller closed the client.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return true,
                control = self.controls.recv() => match control {
                    Some(Control::Request(request)) if request.command.idempotency_key().is_some() => {
                        self.queued.push_back(Pending::for_caller(request));
                    }
                    Some(Control::Request(request)) => {
                        let op = request.command.op();
                        let _ = request.reply.send(Err(Error::NotConnected { op }));
                    }
                    Some(Control::Close(done)) => {
                        let _ = done.send(());
                        return false;
                    }
                    None => return false,
                },
            }
        }
    }

    /// One connection's life: greet, rejoin, resend, then serve requests
    /// and read the server until either ends.
    async fn session(&mut self, mut link: Link, hello: Hello, reconnected: bool) -> Ended {
        {
            let mut shared = self.lock_shared();
            shared.state = ConnectionState::Connected;
            shared.hello = Some(hello.clone());
        }
        self.emit(Event::Connected { hello: hello.clone(), reconnected }).await;
        if let Err(error) = self.resume(&mut link, &hello).await {
            return Ended::Lost(error);
        }
        loop {
            tokio::select! {
                incoming = link.recv() => match incoming {
                    Ok(value) => {
                        if let Err(error) = self.incoming(&mut link, value).await {
                            return Ended::Lost(error);
                        }
                    }
                    Err(error) => return Ended::Lost(error),
                },
                control = self.controls.recv() => match control {
                    Some(Control::Request(request)) => {
                        if let Err(error) = self.transmit(&mut link, Pending::for_caller(request)).await {
                            return Ended::Lost(error);
                        }
                    }
                    Some(Control::Close(done)) => {
                        let _ = link.close().await;
                        let _ = done.send(());
                        return Ended::Closed;
                    }
                    None => {
                        let _ = link.close().await;
                        return Ended::Closed;
                    }
                },
            }
        }
    }

    /// After (re)connecting: rejoin every room from where it stood, fetch
    /// the DMs missed, then send what waited for a connection.
    async fn resume(&mut self, link: &mut Link, hello: &Hello) -> Result<(), Error> {
        let mut rejoins: Vec<(u64, String, u64, Option<u64>)> = self
            .rooms
            .iter()
            .map(|(room, (order, cursor))| (*order, room.clone(), cursor.last_seq, cursor.epoch))
            .collect();
        rejoins.sort_unstable();
        for (_, room, since, epoch) in rejoins {
            let command = Command::Join { room, since: Some(since), epoch };
            self.transmit(link, Pending::internal(command, Purpose::Rejoin { since })).await?;
        }
        self.catch_up_inbox(link, hello).await?;
        while let Some(pending) = self.queued.pop_front() {
            if pending.first_sent.elapsed() > self.options.resend_window {
                pending.fail_unacknowledged();
                continue;
            }
            self.transmit(link, pending).await?;
        }
        Ok(())
    }

    /// Fetches the DMs stored while disconnected, from the last one seen.
    /// The first connection only notes where the inbox stands: fetching
    /// older DMs is the caller's choice ([`crate::Client::inbox`]).
    async fn catch_up_inbox(&mut self, link: &mut Link, hello: &Hello) -> Result<(), Error> {
        let Some(cursor) = self.inbox else {
            let (epoch, last_seq) = hello.inbox.map_or((None, 0), |status| (Some(status.epoch), status.seq));
            self.inbox = Some(InboxCursor { epoch, last_seq, awaiting_replay: false });
            return Ok(());
        };
        let Some(status) = hello.inbox else { return Ok(()) };
        if cursor.epoch.is_none_or(|epoch| epoch == status.epoch) && status.seq <= cursor.last_seq {
            return Ok(());
        }
        let command = Command::Inbox { since: cursor.last_seq, epoch: cursor.epoch };
        self.transmit(link, Pending::internal(command, Purpose::InboxCatchUp)).await
    }

    /// Sends a command with the next id and remembers it until answered.
    async fn transmit(&mut self, link: &mut Link, pending: Pending) -> Result<(), Error> {
        if let Command::Leave { room } = &pending.command {
            // Not rejoined after a reconnect, whatever the answer.
            self.rooms.remove(room);
            self.publish_rooms();
        }
        self.next_id += 1;
        let text = pending.command.to_text(self.next_id);
        self.pending.insert(self.next_id, pending);
        link.send(text).await
    }

    /// One value from the server: a reply or an event.
    async fn incoming(&mut self, link: &mut Link, value: Value) -> Result<(), Error> {
        let Some(re) = value.get("re") else {
            return self.event(link, ServerEvent::from_json(value)).await;
        };
        let Some(pending) = re.as_u64().and_then(|id| self.pending.remove(&id)) else {
            tracing::debug!(%value, "a reply to no request of this client");
            return Ok(());
        };
        let outcome = wire::reply_outcome(value);
        match pending.purpose {
            Purpose::Caller(reply) => {
                if let Ok(answer) = &outcome {
                    self.answered(&pending.command, answer);
                }
                let _ = reply.send(outcome.map_err(Error::Server));
            }
            Purpose::Rejoin { since } => self.rejoined(&pending.command, since, outcome).await,
            Purpose::LearnEpoch => self.learned_epoch(outcome),
            Purpose::InboxCatchUp => self.inbox_caught_up(outcome).await,
        }
        Ok(())
    }

    /// What a caller's successful command changes in the driver's state.
    fn answered(&mut self, command: &Command, answer: &Value) {
        match command {
            Command::Join { room, since, .. } => {
                let Ok(joined) = serde_json::from_value::<Joined>(answer.clone()) else { return };
                let last_seq = match since {
                    Some(since) if joined.recovered == Some(true) => *since,
                    _ => joined.seq,
                };
                let order = match self.rooms.get(room) {
                    Some((order, _)) => *order,
                    None => self.next_join(),
                };
                let cursor = Cursor { epoch: joined.epoch, last_seq, ..Cursor::default() };
                self.rooms.insert(room.clone(), (order, cursor));
                self.publish_rooms();
            }
            Command::Auth { token } => self.endpoint = self.endpoint.clone().with_token(token),
            _ => {}
        }
    }

    fn next_join(&mut self) -> u64 {
        self.joins += 1;
        self.joins
    }

    /// A rejoin's answer: says whether the room recovered (at once, or
    /// after the replay its `replayed` event ends), and moves the cursor
    /// when the history numbering changed under it.
    async fn rejoined(&mut self, command: &Command, since: u64, outcome: Result<Value, crate::ServerError>) {
        let Command::Join { room, .. } = command else { return };
        let joined = match outcome.map(serde_json::from_value::<Joined>) {
            Ok(Ok(joined)) => joined,
            Ok(Err(error)) => return tracing::warn!(%error, room, "unreadable rejoin answer"),
            Err(refusal) => {
                // The room is gone for this client (a token that no longer allows it).
                self.rooms.remove(room);
                self.publish_rooms();
                return self.emit(Event::ServerError(refusal)).await;
            }
        };
        let Some((_, cursor)) = self.rooms.get_mut(room) else { return };
        let epoch_changed = cursor.epoch.is_some() && cursor.epoch != joined.epoch;
        cursor.epoch = joined.epoch;
        let recovered = joined.recovered.unwrap_or(false);
        if epoch_changed || joined.seq < since {
            // Another numbering: what arrives after the live position is new.
            cursor.last_seq = joined.seq;
        }
        self.publish_rooms();
        let Some((_, cursor)) = self.rooms.get_mut(room) else { return };
        if recovered && joined.seq > since {
            cursor.awaiting_replay = true;
            return;
        }
        let recovery = Recovery { room: Some(room.clone()), recovered, replayed: 0, epoch_changed };
        self.emit(Event::Recovered(recovery)).await;
    }

    fn learned_epoch(&mut self, outcome: Result<Value, crate::ServerError>) {
        let Ok(page) = outcome else { return };
        let Some(room) = page["room"].as_str() else { return };
        if let Some((_, cursor)) = self.rooms.get_mut(room) {
            cursor.learning_epoch = false;
            cursor.epoch = cursor.epoch.or(page["epoch"].as_u64());
            self.publish_rooms();
        }
    }

    async fn inbox_caught_up(&mut self, outcome: Result<Value, crate::ServerError>) {
        let reply = outcome.ok().and_then(|value| serde_json::from_value::<InboxReply>(value).ok());
        let (Some(reply), Some(cursor)) = (reply, self.inbox.as_mut()) else { return };
        let epoch_changed = cursor.epoch.is_some() && reply.epoch != cursor.epoch;
        cursor.epoch = reply.epoch;
        if reply.recovered && reply.seq > cursor.last_seq {
            cursor.awaiting_replay = true;
            return;
        }
        if epoch_changed || reply.seq < cursor.last_seq {
            cursor.last_seq = reply.seq;
        }
        let recovery = Recovery { room: None, recovered: reply.recovered, replayed: 0, epoch_changed };
        self.emit(Event::Recovered(recovery)).await;
    }

    /// An event: duplicates dropped, cursors moved, then handed on.
    async fn event(&mut self, link: &mut Link, event: ServerEvent) -> Result<(), Error> {
        let event = match event {
            ServerEvent::Message(message) => {
                if let (Some(seq), Some((_, cursor))) = (message.seq, self.rooms.get_mut(&message.room)) {
                    if seq <= cursor.last_seq {
                        tracing::debug!(room = message.room, seq, "a message seen already");
                        return Ok(());
                    }
                    cursor.last_seq = seq;
                    if cursor.epoch.is_none() && !cursor.learning_epoch {
                        cursor.learning_epoch = true;
                        let command = Command::History { room: message.room.clone(), before: None, limit: Some(1) };
                        self.transmit(link, Pending::internal(command, Purpose::LearnEpoch)).await?;
                    }
                    self.publish_rooms();
                }
                Event::Message(message)
            }
            ServerEvent::Direct(direct) => {
                let cursor = self.inbox.get_or_insert(InboxCursor { epoch: None, last_seq: 0, awaiting_replay: false });
                if direct.seq <= cursor.last_seq {
                    tracing::debug!(seq = direct.seq, "a DM seen already");
                    return Ok(());
                }
                cursor.last_seq = direct.seq;
                Event::Direct(direct)
            }
            ServerEvent::Replayed(replayed) => match self.replay_ended(replayed) {
                Some(recovery) => Event::Recovered(recovery),
                None => return Ok(()),
            },
            ServerEvent::Joined(change) => Event::UserJoined(change),
            ServerEvent::Left(change) => Event::UserLeft(change),
            ServerEvent::Removed(removed) => {
                self.rooms.remove(&removed.room);
                self.publish_rooms();
                Event::Removed(removed)
            }
            ServerEvent::TokenExpiring(expiring) => Event::TokenExpiring(expiring),
            ServerEvent::Error(refusal) => Event::ServerError(refusal),
            ServerEvent::Other(value) => Event::Other(value),
            ServerEvent::Hello(_) | ServerEvent::Pong => return Ok(()),
        };
        self.emit(event).await;
        Ok(())
    }

    /// The end of a rejoin's or inbox fetch's replay, as a recovery.
    fn replay_ended(&mut self, replayed: wire::Replayed) -> Option<Recovery> {
        let awaited = match &replayed.room {
            Some(room) => self.rooms.get_mut(room).map(|(_, cursor)| &mut cursor.awaiting_replay),
            None => self.inbox.as_mut().map(|cursor| &mut cursor.awaiting_replay),
        };
        let awaited = awaited.filter(|awaited| **awaited)?;
        *awaited = false;
        let (recovered, replayed_count) = (replayed.recovered, replayed.count);
        Some(Recovery { room: replayed.room, recovered, replayed: replayed_count, epoch_changed: false })
    }

    /// After a drop: `send`s and `dm`s in flight wait for the next
    /// connection, in the order they were sent; other commands fail.
    fn disconnected(&mut self) {
        let mut in_flight: Vec<(u64, Pending)> = self.pending.drain().collect();
        in_flight.sort_unstable_by_key(|(id, _)| *id);
        let mut resend = VecDeque::new();
        for (_, pending) in in_flight {
            match pending.purpose {
                Purpose::Caller(_) if pending.command.idempotency_key().is_some() => resend.push_back(pending),
                Purpose::Caller(reply) => {
                    let _ = reply.send(Err(Error::Disconnected { op: pending.command.op() }));
                }
                Purpose::Rejoin { .. } | Purpose::LearnEpoch | Purpose::InboxCatchUp => {}
            }
        }
        resend.append(&mut self.queued);
        self.queued = resend;
        for (_, cursor) in self.rooms.values_mut() {
            cursor.awaiting_replay = false;
            cursor.learning_epoch = false;
        }
        if let Some(inbox) = self.inbox.as_mut() {
            inbox.awaiting_replay = false;
        }
    }

    /// The client stops: everything waiting fails, and the last event says why.
    async fn finish(&mut self, reason: String) {
        self.set_state(ConnectionState::Closed);
        for (_, pending) in self.pending.drain() {
            pending.fail(Error::ClientClosed);
        }
        for pending in self.queued.drain(..) {
            pending.fail(Error::ClientClosed);
        }
        self.controls.close();
        while let Ok(control) = self.controls.try_recv() {
            match control {
                Control::Request(request) => {
                    let _ = request.reply.send(Err(Error::ClientClosed));
                }
                Control::Close(done) => {
                    let _ = done.send(());
                }
            }
        }
        self.emit(Event::Closed { reason }).await;
    }

    /// Hands an event to the caller, waiting while the stream is full; a
    /// caller that dropped its stream gets none.
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    fn set_state(&self, state: ConnectionState) {
        self.lock_shared().state = state;
    }

    /// Shows the handles the rooms and where the client stands in each.
    fn publish_rooms(&self) {
        let mut rooms: Vec<(u64, Position)> = self
            .rooms
            .iter()
            .map(|(room, (order, cursor))| {
                (*order, Position { room: room.clone(), epoch: cursor.epoch, seq: cursor.last_seq })
            })
            .collect();
        rooms.sort_unstable_by_key(|(order, _)| *order);
        self.lock_shared().rooms = rooms.into_iter().map(|(_, position)| position).collect();
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Pending {
    fn for_caller(request: Request) -> Pending {
        Pending { command: request.command, purpose: Purpose::Caller(request.reply), first_sent: Instant::now() }
    }

    fn internal(command: Command, purpose: Purpose) -> Pending {
        Pending { command, purpose, first_sent: Instant::now() }
    }

    fn fail(self, error: Error) {
        if let Purpose::Caller(reply) = self.purpose {
            let _ = reply.send(Err(error));
        }
    }

    fn fail_unacknowledged(self) {
        let op = self.command.op();
        let key = self.command.idempotency_key().unwrap_or_default().to_owned();
        self.fail(Error::Unacknowledged { op, key });
    }
}
