//! Server configuration: defaults, the TOML file, `SWITCHBOARD_*`
//! environment variables and command-line overrides, merged in that order
//! of increasing precedence by figment.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::store::SyncMode;
use crate::store::WriterOptions;

/// The default configuration file, with every option explained.
pub const DEFAULT_TOML: &str = include_str!("default.toml");
const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Top-level keys the environment may set; other `SWITCHBOARD_*` variables
/// (such as `SWITCHBOARD_REQUIRE_EXTERNAL` for the test suite) are ignored.
const ENV_KEYS: [&str; 11] = [
    "http",
    "tcp",
    "udp",
    "data",
    "storage",
    "limits",
    "websocket",
    "tcp_options",
    "udp_options",
    "delivery",
    "shutdown",
];

/// Everything the server can be told. See `default.toml` for meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    pub data: PathBuf,
    pub storage: Storage,
    pub limits: Limits,
    pub websocket: WebSocket,
    pub tcp_options: TcpOptions,
    pub udp_options: UdpOptions,
    pub delivery: Delivery,
    pub shutdown: Shutdown,
}

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

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tcp: SocketAddr::from(([127, 0, 0, 1], 7070)),
            udp: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data: PathBuf::from("./switchboard-data"),
            storage: Storage::default(),
            limits: Limits::default(),
            websocket: WebSocket::default(),
            tcp_options: TcpOptions::default(),
            udp_options: UdpOptions::default(),
            delivery: Delivery::default(),
            shutdown: Shutdown::default(),
        }
    }
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

/// A configuration that could not be loaded, naming the source and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

impl Config {
    /// Merges defaults < `file` < environment < `overrides` (flags). The
    /// overrides are any serializable value whose fields mirror `Config`'s;
    /// fields that serialize as absent leave lower layers alone.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Config, ConfigError> {
        Config::load_from_env(file, overrides, Env::prefixed(ENV_PREFIX))
    }

    fn load_from_env(file: Option<&Path>, overrides: impl Serialize, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = env
            .filter(|key| {
                let section = key.as_str().split("__").next().unwrap_or_default();
                ENV_KEYS.iter().any(|known| known.eq_ignore_ascii_case(section))
            })
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |why: &str| Err(ConfigError::Inconsistent(why.to_owned()));
        let in_range = |value: usize| (1..=u32::MAX as usize / 2).contains(&value);
        if !in_range(self.limits.max_message_size) || !in_range(self.limits.outbound_queue_bytes) {
            return fail("limits.max_message_size and limits.outbound_queue_bytes must be between 1 and 2147483647");
        }
        let storage = &self.storage;
        if storage.room_max_messages == 0 || storage.inbox_max_messages == 0 || storage.queue_capacity == 0 {
            return fail(
                "storage.room_max_messages, storage.inbox_max_messages and storage.queue_capacity must be positive",
            );
        }
        if storage.batch_interval.is_zero() {
            return fail("storage.batch_interval must be positive");
        }
        if self.websocket.ping_interval.is_zero() || self.websocket.idle_timeout <= self.websocket.ping_interval {
            return fail("websocket.idle_timeout must be longer than a positive websocket.ping_interval");
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        http: Option<SocketAddr>,
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn flags_beat_env_which_beats_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "http = \"127.0.0.1:1\"\n[limits]\nmax_message_size = 10\n")?;
            jail.set_env("SWITCHBOARD_LIMITS__MAX_MESSAGE_SIZE", "20");
            jail.set_env("SWITCHBOARD_HTTP", "127.0.0.1:2");
            jail.set_env("SWITCHBOARD_REQUIRE_EXTERNAL", "1");
            jail.set_env("SWITCHBOARD_WEBSOCKET__COMPRESSION", "true");
            let path = Path::new("s.toml");
            let config = Config::load(Some(path), Flags { http: None }).map_err(|e| e.to_string())?;
            assert_eq!(config.limits.max_message_size, 20);
            assert!(config.websocket.compression, "what .ci/autobahn.sh relies on");
            assert_eq!(config.http, SocketAddr::from(([127, 0, 0, 1], 2)));
            let flags = Flags { http: Some(SocketAddr::from(([127, 0, 0, 1], 3))) };
            let config = Config::load(Some(path), flags).map_err(|e| e.to_string())?;
            assert_eq!(config.http.port(), 3);
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_reported_with_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[limits]\nmax_message_size = \"lots\"\n")?;
            let error = Config::load(Some(Path::new("bad.toml")), Flags { http: None }).expect_err("invalid");
            assert!(error.to_string().contains("max_message_size"), "{error}");
            jail.create_file("typo.toml", "htp = \"x\"\n")?;
            let error = Config::load(Some(Path::new("typo.toml")), Flags { http: None }).expect_err("unknown key");
            assert!(error.to_string().contains("htp"), "{error}");
            let missing = Config::load(Some(Path::new("nope.toml")), Flags { http: None });
            assert!(matches!(missing, Err(ConfigError::MissingFile(_))));
            Ok(())
        });
    }
}
