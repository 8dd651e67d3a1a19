//! `switchboard bench udp-relay`: N UDP receivers joined to one room and
//! one UDP sender publishing to it at a fixed rate. Every datagram the
//! server relays is counted once; nothing lost is asked for again. The
//! kernel's per-socket drop counters (/proc/net/udp) tell whether lost
//! datagrams died in a receive buffer, the bench's or the server's.

use super::common::{now_micros, payload, source_ip, Pacer, Tally, CLOSE_EVENT, ERROR_EVENT};
use super::fanout::on_event;
use super::lines::HANDSHAKE_TIMEOUT;
use super::measure::{measure, Errors, Feed, KernelDrops, LoadArgs, Members, Published, Report};
use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use memchr::memmem;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

const ROOM: &str = "relay";
/// Receivers say something this often, well inside the 30 s session timeout.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Setup requests (hello, join) are sent at most this many times.
const ATTEMPTS: u32 = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// The server's UDP address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub server: SocketAddr,
    /// Receiving sockets, all joined to one room.
    #[arg(long, default_value_t = 100)]
    pub receivers: usize,
    /// Datagrams sent per second by the one sender.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Receive buffer asked for each socket (the kernel caps it at rmem_max).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub recv_buffer: usize,
    /// Send `"volatile": true` (delivered live, not stored), as game state
    /// would; without it every datagram is stored before it is relayed.
    #[arg(long)]
    pub volatile: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A UDP socket connected to the server, with its session in the room.
#[derive(Debug)]
struct Peer {
    socket: UdpSocket,
    session: String,
}

/// Joins every receiver and the sender, sends, and reports.
pub async fn run(args: &RelayArgs) -> anyhow::Result<Report> {
    let spec = args.load.spec("udp-relay", "switchboard", args.server, args.rate);
    let receivers: Vec<Peer> = futures_util::stream::iter(0..args.receivers)
        .map(|index| join(args, source_ip(args.server, index, args.load.sources), format!("r{index}")))
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let addresses = receivers.iter().map(|peer| peer.socket.local_addr()).collect::<Result<Vec<_>, _>>()?;
    let sender = join(args, None, "sender".to_owned()).await?;
    let before = udp_drops();
    let mut members = Members::new()?;
    for peer in receivers {
        members.spawn(move |feed| receive(peer, feed));
    }
    let mut report = measure(&spec, members, send(args, sender)).await?;
    if let (Some(before), Some(after)) = (before, udp_drops()) {
        let grew = |address: &SocketAddr| {
            after.get(address).copied().unwrap_or(0).saturating_sub(before.get(address).copied().unwrap_or(0))
        };
        let members = addresses.iter().map(grew).sum();
        report.kernel_drops = Some(KernelDrops { members, server: grew(&args.server) });
    }
    Ok(report)
}

/// A non-blocking UDP socket bound to `bind` with a larger receive buffer.
fn udp_socket(bind: SocketAddr, recv_buffer: usize) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_recv_buffer_size(recv_buffer)?;
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into()).with_context(|| format!("binding {bind}"))?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// A socket from `source` that says hello as `name` and joins the room.
async fn join(args: &RelayArgs, source: Option<IpAddr>, name: String) -> anyhow::Result<Peer> {
    let any = if args.server.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    let socket = udp_socket(SocketAddr::new(source.unwrap_or(any), 0), args.recv_buffer)?;
    socket.connect(args.server).await.with_context(|| format!("connecting to {}", args.server))?;
    let hello = request(&socket, &format!("{{\"op\":\"hello\",\"name\":\"{name}\"}}"), b"\"ev\":\"hello\"").await?;
    let hello: serde_json::Value = serde_json::from_slice(&hello).context("hello reply is not JSON")?;
    let session = hello["session"].as_str().context("the hello reply has no session")?.to_owned();
    let join = format!("{{\"op\":\"join\",\"room\":\"{ROOM}\",\"id\":1,\"session\":\"{session}\"}}");
    let reply = request(&socket, &join, b"\"re\":1").await.with_context(|| format!("{name} joining"))?;
    if memmem::find(&reply, b"\"ok\":true").is_none() {
        bail!("join refused: {}", String::from_utf8_lossy(&reply));
    }
    Ok(Peer { socket, session })
}

/// Sends `datagram` until a reply containing `marker` comes back (setup
/// only: measured traffic is never sent twice).
async fn request(socket: &UdpSocket, datagram: &str, marker: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 65_536];
    let wait = HANDSHAKE_TIMEOUT / ATTEMPTS;
    for _ in 0..ATTEMPTS {
        socket.send(datagram.as_bytes()).await?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            let reply = &buffer[..received?];
            if memmem::find(reply, marker).is_some() {
                return Ok(reply.to_vec());
            }
            if memmem::find(reply, b"\"ev\":\"error\"").is_some() {
                bail!("the server said {}", String::from_utf8_lossy(reply));
            }
        }
    }
    bail!("no answer to {datagram} after {ATTEMPTS} tries")
}

/// Reads datagrams until told to stop, counting every message.
async fn receive(peer: Peer, feed: Feed) -> Tally {
    let Feed { received, mut stop, mut tally } = feed;
    let ping = format!("{{\"op\":\"ping\",\"session\":\"{}\"}}", peer.session);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut buffer = vec![0u8; 65_536];
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = keepalive.tick() => {
                // Best effort: a lost ping only matters 30 s later.
                let _ = peer.socket.try_send(ping.as_bytes());
            }
            ready = peer.socket.readable() => {
                let drained = ready.and_then(|()| drain_socket(&peer.socket, &mut buffer, &mut tally));
                received.fetch_add(drained.as_ref().copied().unwrap_or(0), Ordering::Relaxed);
                if let Err(error) = drained {
                    tally.close(error.to_string());
                    break;
                }
            }
        }
    }
    // UDP has no goodbye: a session outlives its socket by the 30 s session
    // timeout and stays in the room, where the next run on the same server
    // would pay for relaying to it. Leaving ends that (best effort).
    let _ = peer.socket.try_send(leave(&peer.session).as_bytes());
    tally
}

fn leave(session: &str) -> String {
    format!("{{\"op\":\"leave\",\"room\":\"{ROOM}\",\"session\":\"{session}\"}}")
}

/// Reads every datagram waiting on `socket`; returns how many messages
/// were counted (an error loses the count of the datagrams before it).
fn drain_socket(socket: &UdpSocket, buffer: &mut [u8], tally: &mut Tally) -> std::io::Result<u64> {
    let before = tally.received;
    loop {
        match socket.try_recv(buffer) {
            Ok(count) => on_event(&buffer[..count], now_micros(), tally),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tally.flush();
                return Ok(tally.received - before);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The sender: one datagram per message, on schedule.
async fn send(args: &RelayArgs, sender: Peer) -> anyhow::Result<Published> {
    let socket = Arc::new(sender.socket);
    let errors = Arc::new(Errors::default());
    let reader = tokio::spawn(count_errors(Arc::clone(&socket), Arc::clone(&errors)));
    let volatile = if args.volatile { ",\"volatile\":true" } else { "" };
    let prefix =
        format!("{{\"op\":\"send\",\"room\":\"{ROOM}\",\"session\":\"{}\"{volatile},\"body\":", sender.session);
    let mut pacer = Pacer::new(args.rate, Duration::from_secs_f64(args.load.duration.max(0.0)));
    let mut datagram = Vec::with_capacity(prefix.len() + args.load.size + 1);
    while let Some(count) = pacer.next_batch().await {
        let t = now_micros();
        for n in pacer.sent() - count + 1..=pacer.sent() {
            datagram.clear();
            datagram.extend_from_slice(prefix.as_bytes());
            payload(&mut datagram, n, t, args.load.size);
            datagram.push(b'}');
            socket.send(&datagram).await.context("sending")?;
        }
    }
    // Best effort, as for the receivers: see `receive`.
    let _ = socket.try_send(leave(&sender.session).as_bytes());
    Ok(Published { sent: pacer.sent(), seconds: pacer.elapsed().as_secs_f64(), errors, reader: Some(reader) })
}

/// Drains the sender's socket (it is a member too and gets every message),
/// noting error or close events.
async fn count_errors(socket: Arc<UdpSocket>, errors: Arc<Errors>) {
    let mut buffer = vec![0u8; 65_536];
    while let Ok(count) = socket.recv(&mut buffer).await {
        let datagram = &buffer[..count];
        if ERROR_EVENT.find(datagram).is_some() || CLOSE_EVENT.find(datagram).is_some() {
            errors.note(datagram);
        }
    }
}

/// Datagrams dropped for a full receive buffer, per local IPv4 address
/// (from /proc/net/udp; `None` where it cannot be read).
fn udp_drops() -> Option<HashMap<SocketAddr, u64>> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let mut drops = HashMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(count)) = (fields.get(1), fields.last()) else { continue };
        let Some((ip, port)) = local.split_once(':') else { continue };
        let (Ok(ip), Ok(port), Ok(count)) =
            (u32::from_str_radix(ip, 16), u16::from_str_radix(port, 16), count.parse::<u64>())
        else {
            continue;
        };
        // The kernel prints the address's network-order bytes as a native integer.
        let address = SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port));
        *drops.entry(address).or_default() += count;
    }
    Some(drops)
}
