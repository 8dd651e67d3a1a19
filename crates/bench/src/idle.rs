//! `switchboard bench idle`: N WebSocket connections opened, each joined to
//! a room (on Switchboard) or to the peer's one room, and held; or, with
//! `--sse`, N Server-Sent Events followers of a room each. Reports the
//! connect rate and, given the server's pid, its resident memory per
//! connection.
//!
//! When one process may not open N sockets (the open-files limit), the
//! connections are spread over worker processes: this same binary, run
//! with a hidden `--worker FIRST:COUNT`, opens its share, prints one JSON
//! line when they are all open, and holds them until its standard input
//! closes.

use super::common::{socket_allowance, source_ip};
use super::sseclient::{self, SseConn};
use super::target::Target;
use super::wsclient::{self, Kind, WsConn};
use anyhow::{bail, Context};
use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A connection's read buffer to start with: idle clients receive little.
const READ_BUFFER: usize = 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Server address (host:port of its WebSocket listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// Which server that is: how to join.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    pub target: Target,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,
    /// Room name prefix; connection i joins room `PREFIX-(i mod ROOMS)`
    /// (Switchboard and NATS; the other peers have one room).
    #[arg(long, default_value = "idle")]
    pub room: String,
    /// Rooms to spread the connections over.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Follow the rooms over Server-Sent Events (`/api/rooms/ROOM/events`)
    /// instead of joining them over WebSocket (Switchboard only).
    #[arg(long)]
    pub sse: bool,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Connections opened concurrently (in each worker process).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Worker processes to spread the connections over; 0 picks as few as
    /// this process's open-files limit allows.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Server process id, to read its resident memory from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// Seconds between the last join and reading the server's memory: the
    /// server trims its heap once connections stop changing (within about
    /// a second), and that is the steady state an idle server lives in.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as a worker opening connections FIRST..FIRST+COUNT.
    #[arg(long, hide = true, value_parser = parse_share)]
    pub worker: Option<(usize, usize)>,
}

pub(super) fn parse_share(text: &str) -> Result<(usize, usize), String> {
    let (first, count) = text.split_once(':').ok_or("expected FIRST:COUNT")?;
    Ok((first.parse().map_err(|_| "bad FIRST")?, count.parse().map_err(|_| "bad COUNT")?))
}

/// A process's resident memory in bytes, from /proc/PID/status.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Resident {
    /// Everything resident, including the executable's code pages.
    pub total: u64,
    /// Anonymous memory only: heap and stacks, what connections cost.
    pub anon: u64,
}

pub fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name} line"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("malformed /proc status line")?.parse()?;
        Ok(kib * 1024)
    };
    Ok(Resident { total: field("VmRSS:")?, anon: field("RssAnon:")? })
}

/// Runs the scenario, or a worker's share of it.
pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    if let Some((first, count)) = args.worker {
        return worker(&args, first, count).await;
    }
    let (open_files, per_process) = socket_allowance();
    let workers = match args.workers {
        0 => args.connections.div_ceil(per_process).max(1),
        workers => workers,
    };
    if args.connections.div_ceil(workers) > per_process {
        bail!("{} connections over {workers} processes exceed the open-files limit ({open_files})", args.connections);
    }
    let before = args.pid.map(resident).transpose()?;
    let (opened, elapsed, holders) = if workers == 1 {
        let (conns, elapsed) = open_all(&args, 0, args.connections).await?;
        (
            conns.len(),
            elapsed,
            Holders::InProcess(conns.into_iter().map(|conn| tokio::spawn(hold(conn, args.target))).collect()),
        )
    } else {
        let (opened, elapsed, children) = spawn_workers(&args, workers)?;
        (opened, elapsed, Holders::Workers(children))
    };
    // Let the server's allocator settle after the burst before reading RSS.
    tokio::time::sleep(Duration::try_from_secs_f64(args.settle).context("--settle")?).await;
    let after = args.pid.map(resident).transpose()?;
    let counts = Counts { workers, opened, closed: holders.closed(), elapsed };
    report(&args, &counts, before.zip(after))?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    holders.release();
    Ok(())
}

/// One open connection.
enum Held {
    WebSocket(WsConn),
    Sse(SseConn),
}

/// What keeps the connections open until the report is out.
enum Holders {
    InProcess(Vec<tokio::task::JoinHandle<()>>),
    Workers(Vec<Child>),
}

impl Holders {
    /// Connections the server has closed so far (known in this process only).
    fn closed(&self) -> Option<usize> {
        match self {
            Holders::InProcess(tasks) => Some(tasks.iter().filter(|task| task.is_finished()).count()),
            Holders::Workers(_) => None,
        }
    }

    fn release(self) {
        match self {
            Holders::InProcess(tasks) => tasks.iter().for_each(tokio::task::JoinHandle::abort),
            Holders::Workers(children) => {
                for mut child in children {
                    // Closing its standard input tells the worker to exit.
                    drop(child.stdin.take());
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Opens connections `first..first+count`, each joined, `concurrency` at a time.
async fn open_all(args: &IdleArgs, first: usize, count: usize) -> anyhow::Result<(Vec<Held>, Duration)> {
    let progress = super::progress(count as u64, "connections", args.json || args.worker.is_some())?;
    let started = Instant::now();
    let conns: Vec<Held> = futures_util::stream::iter(first..first + count)
        .map(|index| {
            let progress = progress.clone();
            async move {
                let conn = open_one(args, index).await;
                progress.inc(1);
                conn
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    progress.finish_and_clear();
    Ok((conns, started.elapsed()))
}

async fn open_one(args: &IdleArgs, index: usize) -> anyhow::Result<Held> {
    let name = format!("idle{index}");
    let source = source_ip(args.server, index, args.sources);
    let room = format!("{}-{}", args.room, index % args.rooms.max(1));
    if args.sse {
        let path = args.target.follow_path(&name, &room)?;
        let conn = sseclient::open(args.server, source, &path, READ_BUFFER, &args.tls)
            .await
            .with_context(|| format!("{name}: following"))?;
        return Ok(Held::Sse(conn));
    }
    let mut conn = wsclient::open(args.server, source, &args.target.path(&name), READ_BUFFER, &args.tls)
        .await
        .with_context(|| format!("{name}: connecting"))?;
    args.target.join(&mut conn, &name, &room).await.with_context(|| format!("{name}: joining"))?;
    Ok(Held::WebSocket(conn))
}

/// Idle clients still read, as real ones do: presence events and pings must
/// not pile up in the server's queues and be counted as idle cost; and
/// they answer application keepalives (Socket.IO, NATS) so they stay open.
async fn hold(held: Held, target: Target) {
    match held {
        Held::WebSocket(conn) => hold_websocket(conn, target).await,
        Held::Sse(mut conn) => {
            while matches!(conn.fill().await, Ok(count) if count > 0) {
                conn.drain(|_, _| {});
            }
        }
    }
}

async fn hold_websocket(mut conn: WsConn, target: Target) {
    let mut answers: Vec<&'static [u8]> = Vec::new();
    while matches!(conn.fill().await, Ok(count) if count > 0) {
        let drained = conn.drain(|kind, data| {
            if kind != Kind::Close {
                answers.extend(target.keepalive(data));
            }
        });
        if drained.is_err() || conn.flush().await.is_err() {
            break;
        }
        if !answers.is_empty() && conn.send_texts(answers.drain(..)).await.is_err() {
            break;
        }
    }
}

/// A worker: opens its share, says so on standard output, and holds the
/// connections until standard input closes.
async fn worker(args: &IdleArgs, first: usize, count: usize) -> anyhow::Result<()> {
    let (conns, elapsed) = open_all(args, first, count).await?;
    let holders: Vec<_> = conns.into_iter().map(|conn| tokio::spawn(hold(conn, args.target))).collect();
    println!("{}", serde_json::json!({"opened": holders.len(), "seconds": elapsed.as_secs_f64()}));
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    holders.iter().for_each(tokio::task::JoinHandle::abort);
    Ok(())
}

/// Starts `workers` processes, each with its share, and waits until every
/// one has opened its connections. Returns the total opened and the time
/// from the first start to the last report.
fn spawn_workers(args: &IdleArgs, workers: usize) -> anyhow::Result<(usize, Duration, Vec<Child>)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let share = args.connections.div_ceil(workers);
    let started = Instant::now();
    let mut children = Vec::with_capacity(workers);
    for first in (0..args.connections).step_by(share) {
        let count = share.min(args.connections - first);
        let child = Command::new(&exe)
            .args(["bench", "idle", "--server", &args.server.to_string()])
            .args(["--target", args.target.name(), "--room", &args.room])
            .args(["--rooms", &args.rooms.to_string(), "--sources", &args.sources.to_string()])
            .args(["--concurrency", &args.concurrency.to_string(), "--worker", &format!("{first}:{count}")])
            .args(args.sse.then_some("--sse"))
            .args(args.tls.forwarded())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a bench worker")?;
        children.push(child);
    }
    let mut opened = 0;
    for child in &mut children {
        let stdout = child.stdout.take().context("a worker without standard output")?;
        opened += worker_report(stdout)?;
    }
    Ok((opened, started.elapsed(), children))
}

/// Reads a worker's one line: how many connections it opened.
fn worker_report(stdout: ChildStdout) -> anyhow::Result<usize> {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let report: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("a worker failed (it said {:?})", line.trim()))?;
    report["opened"].as_u64().map(|n| n as usize).context("a worker's report has no `opened`")
}

/// What the run opened, and how many of those the server closed again.
struct Counts {
    workers: usize,
    opened: usize,
    closed: Option<usize>,
    elapsed: Duration,
}

fn report(args: &IdleArgs, counts: &Counts, memory: Option<(Resident, Resident)>) -> anyhow::Result<()> {
    let Counts { workers, opened, closed, elapsed } = *counts;
    let rate = opened as f64 / elapsed.as_secs_f64();
    let per_conn = |pick: fn(&Resident) -> u64| {
        memory.map(|(before, after)| pick(&after).saturating_sub(pick(&before)) as f64 / opened as f64)
    };
    let (anon_per_conn, total_per_conn) = (per_conn(|r| r.anon), per_conn(|r| r.total));
    if args.json {
        let report = serde_json::json!({
            "scenario": "idle",
            "target": args.target.name(),
            "transport": if args.sse { "sse" } else { "websocket" },
            "connections": opened,
            "rooms": args.rooms,
            "workers": workers,
            "closed_by_server": closed,
            "connect_seconds": elapsed.as_secs_f64(),
            "connects_per_second": rate,
            "server_resident_before": memory.map(|m| m.0),
            "server_resident_after": memory.map(|m| m.1),
            "server_anon_bytes_per_connection": anon_per_conn,
            "server_rss_bytes_per_connection": total_per_conn,
        });
        println!("{report}");
        return Ok(());
    }
    let processes = if workers > 1 { format!(" from {workers} processes") } else { String::new() };
    println!("opened {opened} connections{processes} in {:.2}s ({rate:.0}/s)", elapsed.as_secs_f64());
    if let Some(closed) = closed.filter(|&closed| closed > 0) {
        println!("the server closed {closed} of them before the memory was read: the figure below is not per open connection");
    }
    if let (Some((before, after)), Some(anon), Some(total)) = (memory, anon_per_conn, total_per_conn) {
        let mib = |bytes: u64| bytes as f64 / 1048576.0;
        println!(
            "server anonymous memory {:.1} -> {:.1} MiB: {anon:.0} bytes per connection (all resident: {total:.0})",
            mib(before.anon),
            mib(after.anon)
        );
    }
    Ok(())
}
