//! Server configuration: defaults, the TOML file, `SWITCHBOARD_*`
//! environment variables and command-line overrides, merged in that order
//! of increasing precedence by figment.
//!
//! - this module: [`Config`], loading and the checks across sections;
//! - [`listen`]: listener addresses, a bare port meaning 127.0.0.1;
//! - [`sections`]: storage, limits and the transports' options;
//! - [`trust`]: identity, TLS and who may read metrics.

mod cluster;
pub mod listen;
mod sections;
mod trust;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use cluster::Cluster;
pub use sections::*;
pub use trust::{ApiKey, Auth, AuthMode, MetricsOptions, Tls};

/// The default configuration file, with every option explained.
pub const DEFAULT_TOML: &str = include_str!("default.toml");
const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Top-level keys the environment may set; other `SWITCHBOARD_*` variables
/// (such as `SWITCHBOARD_REQUIRE_EXTERNAL` for the test suite) are ignored.
const ENV_KEYS: [&str; 18] = [
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
    "sse",
    "shutdown",
    "api",
    "auth",
    "tls",
    "metrics",
    "trusted_proxies",
    "cluster",
];

/// Everything the server can be told. See `default.toml` for meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "listen::deserialize")]
    pub http: SocketAddr,
    #[serde(deserialize_with = "listen::deserialize")]
    pub tcp: SocketAddr,
    #[serde(deserialize_with = "listen::deserialize")]
    pub udp: SocketAddr,
    pub data: PathBuf,
    pub storage: Storage,
    pub limits: Limits,
    pub websocket: WebSocket,
    pub tcp_options: TcpOptions,
    pub udp_options: UdpOptions,
    pub delivery: Delivery,
    pub sse: Sse,
    pub shutdown: Shutdown,
    pub api: Api,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub auth: Auth,
    pub tls: Tls,
    pub metrics: MetricsOptions,
    pub cluster: Cluster,
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
            sse: Sse::default(),
            shutdown: Shutdown::default(),
            api: Api::default(),
            trusted_proxies: Vec::new(),
            auth: Auth::default(),
            tls: Tls::default(),
            metrics: MetricsOptions::default(),
            cluster: Cluster::default(),
        }
    }
}

/// A configuration that could not be loaded, naming the source and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

crate::util::from_cause!(ConfigError, ConfigError::Invalid, Box<figment::Error>);

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
        self.validate_limits()?;
        self.validate_trust()
    }

    /// The abuse limits that cannot work as asked.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let fail = |why: &str| Err(ConfigError::Inconsistent(why.to_owned()));
        let limits = &self.limits;
        if limits.bytes_per_second > 0 && (limits.bytes_burst as usize) < limits.max_message_size {
            return fail(
                "limits.bytes_burst must be at least limits.max_message_size, or no message that size could pass",
            );
        }
        if limits.messages_per_second > 0 && limits.messages_burst == 0 {
            return fail("limits.messages_burst must be positive when limits.messages_per_second is");
        }
        if limits.handshakes_per_second_per_ip > 0 && limits.handshakes_burst_per_ip == 0 {
            return fail("limits.handshakes_burst_per_ip must be positive when limits.handshakes_per_second_per_ip is");
        }
        if limits.http_max_head < 8192 {
            return fail("limits.http_max_head must be at least 8192 (the smallest buffer hyper accepts)");
        }
        let api = &self.api;
        if api.requests_per_second > 0 && api.requests_burst == 0 {
            return fail("api.requests_burst must be positive when api.requests_per_second is");
        }
        if api.idempotency_max_keys == 0 || api.idempotency_window.is_zero() || api.ready_timeout.is_zero() {
            return fail("api.idempotency_max_keys, api.idempotency_window and api.ready_timeout must be positive");
        }
        if limits.message_timeout.is_zero() || self.tcp_options.first_line_timeout.is_zero() {
            return fail("limits.message_timeout and tcp_options.first_line_timeout must be positive");
        }
        if self.sse.heartbeat.is_zero() || self.sse.max_rooms == 0 {
            return fail("sse.heartbeat and sse.max_rooms must be positive");
        }
        Ok(())
    }

    /// The `[auth]` and `[tls]` settings that cannot work together.
    fn validate_trust(&self) -> Result<(), ConfigError> {
        let fail = |why: String| Err(ConfigError::Inconsistent(why));
        let auth = &self.auth;
        match auth.mode {
            AuthMode::Token if !auth.has_jwt_key() => {
                return fail(
                    "auth.mode is \"token\" but no key is set: set auth.jwt_hmac_secret \
                    (SWITCHBOARD_AUTH__JWT_HMAC_SECRET) or auth.jwt_public_key"
                        .into(),
                );
            }
            AuthMode::Open if auth.has_jwt_key() => {
                return fail("auth.mode is \"open\" but a JWT key is set: remove the key or the mode".into());
            }
            _ => {}
        }
        for (index, key) in auth.api_keys.iter().enumerate() {
            if let Err(why) = key.check() {
                return fail(format!("auth.api_keys[{index}]: {why}"));
            }
        }
        if self.tls.cert.as_os_str().is_empty() != self.tls.key.as_os_str().is_empty() {
            return fail("tls.cert and tls.key must be set together".into());
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
    fn a_bare_port_in_the_file_or_environment_means_loopback() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("p.toml", "udp = 9000\nhttp = \"8081\"\n")?;
            jail.set_env("SWITCHBOARD_TCP", "7071");
            let config = Config::load(Some(Path::new("p.toml")), Flags { http: None }).map_err(|e| e.to_string())?;
            let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
            assert_eq!((config.http, config.tcp, config.udp), (loopback(8081), loopback(7071), loopback(9000)));
            jail.set_env("SWITCHBOARD_TCP", "localhost");
            let error = Config::load(Some(Path::new("p.toml")), Flags { http: None }).expect_err("not an address");
            assert!(error.to_string().contains("8080 means 127.0.0.1:8080"), "{error}");
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
