//! Where Redis is and how the engine talks to it.
//!
//! [`Target`] parses the address: `redis://` and `rediss://` (one server,
//! TLS by rustls), `redis+cluster://h1:p1,h2:p2` (Redis Cluster, seed nodes),
//! `redis+sentinel://h1:p1,h2:p2/<master>` (the master that the Sentinels
//! name). Credentials, `/db` and query options of the redis crate's URLs
//! apply to the data nodes.
//!
//! [`Conn`] is a connection that reconnects by itself: the redis crate's
//! `ConnectionManager` for one server (with a push sender, it resubscribes
//! after a reconnect) or its async `ClusterConnection` (routes by slot,
//! resubscribes sharded channels). Both speak RESP3, so pub/sub and commands
//! can share a connection.

pub use super::sentinel::{SentinelConn, SentinelSet};
use super::{ClusterConfig, ClusterError};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult,
    Value,
};
use std::fmt;

/// Where Redis is.
#[derive(Clone)]
pub enum Target {
    /// One server (or a proxy in front of several).
    Standalone(ConnectionInfo),
    /// A Redis Cluster, from its seed nodes.
    Cluster(Vec<ConnectionInfo>),
    /// The master that these Sentinels name.
    Sentinel(SentinelSet),
}

impl fmt::Debug for Target {
    /// Addresses only: connection infos may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Standalone(info) => write!(f, "Standalone({})", info.addr()),
            Target::Cluster(nodes) => f.debug_list().entries(nodes.iter().map(|node| node.addr().to_string())).finish(),
            Target::Sentinel(set) => set.fmt(f),
        }
    }
}

impl Target {
    /// Parses a `redis://`, `rediss://`, `redis+cluster://`,
    /// `rediss+cluster://`, `redis+sentinel://` or `rediss+sentinel://` URL.
    pub fn parse(url: &str) -> Result<Target, ClusterError> {
        let bad = |why: &str| ClusterError::Config(format!("redis address: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected <scheme>://"))?;
        let (base, mode) = match scheme.split_once('+') {
            Some((base, mode)) => (base, Some(mode)),
            None => (scheme, None),
        };
        if !matches!(base, "redis" | "rediss") {
            return Err(bad("the scheme must be redis or rediss, optionally with +cluster or +sentinel"));
        }
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (format!("{userinfo}@"), rest),
            None => (String::new(), rest),
        };
        let (hosts, tail) = rest.find(['/', '?']).map_or((rest, ""), |at| rest.split_at(at));
        let hosts: Vec<&str> = hosts.split(',').filter(|host| !host.is_empty()).collect();
        if hosts.is_empty() {
            return Err(bad("no host"));
        }
        let info = |host: &str, tail: &str, userinfo: &str| {
            format!("{base}://{userinfo}{host}{tail}").into_connection_info().map_err(|e| bad(&e.to_string()))
        };
        match mode {
            None if hosts.len() == 1 => Ok(Target::Standalone(info(hosts[0], tail, &userinfo)?)),
            None => Err(bad("several hosts need redis+cluster:// or redis+sentinel://")),
            Some("cluster") => {
                Ok(Target::Cluster(hosts.iter().map(|host| info(host, tail, &userinfo)).collect::<Result<_, _>>()?))
            }
            Some("sentinel") => Self::sentinel(&hosts, tail, &userinfo, info),
            Some(other) => Err(bad(&format!("unknown mode +{other}"))),
        }
    }

    fn sentinel(
        hosts: &[&str],
        tail: &str,
        userinfo: &str,
        info: impl Fn(&str, &str, &str) -> Result<ConnectionInfo, ClusterError>,
    ) -> Result<Target, ClusterError> {
        let (path, query) = tail.split_once('?').map_or((tail, ""), |(path, query)| (path, query));
        let master = path.trim_start_matches('/');
        if master.is_empty() || master.contains('/') {
            return Err(ClusterError::Config("redis+sentinel:// needs /<master name>".to_owned()));
        }
        let query = if query.is_empty() { String::new() } else { format!("/?{query}") };
        let sentinels = hosts.iter().map(|host| info(host, "", "")).collect::<Result<_, _>>()?;
        let data = info(hosts[0], &query, userinfo)?;
        Ok(Target::Sentinel(SentinelSet { sentinels, master: master.to_owned(), data }))
    }

    /// Whether this is a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }
}

/// A connection that reconnects by itself. Cheap to clone: clones share it.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// Commands to the master the Sentinels name, following failovers.
    Sentinel(SentinelConn),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
            Conn::Sentinel(_) => "Conn::Sentinel",
        })
    }
}

impl Conn {
    /// Runs `command` on the connection that writes `key`: on Redis Cluster
    /// the master of the key's slot (the connection a script on the key
    /// used), elsewhere the one connection there is.
    pub async fn query_for_key(&mut self, command: Cmd, key: &str) -> RedisResult<Value> {
        match self {
            Conn::Cluster(conn) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                conn.route_command(command, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await
            }
            other => command.query_async(other).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
            Conn::Sentinel(conn) => conn.get_db(),
        }
    }
}

/// Where a subscriber's pushes (publications, disconnections) go.
pub type PushSink = Box<dyn Fn(PushInfo) + Send + Sync>;

/// Connects to `target` within `command_timeout`; with `push`, the
/// connection also resubscribes its channels after every reconnect and
/// hands every push to `push`.
pub async fn connect(target: &Target, config: &ClusterConfig, push: Option<PushSink>) -> Result<Conn, ClusterError> {
    let limit = config.command_timeout;
    match tokio::time::timeout(limit, connect_unbounded(target, config, push)).await {
        Ok(result) => result,
        Err(_) => Err(ClusterError::Timeout(limit)),
    }
}

async fn connect_unbounded(
    target: &Target,
    config: &ClusterConfig,
    push: Option<PushSink>,
) -> Result<Conn, ClusterError> {
    let unavailable = |error: redis::RedisError| ClusterError::from_redis(error, None);
    match target {
        Target::Standalone(info) => Ok(Conn::Single(single_manager(info.clone(), config, push).await?)),
        // A subscriber's connection asks the Sentinels each time it is built.
        Target::Sentinel(set) if push.is_some() => {
            let client = set.master().await.map_err(unavailable)?;
            Ok(Conn::Single(single_manager(client.get_connection_info().clone(), config, push).await?))
        }
        Target::Sentinel(set) => Ok(Conn::Sentinel(SentinelConn::connect(set.clone(), config).await?)),
        Target::Cluster(nodes) => {
            let mut builder = ClusterClientBuilder::new(nodes.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.command_timeout);
            if let Some(push) = push {
                builder = builder.push_sender(move |info: PushInfo| {
                    push(info);
                    Ok::<(), std::convert::Infallible>(())
                });
            }
            let client = builder.build().map_err(|e| ClusterError::Config(e.to_string()))?;
            Ok(Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?))
        }
    }
}

/// A reconnecting connection to one server.
pub(crate) async fn single_manager(
    info: ConnectionInfo,
    config: &ClusterConfig,
    push: Option<PushSink>,
) -> Result<ConnectionManager, ClusterError> {
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(info.set_redis_settings(settings)).map_err(|e| ClusterError::Config(e.to_string()))?;
    let mut manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout))
        .set_number_of_retries(3)
        .set_max_delay(config.connect_timeout);
    if let Some(push) = push {
        manager = manager
            .set_push_sender(move |info: PushInfo| {
                push(info);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
    }
    let conn = ConnectionManager::new_with_config(client, manager).await;
    conn.map_err(|error| ClusterError::from_redis(error, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert!(matches!(Target::parse("redis://127.0.0.1:6379").expect("a valid address"), Target::Standalone(_)));
        assert!(matches!(
            Target::parse("rediss://user:pw@example.com:6380/2").expect("a valid address"),
            Target::Standalone(_)
        ));
        let Target::Cluster(nodes) = Target::parse("redis+cluster://a:1,b:2,c:3").expect("a valid address") else {
            panic!()
        };
        assert_eq!(nodes.len(), 3);
        let Target::Sentinel(SentinelSet { sentinels, master, data }) =
            Target::parse("redis+sentinel://:pw@s1:26379,s2:26379/mymaster").expect("a valid address")
        else {
            panic!()
        };
        assert_eq!((sentinels.len(), master.as_str()), (2, "mymaster"));
        assert_eq!(data.redis_settings().password(), Some("pw"));
        assert_eq!(sentinels[0].redis_settings().password(), None);
    }

    #[test]
    fn refuses_what_cannot_work() {
        for url in ["http://x", "redis://", "redis://a:1,b:2", "redis+sentinel://a:1", "redis+raft://a:1", "nothing"] {
            assert!(matches!(Target::parse(url), Err(ClusterError::Config(_))), "{url}");
        }
    }
}
