//! UDP: one JSON command per datagram in, one event per datagram out.
//!
//! A client starts with `{"op":"hello","name":..}` and is answered with a
//! `hello` event carrying a random session token; every later datagram
//! must carry it as `"session"`. A datagram from an unknown address, or
//! with the wrong token (a spoofed source), gets only a short error, and an
//! address gets at most one such error a second (the rest are counted): the
//! server must be a poor amplifier for spoofed sources. Sessions count
//! towards `max_connections` and the per-address limits, and expire after
//! `udp.session_timeout` without a datagram.
//!
//! One task receives and owns the sessions; one sender task
//! ([`super::udp_out`]) drains every session's connection queue into
//! batched datagrams, so UDP members share the hub's queues, bounds and
//! accounting with everyone.

use super::udp_out::{self, Outbox};
use crate::guard::{self, reason};
use crate::hub::conn::Transport;
use crate::hub::Hub;
use crate::metrics::DropReason;
use crate::policy::Admission;
use crate::session::Session;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use switchboard_protocol::command::{self, Command, Request};
use switchboard_protocol::event::{self, Encoded, Framing};
use switchboard_protocol::{CloseCode, ErrorCode};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most source addresses tracked for rate limiting; past it the idle ones
/// are forgotten.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// What the UDP transport is told.
#[derive(Debug, Clone)]
pub struct UdpSettings {
    pub session_timeout: Duration,
    /// Datagrams per second one source address may send (burst: the same).
    pub datagrams_per_second: u32,
    /// The server's connection limit, which sessions count towards.
    pub max_connections: usize,
}

/// The two fields the UDP transport reads itself; the session parses the
/// whole command.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    op: Option<&'a str>,
    #[serde(borrow)]
    session: Option<&'a str>,
}

struct Peer {
    session: Session,
    token: String,
    last_heard: Instant,
}

/// A token bucket per source address, and when it was last sent an error.
struct Bucket {
    tokens: f64,
    refilled: Instant,
    warned: Option<Instant>,
}

/// Errors sent straight to one address: at most one per this.
const ERROR_EVERY: Duration = Duration::from_secs(1);

struct Udp {
    socket: Arc<UdpSocket>,
    hub: Arc<Hub>,
    settings: UdpSettings,
    outbox: Arc<Outbox>,
    peers: HashMap<SocketAddr, Peer>,
    buckets: HashMap<SocketAddr, Bucket>,
}

/// Serves UDP until `stop` is cancelled.
pub(crate) async fn serve(
    socket: UdpSocket,
    hub: Arc<Hub>,
    settings: UdpSettings,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let tick = (settings.session_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let socket = Arc::new(socket);
    let outbox = Arc::new(Outbox::default());
    tracker.spawn(udp_out::send_loop(Arc::clone(&socket), Arc::clone(&outbox), Arc::clone(&hub), stop.clone()));
    let mut udp = Udp { socket, hub, settings, outbox, peers: HashMap::new(), buckets: HashMap::new() };
    let mut kernel_drops = KernelDrops::new(&udp.socket);
    let mut buffer = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(tick);
    loop {
        tokio::select! {
            received = udp.socket.recv_from(&mut buffer) => match received {
                Ok((count, from)) => udp.on_datagram(&buffer[..count], from),
                Err(error) => tracing::debug!(%error, "udp receive failed"),
            },
            _ = sweep.tick() => {
                udp.expire();
                kernel_drops.update(&udp.hub);
            }
            () = stop.cancelled() => break,
        }
    }
    for (_, peer) in udp.peers.drain() {
        end(&udp.hub, peer.session, CloseCode::GoingAway);
    }
}

impl Udp {
    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        self.hub.metrics.udp_datagrams.inc();
        if !self.admit(from) {
            return;
        }
        if datagram.len() > self.hub.limits().max_message_size {
            self.hub.metrics.dropped(DropReason::UdpTooLarge, 1);
            return self.reply_error(from, ErrorCode::TooLarge, "datagram over the message size limit");
        }
        let Ok(text) = std::str::from_utf8(datagram) else {
            return self.reply_error(from, ErrorCode::BadJson, "datagram is not UTF-8 JSON");
        };
        let envelope = serde_json::from_str::<Envelope<'_>>(text).ok();
        if envelope.as_ref().and_then(|envelope| envelope.op) == Some("hello") {
            match command::parse(text) {
                Ok(Request { command: Command::Hello { name, token }, .. }) => {
                    self.hello(from, name, token.as_deref());
                    if let Some(peer) = self.peers.get(&from) {
                        peer.session.conn().received(datagram.len());
                    }
                    return;
                }
                // A bad name is the sender's mistake to fix, not a missing session.
                Err(error) => return self.reply_error(from, error.code, &error.message),
                Ok(_) => {}
            }
        }
        let token = envelope.and_then(|envelope| envelope.session);
        // A session the hub closed (a slow consumer, say) is over: it must
        // neither publish nor stay in its rooms.
        if self.peers.get(&from).is_some_and(|peer| peer.session.conn().is_closing()) {
            self.reap(from);
        }
        match self.peers.get_mut(&from) {
            Some(peer) if token.is_some_and(|token| same_token(token, &peer.token)) => {
                peer.last_heard = Instant::now();
                peer.session.conn().heard(self.hub.now_ms());
                peer.session.conn().received(datagram.len());
                peer.session.handle(text);
            }
            _ => {
                self.hub.metrics.refused("udp_no_session");
                self.reply_error(from, ErrorCode::NoSession, "no session: send {\"op\":\"hello\"} first");
            }
        }
    }

    /// Rate limits one source address; tells it (at most once a second).
    fn admit(&mut self, from: SocketAddr) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.settings.datagrams_per_second.max(1));
        if self.buckets.len() >= MAX_TRACKED_SOURCES {
            self.buckets.retain(|_, bucket| now.duration_since(bucket.refilled) < Duration::from_secs(1));
        }
        let bucket = self.buckets.entry(from).or_insert(Bucket { tokens: rate, refilled: now, warned: None });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        self.hub.metrics.dropped(DropReason::UdpRateLimited, 1);
        if bucket.warned.is_none_or(|warned| now.duration_since(warned) >= ERROR_EVERY) {
            tracing::warn!(%from, rate, "udp source over its datagram rate; dropping");
        }
        self.reply_error(from, ErrorCode::RateLimited, "too many datagrams; slow down");
        false
    }

    /// A new session for `from`, replacing its old one, as whom the name
    /// (open mode) or the token (token mode) says.
    fn hello(&mut self, from: SocketAddr, name: Option<String>, token: Option<&str>) {
        if let Some(old) = self.peers.remove(&from) {
            end(&self.hub, old.session, CloseCode::Normal);
        }
        if self.hub.is_shutting_down() {
            return self.reply_error(from, ErrorCode::ShuttingDown, "server is shutting down");
        }
        if self.hub.connection_count() >= self.settings.max_connections {
            self.hub.metrics.limit_hit(reason::UDP_CONNECTION_LIMIT);
            self.hub.metrics.refused("limit");
            tracing::warn!(%from, "connection limit reached, refusing a udp session");
            return self.reply_error(from, ErrorCode::Overloaded, "server at its connection limit");
        }
        // The address's limits come first: they also bound how many tokens
        // one address can make the server verify.
        if let Err(refusal) = guard::admit_address(&self.hub, from.ip()) {
            return self.reply_error(from, ErrorCode::RateLimited, &refusal.to_string());
        }
        let admitted = self.hub.policy().admit(name, token);
        let id = self.hub.next_conn_id();
        let (user, profile) = match admitted {
            Ok(Admission::Named(name)) => (name.map_or_else(|| Arc::from(format!("guest-{id}")), Arc::from), None),
            Ok(Admission::Verified(identity)) => (identity.user, Some(identity.profile)),
            Err(error) => {
                self.hub.ips().release(from.ip());
                self.hub.metrics.auth_failed(error.code());
                tracing::info!(%from, code = error.code().as_str(), "udp hello refused: {error}");
                return self.reply_error(from, error.code(), &error.to_string());
            }
        };
        let Some(token) = new_token() else {
            self.hub.ips().release(from.ip());
            return;
        };
        let conn = self.hub.register(id, user, from, Transport::Udp);
        conn.set_fd(self.socket.as_raw_fd());
        if let Some(profile) = profile {
            self.hub.identify(&conn, profile);
        }
        let session = Session::silent(Arc::clone(&self.hub), Arc::clone(&conn));
        session.greet(Some(&token));
        self.outbox.ready(conn);
        self.peers.insert(from, Peer { session, token, last_heard: Instant::now() });
    }

    /// Ends sessions silent past the timeout, and removes those the hub
    /// already closed.
    fn expire(&mut self) {
        let timeout = self.settings.session_timeout;
        let over: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.last_heard.elapsed() > timeout || peer.session.conn().is_closing())
            .map(|(addr, _)| *addr)
            .collect();
        for addr in over {
            self.reap(addr);
        }
    }

    /// Ends one session: with the code it is already closing with, or as
    /// expired.
    fn reap(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.remove(&addr) {
            let code = peer.session.conn().close_code().unwrap_or(CloseCode::IdleTimeout);
            tracing::debug!(%addr, user = %peer.session.conn().user, code = code.as_u16(), "udp session ended");
            end(&self.hub, peer.session, code);
        }
    }

    /// A short error straight to an address (no session needed), unless
    /// that address had one less than a second ago (then it is counted).
    fn reply_error(&mut self, to: SocketAddr, code: ErrorCode, message: &str) {
        let now = Instant::now();
        let bucket = self.buckets.entry(to).or_insert(Bucket { tokens: 0.0, refilled: now, warned: None });
        if bucket.warned.is_some_and(|warned| now.duration_since(warned) < ERROR_EVERY) {
            self.hub.metrics.limit_hit(reason::UDP_ERROR_SUPPRESSED);
            return;
        }
        bucket.warned = Some(now);
        let error = Encoded::new(&event::Error::new(None, code, message));
        if let Err(error) = self.socket.try_send_to(&error.framed(Framing::Datagram), to) {
            tracing::debug!(%to, %error, "could not send a udp error");
        }
    }
}

/// Leaves the session's rooms and closes its connection with `code`; its
/// sender task sends what is queued, then the close event.
fn end(hub: &Hub, mut session: Session, code: CloseCode) {
    session.end();
    session.conn().close(code, false);
    hub.metrics.closed(code.as_u16());
    hub.unregister(session.conn());
}

/// Datagrams the kernel dropped because our socket's receive buffer was
/// full: invisible to the server otherwise, so read from `/proc/net/udp*`
/// (the `drops` column of the line for this socket's inode) each sweep and
/// added to `messages_dropped_total{reason="udp_receive_buffer"}`.
struct KernelDrops {
    inode: Option<u64>,
    seen: u64,
}

impl KernelDrops {
    fn new(socket: &UdpSocket) -> Self {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok().map(|meta| meta.ino());
        KernelDrops { inode, seen: 0 }
    }

    fn update(&mut self, hub: &Hub) {
        let Some(inode) = self.inode else { return };
        let drops = ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
            let table = std::fs::read_to_string(path).ok()?;
            table.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let matches = fields.get(9).and_then(|field| field.parse::<u64>().ok()) == Some(inode);
                matches.then(|| fields.last().and_then(|field| field.parse::<u64>().ok())).flatten()
            })
        });
        if let Some(drops) = drops.filter(|&drops| drops > self.seen) {
            hub.metrics.dropped(DropReason::UdpReceiveBuffer, (drops - self.seen) as usize);
            tracing::warn!(dropped = drops - self.seen, "the kernel dropped udp datagrams: receive buffer full");
            self.seen = drops;
        }
    }
}

/// Whether a datagram's session token is the session's, compared in
/// constant time so that its timing tells nothing about the right one.
fn same_token(presented: &str, session: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(session.as_bytes()))
}

/// A random session token: 128 bits from the OS's random source, as 32 hex
/// digits. Without randomness there is no token: a guessable one would let
/// anyone take over the session by spoofing its address.
fn new_token() -> Option<String> {
    let mut raw = [0u8; 16];
    if let Err(error) = getrandom::getrandom(&mut raw) {
        tracing::error!(%error, "no OS randomness for a udp session token; refusing the session");
        return None;
    }
    Some(raw.iter().map(|byte| format!("{byte:02x}")).collect())
}
