//! The hub: every room, every user and every open connection, and the
//! routing between them. Transports never see each other; they hand
//! commands to a [`crate::session::Session`], which calls the hub.
//!
//! Locks and their order (always acquired left to right, never held across
//! an await): `rooms` directory → a room's state → a connection's queue, and
//! `users` → a connection's queue. The storage catalog comes last, inside
//! either (recording `fanned_out`), inside a follower's queue (reading an
//! epoch, `transport::sse`), or alone. Each is a `std::sync::Mutex`
//! held for map operations or one fan-out, never for IO.
//!
//! Stored messages go through a [`Broker`] (`crate::broker`): the hub
//! publishes to it, and it calls back the hub's [`Deliveries`] to fan a
//! stored message out ([`durable`]) and to answer its publisher.

mod address;
mod api;
pub mod conn;
mod durable;
pub mod flush;
mod framing;
mod outbound;
mod presence;
mod replay;
pub mod room;
mod sweep;
mod table;
mod tabs;
mod transport_kind;

pub use crate::broker::Stored;
pub use api::{HistoryPage, PageQuery, RoomSummary};
pub use durable::{Outgoing, Recovery, Ticket, UNAVAILABLE, UNCONFIRMED};
pub use replay::HISTORY_MAX_LIMIT;
pub use table::{ConnectionRow, TableFilter};

use crate::auth::expiry::Expiries;
use crate::auth::Profile;
use crate::broker::presence::{Announce, Presence};
use crate::broker::{Broker, Deliveries, Seams};
use crate::metrics::{DropReason, Metrics, TransportLabel};
use crate::policy::{Policy, PolicyCell};
use crate::store::LogKind;
use crate::util::lock;
use bytes::Bytes;
use conn::{Conn, ConnId, Enqueued, Transport};
use flush::FlushClock;
use room::{Directory, Room};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_protocol::event::Encoded;
use switchboard_protocol::CloseCode;
use tabs::TabSet;

/// Hub-wide limits, taken from the config.
#[derive(Debug, Clone)]
pub struct HubLimits {
    pub outbound_queue_bytes: usize,
    /// Largest event sent to a UDP member; larger ones are counted, not sent.
    pub udp_max_event_bytes: usize,
    /// Rooms larger than this send no join/leave events (0: no limit).
    pub presence_events_max_members: usize,
    /// Largest WebSocket message, TCP line or UDP datagram accepted.
    pub max_message_size: usize,
    /// How long a closing connection waits for its peer.
    pub close_timeout: Duration,
    /// How long an unterminated TCP line waits before it counts as a line.
    pub partial_line_pause: Duration,
    /// How long a silent new raw TCP connection waits for its greeting
    /// (zero: no greeting).
    pub greeting_delay: Duration,
    /// The flush clock's window (see [`flush`]).
    pub write_window: Duration,
    /// The longest window a busy connection's may grow to.
    pub write_window_max: Duration,
    /// Whether WebSocket clients may negotiate permessage-deflate.
    pub compression: bool,
    /// Frames to compressing clients shorter than this stay uncompressed.
    pub compression_threshold: usize,
    /// Server-Sent Events followers: rooms per stream, heartbeat, `retry`.
    pub sse: crate::config::Sse,
    /// How long a `send`'s or `dm`'s `idempotency_key` is remembered
    /// (`api.idempotency_window`, shared with the HTTP API's setting).
    pub idempotency_window: Duration,
    /// Most such keys remembered at once (`api.idempotency_max_keys`).
    pub idempotency_max_keys: usize,
}

/// A user and the profile of their token.
pub type UserProfile = (Arc<str>, Arc<Profile>);

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    /// The room, or `None` when the connection was already a member.
    pub room: Option<Arc<Room>>,
    /// Whether the room is small enough to send join/leave events.
    pub presence_events: bool,
}

/// Why the hub refused a request. Mapped to wire codes by the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("not a member of room `{0}`: join it first")]
    NotMember(String),
    #[error("your token does not allow `{1}` in room `{0}`")]
    Forbidden(String, &'static str),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("too many messages are waiting to be stored; retry later")]
    StorageBusy,
    #[error("too many requests in flight on this connection; wait for their answers")]
    TooManyPending,
    #[error("{}", UNAVAILABLE)]
    Unavailable,
}

/// Rooms, users and connections of one server.
#[derive(Debug)]
pub struct Hub {
    limits: HubLimits,
    pub(crate) metrics: Arc<Metrics>,
    /// Registered connections, read on every accept for admission.
    open: AtomicUsize,
    started: Instant,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    rooms: Mutex<Directory>,
    /// Every open connection by user name (DMs, keepalive, shutdown).
    users: Mutex<TabSet>,
    /// Orders, stores and carries stored messages (see `crate::broker`).
    broker: Arc<dyn Broker<Ticket>>,
    /// Who is in a room across nodes (see `crate::broker::presence`).
    presence: Arc<dyn Presence>,
    flush_clock: Arc<FlushClock>,
    /// What SIGHUP may change: authentication, origins, API keys.
    policy: Arc<PolicyCell>,
    /// Connections whose tokens will run out.
    expiries: Arc<Expiries>,
    /// Open connections and handshake rates per client address.
    ips: crate::guard::ip::IpTable,
    /// Operators' reasons for kicks not yet sent (see [`table`]).
    kicks: table::Kicks,
    /// The `idempotency_key`s of clients' `send`s and `dm`s (see [`durable`]).
    idempotency: crate::idempotency::Window<Stored>,
}

impl Hub {
    /// A hub over the broker and presence manager `connect` makes: stored
    /// messages go through the broker, presence changes to the manager, and
    /// both reach the hub through the [`Deliveries`] they are given.
    pub fn start(
        limits: HubLimits,
        metrics: Arc<Metrics>,
        policy: Arc<PolicyCell>,
        connect: impl FnOnce(std::sync::Weak<dyn Deliveries<Ticket>>) -> Seams<Ticket>,
    ) -> Arc<Hub> {
        let idempotency = crate::idempotency::Window::new(
            limits.idempotency_window,
            limits.idempotency_max_keys,
            crate::guard::reason::IDEMPOTENCY_EVICTED,
        );
        Arc::new_cyclic(|hub: &std::sync::Weak<Hub>| {
            let deliveries: std::sync::Weak<dyn Deliveries<Ticket>> = hub.clone();
            let Seams { broker, presence } = connect(deliveries);
            Hub {
                flush_clock: Arc::new(FlushClock::new(limits.write_window, limits.write_window_max)),
                limits,
                metrics,
                open: AtomicUsize::new(0),
                started: Instant::now(),
                next_conn: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                rooms: Mutex::default(),
                users: Mutex::default(),
                broker,
                presence,
                policy,
                expiries: Arc::default(),
                ips: crate::guard::ip::IpTable::default(),
                kicks: table::Kicks::default(),
                idempotency,
            }
        })
    }

    /// How many room histories and inboxes exist.
    pub fn storage_log_count(&self) -> usize {
        self.broker.log_count()
    }

    /// Settles what the broker accepted and stops it (at shutdown, after
    /// the last connection is gone).
    pub fn close_storage(&self) {
        self.broker.close();
    }

    /// The clock that coalesces fan-out writes; its task runs in the server.
    pub fn flush_clock(&self) -> &Arc<FlushClock> {
        &self.flush_clock
    }

    /// The policy in force (see [`crate::policy`]); hold it only briefly.
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// The cell the policy lives in, for reloads.
    pub fn policy_cell(&self) -> &Arc<PolicyCell> {
        &self.policy
    }

    /// Connections whose tokens run out; its task runs in the server.
    pub fn expiries(&self) -> &Arc<Expiries> {
        &self.expiries
    }

    /// Gives `conn` the profile of its verified token and watches the
    /// token's expiry.
    pub fn identify(&self, conn: &Arc<Conn>, profile: Arc<Profile>) {
        let expires_at = profile.expires_at();
        let had_expiry = conn.profile().is_some_and(|old| old.expires_at().is_some());
        conn.set_profile(profile);
        // A refresh of a watched connection is found by its armed entry.
        if let (Some(expires_at), false) = (expires_at, had_expiry) {
            let warning = self.policy().auth.as_ref().map_or(Duration::ZERO, |auth| auth.expiry_warning);
            self.expiries.watch(conn, expires_at, warning, crate::auth::unix_now());
        }
    }

    /// The limits every connection shares (kept here, not per connection).
    pub fn limits(&self) -> &HubLimits {
        &self.limits
    }

    /// Monotonic milliseconds since the hub started (liveness bookkeeping).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Reserves the next connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers an open connection under `user`.
    pub fn register(&self, id: ConnId, user: Arc<str>, peer: SocketAddr, transport: Transport) -> Arc<Conn> {
        self.register_conn(Conn::new(id, user, peer, transport, self.now_ms()))
    }

    /// Registers a WebSocket connection that agreed to permessage-deflate
    /// with a window of `window_bits` (none: `None`).
    pub fn register_websocket(
        &self,
        id: ConnId,
        user: Arc<str>,
        peer: SocketAddr,
        transport: Transport,
        window_bits: Option<u8>,
    ) -> Arc<Conn> {
        let conn = Conn::new(id, user, peer, transport, self.now_ms());
        self.register_conn(match window_bits {
            Some(bits) => conn.with_deflate(bits),
            None => conn,
        })
    }

    /// Registers a raw TCP connection whose first line has yet to say
    /// whether it speaks JSON lines or text: as JSON lines, and counted as
    /// accepted only once its mode is known ([`Hub::count_accepted`]).
    pub fn register_undecided(&self, id: ConnId, user: Arc<str>, peer: SocketAddr) -> Arc<Conn> {
        let conn = Conn::new(id, user, peer, Transport::TcpJson, self.now_ms());
        self.register_uncounted(conn)
    }

    fn register_conn(&self, conn: Conn) -> Arc<Conn> {
        self.count_accepted(conn.transport);
        self.register_uncounted(conn)
    }

    fn register_uncounted(&self, conn: Conn) -> Arc<Conn> {
        self.open.fetch_add(1, Ordering::Relaxed);
        let label = TransportLabel { transport: conn.transport.as_str() };
        self.metrics.connections_open.get_or_create(&label).inc();
        self.add(conn)
    }

    /// Counts an accepted connection of `transport`.
    pub(crate) fn count_accepted(&self, transport: Transport) {
        self.metrics.connections_accepted.get_or_create(&TransportLabel { transport: transport.as_str() }).inc();
    }

    /// Enters a new connection in the users directory; closes it at once
    /// (1001) if the server is shutting down.
    fn add(&self, conn: Conn) -> Arc<Conn> {
        let conn = Arc::new(conn);
        {
            let mut users = lock(&self.users);
            if users.add(&conn) == Some(true) {
                self.inbox_arrived(&conn.user);
            }
        }
        if self.is_shutting_down() {
            conn.close(CloseCode::GoingAway, false);
        }
        conn
    }

    /// Per-address connection counts (see `crate::guard::ip`).
    pub fn ips(&self) -> &crate::guard::ip::IpTable {
        &self.ips
    }

    /// Forgets a connection. Its rooms must have been left already. Its
    /// address's count (taken when it was admitted) is released.
    pub fn unregister(&self, conn: &Conn) {
        if self.forget(conn) {
            self.forget_kick(conn.id);
            self.ips.release(conn.peer().ip());
            self.open.fetch_sub(1, Ordering::Relaxed);
            let label = TransportLabel { transport: conn.transport.as_str() };
            self.metrics.connections_open.get_or_create(&label).dec();
        }
    }

    /// Removes `conn` from the users directory; false if it was not there.
    fn forget(&self, conn: &Conn) -> bool {
        let mut users = lock(&self.users);
        let removed = users.remove(conn);
        if removed == Some(true) {
            self.inbox_left(&conn.user);
        }
        removed.is_some()
    }

    /// A user's first connection here: their inbox's messages come here
    /// (called under the users lock). Placeholder names (`#pending-…`) have
    /// no inbox.
    fn inbox_arrived(&self, user: &Arc<str>) {
        if !user.starts_with('#') {
            self.broker.subscribe(LogKind::Inbox, user);
        }
    }

    /// A user's last connection here went (called under the users lock).
    fn inbox_left(&self, user: &str) {
        if !user.starts_with('#') {
            self.broker.unsubscribe(LogKind::Inbox, user);
        }
    }

    /// Re-registers a connection that is in no room under a new name and
    /// transport, keeping its id; the old `Conn` is forgotten.
    pub fn rename(&self, old: &Conn, user: Arc<str>, transport: Transport) -> Arc<Conn> {
        let conn = Arc::new(Conn::new(old.id, user, old.peer(), transport, self.now_ms()).continuing(old));
        {
            // One step under the users lock, which every delivery to a user
            // takes: nothing addressed to the new name can be queued before
            // the old queue is in place, or be replaced by it.
            let mut users = lock(&self.users);
            if users.remove(old) == Some(true) {
                self.inbox_left(&old.user);
            }
            old.move_queue_to(&conn);
            if users.add(&conn) == Some(true) {
                self.inbox_arrived(&conn.user);
            }
        }
        if self.is_shutting_down() {
            conn.close(CloseCode::GoingAway, false);
        }
        let gauge = &self.metrics.connections_open;
        gauge.get_or_create(&TransportLabel { transport: old.transport.as_str() }).dec();
        gauge.get_or_create(&TransportLabel { transport: transport.as_str() }).inc();
        conn
    }

    /// Joins `conn` to `name`, creating the room.
    pub fn join(&self, conn: &Arc<Conn>, name: &str) -> Result<Joined, HubError> {
        if self.is_shutting_down() {
            return Err(HubError::ShuttingDown);
        }
        loop {
            let room = self.room_or_create(name);
            let mut state = room.lock();
            if state.removed {
                continue;
            }
            let first_of_user = state.add(conn);
            let presence_events = self.presence_events(&state);
            let announce = first_of_user == Some(true) && self.arrived(&room.name, conn) == Announce::Now;
            if announce && presence_events {
                self.announce_presence(&state, conn, "join", &room.name);
            }
            drop(state);
            return Ok(Joined { room: first_of_user.map(|_| room), presence_events });
        }
    }

    fn room_or_create(&self, name: &str) -> Arc<Room> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return Arc::clone(room);
        }
        let room = Arc::new(Room::new(Arc::from(name)));
        self.broker.subscribe(LogKind::Room, &room.name);
        rooms.insert(Arc::clone(&room));
        self.metrics.rooms.inc();
        room
    }

    /// Removes `conn` from `room`, announcing the user's departure if this
    /// was their last connection there, and drops the room when empty.
    pub fn leave(&self, conn: &Conn, room: &Arc<Room>) {
        let now_empty = {
            let mut state = room.lock();
            let last_of_user = state.remove(conn) == Some(true);
            if last_of_user
                && self.presence.departed(&room.name, &conn.user) == Announce::Now
                && self.presence_events(&state)
            {
                self.announce_presence(&state, conn, "leave", &room.name);
            }
            state.is_empty()
        };
        if now_empty {
            self.remove_if_empty(room);
        }
    }

    fn remove_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = lock(&self.rooms);
        let mut state = room.lock();
        if !state.is_empty() || state.removed {
            return;
        }
        state.removed = true;
        if rooms.get(&room.name).is_some_and(|current| Arc::ptr_eq(current, room)) {
            rooms.remove(&room.name);
            self.broker.unsubscribe(LogKind::Room, &room.name);
            self.metrics.rooms.dec();
        }
    }

    /// Delivers a volatile message to `room` at once, unstored and without
    /// a `seq`; returns its `ts`.
    pub fn publish_volatile(
        &self,
        conn: &Conn,
        room: &Room,
        body: &serde_json::value::RawValue,
    ) -> Result<u64, HubError> {
        let mut state = room.lock();
        if !state.contains(conn) {
            return Err(HubError::NotMember(room.name.to_string()));
        }
        Ok(self.fan_out_volatile(&mut state, &room.name, &conn.user, body))
    }

    /// Queues an event for one connection in that connection's framing.
    pub fn deliver_event(&self, conn: &Conn, event: &Encoded) {
        self.metrics.deliveries.inc_by(self.queue_event(conn, event));
    }

    /// Queues an event for `conn`; returns the deliveries made (1 or 0),
    /// which the caller counts.
    fn queue_event(&self, conn: &Conn, event: &Encoded) -> u64 {
        let Some(frame) = self.frame_for(conn, event) else { return 0 };
        self.settle(conn, conn.enqueue(frame, self.limits.outbound_queue_bytes))
    }

    /// Queues an event for every connection in `members`, counting the
    /// deliveries once rather than once each (a shared counter is a locked
    /// instruction per delivery otherwise).
    fn fan_out<'a>(&self, members: impl Iterator<Item = &'a Arc<Conn>>, event: &Encoded) {
        let queued = members.map(|conn| self.queue_event(conn, event)).sum();
        self.metrics.deliveries.inc_by(queued);
    }

    /// Queues an answer to one of `conn`'s own requests: written without
    /// waiting for the flush clock, since the client may be waiting on it to
    /// send its next request.
    pub fn reply(&self, conn: &Conn, event: &Encoded) {
        if let Some(frame) = self.frame_for(conn, event) {
            self.account(conn, conn.enqueue_reply(frame, self.limits.outbound_queue_bytes));
        }
    }

    /// Queues stored message `(log, seq)`; held and deduplicated while the
    /// connection is replaying. Returns the deliveries made (1 or 0), which
    /// the caller counts.
    fn deliver_stored(&self, conn: &Conn, event: &Encoded, log: u64, seq: u64) -> u64 {
        let Some(frame) = self.frame_for(conn, event) else { return 0 };
        self.settle(conn, conn.enqueue_stored(frame, self.limits.outbound_queue_bytes, log, seq))
    }

    /// Queues a frame for one connection, accounting for what cannot be.
    pub fn queue_frame(&self, conn: &Conn, frame: Bytes) {
        self.account(conn, conn.enqueue(frame, self.limits.outbound_queue_bytes));
    }

    /// Counts a delivery or what was dropped instead.
    fn account(&self, conn: &Conn, result: Enqueued) {
        self.metrics.deliveries.inc_by(self.settle(conn, result));
    }

    /// Counts and logs what an enqueue dropped; returns the deliveries it
    /// made (1 or 0) for the caller to count.
    pub(crate) fn settle(&self, conn: &Conn, result: Enqueued) -> u64 {
        match result {
            Enqueued::Queued => return 1,
            Enqueued::Overflow { dropped } => {
                self.metrics.slow_consumers.inc();
                self.metrics.dropped(DropReason::SlowConsumer, dropped);
                tracing::warn!(
                    conn = conn.id,
                    user = %conn.user,
                    peer = %conn.peer(),
                    dropped,
                    limit = self.limits.outbound_queue_bytes,
                    "slow consumer: outbound queue over its bound, closing with 4008"
                );
            }
            Enqueued::Closed => self.metrics.dropped(DropReason::Closing, 1),
        }
        0
    }

    /// The names of every room, sorted.
    pub fn room_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = lock(&self.rooms).names().cloned().collect();
        names.sort();
        names
    }

    /// Every open connection (for keepalive sweeps and shutdown).
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        lock(&self.users).conns().cloned().collect()
    }

    /// Connections accepted so far (ids handed out) and open now: when
    /// either changes, connections came or went.
    pub fn connection_counters(&self) -> (u64, usize) {
        (self.next_conn.load(Ordering::Relaxed), self.open.load(Ordering::Relaxed))
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Refuses new joins and asks every connection to close with 1001 after
    /// what is already queued for it.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for conn in self.connections() {
            conn.close(CloseCode::GoingAway, false);
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "seam_tests.rs"]
mod seam_tests;
