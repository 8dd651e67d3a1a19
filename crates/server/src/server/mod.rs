//! `run`: wires config, hub, listeners and shutdown together, and the
//! accept loops with their admission limit.

mod start;

use crate::config::{Config, StorageBackend};
use crate::guard::{self, Listener};
use crate::hub::{Hub, HubLimits};
use crate::limits;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyCell, PolicyError};
use crate::session::Session;
use crate::store::memory::Memory;
use crate::store::sqlite::Sqlite;
use crate::store::{Backend, StoreError};
use crate::tls::Acceptors;
use crate::transport::front::{self, Counted};
use crate::transport::http::HttpState;
use crate::transport::socket::{Accepted, Socket};
use crate::transport::stream::Connection;
use crate::transport::tcp::TcpCodec;
use crate::transport::tls_socket;
use crate::transport::udp::{self, UdpSettings};
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Sockets the caller bound. The server never binds: tests bind port 0 and
/// read the address back; the binary binds what the config says. Raw TCP
/// and UDP are optional.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
}

/// Failures that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listener has no local address: {0}")]
    Listener(io::Error),
    #[error("storage: {0}")]
    Storage(StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cluster: {0}")]
    Cluster(crate::cluster::ClusterError),
}

crate::util::from_cause!(ServerError, ServerError::Storage, StoreError);

/// New configurations to apply while serving (the binary sends one on
/// SIGHUP). What can change without a restart is the [`Policy`] (which
/// holds the abuse limits: rates, per-address limits, trusted proxies,
/// timeouts, HTTP bounds); the rest is kept, with a log line naming it.
pub type Reloads = tokio::sync::mpsc::Receiver<Config>;

/// Opens the configured storage backend, reporting an unusable data
/// directory instead of replacing it.
fn open_backend(config: &Config) -> Result<Box<dyn Backend>, StoreError> {
    Ok(match config.storage.backend {
        StorageBackend::Sqlite => Box::new(Sqlite::open_for_serving(&config.data, config.storage.sync)?),
        StorageBackend::Memory => Box::new(Memory::new()),
    })
}

/// Serves until `shutdown` completes, then stops accepting, closes every
/// client with 1001 and waits up to the drain timeout for them.
pub async fn run(config: Config, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    run_with_reload(config, listeners, shutdown, None).await
}

/// [`run`], applying each configuration `reloads` delivers (see [`Reloads`]).
pub async fn run_with_reload(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reloads: Option<Reloads>,
) -> Result<(), ServerError> {
    // A cluster node keeps history in Redis: no data directory to open.
    let backend: Box<dyn Backend> = match config.cluster.enabled() {
        true => Box::new(Memory::new()),
        false => open_backend(&config)?,
    };
    serve(config, listeners, backend, shutdown, reloads).await
}

/// [`run`] over a storage backend the caller built instead of the one the
/// config names (`config.storage.backend` and `config.data` are then
/// unused). The integration tests use it for a backend that fails or stalls
/// on demand: `storage_failed` and `shutting_down` need storage that fails
/// or is slow to close, which SQLite cannot be made to do reliably from a
/// test (they run as root, so file permissions do not stop it).
pub async fn run_with_backend(
    config: Config,
    listeners: Listeners,
    backend: Box<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    serve(config, listeners, backend, shutdown, None).await
}

async fn serve(
    config: Config,
    listeners: Listeners,
    backend: Box<dyn Backend>,
    shutdown: impl Future<Output = ()>,
    reloads: Option<Reloads>,
) -> Result<(), ServerError> {
    let open_files = limits::raise_open_files_limit();
    let max_connections = limits::max_connections(config.limits.max_connections, open_files);
    let addresses = addresses(&listeners)?;
    let listening = addresses.all();
    let policy = Arc::new(PolicyCell::new(Policy::build(&config, &listening)?));
    tracing::info!(mode = if policy.load().token_mode() { "token" } else { "open" }, "authentication");
    let metrics = Arc::new(Metrics::default());
    metrics.max_connections.set(max_connections as i64);
    let started = start::start_hub(&config, hub_limits(&config), &metrics, policy, backend).await?;
    let (hub, cluster_presence) = (started.hub, started.presence);
    let tls = config.tls.enabled().then(|| Acceptors::new(Arc::clone(hub.policy_cell()))).transpose()?;
    let shown = if tls.is_some() { "on: HTTPS and WSS, TLS on raw TCP; UDP stays plain" } else { "off" };
    tracing::info!(tls = shown, "encryption");
    // Only now, with storage open and TLS loaded: a line saying the server
    // listens is a promise that it serves (scripts and tests wait for it).
    log_listening(&addresses, open_files, max_connections);
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let api = crate::api::router(crate::api::ApiState::new(Arc::clone(&hub), metrics.registry(), &config.api));
    let state = Arc::new(HttpState {
        hub: Arc::clone(&hub),
        api,
        http_open: AtomicUsize::new(0),
        max_connections,
        handshake_timeout: config.websocket.handshake_timeout,
        tls,
        tracker: tracker.clone(),
        stop: stop.clone(),
    });
    tracker.spawn(keepalive(Arc::clone(&hub), config.websocket.clone(), stop.clone()));
    tracker.spawn(crate::trim::run(Arc::clone(&hub), stop.clone()));
    tracker.spawn(crate::transport::sse::heartbeat(Arc::clone(&hub), config.sse.heartbeat, stop.clone()));
    tracker.spawn(Arc::clone(hub.expiries()).run(Arc::downgrade(&hub), stop.clone()));
    if let Some(reloads) = reloads {
        tracker.spawn(apply_reloads(Arc::clone(&hub), config.clone(), listening, reloads, stop.clone()));
    }
    // Not tracked: it must outlive every connection task, which may park on it
    // until the drain ends.
    let clock_stop = CancellationToken::new();
    let clock = Arc::clone(hub.flush_clock());
    let clock_task = tokio::spawn({
        let stopped = clock_stop.clone().cancelled_owned();
        async move { clock.run(stopped).await }
    });
    // UDP sessions are served until the hub shuts down, not just until
    // accepting stops: like a stream connection, a session gets the acks
    // (and `shutting_down` refusals) of the storage drain.
    let udp_stop = CancellationToken::new();
    if let Some(socket) = listeners.udp {
        let settings = UdpSettings {
            session_timeout: config.udp_options.session_timeout,
            datagrams_per_second: config.udp_options.datagrams_per_second,
            max_connections,
        };
        tracker.spawn(udp::serve(socket, Arc::clone(&hub), settings, tracker.clone(), udp_stop.clone()));
    }
    let raw_tcp = async {
        match listeners.tcp {
            Some(listener) => accept_tcp(listener, &state, config.tcp_options.keepalive).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = accept_http(listeners.http, &state) => {}
        () = raw_tcp => {}
        () = shutdown => {}
    }
    if let Some(presence) = &cluster_presence {
        // Users who reconnect to another node meanwhile do not flap.
        let grace = config.cluster.presence_grace;
        if let Err(error) = presence.leave_after(grace).await {
            tracing::warn!(%error, "could not keep presence for the grace period; the reaper removes it");
        }
    }
    drain(&hub, &tracker, &stop, &udp_stop, config.shutdown.drain_timeout).await;
    clock_stop.cancel();
    if clock_task.await.is_err() {
        tracing::error!("the flush clock task panicked");
    }
    Ok(())
}

pub(crate) fn hub_limits(config: &Config) -> HubLimits {
    HubLimits {
        outbound_queue_bytes: config.limits.outbound_queue_bytes,
        presence_events_max_members: config.limits.presence_events_max_members,
        udp_max_event_bytes: config.udp_options.max_event_bytes,
        max_message_size: config.limits.max_message_size,
        close_timeout: config.websocket.close_timeout,
        partial_line_pause: config.tcp_options.partial_line_pause,
        greeting_delay: config.tcp_options.greeting_delay,
        write_window: config.delivery.write_window,
        write_window_max: config.delivery.write_window_max,
        compression: config.websocket.compression,
        compression_threshold: config.websocket.compression_threshold,
        sse: config.sse.clone(),
        idempotency_window: config.api.idempotency_window,
        idempotency_max_keys: config.api.idempotency_max_keys,
    }
}

/// The addresses the server listens on: HTTP, then raw TCP and UDP when on.
#[derive(Debug, Clone)]
struct Listening {
    http: SocketAddr,
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
}

impl Listening {
    fn all(&self) -> Vec<SocketAddr> {
        [Some(self.http), self.tcp, self.udp].into_iter().flatten().collect()
    }
}

fn addresses(listeners: &Listeners) -> Result<Listening, ServerError> {
    let http = listeners.http.local_addr().map_err(ServerError::Listener)?;
    let tcp = listeners.tcp.as_ref().map(TcpListener::local_addr).transpose().map_err(ServerError::Listener)?;
    let udp = listeners.udp.as_ref().map(UdpSocket::local_addr).transpose().map_err(ServerError::Listener)?;
    Ok(Listening { http, tcp, udp })
}

/// The line that says the server serves (see `serve`).
fn log_listening(listening: &Listening, open_files: u64, max_connections: usize) {
    let shown = |address: Option<SocketAddr>| address.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let (address, tcp, udp) = (listening.http, shown(listening.tcp), shown(listening.udp));
    tracing::info!(%address, %tcp, %udp, open_files, max_connections, "switchboard listening (WebSocket at /ws, echo at /ws/echo)");
}

/// Applies each new configuration's policy; a configuration that cannot be
/// served is refused with a log line and the running one stays. Settings
/// that need a restart are named when they differ.
async fn apply_reloads(
    hub: Arc<Hub>,
    mut running: Config,
    listening: Vec<SocketAddr>,
    mut reloads: Reloads,
    stop: CancellationToken,
) {
    loop {
        let config = tokio::select! {
            next = reloads.recv() => match next { Some(config) => config, None => return },
            () = stop.cancelled() => return,
        };
        match Policy::build(&config, &listening) {
            Ok(mut policy) => {
                // TLS stays on until a restart: keep presenting the last key.
                if policy.tls.is_none() {
                    policy.tls = hub.policy().tls.clone();
                }
                hub.policy_cell().replace(policy);
                hub.metrics.reloaded("applied");
                let restart = needs_restart(&running, &config);
                tracing::info!(token_mode = hub.policy().token_mode(), "configuration reloaded");
                if !restart.is_empty() {
                    tracing::warn!(settings = %restart.join(", "), "changed settings that apply only after a restart");
                }
                running = config;
            }
            Err(error) => {
                hub.metrics.reloaded("refused");
                tracing::error!(%error, "configuration reload refused; the running configuration stays");
            }
        }
    }
}

/// The settings that differ between `old` and `new` and that a reload
/// cannot apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (old_limits, new_limits) = (&old.limits, &new.limits);
    let limits = old_limits.max_message_size != new_limits.max_message_size
        || old_limits.outbound_queue_bytes != new_limits.outbound_queue_bytes
        || old_limits.max_connections != new_limits.max_connections
        || old_limits.presence_events_max_members != new_limits.presence_events_max_members;
    // tcp_options.first_line_timeout is part of the reloadable policy.
    let tcp_options = old.tcp_options.partial_line_pause != new.tcp_options.partial_line_pause
        || old.tcp_options.greeting_delay != new.tcp_options.greeting_delay
        || old.tcp_options.keepalive != new.tcp_options.keepalive;
    let differs = [
        ("limits (max_message_size, outbound_queue_bytes, max_connections, presence_events_max_members)", limits),
        ("http", old.http != new.http),
        ("tcp", old.tcp != new.tcp),
        ("udp", old.udp != new.udp),
        ("data", old.data != new.data),
        ("storage", old.storage != new.storage),
        ("websocket", old.websocket != new.websocket),
        ("tcp_options (partial_line_pause, greeting_delay, keepalive)", tcp_options),
        ("udp_options", old.udp_options != new.udp_options),
        ("delivery", old.delivery != new.delivery),
        ("sse", old.sse != new.sse),
        ("shutdown", old.shutdown != new.shutdown),
        ("api (idempotency_window, idempotency_max_keys, ready_timeout)", api_restart(&old.api, &new.api)),
        ("tls (on or off)", old.tls.enabled() != new.tls.enabled()),
    ];
    differs.into_iter().filter(|(_, differs)| *differs).map(|(name, _)| name).collect()
}

/// Whether `[api]` settings that need a restart differ (its rates reload).
fn api_restart(old: &crate::config::Api, new: &crate::config::Api) -> bool {
    old.idempotency_window != new.idempotency_window
        || old.idempotency_max_keys != new.idempotency_max_keys
        || old.ready_timeout != new.ready_timeout
}

/// Stops accepting, closes every client with 1001 after what is queued for
/// it, and waits up to `limit` for every connection task. `stop` ends the
/// background tasks at once, `udp_stop` the UDP transport once the hub has
/// shut down.
async fn drain(
    hub: &Arc<Hub>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
    udp_stop: &CancellationToken,
    limit: Duration,
) {
    tracing::info!(
        open = hub.connection_count(),
        "shutting down: storing what is queued, then closing clients with 1001"
    );
    stop.cancel();
    // Store and acknowledge every accepted message while its sender is
    // still connected; later sends are answered `shutting_down`.
    let closing = Arc::clone(hub);
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(move || closing.close_storage())).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::error!("closing storage panicked"),
        Err(_) => tracing::error!("storage did not finish within the drain timeout; closing clients anyway"),
    }
    hub.begin_shutdown();
    udp_stop.cancel();
    tracker.close();
    if tokio::time::timeout(limit, tracker.wait()).await.is_err() {
        tracing::warn!(still_open = hub.connection_count(), "drain timeout passed; dropping remaining connections");
    }
    tracing::info!("shutdown complete");
}

/// Accepts one connection if the limit allows; `None` when refused or
/// when accepting failed (the caller just continues).
async fn admit(listener: &TcpListener, state: &HttpState, refusal: &[u8]) -> Option<(TcpStream, SocketAddr)> {
    let (stream, peer) = match listener.accept().await {
        Ok(accepted) => accepted,
        Err(error) => {
            on_accept_error(&error).await;
            return None;
        }
    };
    if state.open_connections() >= state.max_connections {
        state.hub.metrics.refused("limit");
        tracing::warn!(%peer, "connection limit reached, refusing connection");
        // Best effort and without waiting: the answer fits any fresh socket buffer.
        let _ = stream.try_write(refusal);
        return None;
    }
    Some((stream, peer))
}

async fn accept_http(listener: TcpListener, state: &Arc<HttpState>) {
    const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n\
        Content-Length: 28\r\n\r\nserver at connection limit.\n";
    loop {
        let Some((stream, peer)) = admit(&listener, state, REFUSAL).await else { continue };
        let Some(counted) = guard::admit_at_accept(&state.hub, &stream, peer, Listener::Http) else { continue };
        state.tracker.spawn(front::serve(stream, peer, counted, Arc::clone(state)));
    }
}

/// Raw TCP: no handshake, so a plain connection is registered (as a guest
/// in JSON-lines mode until its first line says otherwise, or authenticates
/// in token mode) as soon as it is accepted; a TLS one once its TLS
/// handshake is done.
async fn accept_tcp(listener: TcpListener, state: &Arc<HttpState>, keepalive: Duration) {
    const REFUSAL: &[u8] = b"{\"ev\":\"close\",\"code\":1013,\"reason\":\"server at connection limit\"}\n";
    loop {
        let Some((stream, peer)) = admit(&listener, state, REFUSAL).await else { continue };
        // Counted: a registered connection releases it when it ends.
        let Some(counted) = guard::admit_at_accept(&state.hub, &stream, peer, Listener::Tcp) else { continue };
        let socket = socket2::SockRef::from(&stream);
        let probes = socket2::TcpKeepalive::new().with_time(keepalive).with_interval(keepalive / 6);
        if let Err(error) = socket.set_tcp_keepalive(&probes).and_then(|()| stream.set_nodelay(true)) {
            tracing::debug!(%peer, %error, "could not set TCP options");
        }
        match &state.tls {
            None => {
                let fd = stream.as_raw_fd();
                start_tcp(stream, Bytes::new(), peer, fd, state);
            }
            Some(_) => {
                state.tracker.spawn(accept_tls_tcp(stream, peer, counted, Arc::clone(state)));
            }
        }
    }
}

/// A raw TCP connection's TLS handshake, within the handshake timeout.
/// `counted`: its address's count, released if it never registers.
async fn accept_tls_tcp(stream: TcpStream, peer: SocketAddr, counted: bool, state: Arc<HttpState>) {
    const PLAIN: &str = "{\"ev\":\"close\",\"code\":1002,\"reason\":\"this port speaks TLS\"}\n";
    let Some(tls) = &state.tls else { return };
    let fd = stream.as_raw_fd();
    let _counted = Counted::new(&state.http_open);
    let mut slot = guard::Slot::new(state.hub.ips(), peer.ip(), counted);
    let deadline = tokio::time::Instant::now() + state.handshake_timeout;
    let metrics = &state.hub.metrics;
    let Some(stream) = tls_socket::accept(&tls.tcp, stream, peer, deadline, metrics, || PLAIN.to_owned()).await else {
        return;
    };
    match stream.into_socket() {
        Ok((socket, early)) => {
            start_tcp(socket, early, peer, fd, &state);
            slot.keep();
        }
        Err(error) => tracing::debug!(%peer, %error, "TLS failed after the handshake"),
    }
}

/// Registers a raw TCP connection and starts its task; `early` holds bytes
/// already read (decrypted during a TLS handshake); `fd` is the socket's.
fn start_tcp<S: Socket>(stream: S, early: Bytes, peer: SocketAddr, fd: i32, state: &HttpState) {
    let hub = Arc::clone(&state.hub);
    let id = hub.next_conn_id();
    // In token mode the first line must authenticate; until it does the
    // connection has a name no token can have, so nothing addressed to a
    // user ever reaches it.
    let name = if hub.policy().token_mode() { format!("#pending-{id}") } else { format!("guest-{id}") };
    let conn = hub.register_undecided(id, Arc::from(name), peer);
    conn.set_fd(fd);
    tracing::debug!(conn = id, %peer, "raw tcp open");
    let session = Session::silent(hub, conn);
    let codec = TcpCodec::new(&session);
    state.tracker.spawn(Connection::new(stream, session, codec).run(early));
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
