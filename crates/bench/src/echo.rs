//! `switchboard bench echo`: C connections, each sending a message and
//! waiting for it to come back before sending the next, for a duration.
//! Reports round trips per second and round-trip latency.
//!
//! What comes back depends on the target: Switchboard's bare echo endpoint
//! (`--raw`, `/ws/echo`) returns each frame as is; otherwise each
//! connection is alone in its own room (`ROOM-i`) and its message comes
//! back as a delivery, the whole protocol path. On NATS each connection
//! subscribes to its own subject. The other peers broadcast to everyone in
//! their one room, so against them only one connection is a round trip.

use super::common::{now_micros, payload, source_ip, stamp, ERROR_EVENT};
use super::latency::histogram;
use super::measure::{Latency, Usage};
use super::target::Target;
use super::wsclient::{self, close_reason, Kind, WsConn};
use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    /// Server address (host:port of its WebSocket listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// Which server that is.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    pub target: Target,
    /// Switchboard only: use the bare echo endpoint `/ws/echo` (frames
    /// echoed as they are) instead of a room of one.
    #[arg(long)]
    pub raw: bool,
    /// Connections, each with one message in flight.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Room (subject) prefix; connection i uses `PREFIX-i`.
    #[arg(long, default_value = "echo")]
    pub room: String,
    /// Seconds to run for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
    /// Server process id, to measure its CPU time over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one connection did.
struct Trips {
    count: u64,
    histogram: hdrhistogram::Histogram<u64>,
}

pub async fn run(args: &EchoArgs) -> anyhow::Result<()> {
    let broadcasts = !matches!(args.target, Target::Switchboard | Target::Nats);
    if broadcasts && args.connections > 1 {
        bail!("{} broadcasts every message to every client: echo needs --connections 1", args.target.name());
    }
    if args.raw && args.target != Target::Switchboard {
        bail!("--raw is Switchboard's /ws/echo endpoint");
    }
    // Connections come back in any order: each keeps its own index (room).
    let conns: Vec<(usize, WsConn)> = futures_util::stream::iter(0..args.connections)
        .map(|index| connect(args, index))
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let before = Usage::read(args.pid, None)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    let started = Instant::now();
    let tasks: Vec<_> =
        conns.into_iter().map(|(index, conn)| tokio::spawn(round_trips(args.clone(), conn, index, deadline))).collect();
    let mut total = Trips { count: 0, histogram: histogram()? };
    for task in tasks {
        let trips = task.await.context("an echo task failed")??;
        total.count += trips.count;
        total.histogram.add(&trips.histogram)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = Usage::read(args.pid, None)?.since(before).process;
    print(args, &total, seconds, cpu)
}

async fn connect(args: &EchoArgs, index: usize) -> anyhow::Result<(usize, WsConn)> {
    let name = format!("echo{index}");
    let path = if args.raw { "/ws/echo".to_owned() } else { args.target.path(&name) };
    let source = source_ip(args.server, index, args.sources);
    let mut conn = wsclient::open(args.server, source, &path, 4096, &args.tls)
        .await
        .with_context(|| format!("{name}: connecting"))?;
    if !args.raw {
        let room = format!("{}-{index}", args.room);
        args.target.join(&mut conn, &name, &room).await.with_context(|| format!("{name}: joining"))?;
    }
    Ok((index, conn))
}

/// Sends, waits for the message to come back, and again, until `deadline`.
async fn round_trips(args: EchoArgs, mut conn: WsConn, index: usize, deadline: Instant) -> anyhow::Result<Trips> {
    let mut trips = Trips { count: 0, histogram: histogram()? };
    let room = format!("{}-{index}", args.room);
    let (mut body, mut message) = (Vec::new(), Vec::new());
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        body.clear();
        message.clear();
        let sent = now_micros();
        payload(&mut body, n, sent, args.size);
        if args.raw {
            message.extend_from_slice(&body);
        } else {
            args.target.publish(&mut message, &room, &body, true);
        }
        conn.send_text(&message).await?;
        wait_for(&mut conn, args.target, n).await.with_context(|| format!("echo{index}: message {n}"))?;
        trips.histogram.saturating_record(now_micros().saturating_sub(sent).max(1));
        trips.count += 1;
    }
    Ok(trips)
}

/// Reads until message `n` comes back, answering keepalives on the way.
async fn wait_for(conn: &mut WsConn, target: Target, n: u64) -> anyhow::Result<()> {
    let mut answers: Vec<&'static [u8]> = Vec::new();
    let mut refused = None;
    let mut back = false;
    while !back {
        if conn.fill().await? == 0 {
            bail!("the server closed the connection");
        }
        conn.drain(|kind, data| match kind {
            Kind::Close => refused = Some(format!("closed by the server: {}", close_reason(data))),
            Kind::Text | Kind::Binary => {
                answers.extend(target.keepalive(data));
                back |= stamp(data).is_some_and(|(got, _)| got == n);
                let error = target == Target::Switchboard && ERROR_EVENT.find(data).is_some();
                if error || target.closing(data).is_some() {
                    refused = Some(format!("the server said {}", String::from_utf8_lossy(data)));
                }
            }
        })?;
        if let Some(reason) = refused {
            bail!("{reason}");
        }
        conn.flush().await?;
        if !answers.is_empty() {
            conn.send_texts(answers.drain(..)).await?;
        }
    }
    Ok(())
}

fn print(args: &EchoArgs, total: &Trips, seconds: f64, cpu: Option<f64>) -> anyhow::Result<()> {
    let rate = total.count as f64 / seconds;
    let latency = Latency::from_micros(&total.histogram);
    let per_cpu = cpu.map(|cpu| total.count as f64 / cpu);
    let path = if args.raw { "/ws/echo" } else { "room of one" };
    if args.json {
        let report = serde_json::json!({
            "scenario": "echo",
            "target": args.target.name(),
            "path": path,
            "connections": args.connections,
            "size": args.size,
            "seconds": seconds,
            "round_trips": total.count,
            "round_trips_per_second": rate,
            "latency_ms": latency,
            "server_cpu_seconds": cpu,
            "round_trips_per_cpu_second": per_cpu,
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "echo ({}, {path}) against {}: {} connections, {} B",
        args.target.name(),
        args.server,
        args.connections,
        args.size
    );
    println!("{} round trips in {seconds:.2}s: {rate:.0}/s", total.count);
    if let Some(l) = latency {
        println!("round trip ms: {l}");
    }
    if let (Some(cpu), Some(per_cpu)) = (cpu, per_cpu) {
        println!("server CPU {cpu:.2}s, {per_cpu:.0} round trips per CPU-second");
    }
    Ok(())
}
