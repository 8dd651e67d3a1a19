//! The Redis engine that lets several Switchboard nodes serve the same rooms:
//! the cluster-wide `seq`/`epoch` of every log (room history or DM inbox),
//! its bounded history in a Redis stream, fan-out between nodes over Redis
//! pub/sub, and presence across nodes with node heartbeats and a reaper.
//!
//! It knows nothing of the hub: every method takes a log ([`LogKey`]) or a
//! room name and answers in plain values, so the broker and presence seams
//! (`crate::broker`) can put it behind their traits. `docs/CLUSTER.md` lists
//! every key, channel and script, and why the `redis` crate.
//!
//! # Parts
//! - [`Engine`]: one command connection (reconnecting by itself), the
//!   `publish` script and the history reads ([`log`]), presence and node
//!   liveness ([`presence`]).
//! - [`Subscriber`]: a second connection for pub/sub that yields
//!   publications and connection events, with a liveness probe
//!   ([`subscriber`]).
//! - [`keys`]: every key and channel name; [`connection`]: addresses
//!   (`redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://`) and
//!   the reconnecting connections; [`sentinel`]: following the master
//!   through a Sentinel failover.
//!
//! Every command is bounded by [`ClusterConfig::command_timeout`]: while
//! Redis is unreachable a publisher gets [`ClusterError::Unavailable`] or
//! [`ClusterError::Timeout`] at once or within that bound, never a hang and
//! never a false ack.

pub mod connection;
mod durability;
pub mod keys;
pub mod log;
mod payload;
pub mod presence;
mod relay;
mod scripts;
pub mod sentinel;
pub mod subscriber;

pub use connection::Target;
pub use keys::Keys;
pub use log::{LogInfo, Outgoing, Published};
pub use payload::Publication;
pub use presence::{PresenceChange, PresenceCount, PresenceMember, Reaped};
pub use relay::Relayed;
pub use subscriber::{LostReason, Subscriber, SubscriberEvent};

use connection::Conn;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Everything the engine needs to know; [`ClusterConfig::new`] fills the
/// defaults.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where Redis is: `redis://`, `rediss://`, `redis+cluster://h1:p1,h2:p2`
    /// or `redis+sentinel://h1:p1,h2:p2/<master name>` (see [`Target`]).
    pub url: String,
    /// The first part of every key and channel (default `sb`). No `{`, `}`
    /// or newline: they would break the hash tags.
    pub prefix: String,
    /// This node's name, unique in the cluster: presence connection keys,
    /// the heartbeat and the probe channel carry it.
    pub node_id: String,
    /// The bound on every command, connecting included.
    pub command_timeout: Duration,
    /// The bound on one connection attempt.
    pub connect_timeout: Duration,
    /// Messages a log's stream keeps, roughly (`XADD MAXLEN ~`).
    pub history_max_len: u64,
    /// How long a room's history lives after its last message (None: for ever).
    pub room_ttl: Option<Duration>,
    /// How long an inbox lives after its last message (None: for ever).
    pub inbox_ttl: Option<Duration>,
    /// How long an idempotency key remembers its first answer.
    pub idempotency_window: Duration,
    /// How often an idle subscriber proves its subscription with an echo.
    pub probe_interval: Duration,
    /// How long the echo may take before the subscription counts as dead.
    pub probe_timeout: Duration,
    /// A node whose heartbeat is older than this is dead: the reaper removes
    /// its connections from presence.
    pub node_timeout: Duration,
    /// How long one reaper holds the reaper lock (`SET NX PX`).
    pub reaper_lease: Duration,
    /// Replicas that must have a published message before it is acked
    /// (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// Whether a published message must also be in the master's AOF before
    /// it is acked (`WAITAOF`, Redis 7.2 and later).
    pub wait_aof: bool,
    /// Pushes (publications) the subscriber buffers before it drops and
    /// reports [`SubscriberEvent::Dropped`].
    pub subscriber_buffer: usize,
}

impl ClusterConfig {
    /// A configuration with the defaults for `url` and `node_id`.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        ClusterConfig {
            url: url.into(),
            prefix: "sb".to_owned(),
            node_id: node_id.into(),
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            history_max_len: 1000,
            room_ttl: Some(Duration::from_secs(24 * 3600)),
            inbox_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            idempotency_window: Duration::from_secs(300),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            node_timeout: Duration::from_secs(30),
            reaper_lease: Duration::from_secs(10),
            subscriber_buffer: 8192,
            wait_replicas: 0,
            wait_aof: false,
        }
    }
}

/// What can go wrong talking to Redis. None of this text reaches a client:
/// callers answer with their own wire codes (e.g. `unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration cannot work (bad URL, prefix or node id).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// Redis cannot be reached, or the connection broke during the command.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The command did not finish within `command_timeout`. It may still
    /// have run: retry with the same idempotency key.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The command ran, but fewer replicas or append-only files than
    /// `wait_replicas`/`wait_aof` ask confirmed it in time. Redis itself
    /// answers, so this says nothing about its reachability.
    #[error("not durable as configured: {0}")]
    NotDurable(String),
    /// A script failed in Redis (a bug, or a key of the wrong type).
    #[error("redis script {script} failed: {detail}")]
    Script { script: &'static str, detail: String },
    /// Redis answered, but not what we expect (other software writing our
    /// keys, or a different protocol).
    #[error("unexpected reply from redis: {0}")]
    BadReply(String),
    /// Redis refused the command for another reason.
    #[error("redis: {0}")]
    Redis(String),
}

impl ClusterError {
    /// Whether the failure means Redis is (for now) out of reach, as
    /// opposed to a reply we could not use.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClusterError::Unavailable(_) | ClusterError::Timeout(_))
    }

    /// Classifies a driver error; `script` names the script that ran, if any.
    pub(crate) fn from_redis(error: redis::RedisError, script: Option<&'static str>) -> Self {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_cluster_error()
            || error.is_timeout()
        {
            return ClusterError::Unavailable(error.to_string());
        }
        match script {
            Some(script) => ClusterError::Script { script, detail: error.to_string() },
            None => ClusterError::Redis(error.to_string()),
        }
    }
}

/// Runs `command` within `limit`, classifying its error.
pub(crate) async fn bounded<T>(
    limit: Duration,
    script: Option<&'static str>,
    command: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ClusterError::from_redis(error, script)),
        Err(_) => Err(ClusterError::Timeout(limit)),
    }
}

/// The command side of the engine: publish, history, presence, node
/// liveness. Cheap to clone; every clone shares one connection.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

#[derive(Debug)]
struct EngineInner {
    config: ClusterConfig,
    target: Target,
    keys: Keys,
    conn: Conn,
}

impl Engine {
    /// Connects to Redis and proves it answers (`PING`), within
    /// `command_timeout`.
    pub async fn connect(config: ClusterConfig) -> Result<Engine, ClusterError> {
        let target = Target::parse(&config.url)?;
        let keys = Keys::new(&config.prefix, &config.node_id, target.is_cluster())?;
        let conn = connection::connect(&target, &config, None).await?;
        let engine = Engine { inner: Arc::new(EngineInner { config, target, keys, conn }) };
        engine.ping().await?;
        engine.check_durability().await?;
        Ok(engine)
    }

    /// Whether Redis answers a `PING` within `command_timeout` (readiness).
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let reply: String = bounded(self.timeout(), None, redis::cmd("PING").query_async(&mut conn)).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ClusterError::BadReply(format!("PING answered {reply:?}")))
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Key and channel names.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Whether Redis is a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        self.inner.target.is_cluster()
    }

    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.config.command_timeout
    }
}
