//! A command connection to the master that the Sentinels name, which
//! follows a failover.
//!
//! The redis crate asks the Sentinels where the master is only when it
//! connects; its `ConnectionManager` then reconnects to that same address
//! (redis-rs #1438). Here every failure that a failover can cause (the
//! connection refused or broken, a timeout, `READONLY` from a demoted master)
//! makes one background task ask the Sentinels again; when the master moved,
//! a new connection to it replaces the old one for the commands that follow.
//! The command that failed still fails: the caller answers with an error,
//! never a false ack.

use super::connection::single_manager;
use super::{ClusterConfig, ClusterError};
use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, ConnectionInfo, Pipeline, RedisError, RedisFuture, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The pause between two lookups, so that a storm of failing commands
/// asks the Sentinels a few times a second at most.
const LOOKUP_PAUSE: Duration = Duration::from_millis(250);

/// Where the Sentinels are and which master to ask them for.
#[derive(Clone)]
pub struct SentinelSet {
    pub sentinels: Vec<ConnectionInfo>,
    pub master: String,
    /// Credentials, database and TLS of the data nodes.
    pub data: ConnectionInfo,
}

impl fmt::Debug for SentinelSet {
    /// Addresses only: connection infos may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<String> = self.sentinels.iter().map(|node| node.addr().to_string()).collect();
        write!(f, "Sentinel({} via {sentinels:?})", self.master)
    }
}

impl SentinelSet {
    /// Asks the Sentinels where the master is now.
    pub async fn master(&self) -> redis::RedisResult<Client> {
        let settings = self.data.redis_settings().clone();
        let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(settings);
        if let redis::ConnectionAddr::TcpTls { insecure, .. } = self.data.addr() {
            node = node.set_tls_mode(if *insecure { redis::TlsMode::Insecure } else { redis::TlsMode::Secure });
        }
        let sentinels = self.sentinels.clone();
        let mut client = SentinelClient::build(sentinels, &self.master, Some(node), SentinelServerType::Master)?;
        client.async_get_client().await
    }
}

/// The command connection in Sentinel mode. Cheap to clone.
#[derive(Clone)]
pub struct SentinelConn {
    inner: Arc<Inner>,
}

struct Inner {
    set: SentinelSet,
    config: ClusterConfig,
    current: ArcSwap<Current>,
    looking_up: AtomicBool,
}

struct Current {
    manager: ConnectionManager,
    /// The master's address, as the Sentinels named it.
    addr: String,
}

impl fmt::Debug for SentinelConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SentinelConn({} at {})", self.inner.set.master, self.inner.current.load().addr)
    }
}

impl SentinelConn {
    /// Connects to the master the Sentinels name now.
    pub async fn connect(set: SentinelSet, config: &ClusterConfig) -> Result<SentinelConn, ClusterError> {
        let client = set.master().await.map_err(|error| ClusterError::from_redis(error, None))?;
        let info = client.get_connection_info().clone();
        let addr = info.addr().to_string();
        let manager = single_manager(info, config, None).await?;
        let current = ArcSwap::from_pointee(Current { manager, addr });
        let inner = Inner { set, config: config.clone(), current, looking_up: AtomicBool::new(false) };
        Ok(SentinelConn { inner: Arc::new(inner) })
    }

    /// The connection to the master as last known.
    pub fn manager(&self) -> ConnectionManager {
        self.inner.current.load().manager.clone()
    }

    /// Starts a lookup when `error` may mean that the master moved.
    fn after(&self, error: &RedisError) {
        let moved = error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout()
            || error.code() == Some("READONLY");
        if moved && !self.inner.looking_up.swap(true, Ordering::AcqRel) {
            tokio::spawn(look_up(Arc::clone(&self.inner)));
        }
    }
}

/// Asks the Sentinels for the master and, when it moved, connects to it.
async fn look_up(inner: Arc<Inner>) {
    let limit = inner.config.command_timeout;
    match tokio::time::timeout(limit, inner.set.master()).await {
        Ok(Ok(client)) => {
            let info = client.get_connection_info().clone();
            let addr = info.addr().to_string();
            if addr != inner.current.load().addr {
                match single_manager(info, &inner.config, None).await {
                    Ok(manager) => {
                        tracing::warn!(master = %inner.set.master, %addr, "redis master moved: following it");
                        inner.current.store(Arc::new(Current { manager, addr }));
                    }
                    Err(error) => tracing::warn!(%error, %addr, "cannot connect to the new redis master"),
                }
            }
        }
        Ok(Err(error)) => tracing::warn!(%error, "the sentinels did not name a master"),
        Err(_) => tracing::warn!("the sentinels did not answer within {limit:?}"),
    }
    tokio::time::sleep(LOOKUP_PAUSE).await;
    inner.looking_up.store(false, Ordering::Release);
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.manager().req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.after(error);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.manager().req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result {
                self.after(error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.current.load().manager.get_db()
    }
}
