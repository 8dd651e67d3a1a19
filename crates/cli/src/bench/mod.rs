//! `switchboard bench`: load scenarios. `idle` measures what an idle,
//! joined WebSocket costs the server; `tcp-fanout` and `udp-relay` measure
//! delivery rate, loss and latency on the raw transports (and `tcp-fanout`
//! the same load against redis pub/sub); `stored` and `replay` measure
//! storage: acked sends and replay after `join` with `since`.

mod common;
mod fanout;
mod latency;
mod lines;
mod measure;
mod replay;
mod stored;
mod target;
#[cfg(test)]
mod tests;
mod udp;
mod wsclient;
mod wsfanout;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Subcommand)]
pub enum Scenario {
    /// Open N connections, join each to a room, hold them, and report the
    /// connect rate and (given --pid) the server's resident memory per connection.
    Idle(IdleArgs),
    /// S subscribers in one room over WebSocket, P publishers at a total
    /// rate: deliveries/s, loss, latency and (given --pid) server CPU, against
    /// Switchboard or a peer server (--target).
    Fanout(wsfanout::WsFanoutArgs),
    /// N subscribers on raw TCP, one publisher at a fixed rate: deliveries/s,
    /// loss, publish-to-receive latency and (given --pid) server CPU.
    TcpFanout(fanout::FanoutArgs),
    /// N UDP receivers in one room, one UDP sender at a fixed rate:
    /// relayed datagrams/s, loss, latency and (given --pid) server CPU.
    UdpRelay(udp::RelayArgs),
    /// P publishers on raw TCP, each in its own room (so fan-out does not
    /// dominate), one send outstanding each: acked (stored) messages/s,
    /// send-to-ack latency, errors and (given --pid) server CPU.
    Stored(stored::StoredArgs),
    /// Fill a fresh room with N stored messages, then time a `join` with
    /// `since: 0` until `replayed`, checking messages 1..=N arrive in order.
    Replay(replay::ReplayArgs),
}

#[derive(clap::Args)]
pub struct IdleArgs {
    /// Server address (host:port of the WebSocket listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// WebSocket path.
    #[arg(long, default_value = "/ws")]
    path: String,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    connections: usize,
    /// Room name prefix; connection i joins room `PREFIX-(i mod ROOMS)`.
    #[arg(long, default_value = "idle")]
    room: String,
    /// Rooms to spread the connections over.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread connections over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Server process id, to read its resident memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(scenario: Scenario) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match scenario {
        Scenario::Idle(args) => runtime.block_on(idle(args)),
        Scenario::Fanout(args) => runtime.block_on(wsfanout::run(&args))?.print(args.json),
        Scenario::TcpFanout(args) => runtime.block_on(fanout::run(&args))?.print(args.json),
        Scenario::UdpRelay(args) => runtime.block_on(udp::run(&args))?.print(args.json),
        Scenario::Stored(args) => runtime.block_on(stored::run_stored(&args))?.print(args.json),
        Scenario::Replay(args) => runtime.block_on(replay::run_replay(&args))?.print(args.json),
    }
}

/// A progress bar on standard error for `len` items called `what`; hidden
/// when the report is JSON or standard error is not a terminal.
fn progress(len: u64, what: &str, json: bool) -> anyhow::Result<indicatif::ProgressBar> {
    if json {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}}"))?);
    Ok(bar)
}

/// A process's resident memory in bytes, from /proc/PID/status.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Resident {
    /// Everything resident, including the executable's code pages.
    total: u64,
    /// Anonymous memory only: heap and stacks, what connections cost.
    anon: u64,
}

fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name} line"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("malformed /proc status line")?.parse()?;
        Ok(kib * 1024)
    };
    Ok(Resident { total: field("VmRSS:")?, anon: field("RssAnon:")? })
}

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open_one(args: &IdleArgs, index: usize) -> anyhow::Result<Client> {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (index % usize::from(args.sources.max(1))) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(args.server).await?;
    let url = format!("ws://{}{}?name=idle{index}", args.server, args.path);
    let (mut client, _) = tokio_tungstenite::client_async(url, stream).await?;
    let room = format!("{}-{}", args.room, index % args.rooms.max(1));
    let join = serde_json::json!({"op": "join", "room": room, "id": 1}).to_string();
    client.send(Message::text(join)).await?;
    loop {
        match client.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"re\":1") => {
                if !text.contains("\"ok\":true") {
                    bail!("join refused: {text}");
                }
                return Ok(client);
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before the join reply"),
        }
    }
}

async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let before = args.pid.map(resident).transpose()?;
    let progress = indicatif::ProgressBar::new(args.connections as u64);
    progress.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} connections {per_sec}")?);
    let started = Instant::now();
    let clients: Vec<Client> = futures_util::stream::iter(0..args.connections)
        .map(|index| {
            let progress = progress.clone();
            let args = &args;
            async move {
                let client = open_one(args, index).await;
                progress.inc(1);
                client
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let opened = clients.len();
    // Idle clients still read, as real ones do: presence events and pings
    // must not pile up in the server's queues and be counted as idle cost.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} }))
        .collect();
    // Let the server's allocator settle after the burst before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = args.pid.map(resident).transpose()?;
    let rate = opened as f64 / elapsed.as_secs_f64();
    let per_conn = |pick: fn(&Resident) -> u64| {
        before.zip(after).map(|(b, a)| pick(&a).saturating_sub(pick(&b)) as f64 / opened as f64)
    };
    let (anon_per_conn, total_per_conn) = (per_conn(|r| r.anon), per_conn(|r| r.total));
    let report = serde_json::json!({
        "scenario": "idle",
        "connections": opened,
        "rooms": args.rooms,
        "connect_seconds": elapsed.as_secs_f64(),
        "connects_per_second": rate,
        "server_resident_before": before,
        "server_resident_after": after,
        "server_anon_bytes_per_connection": anon_per_conn,
        "server_rss_bytes_per_connection": total_per_conn,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("opened {opened} connections in {:.2}s ({rate:.0}/s)", elapsed.as_secs_f64());
        if let (Some(b), Some(a), Some(anon), Some(total)) = (before, after, anon_per_conn, total_per_conn) {
            let mib = |bytes: u64| bytes as f64 / 1048576.0;
            println!(
                "server anonymous memory {:.1} -> {:.1} MiB: {anon:.0} bytes per connection (all resident: {total:.0})",
                mib(b.anon),
                mib(a.anon)
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    for reader in readers {
        reader.abort();
    }
    Ok(())
}
