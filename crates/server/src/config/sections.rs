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
        TcpOptions { partial_line_pause: Duration::from_millis(200), keepalive: Duration::from_secs(60) }
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
        }
    }
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
