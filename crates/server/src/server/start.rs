//! Building the hub over its seams: on a single node, the local broker
//! over the configured storage and in-process presence; in a cluster
//! (`cluster.redis`), the Redis engine behind both.

use super::ServerError;
use crate::broker::cluster::presence::ClusterPresence;
use crate::broker::cluster::ClusterBroker;
use crate::broker::local::LocalBroker;
use crate::broker::presence::LocalPresence;
use crate::broker::Seams;
use crate::cluster::{ClusterConfig, Engine};
use crate::config::Config;
use crate::hub::{Hub, HubLimits};
use crate::metrics::Metrics;
use crate::policy::PolicyCell;
use crate::store::{self, Backend};
use std::sync::Arc;

/// A hub, and what shutdown must do for its seams.
pub(super) struct Started {
    pub hub: Arc<Hub>,
    /// Cluster mode: presence to keep for `cluster.presence_grace`.
    pub presence: Option<Arc<ClusterPresence>>,
}

/// Starts the hub: over `backend` on a single node, over Redis in a
/// cluster (then `backend` is not used).
pub(super) async fn start_hub(
    config: &Config,
    limits: HubLimits,
    metrics: &Arc<Metrics>,
    policy: Arc<PolicyCell>,
    backend: Box<dyn Backend>,
) -> Result<Started, ServerError> {
    if !config.cluster.enabled() {
        let loaded = store::Loaded::load(backend)?;
        let writer = config.storage.writer_options();
        let hub = Hub::start(limits, Arc::clone(metrics), policy, |deliveries| Seams {
            broker: Arc::new(LocalBroker::start(loaded, writer, deliveries)),
            presence: Arc::new(LocalPresence),
        });
        tracing::info!(
            backend = ?config.storage.backend,
            data = %config.data.display(),
            sync = ?config.storage.sync,
            logs = hub.storage_log_count(),
            "storage ready"
        );
        return Ok(Started { hub, presence: None });
    }
    let engine = Engine::connect(cluster_config(config)).await.map_err(ServerError::Cluster)?;
    let prepared = ClusterBroker::prepare(engine.clone()).await.map_err(ServerError::Cluster)?;
    metrics.cluster_up.set(1);
    let mut presence = None;
    let events_max_members = limits.presence_events_max_members;
    let hub = Hub::start(limits, Arc::clone(metrics), policy, |deliveries| {
        let cluster_presence = Arc::new(ClusterPresence::start(
            engine.clone(),
            Arc::clone(metrics),
            deliveries.clone(),
            events_max_members,
        ));
        presence = Some(Arc::clone(&cluster_presence));
        Seams { broker: Arc::new(prepared.start(Arc::clone(metrics), deliveries)), presence: cluster_presence }
    });
    tracing::info!(
        redis = %config.cluster.redis,
        node = engine.keys().node_id(),
        prefix = %config.cluster.prefix,
        sharded = engine.is_cluster(),
        "cluster ready: history, inboxes and presence live in Redis"
    );
    Ok(Started { hub, presence })
}

/// The engine's settings from the configuration.
fn cluster_config(config: &Config) -> ClusterConfig {
    let cluster = &config.cluster;
    let node_id = match cluster.node_id.is_empty() {
        true => default_node_id(),
        false => cluster.node_id.clone(),
    };
    let mut engine = ClusterConfig::new(cluster.redis.clone(), node_id);
    engine.prefix = cluster.prefix.clone();
    engine.command_timeout = cluster.command_timeout;
    engine.connect_timeout = cluster.command_timeout;
    engine.history_max_len = cluster.history_max_len;
    engine.node_timeout = cluster.node_timeout;
    // The reaper's lock outlives a dead holder by at most this: a crashed
    // node's users leave within twice `node_timeout` even when it was the
    // one reaping (docs/ARCHITECTURE.md, "Cluster on Redis").
    engine.reaper_lease = cluster.node_timeout / 2;
    engine.room_ttl = Some(config.storage.room_max_age);
    engine.inbox_ttl = Some(config.storage.inbox_max_age);
    engine.idempotency_window = config.api.idempotency_window;
    engine.wait_replicas = cluster.wait_replicas;
    engine.wait_aof = cluster.wait_aof;
    engine
}

/// The host name, the process id and a random suffix: unique even for two
/// nodes started in one second on one machine.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let mut suffix = [0u8; 3];
    let _ = getrandom::getrandom(&mut suffix);
    let suffix: String = suffix.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{suffix}", if host.is_empty() { "node" } else { host }, std::process::id())
}
