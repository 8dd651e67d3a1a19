//! `switchboard bench fanout`: S subscribers in one room over WebSocket and
//! P publishers sharing a total rate R, against Switchboard or any peer in
//! `bench/peers/` (see [`Target`]). Every subscriber counts, checks and times
//! what it receives; the report has deliveries/s, loss and publish-to-receive
//! latency, and given the server's pid its CPU-seconds. With `--sse` the
//! subscribers follow the room over Server-Sent Events instead (the
//! publishers stay on WebSocket). When this process
//! may not open every subscriber's socket, the subscribers run in worker
//! processes (see `bench::workers`).

use super::common::{each_stamp, now_micros, payload, socket_allowance, source_ip, Pacer, Tally, ERROR_EVENT};
use super::measure::{measure, next_read, Errors, Feed, LoadArgs, Members, Published, Report};
use super::sseclient::{self, SseConn};
use super::target::Target;
use super::workers::RemoteMembers;
use super::wsclient::{self, close_reason, Kind, WsConn};
use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A subscriber's read buffer to start with.
const READ_BUFFER: usize = 16 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct WsFanoutArgs {
    /// Server address (host:port of its WebSocket listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// More servers (nodes of one cluster, comma-separated): subscribers
    /// are spread over `--server` and these in turn; publishers stay on
    /// `--server`.
    #[arg(long, value_delimiter = ',')]
    pub also: Vec<SocketAddr>,
    /// Which server that is: how to join and publish.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    pub target: Target,
    /// The room (Switchboard) or subject (NATS); the other peers have one.
    #[arg(long, default_value = "fan")]
    pub room: String,
    /// Subscriber connections.
    #[arg(long, short = 's', default_value_t = 1000)]
    pub subscribers: usize,
    /// Publisher connections (they share the rate, and are not counted as
    /// subscribers even where the server sends them every message too).
    #[arg(long, short = 'p', default_value_t = 1)]
    pub publishers: usize,
    /// Messages published per second, by all publishers together.
    #[arg(long, short = 'r', default_value_t = 1000.0)]
    pub rate: f64,
    /// Ask Switchboard to store every message (by default messages are
    /// `volatile`, since no peer stores anything).
    #[arg(long)]
    pub stored: bool,
    /// Subscribers connecting at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Subscribers follow the room over Server-Sent Events
    /// (`/api/rooms/ROOM/events`) instead of WebSocket; publishers stay on
    /// WebSocket (Switchboard only).
    #[arg(long)]
    pub sse: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Processes the subscribers read in: 0 picks this one when it may open
    /// every socket, else as few worker processes as the open-files limit
    /// allows; 1 is this one; more are worker processes (the publishers
    /// stay here).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as a worker reading for subscribers FIRST..FIRST+COUNT.
    #[arg(long, hide = true, value_parser = super::idle::parse_share)]
    pub worker: Option<(usize, usize)>,
}

/// Connects everyone, publishes on schedule, and reports.
pub async fn run(args: &WsFanoutArgs) -> anyhow::Result<Report> {
    let scenario = if args.sse { "fanout-sse" } else { "fanout" };
    let spec = args.load.spec(scenario, args.target.name(), args.server, args.rate);
    let processes = member_processes(args)?;
    if processes == 1 {
        let progress = super::progress(args.subscribers as u64, "subscribers", args.json)?;
        let members = subscribe(args, 0, args.subscribers, progress).await?;
        return measure(&spec, members, publish(args, connect_publishers(args).await?)).await;
    }
    let members = RemoteMembers::start(args, processes).await?;
    let processes = members.processes();
    let mut report = measure(&spec, members, publish(args, connect_publishers(args).await?)).await?;
    report.member_processes = processes;
    Ok(report)
}

/// How many processes the subscribers read in (see `--workers`).
fn member_processes(args: &WsFanoutArgs) -> anyhow::Result<usize> {
    let (open_files, per_process) = socket_allowance();
    let here = args.subscribers + args.publishers.max(1);
    let processes = match args.workers {
        0 if here <= per_process => 1,
        0 => args.subscribers.div_ceil(per_process).max(2),
        workers => workers,
    };
    let most = if processes == 1 { here } else { args.subscribers.div_ceil(processes).max(args.publishers) };
    anyhow::ensure!(
        most <= per_process,
        "{most} connections in one process exceed what it may open here ({per_process} with an open-files limit \
         of {open_files}); use more --workers"
    );
    Ok(processes)
}

/// Connects subscribers `first..first + count` (WebSocket members, or with
/// `--sse` event stream followers) and starts their reading tasks.
pub async fn subscribe(
    args: &WsFanoutArgs,
    first: usize,
    count: usize,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<Members> {
    let mut members = Members::new()?;
    if args.sse {
        let follow = |index| async move {
            let name = format!("sub{index}");
            let source = source_ip(args.server, index, args.load.sources);
            let path = args.target.follow_path(&name, &args.room)?;
            sseclient::open(args.server, source, &path, READ_BUFFER, &args.tls)
                .await
                .with_context(|| format!("{name}: following"))
        };
        for conn in open_each(args, first..first + count, progress, follow).await? {
            members.spawn(move |feed| follower(conn, feed));
        }
    } else {
        let join =
            |index| async move { connect(args, member_server(args, index), index, &format!("sub{index}")).await };
        for conn in open_each(args, first..first + count, progress, join).await? {
            let target = args.target;
            members.spawn(move |feed| subscriber(conn, target, feed));
        }
    }
    Ok(members)
}

/// Opens a connection for each of `indexes` with `open`, `--concurrency`
/// at a time, counting them on `progress`.
async fn open_each<T, F: Future<Output = anyhow::Result<T>>>(
    args: &WsFanoutArgs,
    indexes: std::ops::Range<usize>,
    progress: indicatif::ProgressBar,
    open: impl Fn(usize) -> F,
) -> anyhow::Result<Vec<T>> {
    let opened = futures_util::stream::iter(indexes)
        .map(|index| {
            let (progress, opening) = (progress.clone(), open(index));
            async move {
                let conn = opening.await;
                progress.inc(1);
                conn
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect()
        .await?;
    progress.finish_and_clear();
    Ok(opened)
}

/// A follower: reads events until told to stop or closed, counting every
/// message.
async fn follower(mut conn: SseConn, feed: Feed) -> Tally {
    let Feed { received, mut stop, mut tally } = feed;
    while next_read(&mut stop, &mut tally, conn.fill()).await {
        let before = tally.received;
        let now = now_micros();
        conn.drain(|name, data| match name {
            None => each_stamp(data, |n, t| tally.record(n, t, now)),
            Some(b"close") => tally.close(String::from_utf8_lossy(data).into_owned()),
            Some(_) => {}
        });
        received.fetch_add(tally.received - before, Ordering::Relaxed);
        tally.flush();
    }
    tally
}

/// Connects the publishers (named after the subscribers' numbers).
async fn connect_publishers(args: &WsFanoutArgs) -> anyhow::Result<Vec<WsConn>> {
    futures_util::stream::iter(0..args.publishers.max(1))
        .then(|index| async move { connect(args, args.server, args.subscribers + index, &format!("pub{index}")).await })
        .try_collect()
        .await
}

/// One connection, opened and in the room, named `name`.
async fn connect(args: &WsFanoutArgs, server: SocketAddr, index: usize, name: &str) -> anyhow::Result<WsConn> {
    let source = source_ip(server, index, args.load.sources);
    let mut conn = wsclient::open(server, source, &args.target.path(name), READ_BUFFER, &args.tls)
        .await
        .with_context(|| format!("{name}: connecting"))?;
    args.target.join(&mut conn, name, &args.room).await.with_context(|| format!("{name}: joining"))?;
    Ok(conn)
}

/// The server subscriber `index` connects to: `--server` and `--also` in turn.
fn member_server(args: &WsFanoutArgs, index: usize) -> SocketAddr {
    match index % (args.also.len() + 1) {
        0 => args.server,
        other => args.also[other - 1],
    }
}

/// Reads until told to stop or closed, counting every message.
async fn subscriber(mut conn: WsConn, target: Target, feed: Feed) -> Tally {
    let Feed { received, mut stop, mut tally } = feed;
    let mut answers: Vec<&'static [u8]> = Vec::new();
    loop {
        if !next_read(&mut stop, &mut tally, conn.fill()).await {
            break;
        }
        let before = tally.received;
        let now = now_micros();
        let drained = conn.drain(|kind, data| match kind {
            Kind::Close => tally.close(close_reason(data)),
            Kind::Text | Kind::Binary => {
                each_stamp(data, |n, t| tally.record(n, t, now));
                answers.extend(target.keepalive(data));
                if let Some(reason) = target.closing(data) {
                    tally.close(reason);
                }
            }
        });
        received.fetch_add(tally.received - before, Ordering::Relaxed);
        tally.flush();
        if let Err(error) = drained {
            tally.close(format!("unreadable data: {error:#}"));
            break;
        }
        if let Err(error) = answer(&mut conn, &mut answers).await {
            tally.close(format!("answering a keepalive: {error:#}"));
            break;
        }
    }
    tally
}

/// Sends the owed pongs and keepalive answers.
async fn answer(conn: &mut WsConn, answers: &mut Vec<&'static [u8]>) -> anyhow::Result<()> {
    conn.flush().await?;
    if !answers.is_empty() {
        conn.send_texts(answers.drain(..)).await?;
    }
    Ok(())
}

/// Runs every publisher on its share of the schedule.
async fn publish(args: &WsFanoutArgs, publishers: Vec<WsConn>) -> anyhow::Result<Published> {
    let count = publishers.len();
    let errors = Arc::new(Errors::default());
    let numbers = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(args.load.duration.max(0.0));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = publishers
        .into_iter()
        .map(|conn| {
            let job = PublishJob {
                target: args.target,
                room: args.room.clone(),
                size: args.load.size,
                volatile: !args.stored,
                errors: Arc::clone(&errors),
                numbers: Arc::clone(&numbers),
                sent: Arc::clone(&sent),
            };
            tokio::spawn(job.run(conn, Pacer::new(args.rate / count as f64, duration)))
        })
        .collect();
    let mut open = Vec::new();
    for task in tasks {
        open.extend(task.await.context("a publisher task failed")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    // The publishers stay connected until the run is measured: closed with
    // what the server sent them unread, a socket is reset, and a reset can
    // take the last messages the server had not read yet with it.
    let target = args.target;
    let reader = tokio::spawn(async move {
        futures_util::future::join_all(open.into_iter().map(|conn| read_until_closed(conn, target))).await;
    });
    Ok(Published { sent: sent.load(Ordering::Relaxed), seconds, errors, reader: Some(reader) })
}

/// Reads and drops what the server sends `conn`, answering keepalives,
/// until it closes or the task is aborted.
async fn read_until_closed(mut conn: WsConn, target: Target) {
    let mut answers = Vec::new();
    while matches!(conn.fill().await, Ok(1..)) {
        let drained = conn.drain(|kind, data| {
            if matches!(kind, Kind::Text | Kind::Binary) {
                answers.extend(target.keepalive(data));
            }
        });
        if drained.is_err() || answer(&mut conn, &mut answers).await.is_err() {
            break;
        }
    }
}

/// What one publisher needs.
struct PublishJob {
    target: Target,
    room: String,
    size: usize,
    volatile: bool,
    errors: Arc<Errors>,
    /// The last message number handed out (messages are numbered from 1
    /// across all publishers).
    numbers: Arc<AtomicU64>,
    /// Messages written to the server. A publisher the server disconnects
    /// stops, and what it could not send is not counted as sent (its
    /// numbers show as gaps, not as loss).
    sent: Arc<AtomicU64>,
}

impl PublishJob {
    /// Publishes on schedule until the run ends or the server drops this
    /// publisher; the latter is reported as a publisher error, and the run
    /// goes on with the other publishers.
    /// Returns the connection when the schedule ended with it open.
    async fn run(self, conn: WsConn, pacer: Pacer) -> anyhow::Result<Option<WsConn>> {
        match self.publish(conn, pacer).await {
            Ok(conn) => Ok(Some(conn)),
            Err(error) => {
                let sent = self.sent.load(Ordering::Relaxed);
                self.errors.note(format!("a publisher stopped after {sent} messages in all: {error:#}").as_bytes());
                Ok(None)
            }
        }
    }

    /// Publishes each tick's batch in one write, and meanwhile reads (and
    /// drops) what the server sends this connection, answering keepalives
    /// and noting errors.
    async fn publish(&self, mut conn: WsConn, mut pacer: Pacer) -> anyhow::Result<WsConn> {
        let (mut frames, mut body, mut message) = (Vec::new(), Vec::new(), Vec::new());
        let mut answers: Vec<&'static [u8]> = Vec::new();
        loop {
            tokio::select! {
                due = pacer.next_batch() => {
                    let Some(due) = due else { break };
                    if due == 0 {
                        continue;
                    }
                    let first = self.numbers.fetch_add(due, Ordering::Relaxed) + 1;
                    let t = now_micros();
                    frames.clear();
                    for n in first..first + due {
                        body.clear();
                        message.clear();
                        payload(&mut body, n, t, self.size);
                        self.target.publish(&mut message, &self.room, &body, self.volatile);
                        wsclient::encode_masked(&mut frames, 0x1, &message);
                    }
                    conn.send_raw(&frames).await.context("publishing")?;
                    self.sent.fetch_add(due, Ordering::Relaxed);
                }
                read = conn.fill() => {
                    if read.context("publisher reading")? == 0 {
                        anyhow::bail!("the server closed a publisher's connection");
                    }
                    conn.drain(|kind, data| self.note(kind, data, &mut answers))?;
                    answer(&mut conn, &mut answers).await?;
                }
            }
        }
        Ok(conn)
    }

    fn note(&self, kind: Kind, data: &[u8], answers: &mut Vec<&'static [u8]>) {
        match kind {
            Kind::Close => self.errors.note(close_reason(data).as_bytes()),
            Kind::Text | Kind::Binary => {
                answers.extend(self.target.keepalive(data));
                let error = self.target == Target::Switchboard && ERROR_EVENT.find(data).is_some();
                if error || self.target.closing(data).is_some() {
                    self.errors.note(data);
                }
            }
        }
    }
}
