//! One measured run: members already joined, a publisher run on its
//! schedule, a bounded drain, then every member's tally merged into a
//! [`Report`].

use super::common::{core_busy_seconds, cpu_seconds, Tally, Totals};
use super::latency::Latencies;
use super::lines;
use hdrhistogram::Histogram;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Options every load scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Server process id, to measure its CPU time over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// More process ids (comma-separated) whose CPU time is added to the
    /// server's: the other nodes of a cluster, and its Redis.
    #[arg(long, value_delimiter = ',')]
    pub also_pid: Vec<u32>,
    /// The CPU the server is pinned to, to measure how busy that core was.
    #[arg(long)]
    pub server_core: Option<usize>,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread subscribers over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Longest wait, in seconds, for late deliveries after the last publish.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Seconds with no new delivery after which the drain gives up before
    /// `--drain` (what has not arrived then is counted as lost). The
    /// tests set it to `--drain`: on a loaded machine a late delivery is
    /// not a lost one.
    #[arg(long, default_value_t = 0.5)]
    pub drain_still: f64,
}

impl LoadArgs {
    /// What one run of `scenario` measures.
    pub fn spec(&self, scenario: &'static str, protocol: &'static str, server: SocketAddr, rate: f64) -> Spec {
        Spec {
            scenario,
            protocol,
            server: server.to_string(),
            rate,
            duration: Duration::from_secs_f64(self.duration.max(0.0)),
            size: self.size,
            pid: self.pid,
            also_pids: self.also_pid.clone(),
            core: self.server_core,
            drain: Duration::from_secs_f64(self.drain.max(0.0)),
            still: Duration::from_secs_f64(self.drain_still.max(0.0)),
        }
    }
}

/// What a scenario is, for the report.
#[derive(Debug, Clone)]
pub struct Spec {
    pub scenario: &'static str,
    pub protocol: &'static str,
    pub server: String,
    pub rate: f64,
    pub duration: Duration,
    pub size: usize,
    pub pid: Option<u32>,
    /// Processes whose CPU time counts with the server's (`--also-pid`).
    pub also_pids: Vec<u32>,
    /// The CPU the server runs on, to measure how busy it was.
    pub core: Option<usize>,
    /// Longest wait for late deliveries after the last publish.
    pub drain: Duration,
    /// The drain ends early after this long without a new delivery.
    pub still: Duration,
}

/// Error events (or error replies) the publisher received.
#[derive(Debug, Default)]
pub struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    pub fn note(&self, text: &[u8]) {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first.lock().unwrap_or_else(PoisonError::into_inner) = Some(lines::text(text));
        }
    }

    fn first(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What the publisher did.
#[derive(Debug)]
pub struct Published {
    pub sent: u64,
    pub seconds: f64,
    pub errors: Arc<Errors>,
    /// The publisher's reading task, stopped once the run is measured.
    pub reader: Option<JoinHandle<()>>,
}

/// What one member task is handed: where to count, when to stop.
#[derive(Debug)]
pub struct Feed {
    /// Deliveries so far across all members (each adds its own).
    pub received: Arc<AtomicU64>,
    pub stop: watch::Receiver<bool>,
    pub tally: Tally,
}

/// Waits for a member's next read or the stop signal. False when the
/// member is done: told to stop, or its connection ended (noted in `tally`).
pub async fn next_read(
    stop: &mut watch::Receiver<bool>,
    tally: &mut Tally,
    read: impl Future<Output = std::io::Result<usize>>,
) -> bool {
    let read = tokio::select! {
        biased;
        _ = stop.changed() => return false,
        read = read => read,
    };
    match read {
        Ok(0) => tally.close("connection closed by the server"),
        Err(error) => tally.close(error.to_string()),
        Ok(_) => return true,
    }
    false
}

/// The member tasks of a run.
#[derive(Debug)]
pub struct Members {
    received: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Tally>>,
    latencies: Arc<Latencies>,
}

impl Members {
    pub fn new() -> anyhow::Result<Self> {
        let latencies = Latencies::new()?;
        Ok(Members { received: Arc::default(), stop: watch::channel(false).0, tasks: Vec::new(), latencies })
    }

    /// Starts one member's reading task.
    pub fn spawn<F, Fut>(&mut self, member: F)
    where
        F: FnOnce(Feed) -> Fut,
        Fut: Future<Output = Tally> + Send + 'static,
    {
        let feed = Feed {
            received: Arc::clone(&self.received),
            stop: self.stop.subscribe(),
            tally: Tally::new(Arc::clone(&self.latencies)),
        };
        self.tasks.push(tokio::spawn(member(feed)));
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Deliveries so far across all members.
    pub fn received(&self) -> &Arc<AtomicU64> {
        &self.received
    }

    /// Stops every member and merges their tallies and latencies.
    pub async fn finish(self, sent: u64) -> (Totals, Histogram<u64>) {
        let _ = self.stop.send(true);
        let mut totals = Totals::default();
        for task in self.tasks {
            match task.await {
                Ok(tally) => totals.add(tally, sent),
                Err(error) => eprintln!("a member task failed: {error}"),
            }
        }
        (totals, self.latencies.merged())
    }
}

/// The members of a run, wherever they read: tasks in this process
/// ([`Members`]) or worker processes (`bench::workers`).
pub trait MemberSet {
    /// How many members there are.
    fn count(&self) -> usize;
    /// Deliveries so far across all members, kept current while they read.
    fn received(&self) -> &AtomicU64;
    /// Stops every member and merges their tallies and latencies; `sent` is
    /// how many messages each should have seen.
    fn finish(self, sent: u64) -> impl Future<Output = anyhow::Result<Merged>>;
}

/// Every member's tallies and latencies, merged.
#[derive(Debug)]
pub struct Merged {
    pub totals: Totals,
    pub latency: Histogram<u64>,
    /// CPU seconds the worker processes used while reading (0 when the
    /// members read in this process, whose own CPU is measured anyway).
    pub worker_cpu_seconds: f64,
}

impl MemberSet for Members {
    fn count(&self) -> usize {
        self.len()
    }

    fn received(&self) -> &AtomicU64 {
        &self.received
    }

    async fn finish(self, sent: u64) -> anyhow::Result<Merged> {
        let (totals, latency) = Members::finish(self, sent).await;
        Ok(Merged { totals, latency, worker_cpu_seconds: 0.0 })
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub protocol: &'static str,
    pub server: String,
    pub members: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub size: usize,
    /// Processes the members read in (1: this one; more: worker processes).
    pub member_processes: usize,
    pub sent: u64,
    pub send_seconds: f64,
    /// sent × members.
    pub expected: u64,
    pub received: u64,
    /// expected − received (negative if something arrived twice).
    pub lost: i64,
    pub loss_percent: f64,
    pub gaps: u64,
    pub out_of_order: u64,
    pub members_with_loss: usize,
    pub members_closed: usize,
    pub close_reason: Option<String>,
    pub publisher_errors: u64,
    pub publisher_first_error: Option<String>,
    /// received / (first publish .. last delivery seen).
    pub deliveries_per_second: f64,
    pub latency_ms: Option<Latency>,
    pub server_cpu_seconds: Option<f64>,
    pub deliveries_per_server_cpu_second: Option<f64>,
    /// Busy seconds of the server's core (its softirq work included).
    pub server_core_busy_seconds: Option<f64>,
    /// CPU time of this load generator over the same window (its worker
    /// processes' included, from when they were ready to their report).
    pub bench_cpu_seconds: Option<f64>,
    /// Datagrams the kernel dropped for full receive buffers (UDP only).
    pub kernel_drops: Option<KernelDrops>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds, in milliseconds
    /// (none if it is empty).
    pub(super) fn from_micros(histogram: &Histogram<u64>) -> Option<Self> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        (!histogram.is_empty()).then(|| Latency {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

impl std::fmt::Display for Latency {
    /// The percentiles as the text reports print them, in milliseconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}", self.p50, self.p99, self.p999, self.max)
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KernelDrops {
    /// At the members' sockets (the bench client did not read fast enough).
    pub members: u64,
    /// At the server's socket (datagrams from the bench that never reached it).
    pub server: u64,
}

/// Runs the publisher, waits for the deliveries to settle, and reports.
pub async fn measure<M, P>(spec: &Spec, members: M, publisher: P) -> anyhow::Result<Report>
where
    M: MemberSet,
    P: Future<Output = anyhow::Result<Published>>,
{
    let before = Usage::read_all(spec.pid, &spec.also_pids, spec.core)?;
    let start = Instant::now();
    let published = publisher.await?;
    let count = members.count();
    let expected = published.sent * count as u64;
    let last_delivery = drain(members.received(), expected, spec.drain, spec.still).await;
    let used = Usage::read_all(spec.pid, &spec.also_pids, spec.core)?.since(before);
    if let Some(reader) = &published.reader {
        reader.abort();
    }
    let Merged { totals, latency, worker_cpu_seconds } = members.finish(published.sent).await?;
    let used = Usage { bench: used.bench.map(|bench| bench + worker_cpu_seconds), ..used };
    let window = last_delivery.duration_since(start);
    Ok(report(spec, &published, count, totals, &latency, window, used))
}

/// Waits until every expected delivery arrived, nothing new arrived for
/// `still`, or `limit` passed; returns when the last delivery was seen.
async fn drain(received: &AtomicU64, expected: u64, limit: Duration, still: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    let mut count = received.load(Ordering::Relaxed);
    let mut changed = Instant::now();
    while count < expected && Instant::now() < deadline && changed.elapsed() < still {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != count {
            (count, changed) = (now, Instant::now());
        }
    }
    changed
}

fn report(
    spec: &Spec,
    published: &Published,
    members: usize,
    totals: Totals,
    latency: &Histogram<u64>,
    window: Duration,
    used: Usage,
) -> Report {
    let cpu = used.process;
    let expected = published.sent * members as u64;
    let lost = i64::try_from(expected).unwrap_or(i64::MAX) - i64::try_from(totals.received).unwrap_or(i64::MAX);
    let latency = Latency::from_micros(latency);
    Report {
        scenario: spec.scenario,
        protocol: spec.protocol,
        server: spec.server.clone(),
        members,
        rate: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        size: spec.size,
        member_processes: 1,
        sent: published.sent,
        send_seconds: published.seconds,
        expected,
        received: totals.received,
        lost,
        loss_percent: if expected == 0 { 0.0 } else { lost as f64 * 100.0 / expected as f64 },
        gaps: totals.gaps,
        out_of_order: totals.out_of_order,
        members_with_loss: totals.members_with_loss,
        members_closed: totals.members_closed,
        close_reason: totals.close_reason,
        publisher_errors: published.errors.count.load(Ordering::Relaxed),
        publisher_first_error: published.errors.first(),
        deliveries_per_second: totals.received as f64 / window.as_secs_f64().max(1e-9),
        latency_ms: latency,
        server_cpu_seconds: cpu,
        deliveries_per_server_cpu_second: cpu.filter(|cpu| *cpu > 0.0).map(|cpu| totals.received as f64 / cpu),
        server_core_busy_seconds: used.core,
        bench_cpu_seconds: used.bench,
        kernel_drops: None,
    }
}

/// CPU seconds: the server's (given its pid), its core's busy time (given
/// the core) and this process's; used so far, or over a window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub(super) process: Option<f64>,
    pub(super) core: Option<f64>,
    pub(super) bench: Option<f64>,
}

impl Usage {
    /// What has been used so far.
    pub fn read(pid: Option<u32>, core: Option<usize>) -> anyhow::Result<Usage> {
        Ok(Usage {
            process: pid.map(cpu_seconds).transpose()?,
            core: core.map(core_busy_seconds).transpose()?,
            bench: cpu_seconds(std::process::id()).ok(),
        })
    }

    /// [`Usage::read`], with the CPU time of `also` added to the server's.
    pub fn read_all(pid: Option<u32>, also: &[u32], core: Option<usize>) -> anyhow::Result<Usage> {
        let mut usage = Usage::read(pid, core)?;
        if let Some(process) = usage.process.as_mut() {
            for &other in also {
                *process += cpu_seconds(other)?;
            }
        }
        Ok(usage)
    }

    /// What was used between `before` and this reading.
    pub fn since(self, before: Usage) -> Usage {
        let minus = |after: Option<f64>, before: Option<f64>| after.zip(before).map(|(a, b)| a - b);
        Usage {
            process: minus(self.process, before.process),
            core: minus(self.core, before.core),
            bench: minus(self.bench, before.bench),
        }
    }
}

impl Report {
    /// Prints the report: one JSON object, or a few lines for people.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        println!(
            "{} ({}) against {}: {} members, {} msg/s for {}s, {} B",
            self.scenario, self.protocol, self.server, self.members, self.rate, self.duration_s, self.size
        );
        if self.member_processes > 1 {
            println!("members read in {} worker processes", self.member_processes);
        }
        println!(
            "sent {} in {:.2}s; deliveries expected {}, received {}, lost {} ({:.3}%), {:.0}/s",
            self.sent,
            self.send_seconds,
            self.expected,
            self.received,
            self.lost,
            self.loss_percent,
            self.deliveries_per_second
        );
        println!(
            "gaps {}, out of order {}, members with loss {}, closed by the server {}{}, publisher errors {}{}",
            self.gaps,
            self.out_of_order,
            self.members_with_loss,
            self.members_closed,
            self.close_reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default(),
            self.publisher_errors,
            self.publisher_first_error.as_deref().map(|first| format!(" (first: {first})")).unwrap_or_default()
        );
        if let Some(l) = self.latency_ms {
            println!("latency ms: {l}");
        }
        if let Some(cpu) = self.server_cpu_seconds {
            let per = self.deliveries_per_server_cpu_second.unwrap_or(0.0);
            println!("server CPU {cpu:.2}s, {per:.0} deliveries per CPU-second");
        }
        if let Some(busy) = self.server_core_busy_seconds {
            println!("server core busy {busy:.2}s (softirq included)");
        }
        if let Some(bench) = self.bench_cpu_seconds {
            println!("load generator CPU {bench:.2}s");
        }
        if let Some(drops) = self.kernel_drops {
            println!("kernel receive-buffer drops: members {}, server {}", drops.members, drops.server);
        }
        Ok(())
    }
}
