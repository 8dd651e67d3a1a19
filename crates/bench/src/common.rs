//! What the throughput scenarios share: the clock and payload every message
//! carries, the per-member tally, the publishing schedule and server CPU.

use super::latency::Latencies;
use anyhow::Context;
use memchr::memmem::Finder;
use nix::time::{clock_gettime, ClockId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// File descriptors a bench process keeps back for itself.
const RESERVED_FDS: u64 = 100;

/// Substring searchers, built once (building one costs more than a search).
pub static MSG_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ev\":\"msg\""));
pub static CLOSE_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ev\":\"close\""));
pub static ERROR_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ev\":\"error\""));
static PAYLOAD_N: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"{\"n\":"));
static PAYLOAD_T: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\":"));

/// Microseconds on the machine's monotonic clock (`CLOCK_MONOTONIC`), which
/// every process reads alike. The publisher stamps each message with it and
/// the members, in this process or in a worker process, subtract it from
/// their own reading: publish-to-receive latency with no clock skew.
pub fn now_micros() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(now) => {
            let seconds = u64::try_from(now.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(now.tv_nsec()).unwrap_or(0);
            seconds * 1_000_000 + nanos / 1_000
        }
        // Linux always has this clock; should it ever fail, this process's
        // own clock still serves members in this process.
        Err(_) => u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// This process's open-files limit, raised to its hard limit, and how many
/// connections that leaves it.
pub fn socket_allowance() -> (u64, usize) {
    let open_files = switchboard_server::limits::raise_open_files_limit();
    (open_files, open_files.saturating_sub(RESERVED_FDS).max(1) as usize)
}

/// Appends the body every scenario publishes, `{"n":N,"t":MICROS,"pad":"xx.."}`,
/// padded with `x` to `size` bytes (or as short as it can be).
pub fn payload(out: &mut Vec<u8>, n: u64, t: u64, size: usize) {
    let start = out.len();
    out.extend_from_slice(b"{\"n\":");
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b",\"t\":");
    out.extend_from_slice(t.to_string().as_bytes());
    out.extend_from_slice(b",\"pad\":\"");
    let pad = size.saturating_sub(out.len() - start + 2);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

/// Finds a payload's `{"n":N` and the `"t":T` after it in an event or
/// payload: `(n, t)`. (Key order may change on the way: JSON re-encoders
/// sort keys.)
pub fn stamp(data: &[u8]) -> Option<(u64, u64)> {
    let at = PAYLOAD_N.find(data)?;
    let (n, rest) = number(&data[at + 5..])?;
    let at = PAYLOAD_T.find(rest)?;
    let (t, _) = number(&rest[at + 4..])?;
    Some((n, t))
}

/// Calls `found(n, t)` for every payload in `data` (a server may put
/// several messages in one frame).
pub fn each_stamp(mut data: &[u8], mut found: impl FnMut(u64, u64)) {
    while let Some(at) = PAYLOAD_N.find(data) {
        let Some((n, rest)) = number(&data[at + 5..]) else {
            data = &data[at + 5..];
            continue;
        };
        let Some(t_at) = PAYLOAD_T.find(rest) else { return };
        let Some((t, after)) = number(&rest[t_at + 4..]) else { return };
        found(n, t);
        data = after;
    }
}

fn number(data: &[u8]) -> Option<(u64, &[u8])> {
    let end = data.iter().position(|byte| !byte.is_ascii_digit()).unwrap_or(data.len());
    if end == 0 || end > 19 {
        return None;
    }
    let value = data[..end].iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    Some((value, &data[end..]))
}

/// What one member saw.
#[derive(Debug)]
pub struct Tally {
    pub received: u64,
    /// Highest `n` seen (messages are numbered from 1).
    pub max_n: u64,
    /// Messages skipped between two received ones.
    pub gaps: u64,
    /// Messages whose `n` was not above every earlier one (late or twice).
    pub out_of_order: u64,
    /// Why the member stopped before the end, if it did.
    pub closed: Option<String>,
    /// Latencies (µs) of the current read, not yet in a histogram.
    samples: Vec<u64>,
    latencies: Arc<Latencies>,
}

impl Tally {
    pub fn new(latencies: Arc<Latencies>) -> Self {
        Tally { received: 0, max_n: 0, gaps: 0, out_of_order: 0, closed: None, samples: Vec::new(), latencies }
    }

    /// Counts message `n`, sent at `t` (microseconds), received at `now`.
    pub fn record(&mut self, n: u64, t: u64, now: u64) {
        self.received += 1;
        if n > self.max_n {
            self.gaps += n - self.max_n - 1;
            self.max_n = n;
        } else {
            self.out_of_order += 1;
        }
        self.samples.push(now.saturating_sub(t));
    }

    /// Hands the latencies recorded since the last call to the histograms.
    pub fn flush(&mut self) {
        self.latencies.record(&self.samples);
        self.samples.clear();
    }

    /// Notes that the server closed this member (the first reason wins).
    pub fn close(&mut self, reason: impl Into<String>) {
        if self.closed.is_none() {
            self.closed = Some(reason.into());
        }
    }
}

/// Every member's tally, merged.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub received: u64,
    pub gaps: u64,
    pub out_of_order: u64,
    pub members_with_loss: usize,
    pub members_closed: usize,
    pub close_reason: Option<String>,
}

impl Totals {
    /// Adds another set of members' totals (a worker process's).
    pub fn merge(&mut self, other: Totals) {
        self.received += other.received;
        self.gaps += other.gaps;
        self.out_of_order += other.out_of_order;
        self.members_with_loss += other.members_with_loss;
        self.members_closed += other.members_closed;
        if self.close_reason.is_none() {
            self.close_reason = other.close_reason;
        }
    }

    /// Merges one member's tally; `sent` is how many it should have seen.
    pub fn add(&mut self, mut tally: Tally, sent: u64) {
        tally.flush();
        self.received += tally.received;
        self.gaps += tally.gaps;
        self.out_of_order += tally.out_of_order;
        self.members_with_loss += usize::from(tally.received < sent);
        if let Some(reason) = tally.closed {
            self.members_closed += 1;
            self.close_reason.get_or_insert(reason);
        }
    }
}

/// A fixed publishing schedule: `rate` messages a second for `duration`.
/// It wakes every tick (1 ms, longer at rates under 1000/s) and says how many
/// messages are due by then, so rounding never accumulates and a late tick
/// is caught up by the next batch.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    next: Instant,
    tick: Duration,
    rate: f64,
    duration: Duration,
    total: u64,
    sent: u64,
}

impl Pacer {
    pub fn new(rate: f64, duration: Duration) -> Self {
        let rate = rate.max(0.001);
        let tick = Duration::from_secs_f64((1.0 / rate).clamp(0.001, 1.0));
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let start = Instant::now();
        Pacer { start, next: start + tick, tick, rate, duration, total, sent: 0 }
    }

    /// Waits for the next tick and returns how many messages are due now
    /// (possibly none), or `None` once every message is out.
    pub async fn next_batch(&mut self) -> Option<u64> {
        if self.sent >= self.total {
            return None;
        }
        tokio::time::sleep_until(self.next.into()).await;
        let now = Instant::now();
        self.next = (self.next + self.tick).max(now);
        let elapsed = now.duration_since(self.start);
        let due = if elapsed >= self.duration {
            self.total
        } else {
            ((elapsed.as_secs_f64() * self.rate) as u64).clamp(self.sent, self.total)
        };
        let batch = due - self.sent;
        self.sent = due;
        Some(batch)
    }

    /// Messages handed out so far (numbered 1..=sent).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The source address for member `index`: 127.0.0.2 .. 127.0.0.(1+sources)
/// when the server is on IPv4 loopback (more ports to connect from), else
/// none (let the system choose).
pub fn source_ip(server: SocketAddr, index: usize, sources: u8) -> Option<IpAddr> {
    let spread = usize::from(sources.min(250));
    if spread == 0 || !matches!(server.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % spread) as u8)))
}

/// User plus system CPU time a process has used so far, in seconds
/// (fields 14 and 15 of /proc/PID/stat, in clock ticks).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces; count from its ')'.
    let after_name = stat.rfind(')').map(|at| &stat[at + 1..]).context("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<u64> {
        fields.get(index).context("short /proc stat")?.parse().context("malformed /proc stat field")
    };
    let ticks = field(11)? + field(12)?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Seconds CPU `core` has spent busy so far: every /proc/stat column but
/// idle and iowait. Unlike a process's own CPU time this includes the softirq
/// work done on that core (on loopback, delivering what the server sends),
/// which the kernel may charge to no process.
pub fn core_busy_seconds(core: usize) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let mut ticks = 0u64;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    for (column, value) in line.split_whitespace().skip(1).take(8).enumerate() {
        if column != 3 && column != 4 {
            ticks += value.parse::<u64>().context("malformed /proc/stat")?;
        }
    }
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on every Linux this runs on, the fallback).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size_and_round_trip() {
        let mut out = Vec::new();
        payload(&mut out, 42, 1_234_567, 100);
        assert_eq!(out.len(), 100);
        assert_eq!(stamp(&out), Some((42, 1_234_567)));
        let body: serde_json::Value = serde_json::from_slice(&out).expect("payload is JSON");
        assert_eq!(body["n"], 42);
        let event = format!(r#"{{"ev":"msg","room":"fan","seq":9,"from":"pub","ts":1,"body":{}}}"#, body);
        assert_eq!(stamp(event.as_bytes()), Some((42, 1_234_567)));
    }

    /// Every core's busy seconds, summed.
    fn all_cores_busy() -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (0..cores).map(|core| core_busy_seconds(core).expect("/proc/stat")).sum()
    }

    #[test]
    fn cpu_time_is_read_from_proc() {
        // Spin until the kernel has charged this process 0.2 s of CPU (it
        // counts in ticks of 10 ms): the readings must move with it, and a
        // reading that stood still would spin until the deadline.
        let pid = std::process::id();
        let (before, busy_before) = (cpu_seconds(pid).expect("own /proc stat"), all_cores_busy());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cpu_seconds(pid).expect("own /proc stat") < before + 0.2 {
            assert!(std::time::Instant::now() < deadline, "30 s of spinning and no 0.2 s of CPU time counted");
            for _ in 0..1000 {
                std::hint::black_box(now_micros());
            }
        }
        let used = cpu_seconds(pid).expect("own /proc stat") - before;
        // The cores were busy at least while this process ran on them.
        let busy = all_cores_busy() - busy_before;
        assert!(busy >= used - 0.05, "cores busy {busy:.2} s while this process used {used:.2} s");
    }

    #[test]
    fn the_tally_counts_gaps_and_late_messages() {
        let latencies = Latencies::new().expect("histograms");
        let mut tally = Tally::new(Arc::clone(&latencies));
        for n in [1, 2, 5, 6, 4, 10] {
            tally.record(n, 1000 - n, 1000);
        }
        assert_eq!((tally.received, tally.max_n, tally.gaps, tally.out_of_order), (6, 10, 5, 1));
        tally.flush();
        let histogram = latencies.merged();
        assert_eq!((histogram.len(), histogram.min(), histogram.max()), (6, 1, 10));
    }

    /// Worker processes compare their readings with the parent's, so the
    /// clock must be the machine's, not one that starts with the process
    /// (which would read less than this process's age, far below uptime).
    #[test]
    fn message_stamps_use_the_machine_s_monotonic_clock() {
        let machine = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
        let machine_micros = machine.tv_sec() as u64 * 1_000_000 + machine.tv_nsec() as u64 / 1_000;
        let ours = now_micros();
        assert!(ours >= machine_micros && ours - machine_micros < 1_000_000, "{ours} against {machine_micros}");
    }
}
