//! The sections of the configuration that shape storage, limits and the
//! transports; see `default.toml` for what each option means.

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use crate::store::SyncMode;
use crate::store::WriterOptions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpOptions {
    #[serde(with = "humantime_serde")]
    pub partial_line_pause: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// How long a new raw TCP connection may take to send its first line.
    #[serde(with = "humantime_serde")]
    pub first_line_timeout: Duration,
    /// How long a new raw TCP connection that sent nothing waits for the
    /// greeting line (zero: none).
    #[serde(with = "humantime_serde")]
    pub greeting_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpOptions {
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    pub max_event_bytes: usize,
    pub datagrams_per_second: u32,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            partial_line_pause: Duration::from_millis(200),
            keepalive: Duration::from_secs(60),
            first_line_timeout: Duration::from_secs(10),
            greeting_delay: Duration::from_millis(500),
        }
    }
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { session_timeout: Duration::from_secs(30), max_event_bytes: 1200, datagrams_per_second: 1000 }
    }
}

/// Where messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// SQLite in the data directory.
    #[default]
    Sqlite,
    /// Process memory: gone at exit.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub backend: StorageBackend,
    pub sync: SyncMode,
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
    pub room_max_messages: u64,
    #[serde(with = "humantime_serde")]
    pub room_max_age: Duration,
    pub inbox_max_messages: u64,
    #[serde(with = "humantime_serde")]
    pub inbox_max_age: Duration,
    /// DMs from one sender an inbox keeps (the newest); 0: no such bound.
    pub inbox_max_per_sender: u64,
    /// Messages, and body bytes, that may wait for the SQLite writer; more
    /// are refused with `overloaded`. Memory storage commits without a queue.
    pub queue_capacity: usize,
    pub queue_bytes: usize,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            backend: StorageBackend::Sqlite,
            sync: SyncMode::Always,
            batch_interval: Duration::from_millis(10),
            room_max_messages: 10_000,
            room_max_age: Duration::from_secs(7 * 24 * 3600),
            inbox_max_messages: 1_000,
            inbox_max_age: Duration::from_secs(30 * 24 * 3600),
            inbox_max_per_sender: 100,
            queue_capacity: 65_536,
            queue_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Storage {
    /// The writer's settings.
    pub fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            sync: self.sync,
            batch_interval: self.batch_interval,
            room_max_messages: self.room_max_messages,
            room_max_age: self.room_max_age,
            inbox_max_messages: self.inbox_max_messages,
            inbox_max_age: self.inbox_max_age,
            inbox_max_per_sender: self.inbox_max_per_sender,
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: usize,
    pub outbound_queue_bytes: usize,
    pub max_connections: usize,
    pub presence_events_max_members: usize,
    /// Commands one connection may send per second (0: no limit), and how
    /// many it may send at once after a quiet spell.
    pub messages_per_second: u32,
    pub messages_burst: u32,
    /// Command bytes one connection may send per second (0: no limit), and
    /// at once; the burst is at least `max_message_size`.
    pub bytes_per_second: u32,
    pub bytes_burst: u32,
    /// Refused commands since the connection's buckets were last full that close it with 1008.
    pub refusals_before_close: u16,
    /// Time a WebSocket message has from its first byte to its last
    /// (fragments and partial frames included).
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Open connections (WebSocket, raw TCP, UDP sessions) per client address (0: no limit).
    pub connections_per_ip: u32,
    /// New connections per second per client address (0: no limit), and at once.
    pub handshakes_per_second_per_ip: u32,
    pub handshakes_burst_per_ip: u32,
    /// Client addresses the per-address limits do not apply to.
    pub exempt_networks: Vec<ipnet::IpNet>,
    /// Largest plain HTTP request head (at least 8192: hyper's minimum) and body.
    pub http_max_head: usize,
    pub http_max_body: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocket {
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// Accept permessage-deflate (RFC 7692) when a client offers it.
    pub compression: bool,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub compression_threshold: usize,
}

/// How frames reach sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// A connection that already wrote in the current window of this length
    /// writes what others published to it at the start of the next one.
    #[serde(with = "humantime_serde")]
    pub write_window: Duration,
    /// How far a connection's window may grow while it receives more than
    /// about 800 frames a second (see `hub::flush`); at or below
    /// `write_window` windows never grow.
    #[serde(with = "humantime_serde")]
    pub write_window_max: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery { write_window: Duration::from_millis(5), write_window_max: Duration::from_millis(20) }
    }
}

/// `[api]`: the HTTP API's limits and its idempotency window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Requests per second per API key (or per client address when the API
    /// is open), and how many at once after a quiet spell; 0 turns it off.
    pub requests_per_second: u32,
    pub requests_burst: u32,
    /// How long a publish's (or a client `send`'s or `dm`'s) `idempotency_key` is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered at once, for publishes and for
    /// client commands each (the oldest go first).
    pub idempotency_max_keys: usize,
    /// How long `/readyz` waits for each check (the storage write probe).
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            requests_per_second: 1000,
            requests_burst: 2000,
            idempotency_window: Duration::from_secs(300),
            idempotency_max_keys: 100_000,
            ready_timeout: Duration::from_secs(2),
        }
    }
}

/// Server-Sent Events followers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sse {
    /// Every follower is sent a comment line this often.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Rooms one stream may follow.
    pub max_rooms: usize,
    /// The reconnection delay sent to browsers (`retry:`).
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
}

impl Default for Sse {
    fn default() -> Self {
        Sse { heartbeat: Duration::from_secs(15), max_rooms: 16, retry: Duration::from_secs(3) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            outbound_queue_bytes: 1024 * 1024,
            max_connections: 0,
            presence_events_max_members: 1000,
            messages_per_second: 1000,
            messages_burst: 2000,
            bytes_per_second: 256 * 1024,
            bytes_burst: 256 * 1024,
            refusals_before_close: 100,
            message_timeout: Duration::from_secs(30),
            connections_per_ip: 1000,
            handshakes_per_second_per_ip: 50,
            handshakes_burst_per_ip: 200,
            exempt_networks: loopback(),
            http_max_head: 8 * 1024,
            http_max_body: 64 * 1024,
        }
    }
}

/// The loopback networks, exempt from per-address limits by default so
/// that local benchmarks and tests keep working.
fn loopback() -> Vec<ipnet::IpNet> {
    vec![
        ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8)),
        ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128)),
    ]
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            compression: false,
            compression_threshold: 256,
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { drain_timeout: Duration::from_secs(10) }
    }
}
