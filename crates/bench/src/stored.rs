//! `switchboard bench stored`: what storing messages costs. P publishers,
//! each in its own room `bench-stored-{i}`, so that every message is
//! delivered once (to its sender) and fan-out does not dominate what is
//! measured. Each keeps exactly one send outstanding: send, wait for the ack
//! (which the server sends only once the message is stored), repeat. Acked
//! messages/s and send-to-ack latency are counted over the window after the
//! warmup, by when each ack arrived.
//!
//! This module owns the scenario and its report, and the pieces of the
//! storage protocol that `replay` uses too: the [`Frame`] view of a line,
//! joining at a `seq` and encoding an acked send.

use super::common::{now_micros, payload};
use super::latency::histogram;
use super::lines::{self, connect_hello, text, Lines, HANDSHAKE_TIMEOUT};
use super::measure::{Latency, Usage};
use anyhow::{bail, ensure, Context};
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Longest wait for any answer once the load runs (an ack, a replayed page).
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections opened at once.
const CONCURRENCY: usize = 64;
/// A `msg` event as the server encodes it (its fields in this order).
pub(super) const MSG_PREFIX: &[u8] = b"{\"ev\":\"msg\"";

#[derive(clap::Args, Debug, Clone)]
pub struct StoredArgs {
    /// Switchboard's raw TCP listener.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub tcp: SocketAddr,
    /// Publisher connections; publisher i joins its own room `bench-stored-{i}`.
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Seconds measured, after the warmup.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Server process id, to measure its CPU time over the window.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The CPU the server is pinned to, to measure how busy that core was
    /// (softirq work included, which no process is charged for).
    #[arg(long)]
    pub server_core: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The fields of an event or reply the storage scenarios look at.
#[derive(Debug, Deserialize)]
pub(super) struct Frame<'a> {
    pub(super) ev: Option<String>,
    #[serde(borrow)]
    pub(super) re: Option<&'a RawValue>,
    pub(super) ok: Option<bool>,
    code: Option<String>,
    pub(super) room: Option<String>,
    pub(super) seq: Option<u64>,
    pub(super) count: Option<u64>,
    pub(super) recovered: Option<bool>,
}

impl<'a> Frame<'a> {
    pub(super) fn parse(line: &'a [u8]) -> anyhow::Result<Self> {
        serde_json::from_slice(line).with_context(|| format!("unreadable line from the server: {}", text(line)))
    }

    /// Fails on an `error` or `close` event: the load cannot go on.
    pub(super) fn check_fatal(&self, line: &[u8]) -> anyhow::Result<()> {
        match self.ev.as_deref() {
            Some("error" | "close") => bail!("the server said {}", text(line)),
            _ => Ok(()),
        }
    }
}

/// Joins `room` and returns the reply's `seq`: the room's newest stored message.
pub(super) async fn join_seq(lines: &mut Lines<TcpStream>, room: &str) -> anyhow::Result<u64> {
    let wait = async {
        let reply = lines::join(lines, room, &serde_json::json!("join")).await?;
        Frame::parse(&reply)?.seq.with_context(|| format!("a join reply without seq: {}", text(&reply)))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wait).await.with_context(|| format!("no answer to join {room}"))?
}

/// Appends `{"op":"send","room":ROOM,"body":{..},"id":ID}` and a newline.
pub(super) fn encode_send(out: &mut Vec<u8>, room: &str, n: u64, id: u64, size: usize) {
    out.extend_from_slice(b"{\"op\":\"send\",\"room\":\"");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b"\",\"body\":");
    payload(out, n, now_micros(), size);
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, ",\"id\":{id}}}");
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

/// The measured window: acks that arrive in `start..end` count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one publisher sends.
#[derive(Debug, Clone)]
struct Publisher {
    index: u64,
    publishers: u64,
    room: String,
    /// The room's newest `seq` when the publisher joined.
    base_seq: u64,
    window: Window,
    size: usize,
}

/// What the publishers counted, over the whole run unless it says otherwise.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    /// Acks that arrived inside the measured window.
    pub acked: u64,
    /// Acks over the whole run, warmup and the last send included.
    pub acked_total: u64,
    /// `msg` events received (each publisher's own messages, fanned out to
    /// it): equal to `acked_total` when every stored message was delivered.
    pub msg_events_total: u64,
    /// Acks whose `seq` was not the room's previous one plus one.
    pub seq_breaks: u64,
    /// `ok:false` replies, by code.
    pub errors_by_code: BTreeMap<String, u64>,
    pub first_error: Option<String>,
}

/// What one publisher (or, merged, all of them) saw.
#[derive(Debug)]
struct Tally {
    counts: Counts,
    /// Send-to-ack latency of the acks in the window, in microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally { counts: Counts::default(), latency: histogram()? })
    }

    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        let (mine, theirs) = (&mut self.counts, other.counts);
        mine.acked += theirs.acked;
        mine.acked_total += theirs.acked_total;
        mine.msg_events_total += theirs.msg_events_total;
        mine.seq_breaks += theirs.seq_breaks;
        for (code, count) in theirs.errors_by_code {
            *mine.errors_by_code.entry(code).or_default() += count;
        }
        mine.first_error = mine.first_error.take().or(theirs.first_error);
        self.latency.add(&other.latency).context("merging latency histograms")?;
        Ok(())
    }
}

/// Reads until the reply to `id`, counting the `msg` events on the way:
/// the ack's `seq`, or `None` (counted as an error) if the send was refused.
async fn answer(lines: &mut Lines<TcpStream>, id: u64, counts: &mut Counts) -> anyhow::Result<Option<u64>> {
    loop {
        while let Some(line) = lines.line() {
            if line.starts_with(MSG_PREFIX) {
                counts.msg_events_total += 1;
                continue;
            }
            let frame = Frame::parse(line)?;
            frame.check_fatal(line)?;
            counts.msg_events_total += u64::from(frame.ev.as_deref() == Some("msg"));
            if frame.re.is_none() {
                continue;
            }
            if frame.re.and_then(|re| re.get().parse().ok()) != Some(id) {
                bail!("a reply to an id not outstanding (expected {id}): {}", text(line));
            }
            if frame.ok == Some(true) {
                return frame.seq.map(Some).with_context(|| format!("an ack without seq: {}", text(line)));
            }
            *counts.errors_by_code.entry(frame.code.unwrap_or_else(|| "(no code)".to_owned())).or_default() += 1;
            counts.first_error.get_or_insert_with(|| text(line));
            return Ok(None);
        }
        if lines.fill().await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

/// Sends with one message outstanding until the window ends.
async fn publish(mut lines: Lines<TcpStream>, spec: Publisher) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut out = Vec::with_capacity(spec.size + 128);
    let mut last_seq = spec.base_seq;
    for n in 0u64.. {
        let sent = Instant::now();
        if sent >= spec.window.end {
            break;
        }
        let id = n * spec.publishers + spec.index;
        out.clear();
        encode_send(&mut out, &spec.room, n, id, spec.size);
        lines.send(&out).await?;
        let stored = tokio::time::timeout(ANSWER_TIMEOUT, answer(&mut lines, id, &mut tally.counts))
            .await
            .with_context(|| format!("no answer to send {id} in {ANSWER_TIMEOUT:?}"))??;
        let acked = Instant::now();
        let Some(seq) = stored else { continue };
        let counts = &mut tally.counts;
        counts.acked_total += 1;
        counts.seq_breaks += u64::from(seq != last_seq + 1);
        last_seq = seq;
        if acked >= spec.window.start && acked < spec.window.end {
            counts.acked += 1;
            let micros = u64::try_from(acked.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            tally.latency.saturating_record(micros.max(1));
        }
    }
    Ok(tally)
}

/// The room publisher `index` of `bench stored` sends to.
pub fn stored_room(index: usize) -> String {
    format!("bench-stored-{index}")
}

/// The outcome of `bench stored`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredReport {
    pub scenario: &'static str,
    pub server: String,
    pub publishers: usize,
    /// How the rooms are laid out (one per publisher).
    pub rooms: String,
    pub payload: usize,
    pub warmup_s: f64,
    /// The measured window.
    pub duration_s: f64,
    /// Acks that arrived in the window, per second.
    pub acked_per_second: f64,
    /// Send to ack, for the acks in the window.
    pub ack_latency_ms: Option<Latency>,
    /// `ok:false` replies over the whole run (warmup included).
    pub errors: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_seconds_per_1000: Option<f64>,
    /// Busy seconds of the server's core over the window (softirq included).
    pub server_core_busy_seconds: Option<f64>,
    /// CPU time of this load generator over the window.
    pub bench_cpu_seconds: Option<f64>,
}

/// Connects and joins every publisher, runs them, and reports.
pub async fn run_stored(args: &StoredArgs) -> anyhow::Result<StoredReport> {
    ensure!(args.publishers > 0, "--publishers must be at least 1");
    let usage = || Usage::read(args.pid, args.server_core);
    usage()?;
    let connections: Vec<(Lines<TcpStream>, u64)> = futures_util::stream::iter(0..args.publishers)
        .map(|index| async move {
            let mut lines = connect_hello(args.tcp, &format!("stored{index}")).await?;
            let seq = join_seq(&mut lines, &stored_room(index)).await.with_context(|| format!("publisher {index}"))?;
            anyhow::Ok((lines, seq))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let start = Instant::now() + seconds(args.warmup);
    let window = Window { start, end: start + seconds(args.duration) };
    let mut tasks = Vec::with_capacity(connections.len());
    for (index, (lines, base_seq)) in connections.into_iter().enumerate() {
        let (room, publishers, size) = (stored_room(index), args.publishers as u64, args.payload);
        let spec = Publisher { index: index as u64, publishers, room, base_seq, window, size };
        tasks.push(tokio::spawn(publish(lines, spec)));
    }
    tokio::time::sleep_until(window.start.into()).await;
    let before = usage()?;
    tokio::time::sleep_until(window.end.into()).await;
    let used = usage()?.since(before);
    let mut total = Tally::new()?;
    for (index, task) in tasks.into_iter().enumerate() {
        total.add(task.await.context("a publisher task failed")?.with_context(|| format!("publisher {index}"))?)?;
    }
    Ok(StoredReport::new(args, total, used))
}

impl StoredReport {
    fn new(args: &StoredArgs, total: Tally, used: Usage) -> Self {
        let Usage { process: server_cpu, core: core_busy, bench: bench_cpu } = used;
        let duration = seconds(args.duration).as_secs_f64();
        let last = args.publishers.saturating_sub(1);
        let acked = total.counts.acked;
        StoredReport {
            scenario: "stored",
            server: args.tcp.to_string(),
            publishers: args.publishers,
            rooms: format!("one per publisher (bench-stored-0 .. bench-stored-{last}): one delivery per message"),
            payload: args.payload,
            warmup_s: seconds(args.warmup).as_secs_f64(),
            duration_s: duration,
            acked_per_second: if duration > 0.0 { acked as f64 / duration } else { 0.0 },
            ack_latency_ms: Latency::from_micros(&total.latency),
            errors: total.counts.errors_by_code.values().sum(),
            counts: total.counts,
            server_cpu_seconds: server_cpu,
            server_cpu_seconds_per_1000: server_cpu.filter(|_| acked > 0).map(|cpu| cpu * 1000.0 / acked as f64),
            server_core_busy_seconds: core_busy,
            bench_cpu_seconds: bench_cpu,
        }
    }

    /// Prints the report: one JSON object, or a few lines for people.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let StoredReport { server, publishers, payload, warmup_s, duration_s, errors, .. } = self;
        let Counts { acked, acked_total, msg_events_total, seq_breaks, errors_by_code, first_error } = &self.counts;
        println!(
            "stored against {server}: {publishers} publishers, each in its own room (so fan-out is one delivery \
             per message), one send outstanding each, {payload} B bodies, {warmup_s}s warmup, {duration_s}s measured"
        );
        println!("acked {acked} in the window: {:.0} messages/s", self.acked_per_second);
        if let Some(Latency { p50, p99, p999, max }) = self.ack_latency_ms {
            println!("ack latency ms (send to ack): p50 {p50:.3}, p99 {p99:.3}, p99.9 {p999:.3}, max {max:.3}");
        }
        let codes: Vec<String> = errors_by_code.iter().map(|(code, count)| format!("{code} {count}")).collect();
        match first_error {
            Some(first) => println!("ERRORS: {errors} sends refused ({}); first: {first}", codes.join(", ")),
            None => println!("errors: none"),
        }
        println!("whole run: {acked_total} acked, {msg_events_total} msg events received, {seq_breaks} seq breaks");
        if let (Some(cpu), Some(per)) = (self.server_cpu_seconds, self.server_cpu_seconds_per_1000) {
            println!("server CPU {cpu:.2}s: {per:.4}s per 1000 acked messages");
        }
        if let Some(busy) = self.server_core_busy_seconds {
            println!("server core busy {busy:.2}s of {duration_s}s (softirq included)");
        }
        if let Some(bench) = self.bench_cpu_seconds {
            println!("load generator CPU {bench:.2}s");
        }
        Ok(())
    }
}
