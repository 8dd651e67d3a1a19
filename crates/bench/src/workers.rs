//! Fan-out members in worker processes. When one process may not open every
//! subscriber's socket (the open-files limit), `bench fanout` runs the
//! subscribers in worker processes (this same binary, with a hidden
//! `--worker FIRST:COUNT`) and publishes from the parent.
//!
//! A worker speaks JSON lines on standard output:
//! - `{"ready":COUNT}` once its members are connected and joined;
//! - `{"received":N}`, its deliveries so far, every [`PROGRESS_EVERY`], so
//!   that the parent sees when deliveries settle;
//! - last, `{"totals":{..},"histogram":"BASE64","cpu_seconds":S}`: its
//!   members' merged tallies, their latency histogram (HdrHistogram's V2
//!   encoding), and the CPU it used since it was ready.
//!
//! The parent writes the number of messages published, and a newline, to
//! the worker's standard input when the run is over; the worker then stops
//! its members and sends its last line. Messages carry `CLOCK_MONOTONIC`
//! timestamps (`common::now_micros`), which every process reads alike, so
//! latency means the same in a worker as in the parent.

use super::common::{cpu_seconds, Totals};
use super::latency;
use super::measure::{MemberSet, Merged};
use super::wsfanout::{self, WsFanoutArgs};
use anyhow::{bail, Context};
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

/// How often a worker reports its deliveries.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);
/// How long a worker may take to connect its members.
const READY_WITHIN: Duration = Duration::from_secs(600);

/// A worker's last line.
#[derive(serde::Serialize, serde::Deserialize)]
struct WorkerReport {
    totals: Totals,
    /// The latency histogram, V2-encoded, in base64.
    histogram: String,
    /// CPU seconds the worker used from when it was ready to this report.
    cpu_seconds: f64,
}

/// The members of every worker process, as one [`MemberSet`].
pub struct RemoteMembers {
    count: usize,
    received: Arc<AtomicU64>,
    workers: Vec<Worker>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// Follows the worker's progress; returns its last line.
    reader: JoinHandle<anyhow::Result<WorkerReport>>,
}

impl RemoteMembers {
    /// Starts `processes` workers sharing the subscribers, and returns once
    /// every one has connected and joined its share.
    pub async fn start(args: &WsFanoutArgs, processes: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let share = args.subscribers.div_ceil(processes.max(1)).max(1);
        let mut starting = Vec::new();
        for first in (0..args.subscribers).step_by(share) {
            let count = share.min(args.subscribers - first);
            starting.push(spawn(&exe, args, first, count)?);
        }
        let received = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::with_capacity(starting.len());
        for (mut child, mut lines) in starting {
            let ready = tokio::time::timeout(READY_WITHIN, lines.next_line())
                .await
                .context("a bench worker took too long to connect its members")??;
            let ready: serde_json::Value = serde_json::from_str(ready.as_deref().unwrap_or_default())
                .context("a bench worker failed before it was ready (its error is above)")?;
            if ready["ready"].as_u64().is_none() {
                bail!("a bench worker said {ready} instead of being ready");
            }
            let stdin = child.stdin.take().context("a worker without standard input")?;
            let reader = tokio::spawn(follow(lines, Arc::clone(&received)));
            workers.push(Worker { child, stdin, reader });
        }
        Ok(RemoteMembers { count: args.subscribers, received, workers })
    }

    /// How many worker processes read.
    pub fn processes(&self) -> usize {
        self.workers.len()
    }
}

/// Starts one worker for subscribers `first..first + count`.
fn spawn(
    exe: &Path,
    args: &WsFanoutArgs,
    first: usize,
    count: usize,
) -> anyhow::Result<(Child, Lines<BufReader<ChildStdout>>)> {
    let mut child = Command::new(exe)
        .args(["bench", "fanout", "--server", &args.server.to_string()])
        .args(["--target", args.target.name(), "--room", &args.room])
        .args(["--sources", &args.load.sources.to_string(), "--concurrency", &args.concurrency.to_string()])
        .args(["--worker", &format!("{first}:{count}")])
        .args(match args.also.is_empty() {
            true => Vec::new(),
            false => vec!["--also".to_owned(), args.also.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")],
        })
        .args(args.sse.then_some("--sse"))
        .args(args.tls.forwarded())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a bench worker")?;
    let stdout = child.stdout.take().context("a worker without standard output")?;
    Ok((child, BufReader::new(stdout).lines()))
}

/// Adds a worker's progress to `received` until its last line, which it
/// returns.
async fn follow(mut lines: Lines<BufReader<ChildStdout>>, received: Arc<AtomicU64>) -> anyhow::Result<WorkerReport> {
    let mut seen = 0;
    while let Some(line) = lines.next_line().await? {
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("a bench worker said {line:?}"))?;
        let now = match value["received"].as_u64() {
            Some(now) => now,
            None => {
                let report: WorkerReport = serde_json::from_value(value).context("a bench worker's last line")?;
                received.fetch_add(report.totals.received.saturating_sub(seen), Ordering::Relaxed);
                return Ok(report);
            }
        };
        received.fetch_add(now.saturating_sub(seen), Ordering::Relaxed);
        seen = seen.max(now);
    }
    bail!("a bench worker ended without its report (its error is above)")
}

impl MemberSet for RemoteMembers {
    fn count(&self) -> usize {
        self.count
    }

    fn received(&self) -> &AtomicU64 {
        &self.received
    }

    async fn finish(self, sent: u64) -> anyhow::Result<Merged> {
        let mut totals = Totals::default();
        let mut latency = latency::histogram()?;
        let mut worker_cpu_seconds = 0.0;
        for mut worker in self.workers {
            worker.stdin.write_all(format!("{sent}\n").as_bytes()).await.context("telling a worker to stop")?;
            drop(worker.stdin);
            let report = worker.reader.await.context("a worker's reader failed")??;
            totals.merge(report.totals);
            latency.add(decode(&report.histogram)?).context("merging a worker's latencies")?;
            worker_cpu_seconds += report.cpu_seconds;
            worker.child.wait().await.context("waiting for a worker")?;
        }
        Ok(Merged { totals, latency, worker_cpu_seconds })
    }
}

/// A worker: connects subscribers `first..first + count`, says it is
/// ready, reports its deliveries until told how many were sent, then
/// reports its totals.
pub async fn serve(args: &WsFanoutArgs, first: usize, count: usize) -> anyhow::Result<()> {
    let members = wsfanout::subscribe(args, first, count, indicatif::ProgressBar::hidden()).await?;
    println!("{}", serde_json::json!({ "ready": members.len() }));
    let own_cpu = || cpu_seconds(std::process::id()).unwrap_or(0.0);
    let cpu_at_ready = own_cpu();
    let received = Arc::clone(members.received());
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            println!("{}", serde_json::json!({ "received": received.load(Ordering::Relaxed) }));
        }
    });
    let mut line = String::new();
    BufReader::new(tokio::io::stdin()).read_line(&mut line).await.context("reading from the parent")?;
    progress.abort();
    // Whole lines only, and none after the last.
    let _ = progress.await;
    let sent: u64 = line.trim().parse().with_context(|| format!("the parent sent {line:?}, not a count"))?;
    let (totals, histogram) = members.finish(sent).await;
    let report = WorkerReport { totals, histogram: encode(&histogram)?, cpu_seconds: own_cpu() - cpu_at_ready };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn encode(histogram: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(histogram, &mut bytes).context("encoding a latency histogram")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).context("a worker's histogram")?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).context("decoding a worker's histogram")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_trip_from_a_worker() {
        let mut histogram = latency::histogram().expect("histogram");
        for micros in [5, 50, 500, 5_000, 50_000] {
            histogram.record(micros).expect("record");
        }
        let back = decode(&encode(&histogram).expect("encode")).expect("decode");
        assert_eq!(back.len(), 5);
        assert_eq!(back.value_at_quantile(0.5), histogram.value_at_quantile(0.5));
        assert_eq!(back.max(), histogram.max());
    }
}
