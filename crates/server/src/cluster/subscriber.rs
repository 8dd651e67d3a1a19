//! The pub/sub side of the engine: one connection that subscribes to the
//! channels of the logs this node serves and yields their publications,
//! with the connection's ups and downs, as [`SubscriberEvent`]s.
//!
//! The redis crate reconnects the connection and resubscribes its channels
//! by itself. Two things it cannot promise are covered here:
//! - **Knowing when.** A disconnection is reported as
//!   [`SubscriberEvent::Lost`]; [`SubscriberEvent::Resubscribed`] follows
//!   once an echo proved the subscription works again. Publications between
//!   the two may be missing: the node reads them from the streams.
//! - **A subscription that died quietly** (after a failover, a proxy, or a
//!   `CLIENT KILL` the client did not see): every `probe_interval` the node
//!   publishes a nonce to its own probe channel and expects the echo within
//!   `probe_timeout` (centrifuge PR #594, the fix for centrifugo #1189).
//!   A publish that reaches no subscriber, or a missing echo, drops the
//!   connection for a new one, resubscribed from this side's own list.
//!
//! Memory is bounded: pushes wait in a channel of `subscriber_buffer`
//! places; past that they are dropped, counted and reported as
//! [`SubscriberEvent::Dropped`] (a gap to fill from the streams, like Lost),
//! and so is a publication that cannot be decoded.
//!
//! On Redis Cluster channels are sharded (`SSUBSCRIBE`, one command per
//! channel since channels of different logs live in different slots); the
//! probe then proves the shard that owns this node's probe channel.

use super::connection::{self, Conn, PushSink};
use super::payload::{self, Publication};
use super::{bounded, ClusterError, Engine};
use crate::store::LogKey;
use arc_swap::ArcSwap;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Channels per `SUBSCRIBE` command.
const SUBSCRIBE_BATCH: usize = 512;
/// How often a lost subscriber probes while it waits for Redis.
const LOST_PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// What the subscriber reports.
#[derive(Debug)]
pub enum SubscriberEvent {
    /// A message published on some node to a subscribed log.
    Publication(Publication),
    /// An unstored event some node relayed to a subscribed log.
    Relayed(super::Relayed),
    /// The subscription is down: publications may be missed until
    /// [`SubscriberEvent::Resubscribed`].
    Lost(LostReason),
    /// Every channel is subscribed again and the echo came back: read what
    /// was published since `Lost` from the streams.
    Resubscribed,
    /// A probe's echo came back on a subscription that stayed up: Redis
    /// answers commands and delivers pushes (every `probe_interval`).
    Alive,
    /// This many pushes were dropped because events were not taken fast
    /// enough: treat every subscribed log as possibly gapped.
    Dropped(u64),
}

/// Why the subscription counts as down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// The connection broke (the redis crate saw it).
    Disconnected,
    /// The connection looked fine but the probe's echo did not come back.
    ProbeFailed,
}

/// A handle on the subscription; dropping it stops the subscriber.
#[derive(Debug)]
pub struct Subscriber {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    engine: Engine,
    /// Every subscribed channel, this side's own record: a new connection
    /// is subscribed from it.
    channels: Mutex<HashSet<String>>,
    conn: ArcSwap<Conn>,
    /// Pushes dropped since last reported.
    dropped: Arc<AtomicU64>,
    live: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Opens the pub/sub connection and starts the subscriber. Events arrive
    /// on the receiver until the [`Subscriber`] is dropped.
    pub async fn subscriber(&self) -> Result<(Subscriber, mpsc::Receiver<SubscriberEvent>), ClusterError> {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sink, pushes) = push_channel(self.config().subscriber_buffer, &dropped);
        let conn = connection::connect(self.target(), self.config(), Some(sink)).await?;
        let probe = self.keys().probe_channel();
        subscribe_on(&conn, self.is_cluster(), std::slice::from_ref(&probe), self.timeout()).await?;
        let shared = Arc::new(Shared {
            engine: self.clone(),
            channels: Mutex::new(HashSet::from([probe])),
            conn: ArcSwap::from_pointee(conn),
            dropped,
            live: std::sync::atomic::AtomicBool::new(true),
        });
        let (events, receiver) = mpsc::channel(self.config().subscriber_buffer.max(1));
        let actor = Actor::new(Arc::clone(&shared), pushes, events);
        let task = tokio::spawn(actor.run());
        Ok((Subscriber { shared, task }, receiver))
    }
}

impl Subscriber {
    /// Subscribes to the channels of `logs` (batched). On error none of the
    /// failed batch counts as subscribed: call again later.
    pub async fn subscribe(&self, logs: &[LogKey]) -> Result<(), ClusterError> {
        let channels = self.channels_of(logs);
        crate::util::lock(&self.shared.channels).extend(channels.iter().cloned());
        let conn = Conn::clone(&self.shared.conn.load());
        let engine = &self.shared.engine;
        let result = subscribe_on(&conn, engine.is_cluster(), &channels, engine.timeout()).await;
        if result.is_err() {
            let mut held = crate::util::lock(&self.shared.channels);
            held.retain(|channel| !channels.contains(channel));
        }
        result
    }

    /// Unsubscribes from the channels of `logs` (batched).
    pub async fn unsubscribe(&self, logs: &[LogKey]) -> Result<(), ClusterError> {
        let channels = self.channels_of(logs);
        {
            let mut held = crate::util::lock(&self.shared.channels);
            held.retain(|channel| !channels.contains(channel));
        }
        let conn = Conn::clone(&self.shared.conn.load());
        let limit = self.shared.engine.timeout();
        match pubsub(conn) {
            PubSub::Single(mut conn) => {
                for batch in channels.chunks(SUBSCRIBE_BATCH) {
                    bounded(limit, None, conn.unsubscribe(batch)).await?;
                }
            }
            PubSub::Cluster(conn) => {
                let each = channels.iter().map(|channel| {
                    let mut conn = conn.clone();
                    async move { bounded(limit, None, conn.sunsubscribe(channel)).await }
                });
                futures_util::future::try_join_all(each).await?;
            }
        }
        Ok(())
    }

    /// Whether the subscription is known to work (false between `Lost` and
    /// `Resubscribed`).
    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::Relaxed)
    }

    fn channels_of(&self, logs: &[LogKey]) -> Vec<String> {
        let keys = self.shared.engine.keys();
        logs.iter().map(|log| keys.log(log).channel).collect()
    }
}

/// A bounded channel for pushes, and the sink the redis crate calls: it
/// keeps publications and disconnections, and counts what does not fit.
fn push_channel(capacity: usize, dropped: &Arc<AtomicU64>) -> (PushSink, mpsc::Receiver<PushInfo>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let dropped = Arc::clone(dropped);
    let sink = move |push: PushInfo| {
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage | PushKind::Disconnection) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(push) {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    (Box::new(sink), receiver)
}

/// Subscribes `conn` to `channels`: batched `SUBSCRIBE`, or one
/// `SSUBSCRIBE` per channel on Redis Cluster.
async fn subscribe_on(conn: &Conn, sharded: bool, channels: &[String], limit: Duration) -> Result<(), ClusterError> {
    match pubsub(conn.clone()) {
        PubSub::Single(mut conn) => {
            for batch in channels.chunks(SUBSCRIBE_BATCH) {
                bounded(limit, None, conn.subscribe(batch)).await?;
            }
        }
        PubSub::Cluster(conn) => {
            debug_assert!(sharded, "a cluster connection subscribes sharded channels");
            let each = channels.iter().map(|channel| {
                let mut conn = conn.clone();
                async move { bounded(limit, None, conn.ssubscribe(channel)).await }
            });
            futures_util::future::try_join_all(each).await?;
        }
    }
    Ok(())
}

/// A connection as pub/sub sees it: one server, or a Redis Cluster.
enum PubSub {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

fn pubsub(conn: Conn) -> PubSub {
    match conn {
        Conn::Single(conn) => PubSub::Single(conn),
        Conn::Sentinel(conn) => PubSub::Single(conn.manager()),
        Conn::Cluster(conn) => PubSub::Cluster(conn),
    }
}

/// A probe in flight.
#[derive(Debug)]
struct Probe {
    nonce: String,
    /// When the publish returned; None while it runs.
    published: Option<Instant>,
}

/// A probe's nonce and what its publish answered (subscribers reached).
type ProbeResult = (String, Result<u64, ClusterError>);

/// The task behind a [`Subscriber`].
struct Actor {
    shared: Arc<Shared>,
    pushes: mpsc::Receiver<PushInfo>,
    /// False once `pushes` closed, until a new connection replaces it.
    pushes_open: bool,
    events: mpsc::Sender<SubscriberEvent>,
    probe_channel: String,
    probe: Option<Probe>,
    nonces: u64,
    next_probe: Instant,
    probe_results: (mpsc::Sender<ProbeResult>, mpsc::Receiver<ProbeResult>),
}

impl Actor {
    fn new(shared: Arc<Shared>, pushes: mpsc::Receiver<PushInfo>, events: mpsc::Sender<SubscriberEvent>) -> Actor {
        let probe_channel = shared.engine.keys().probe_channel();
        let next_probe = Instant::now() + shared.engine.config().probe_interval;
        let probe_results = mpsc::channel(4);
        Actor {
            shared,
            pushes,
            pushes_open: true,
            events,
            probe_channel,
            probe: None,
            nonces: 0,
            next_probe,
            probe_results,
        }
    }

    async fn run(mut self) {
        loop {
            let keep_going = tokio::select! {
                push = self.pushes.recv(), if self.pushes_open => match push {
                    Some(push) => self.on_push(push).await,
                    None => {
                        // The driver let go of its connection: the next probe
                        // finds no subscriber and builds a new one.
                        self.pushes_open = false;
                        self.lost(LostReason::Disconnected).await
                    }
                },
                Some((nonce, result)) = self.probe_results.1.recv() => self.on_probe_published(nonce, result).await,
                () = tokio::time::sleep_until(self.next_probe) => self.on_tick().await,
                () = self.events.closed() => false,
            };
            if !keep_going || !self.report_dropped().await {
                return;
            }
        }
    }

    /// Handles one push; false when the events receiver is gone.
    async fn on_push(&mut self, push: PushInfo) -> bool {
        if push.kind == PushKind::Disconnection {
            return self.lost(LostReason::Disconnected).await;
        }
        let [channel, message] = push.data.as_slice() else {
            return true;
        };
        let bytes = match message {
            Value::BulkString(bytes) => bytes.as_slice(),
            _ => return true,
        };
        if matches!(channel, Value::BulkString(name) if name.as_slice() == self.probe_channel.as_bytes()) {
            return self.on_echo(bytes).await;
        }
        if let Some(relayed) = super::relay::relayed(bytes) {
            return match relayed {
                Ok(relayed) => self.emit(SubscriberEvent::Relayed(relayed)).await,
                Err(error) => {
                    tracing::warn!(%error, "dropped a relayed event that cannot be decoded");
                    true
                }
            };
        }
        match payload::publication(bytes) {
            Ok(publication) => self.emit(SubscriberEvent::Publication(publication)).await,
            Err(error) => {
                // Reported as a drop: the consumer reads the log from its stream.
                tracing::warn!(%error, "dropped a publication that cannot be decoded");
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    async fn on_echo(&mut self, nonce: &[u8]) -> bool {
        if self.probe.as_ref().is_none_or(|probe| probe.nonce.as_bytes() != nonce) {
            return true;
        }
        self.probe = None;
        self.next_probe = Instant::now() + self.shared.engine.config().probe_interval;
        if self.shared.live.swap(true, Ordering::Relaxed) {
            return self.emit(SubscriberEvent::Alive).await;
        }
        tracing::info!("redis subscription restored");
        self.emit(SubscriberEvent::Resubscribed).await
    }

    /// Marks the subscription down (once per outage) and probes soon.
    async fn lost(&mut self, reason: LostReason) -> bool {
        self.probe = None;
        self.next_probe = Instant::now() + LOST_PROBE_INTERVAL;
        if !self.shared.live.swap(false, Ordering::Relaxed) {
            return true;
        }
        tracing::warn!(?reason, "redis subscription lost");
        self.emit(SubscriberEvent::Lost(reason)).await
    }

    async fn on_tick(&mut self) -> bool {
        let config = self.shared.engine.config();
        let (timeout, interval) = match self.shared.live.load(Ordering::Relaxed) {
            true => (config.probe_timeout, config.probe_interval),
            false => (config.probe_timeout, LOST_PROBE_INTERVAL),
        };
        match &self.probe {
            Some(Probe { published: Some(at), .. }) if at.elapsed() >= timeout => {
                tracing::warn!("no echo from the redis subscription within {timeout:?}");
                return self.probe_failed().await;
            }
            Some(Probe { published: Some(at), .. }) => self.next_probe = *at + timeout,
            Some(Probe { published: None, .. }) => self.next_probe = Instant::now() + interval,
            None => {
                self.send_probe();
                self.next_probe = Instant::now() + interval.min(timeout);
            }
        }
        true
    }

    fn send_probe(&mut self) {
        self.nonces += 1;
        let nonce = format!("{}:{}", self.shared.engine.keys().node_id(), self.nonces);
        self.probe = Some(Probe { nonce: nonce.clone(), published: None });
        let engine = self.shared.engine.clone();
        let (channel, results) = (self.probe_channel.clone(), self.probe_results.0.clone());
        tokio::spawn(async move {
            let mut command = redis::cmd(engine.keys().publish_command());
            command.arg(&channel).arg(&nonce);
            let mut conn = engine.conn();
            let result = bounded(engine.timeout(), None, command.query_async::<u64>(&mut conn)).await;
            let _ = results.send((nonce, result)).await;
        });
    }

    async fn on_probe_published(&mut self, nonce: String, result: Result<u64, ClusterError>) -> bool {
        let Some(probe) = self.probe.as_mut().filter(|probe| probe.nonce == nonce) else {
            return true;
        };
        match result {
            // No subscriber got it: ours is gone, whatever the connection says.
            Ok(0) => self.probe_failed().await,
            Ok(_) => {
                probe.published = Some(Instant::now());
                self.next_probe = Instant::now() + self.shared.engine.config().probe_timeout;
                true
            }
            // Redis is out of reach for commands too: nothing to repair yet.
            Err(error) => {
                tracing::debug!(%error, "the subscription probe could not publish");
                self.probe = None;
                true
            }
        }
    }

    async fn probe_failed(&mut self) -> bool {
        if !self.lost(LostReason::ProbeFailed).await {
            return false;
        }
        self.rebuild().await
    }

    /// Replaces the connection with a new one subscribed to every channel.
    /// Stays lost (and probes again) when that fails.
    async fn rebuild(&mut self) -> bool {
        let engine = self.shared.engine.clone();
        let (sink, pushes) = push_channel(engine.config().subscriber_buffer, &self.shared.dropped);
        let conn = match connection::connect(engine.target(), engine.config(), Some(sink)).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "cannot open a new redis subscription connection");
                return self.lost(LostReason::Disconnected).await;
            }
        };
        self.shared.conn.store(Arc::new(conn.clone()));
        self.pushes = pushes;
        self.pushes_open = true;
        let channels: Vec<String> = crate::util::lock(&self.shared.channels).iter().cloned().collect();
        if let Err(error) = subscribe_on(&conn, engine.is_cluster(), &channels, engine.timeout()).await {
            tracing::warn!(%error, "cannot resubscribe on a new redis connection");
        }
        self.probe = None;
        self.next_probe = Instant::now();
        true
    }

    async fn report_dropped(&mut self) -> bool {
        match self.shared.dropped.swap(0, Ordering::Relaxed) {
            0 => true,
            count => {
                tracing::warn!(count, "redis publications dropped: events not taken fast enough");
                self.emit(SubscriberEvent::Dropped(count)).await
            }
        }
    }

    async fn emit(&mut self, event: SubscriberEvent) -> bool {
        self.events.send(event).await.is_ok()
    }
}
