//! `run`: wires config, hub, listeners and shutdown together, and the
//! accept loop with its admission limit.

use crate::config::Config;
use crate::hub::{Hub, HubLimits};
use crate::limits;
use crate::metrics::Metrics;
use crate::transport::front;
use crate::transport::http::HttpState;
use crate::transport::websocket::WsSettings;
use std::future::Future;
use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Sockets the caller bound. The server never binds: tests bind port 0 and
/// read the address back; the binary binds what the config says.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
}

/// Failures that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listener has no local address: {0}")]
    Listener(#[source] io::Error),
}

/// Serves until `shutdown` completes, then stops accepting, closes every
/// client with 1001 and waits up to the drain timeout for them.
pub async fn run(config: Config, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let open_files = limits::raise_open_files_limit();
    let max_connections = limits::max_connections(config.limits.max_connections, open_files);
    let address = listeners.http.local_addr().map_err(ServerError::Listener)?;
    tracing::info!(%address, open_files, max_connections, "switchboard listening (WebSocket at /ws, echo at /ws/echo)");

    let metrics = Arc::new(Metrics::default());
    metrics.max_connections.set(max_connections as i64);
    let hub = Arc::new(Hub::new(
        HubLimits {
            outbound_queue_bytes: config.limits.outbound_queue_bytes,
            presence_events_max_members: config.limits.presence_events_max_members,
        },
        WsSettings { max_message_size: config.limits.max_message_size, close_timeout: config.websocket.close_timeout },
        Arc::clone(&metrics),
    ));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let state = Arc::new(HttpState {
        hub: Arc::clone(&hub),
        registry: metrics.registry(),
        http_open: AtomicUsize::new(0),
        max_connections,
        handshake_timeout: config.websocket.handshake_timeout,
        tracker: tracker.clone(),
        stop: stop.clone(),
    });
    tracker.spawn(keepalive(Arc::clone(&hub), config.websocket.clone(), stop.clone()));
    tokio::select! {
        () = accept_loop(listeners.http, state) => {}
        () = shutdown => {}
    }

    let open = hub.connection_count();
    tracing::info!(open, "shutting down: closing clients with 1001");
    stop.cancel();
    hub.begin_shutdown();
    tracker.close();
    if tokio::time::timeout(config.shutdown.drain_timeout, tracker.wait()).await.is_err() {
        tracing::warn!(still_open = hub.connection_count(), "drain timeout passed; dropping remaining connections");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

async fn accept_loop(listener: TcpListener, state: Arc<HttpState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                on_accept_error(&error).await;
                continue;
            }
        };
        if state.open_connections() >= state.max_connections {
            state.hub.metrics.refused("limit");
            tracing::warn!(%peer, "connection limit reached, refusing connection");
            refuse_at_limit(&stream);
            continue;
        }
        state.tracker.spawn(front::serve(stream, peer, Arc::clone(&state)));
    }
}

/// Answers 503 without waiting on the client, then drops the socket.
fn refuse_at_limit(stream: &tokio::net::TcpStream) {
    const BODY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n\r\nserver at connection limit.\n";
    let _ = stream.try_write(BODY);
}

/// Transient accept failures (a peer that reset before we accepted) are
/// skipped; running out of file descriptors backs off instead of spinning.
async fn on_accept_error(error: &io::Error) {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::error!(%error, "accept failed: out of resources, backing off 100ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        _ => tracing::debug!(%error, "accept failed"),
    }
}

/// The hub-wide keepalive: one timer for all connections instead of one each.
async fn keepalive(hub: Arc<Hub>, settings: crate::config::WebSocket, stop: CancellationToken) {
    let tick = (settings.ping_interval.min(settings.idle_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => hub.sweep_idle(settings.ping_interval, settings.idle_timeout),
            () = stop.cancelled() => return,
        }
    }
}
