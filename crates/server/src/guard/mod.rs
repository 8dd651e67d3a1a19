//! Abuse limits: what keeps one bad client from hurting good ones. This
//! module owns the rules and the bookkeeping; the transports call it at
//! small hooks (accept, upgrade, each command, each datagram).
//!
//! - [`rate`]: per-connection command and byte rates (token buckets kept in
//!   the session, 16 bytes), refusals and the close for sustained abuse;
//! - [`ip`]: per-address connection counts and handshake rates;
//! - [`proxy`]: the client's address behind a trusted proxy;
//! - `admission`: the hooks at accept and at the WebSocket upgrade, with
//!   the refusals they answer.
//!
//! Every limit's values are part of the reloadable [`crate::policy::Policy`]
//! ([`Rules`]); every time one is enforced it is counted in
//! `switchboard_limit_hits_total{reason}` with one of the [`reason`]s.

mod admission;
pub mod ip;
pub mod proxy;
pub mod rate;

pub use admission::{admit_at_accept, admit_forwarded, Listener, Slot};

use crate::config::Config;
use crate::hub::Hub;
use ip::IpRefusal;
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// The label values of `switchboard_limit_hits_total`, one per limit.
pub mod reason {
    /// A command refused: the connection's commands per second.
    pub const RATE_MESSAGES: &str = "rate_messages";
    /// A command refused: the connection's command bytes per second.
    pub const RATE_BYTES: &str = "rate_bytes";
    /// A connection closed with 1008 after `refusals_before_close` refusals.
    pub const RATE_CLOSE: &str = "rate_close";
    /// A connection refused: its address holds `connections_per_ip`.
    pub const IP_CONNECTIONS: &str = "ip_connections";
    /// A connection refused: its address's handshakes per second.
    pub const IP_HANDSHAKES: &str = "ip_handshakes";
    /// A raw TCP connection closed (1008): no first line in time.
    pub const TCP_FIRST_LINE: &str = "tcp_first_line_timeout";
    /// A WebSocket closed (1008): a message not finished in time.
    pub const WS_MESSAGE_TIMEOUT: &str = "ws_message_timeout";
    /// A WebSocket closed (1008): pings while its queue is full.
    pub const PING_FLOOD: &str = "ping_flood";
    /// A plain HTTP request refused with 431.
    pub const HTTP_HEAD: &str = "http_head_too_large";
    /// A plain HTTP request refused with 413.
    pub const HTTP_BODY: &str = "http_body_too_large";
    /// A UDP `hello` refused: the server is at `max_connections`.
    pub const UDP_CONNECTION_LIMIT: &str = "udp_connection_limit";
    /// An error not sent to a UDP address that had one in the last second.
    pub const UDP_ERROR_SUPPRESSED: &str = "udp_error_suppressed";
    /// A stored DM removed: its sender has `inbox_max_per_sender` newer ones there.
    pub const INBOX_PER_SENDER: &str = "inbox_per_sender";
    /// An HTTP API request refused with 429: its key's (or address's) rate.
    pub const API_RATE: &str = "api_rate";
    /// An idempotency key forgotten before its window: `api.idempotency_max_keys` were held.
    pub const API_IDEMPOTENCY_EVICTED: &str = "api_idempotency_evicted";
    /// A `send` or `dm` idempotency key forgotten before its window:
    /// `api.idempotency_max_keys` were held for WebSocket, TCP and UDP clients.
    pub const IDEMPOTENCY_EVICTED: &str = "idempotency_evicted";
    /// An event stream refused (400): more rooms than `sse.max_rooms`.
    pub const SSE_ROOMS: &str = "sse_max_rooms";
    /// An event stream closed (1008): its client sent data.
    pub const SSE_INPUT: &str = "sse_input";
}

/// The abuse limits in force; part of the policy a reload swaps.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rates: rate::Rates,
    pub ip: ip::IpRules,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Time a WebSocket message has from its first byte to its last.
    pub message_timeout: Duration,
    /// Time a raw TCP connection has to send its first line.
    pub first_line_timeout: Duration,
    /// Largest plain HTTP request head and body.
    pub http_max_head: usize,
    pub http_max_body: usize,
    /// HTTP API requests per API key (or client address): a bucket of
    /// requests, no byte bucket, never a close.
    pub api_rates: rate::Rates,
}

impl Rules {
    /// The rules `config` asks for (already validated by `Config::load`).
    pub fn from_config(config: &Config) -> Rules {
        let limits = &config.limits;
        Rules {
            rates: rate::Rates {
                messages_per_second: limits.messages_per_second,
                messages_burst: limits.messages_burst,
                bytes_per_second: limits.bytes_per_second,
                bytes_burst: limits.bytes_burst,
                refusals_before_close: limits.refusals_before_close,
            },
            ip: ip::IpRules {
                connections: limits.connections_per_ip,
                handshakes_per_second: limits.handshakes_per_second_per_ip,
                handshakes_burst: limits.handshakes_burst_per_ip,
                exempt: limits.exempt_networks.clone(),
            },
            trusted_proxies: config.trusted_proxies.clone(),
            message_timeout: limits.message_timeout,
            first_line_timeout: config.tcp_options.first_line_timeout,
            http_max_head: limits.http_max_head,
            http_max_body: limits.http_max_body,
            api_rates: rate::Rates {
                messages_per_second: config.api.requests_per_second,
                messages_burst: config.api.requests_burst,
                ..rate::Rates::UNLIMITED
            },
        }
    }
}

/// Admits a new connection or UDP session from `ip` under the policy's
/// per-address limits. `Ok(true)`: counted, released when the connection
/// is unregistered (or by the caller if it never is); `Ok(false)`: exempt.
/// A refusal is counted and logged here; answering it is the caller's.
pub fn admit_address(hub: &Hub, ip: IpAddr) -> Result<bool, IpRefusal> {
    let result = hub.ips().admit(ip, &hub.policy().guard.ip, hub.now_ms());
    if let Err(refusal) = result {
        let why = match refusal {
            IpRefusal::Connections => reason::IP_CONNECTIONS,
            IpRefusal::Handshakes => reason::IP_HANDSHAKES,
        };
        hub.metrics.limit_hit(why);
        hub.metrics.refused(why);
        tracing::info!(%ip, %refusal, "per-address limit: connection refused");
    }
    result
}
