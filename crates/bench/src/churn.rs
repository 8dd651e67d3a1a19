//! `switchboard bench churn`: K loops, each opening a connection, joining
//! a room, closing with a close handshake and starting again, for a
//! duration. Reports connections opened and closed per second, the time
//! from connect to joined, and failures (which are counted, not fatal).

use super::common::source_ip;
use super::latency::histogram;
use super::measure::{Latency, Usage};
use super::target::Target;
use super::wsclient::{self, Kind, WsConn};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest wait for the server to answer our close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Server address (host:port of its WebSocket listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// Which server that is: how to join.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    pub target: Target,
    /// Loops running at once, each with one connection at a time.
    #[arg(long, short = 'k', default_value_t = 64)]
    pub concurrency: usize,
    /// Room name prefix; loop i joins room `PREFIX-(i mod ROOMS)`.
    #[arg(long, default_value = "churn")]
    pub room: String,
    /// Rooms to spread the loops over.
    #[arg(long, default_value_t = 16)]
    pub rooms: usize,
    /// Seconds to run for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread connections
    /// over (closed connections leave ports in TIME_WAIT).
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

/// What the loops did.
#[derive(Debug)]
pub struct Cycles {
    pub done: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// Connect to joined, in microseconds.
    pub joined: hdrhistogram::Histogram<u64>,
    pub seconds: f64,
}

pub async fn run(args: &ChurnArgs) -> anyhow::Result<()> {
    let before = Usage::read(args.pid, None)?;
    let total = cycles(args).await?;
    let cpu = Usage::read(args.pid, None)?.since(before).process;
    print(args, &total, cpu)
}

/// Runs the loops for the duration and adds up what they did.
pub async fn cycles(args: &ChurnArgs) -> anyhow::Result<Cycles> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration.max(0.0));
    let tasks: Vec<_> =
        (0..args.concurrency.max(1)).map(|index| tokio::spawn(cycle(args.clone(), index, deadline))).collect();
    let mut total = Cycles { done: 0, failed: 0, first_failure: None, joined: histogram()?, seconds: 0.0 };
    for task in tasks {
        let cycles = task.await.context("a churn task failed")??;
        total.done += cycles.done;
        total.failed += cycles.failed;
        total.first_failure = total.first_failure.or(cycles.first_failure);
        total.joined.add(&cycles.joined)?;
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// One loop: connect, join, close, again, until `deadline`.
async fn cycle(args: ChurnArgs, index: usize, deadline: Instant) -> anyhow::Result<Cycles> {
    let mut cycles = Cycles { done: 0, failed: 0, first_failure: None, joined: histogram()?, seconds: 0.0 };
    let room = format!("{}-{}", args.room, index % args.rooms.max(1));
    let mut round = 0usize;
    while Instant::now() < deadline {
        // One name per loop: each connection is closed before the next, and
        // in token mode the loop's token is minted once.
        let name = format!("churn{index}");
        let source = source_ip(args.server, index + round * args.concurrency, args.sources);
        round += 1;
        let started = Instant::now();
        let outcome = async {
            let mut conn = wsclient::open(args.server, source, &args.target.path(&name), 1024, &args.tls).await?;
            args.target.join(&mut conn, &name, &room).await?;
            let joined = started.elapsed();
            close(&mut conn).await?;
            anyhow::Ok(joined)
        }
        .await;
        match outcome {
            Ok(joined) => {
                cycles.done += 1;
                cycles.joined.saturating_record((joined.as_micros() as u64).max(1));
            }
            Err(error) => {
                cycles.failed += 1;
                cycles.first_failure.get_or_insert_with(|| format!("{name}: {error:#}"));
            }
        }
    }
    Ok(cycles)
}

/// Sends a close and waits for the server's close frame or end of stream.
async fn close(conn: &mut WsConn) -> anyhow::Result<()> {
    conn.send_close().await?;
    let wait = async {
        loop {
            if conn.fill().await? == 0 {
                return anyhow::Ok(());
            }
            let mut closed = false;
            conn.drain(|kind, _| closed |= kind == Kind::Close)?;
            if closed {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(CLOSE_WAIT, wait).await.context("no close from the server")?
}

fn print(args: &ChurnArgs, total: &Cycles, cpu: Option<f64>) -> anyhow::Result<()> {
    let seconds = total.seconds;
    let rate = total.done as f64 / seconds;
    let latency = Latency::from_micros(&total.joined);
    if args.json {
        let report = serde_json::json!({
            "scenario": "churn",
            "target": args.target.name(),
            "concurrency": args.concurrency,
            "seconds": seconds,
            "cycles": total.done,
            "cycles_per_second": rate,
            "failed": total.failed,
            "first_failure": total.first_failure,
            "connect_to_joined_ms": latency,
            "server_cpu_seconds": cpu,
            "cycles_per_cpu_second": cpu.map(|cpu| total.done as f64 / cpu),
        });
        println!("{report}");
        return Ok(());
    }
    println!("churn ({}) against {}: {} loops", args.target.name(), args.server, args.concurrency);
    println!("{} connections opened, joined and closed in {seconds:.2}s: {rate:.0}/s", total.done);
    if let Some(l) = latency {
        println!("connect to joined ms: {l}");
    }
    if total.failed > 0 {
        println!("failed {} (first: {})", total.failed, total.first_failure.as_deref().unwrap_or("?"));
    }
    if let Some(cpu) = cpu {
        println!("server CPU {cpu:.2}s, {:.0} connections per CPU-second", total.done as f64 / cpu);
    }
    Ok(())
}
