//! Server metrics, exposed in the Prometheus text format at `/metrics`.
//!
//! Each server instance owns its own registry (prometheus-client), so two
//! servers in one process, as in the tests, never mix their counts.
//! Hot-path counters carry no labels; labelled families are used only where
//! the label set is small and fixed (close codes, drop reasons).

use crate::hub::conn::Transport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why a frame or datagram was not delivered: the `reason` label of
/// `switchboard_messages_dropped_total`. An enum, so that `/api/stats` and
/// the exposition can list every reason, at 0 until its first drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A connection's queue passed its bound (closed with 4008).
    SlowConsumer,
    /// The recipient was already closing.
    Closing,
    /// An event larger than a UDP member's datagram limit.
    UdpOversize,
    /// A datagram over the message size limit.
    UdpTooLarge,
    /// A UDP source over its datagram rate.
    UdpRateLimited,
    /// Dropped by the kernel: the server's UDP receive buffer was full.
    UdpReceiveBuffer,
    /// A send refused: the storage queue was full.
    StorageBusy,
    /// A request refused: the connection had too many waiting for answers.
    TooManyPending,
    /// Refused: the storage commit failed.
    StorageError,
    /// A compressed WebSocket message over the message limit once inflated.
    WsInflatedTooLarge,
    /// A compressed WebSocket message that was not valid deflate data.
    WsInflateFailed,
    /// A stored DM removed: its sender has `storage.inbox_max_per_sender` newer ones in that inbox.
    InboxPerSender,
    /// Refused: a cluster node could not reach Redis (`unavailable`).
    ClusterUnavailable,
    /// Gone from a log's stream in Redis before this node read them to fill a gap.
    ClusterGap,
}

impl DropReason {
    /// Every reason, in the order `/api/stats` lists them.
    pub const ALL: [DropReason; 14] = [
        DropReason::SlowConsumer,
        DropReason::Closing,
        DropReason::UdpOversize,
        DropReason::UdpTooLarge,
        DropReason::UdpRateLimited,
        DropReason::UdpReceiveBuffer,
        DropReason::StorageBusy,
        DropReason::TooManyPending,
        DropReason::StorageError,
        DropReason::WsInflatedTooLarge,
        DropReason::WsInflateFailed,
        DropReason::InboxPerSender,
        DropReason::ClusterUnavailable,
        DropReason::ClusterGap,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::Closing => "closing",
            DropReason::UdpOversize => "udp_oversize",
            DropReason::UdpTooLarge => "udp_too_large",
            DropReason::UdpRateLimited => "udp_rate_limited",
            DropReason::UdpReceiveBuffer => "udp_receive_buffer",
            DropReason::StorageBusy => "storage_busy",
            DropReason::TooManyPending => "too_many_pending",
            DropReason::StorageError => "storage_error",
            DropReason::WsInflatedTooLarge => "ws_inflated_too_large",
            DropReason::WsInflateFailed => "ws_inflate_failed",
            DropReason::InboxPerSender => crate::guard::reason::INBOX_PER_SENDER,
            DropReason::ClusterUnavailable => "cluster_unavailable",
            DropReason::ClusterGap => "cluster_gap",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub code: &'static str,
}

/// An HTTP request's route template (never the raw path: the label set
/// stays bounded), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

/// Every metric the server records. Cloning shares the same counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: Family<TransportLabel, Gauge>,
    pub connections_accepted: Family<TransportLabel, Counter>,
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub connections_closed: Family<CodeLabel, Counter>,
    pub max_connections: Gauge,
    pub rooms: Gauge,
    pub commands: Counter,
    pub command_errors: Family<ErrorLabel, Counter>,
    pub auth_failures: Family<ErrorLabel, Counter>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub messages_published: Counter,
    pub messages_stored: Counter,
    pub messages_replayed: Counter,
    pub idempotent_repeats: Counter,
    pub deliveries: Counter,
    pub dropped: Family<ReasonLabel, Counter>,
    pub slow_consumers: Counter,
    pub bytes_written: Counter,
    pub socket_writes: Counter,
    pub write_windows_grown: Counter,
    pub udp_datagrams: Counter,
    pub compressed_frames: Counter,
    pub compressions: Counter,
    pub compression_saved_bytes: Counter,
    pub limit_hits: Family<ReasonLabel, Counter>,
    pub http_requests: Family<HttpLabel, Counter>,
    pub kicks: Counter,
    /// Cluster mode: 1 while Redis answers and the subscription is live.
    pub cluster_up: Gauge,
    pub cluster_history_resets: Counter,
    pub cluster_pushes_dropped: Counter,
    pub cluster_publish_scripts: Counter,
}

impl Metrics {
    /// Registers every metric in a new registry.
    ///
    /// Every transport's `connections_open` and every drop reason's
    /// `messages_dropped` exist from the start, at 0: a scraper's `rate()`
    /// sees the first drop, and reading them (`/api/stats`) adds nothing.
    pub fn registry(&self) -> Registry {
        for transport in Transport::ALL {
            drop(self.connections_open.get_or_create(&TransportLabel { transport: transport.as_str() }));
        }
        for reason in DropReason::ALL {
            drop(self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }));
        }
        let mut registry = Registry::with_prefix("switchboard");
        let r = &mut registry;
        r.register("connections_open", "Open client connections", self.connections_open.clone());
        r.register("connections_accepted", "Connections accepted", self.connections_accepted.clone());
        r.register(
            "connections_refused",
            "Connections refused (limit: at max connections; handshake: bad upgrade request; origin: a page \
             from an origin not allowed; auth: no valid token; tls_handshake: TLS handshake failed, timed out \
             or not TLS; forbidden: an event stream for a room the token does not allow)",
            self.connections_refused.clone(),
        );
        r.register("connections_closed", "Connections closed, by close code", self.connections_closed.clone());
        r.register(
            "config_reloads",
            "Configurations handed over on SIGHUP, by result (applied; refused: the running one stays)",
            self.config_reloads.clone(),
        );
        r.register("max_connections", "Connection limit in force", self.max_connections.clone());
        r.register("rooms", "Rooms with at least one member", self.rooms.clone());
        r.register("commands", "Client commands received", self.commands.clone());
        r.register("command_errors", "Commands answered with an error, by code", self.command_errors.clone());
        r.register(
            "auth_failures",
            "Tokens and API keys refused (upgrades, hello, auth, HTTP), by wire code",
            self.auth_failures.clone(),
        );
        r.register("messages_published", "Messages published to rooms", self.messages_published.clone());
        r.register(
            "messages_stored",
            "Messages committed to storage (rooms and inboxes)",
            self.messages_stored.clone(),
        );
        r.register(
            "messages_replayed",
            "Stored messages replayed after a join or inbox with since",
            self.messages_replayed.clone(),
        );
        r.register(
            "idempotent_repeats",
            "send and dm commands whose idempotency_key was seen within the window: answered with the first ack, \
             not stored again",
            self.idempotent_repeats.clone(),
        );
        r.register("deliveries", "Frames queued for subscribers", self.deliveries.clone());
        r.register(
            "messages_dropped",
            "Frames or datagrams not delivered, by reason (slow_consumer: queue over its bound; closing: recipient \
             already closing; udp_oversize: event over the UDP size; udp_too_large: datagram over the message \
             limit; udp_rate_limited: source over its rate; udp_receive_buffer: dropped by the kernel, server \
             socket buffer full; storage_busy: refused, storage queue full; too_many_pending: refused, the connection has too \
             many requests waiting; storage_error: refused, commit failed; ws_inflated_too_large: a compressed \
             WebSocket message over the message limit once inflated, closed with 1009; ws_inflate_failed: invalid \
             deflate data, closed with 1007; inbox_per_sender: a stored DM removed, its sender has \
             storage.inbox_max_per_sender newer ones in that inbox; cluster_unavailable: refused, Redis \
             unreachable; cluster_gap: gone from a stream in Redis before this node could read it)",
            self.dropped.clone(),
        );
        r.register("slow_consumer_disconnects", "Connections closed with 4008", self.slow_consumers.clone());
        r.register(
            "cluster_redis_up",
            "Cluster mode: 1 while Redis answers and this node's subscription is live (0 on a single node)",
            self.cluster_up.clone(),
        );
        r.register(
            "cluster_history_resets",
            "Logs whose history Redis lost (a new epoch); their members here were closed with 4012",
            self.cluster_history_resets.clone(),
        );
        r.register(
            "cluster_pushes_dropped",
            "Publications the Redis subscriber could not keep up with (each one triggers a repair from the streams)",
            self.cluster_pushes_dropped.clone(),
        );
        r.register(
            "cluster_publish_scripts",
            "Publish scripts Redis ran and answered; each stores one or more messages of one log (messages per round trip = \
             messages_stored / this)",
            self.cluster_publish_scripts.clone(),
        );
        r.register("bytes_written", "Bytes written to client sockets", self.bytes_written.clone());
        r.register(
            "socket_writes",
            "Write system calls on client stream sockets (frames per write = deliveries / writes)",
            self.socket_writes.clone(),
        );
        r.register(
            "write_windows_grown",
            "Times a busy connection's write window doubled (delivery.write_window_max)",
            self.write_windows_grown.clone(),
        );
        r.register("udp_datagrams_received", "UDP datagrams received", self.udp_datagrams.clone());
        r.register(
            "ws_compressed_frames",
            "WebSocket frames queued compressed (permessage-deflate), counted per recipient",
            self.compressed_frames.clone(),
        );
        r.register(
            "ws_compressions",
            "Messages run through the compressor: once per event and window size, shared by every recipient",
            self.compressions.clone(),
        );
        r.register(
            "ws_compression_saved_bytes",
            "Bytes that compressed WebSocket frames saved against their plain size, per recipient",
            self.compression_saved_bytes.clone(),
        );
        r.register(
            "kicks",
            "Connections an operator closed with 4010 (DELETE /api/connections/{id}, /api/users/{user}/connections)",
            self.kicks.clone(),
        );
        r.register(
            "limit_hits",
            "Times an abuse limit was enforced, by reason (see crate::guard::reason and docs/PROTOCOL.md)",
            self.limit_hits.clone(),
        );
        r.register(
            "http_requests",
            "Plain HTTP requests answered (the HTTP API, /healthz, /readyz, /metrics), by route template, \
             method and status",
            self.http_requests.clone(),
        );
        registry
    }

    /// Counts one write of `bytes` to a client's stream socket.
    #[inline]
    pub(crate) fn wrote(&self, bytes: usize) {
        self.bytes_written.inc_by(bytes as u64);
        self.socket_writes.inc();
    }

    pub(crate) fn closed(&self, code: u16) {
        self.connections_closed.get_or_create(&CodeLabel { code }).inc();
    }

    pub(crate) fn dropped(&self, reason: DropReason, frames: usize) {
        self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc_by(frames as u64);
    }

    /// Drops so far for `reason`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).get()
    }

    /// Connections open now on `transport`.
    pub fn open_count(&self, transport: Transport) -> i64 {
        self.connections_open.get_or_create(&TransportLabel { transport: transport.as_str() }).get()
    }

    pub(crate) fn auth_failed(&self, code: switchboard_protocol::ErrorCode) {
        self.auth_failures.get_or_create(&ErrorLabel { code: code.as_str() }).inc();
    }

    pub(crate) fn reloaded(&self, result: &'static str) {
        self.config_reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts one enforcement of an abuse limit (`crate::guard::reason`).
    pub(crate) fn limit_hit(&self, reason: &'static str) {
        self.limit_hits.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts `count` enforcements of one abuse limit at once.
    pub(crate) fn limit_hits_by(&self, reason: &'static str, count: u64) {
        self.limit_hits.get_or_create(&ReasonLabel { reason }).inc_by(count);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%error, "metrics encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_and_transport_is_exported_at_zero_and_each_reason_explained() {
        let text = render(&Metrics::default().registry());
        let help = text.lines().find(|line| line.starts_with("# HELP switchboard_messages_dropped ")).unwrap_or("");
        let mut labels: Vec<&str> = DropReason::ALL.iter().map(|reason| reason.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len(), "each reason once");
        for reason in labels {
            assert!(help.contains(&format!("{reason}:")), "the help explains {reason}");
            let sample = format!("switchboard_messages_dropped_total{{reason=\"{reason}\"}} 0");
            assert!(text.lines().any(|line| line == sample), "{sample}");
        }
        for transport in Transport::ALL {
            let sample = format!("switchboard_connections_open{{transport=\"{}\"}} 0", transport.as_str());
            assert!(text.lines().any(|line| line == sample), "{sample}");
        }
    }
}
