//! `switchboard bench replay`: what replaying stored messages costs. Fills
//! a fresh room with N stored messages from a few connections, closes them,
//! then times a new connection's `join` with `since: 0` from the command to
//! its `replayed` event, checking that exactly messages 1..=N arrived, in
//! order. This module owns the scenario, its checks and its report; the
//! storage protocol pieces it shares with `stored` ([`Frame`], joining at a
//! `seq`, encoding an acked send) live in that module.

use super::lines::{connect_hello, text, Lines};
use super::stored::{encode_send, join_seq, Frame, ANSWER_TIMEOUT, MSG_PREFIX};
use anyhow::{bail, ensure, Context};
use serde_json::value::RawValue;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;

/// Connections filling the room to replay, and the sends each keeps outstanding.
const FILLERS: u64 = 4;
const FILL_WINDOW: u64 = 256;

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Switchboard's raw TCP listener.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub tcp: SocketAddr,
    /// Messages to store in a fresh room, then replay. The server's
    /// `storage.room_max_messages` must be at least this.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A room name no earlier run used: the time and this process's id.
fn fresh_room() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    format!("bench-replay-{ms}-{}", std::process::id())
}

/// Sends `quota` messages with up to [`FILL_WINDOW`] outstanding; returns
/// the acked `seq`s. Any refusal fails the fill.
async fn fill_one(mut lines: Lines<TcpStream>, room: &str, quota: u64, size: usize) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(usize::try_from(quota).unwrap_or(0));
    let (mut sent, mut batch) = (0u64, Vec::new());
    while (seqs.len() as u64) < quota {
        batch.clear();
        while sent < quota && sent - (seqs.len() as u64) < FILL_WINDOW {
            encode_send(&mut batch, room, sent, sent, size);
            sent += 1;
        }
        if !batch.is_empty() {
            lines.send(&batch).await?;
        }
        let read = tokio::time::timeout(ANSWER_TIMEOUT, lines.fill())
            .await
            .with_context(|| format!("no answer in {ANSWER_TIMEOUT:?} ({} of {quota} acked)", seqs.len()))??;
        if read == 0 {
            bail!("the server closed the connection");
        }
        while let Some(line) = lines.line() {
            if line.starts_with(MSG_PREFIX) {
                continue;
            }
            let frame = Frame::parse(line)?;
            frame.check_fatal(line)?;
            if frame.re.is_none() {
                continue;
            }
            match (frame.ok, frame.seq) {
                (Some(true), Some(seq)) => seqs.push(seq),
                _ => bail!("a send to {room} was refused: {}", text(line)),
            }
        }
    }
    Ok(seqs)
}

/// Fills `room` with `args.messages` messages from several connections,
/// checks that they were stored as 1..=N, and closes the connections.
async fn fill(args: &ReplayArgs, room: &str) -> anyhow::Result<()> {
    // Everyone joins before anyone sends, so each join sees the room empty.
    let mut connections = Vec::new();
    for index in 0..FILLERS {
        let mut lines = connect_hello(args.tcp, &format!("filler{index}")).await?;
        let seq = join_seq(&mut lines, room).await?;
        ensure!(seq == 0, "room {room} is not fresh: it already holds messages through seq {seq}");
        connections.push(lines);
    }
    let mut tasks = Vec::new();
    for (index, lines) in (0..FILLERS).zip(connections) {
        let quota = args.messages / FILLERS + u64::from(index < args.messages % FILLERS);
        let (room, size) = (room.to_owned(), args.payload);
        tasks.push(tokio::spawn(async move { fill_one(lines, &room, quota, size).await }));
    }
    let mut seqs = Vec::new();
    for (index, task) in tasks.into_iter().enumerate() {
        seqs.extend(task.await.context("a filler task failed")?.with_context(|| format!("filler {index}"))?);
    }
    seqs.sort_unstable();
    let (count, first, last) = (seqs.len(), seqs.first(), seqs.last());
    let n = args.messages;
    ensure!(seqs.iter().copied().eq(1..=n), "{room}: {count} acks, seqs {first:?}..{last:?}; expected exactly 1..={n}");
    Ok(())
}

/// The checks a replay must pass, fed one line at a time.
#[derive(Debug)]
struct ReplayCheck {
    room: String,
    /// `{"ev":"msg","room":ROOM,"seq":` (how the server encodes a message).
    prefix: Vec<u8>,
    expected: u64,
    /// The `seq` the next message must have.
    next: u64,
    started: Instant,
    reply_after: Option<Duration>,
    first_after: Option<Duration>,
}

impl ReplayCheck {
    fn new(room: &str, expected: u64, started: Instant) -> Self {
        let prefix = format!("{{\"ev\":\"msg\",\"room\":{},\"seq\":", serde_json::json!(room)).into_bytes();
        ReplayCheck { room: room.to_owned(), prefix, expected, next: 1, started, reply_after: None, first_after: None }
    }

    /// One line; returns true at the `replayed` event, once every check passed.
    fn line(&mut self, line: &[u8]) -> anyhow::Result<bool> {
        if let Some(rest) = line.strip_prefix(self.prefix.as_slice()) {
            let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
            let seq = std::str::from_utf8(&rest[..digits]).ok().and_then(|seq| seq.parse().ok());
            return self.message(seq, line).map(|()| false);
        }
        let frame = Frame::parse(line)?;
        frame.check_fatal(line)?;
        if frame.re.map(RawValue::get) == Some("\"replay\"") {
            ensure!(frame.ok == Some(true), "the join was refused: {}", text(line));
            ensure!(frame.seq == Some(self.expected), "the join reply's seq is not {}: {}", self.expected, text(line));
            let hint = "is storage.room_max_messages below --messages?";
            ensure!(frame.recovered == Some(true), "the join reply says not recovered ({hint}): {}", text(line));
            self.reply_after = Some(self.started.elapsed());
            return Ok(false);
        }
        match frame.ev.as_deref() {
            Some("msg") if frame.room.as_deref() == Some(self.room.as_str()) => {
                self.message(frame.seq, line).map(|()| false)
            }
            Some("msg") => bail!("a message from another room: {}", text(line)),
            Some("replayed") => self.replayed(&frame, line).map(|()| true),
            _ => Ok(false),
        }
    }

    fn message(&mut self, seq: Option<u64>, line: &[u8]) -> anyhow::Result<()> {
        ensure!(self.reply_after.is_some(), "a message before the join reply: {}", text(line));
        ensure!(seq == Some(self.next), "expected message {} of {}, got {}", self.next, self.expected, text(line));
        self.first_after.get_or_insert_with(|| self.started.elapsed());
        self.next += 1;
        Ok(())
    }

    fn replayed(&self, frame: &Frame<'_>, line: &[u8]) -> anyhow::Result<()> {
        let received = self.next - 1;
        ensure!(received == self.expected, "replayed after {received} messages, not {}: {}", self.expected, text(line));
        ensure!(frame.count == Some(self.expected), "the replayed count is not {}: {}", self.expected, text(line));
        ensure!(frame.recovered == Some(true), "the replay says not recovered: {}", text(line));
        ensure!(frame.room.as_deref() == Some(self.room.as_str()), "replayed for another room: {}", text(line));
        Ok(())
    }
}

/// The outcome of `bench replay`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    pub scenario: &'static str,
    pub server: String,
    pub room: String,
    pub messages: u64,
    pub payload: usize,
    /// Filling the room (several connections, many sends outstanding):
    /// first connection to last ack.
    pub fill_seconds: f64,
    pub fill_per_second: f64,
    /// From sending the join to its reply, to the first message, to `replayed`.
    pub join_reply_ms: f64,
    pub first_message_ms: f64,
    pub replay_seconds: f64,
    pub replayed_per_second: f64,
}

/// Fills a fresh room, then times a `join` with `since: 0` until `replayed`.
pub async fn run_replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    ensure!(args.messages > 0, "--messages must be positive");
    let room = fresh_room();
    let fill_started = Instant::now();
    fill(args, &room).await?;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let mut lines = connect_hello(args.tcp, "replayer").await?;
    let command = serde_json::json!({"op": "join", "room": room, "since": 0, "id": "replay"});
    let started = Instant::now();
    lines.send(format!("{command}\n").as_bytes()).await?;
    let mut check = ReplayCheck::new(&room, args.messages, started);
    'read: loop {
        let read = tokio::time::timeout(ANSWER_TIMEOUT, lines.fill()).await.with_context(|| {
            format!("the replay stalled for {ANSWER_TIMEOUT:?} after {} messages", check.next - 1)
        })??;
        if read == 0 {
            bail!("the server closed the connection after {} replayed messages", check.next - 1);
        }
        while let Some(line) = lines.line() {
            if check.line(line)? {
                break 'read;
            }
        }
    }
    let replay_seconds = started.elapsed().as_secs_f64();
    let ms = |after: Option<Duration>| after.map_or(0.0, |after| after.as_secs_f64() * 1000.0);
    Ok(ReplayReport {
        scenario: "replay",
        server: args.tcp.to_string(),
        room,
        messages: args.messages,
        payload: args.payload,
        fill_seconds,
        fill_per_second: args.messages as f64 / fill_seconds.max(1e-9),
        join_reply_ms: ms(check.reply_after),
        first_message_ms: ms(check.first_after),
        replay_seconds,
        replayed_per_second: args.messages as f64 / replay_seconds.max(1e-9),
    })
}

impl ReplayReport {
    /// Prints the report: one JSON object, or a few lines for people.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let ReplayReport { server, room, messages: n, payload, .. } = self;
        let (fill, fill_rate, replay, rate) =
            (self.fill_seconds, self.fill_per_second, self.replay_seconds, self.replayed_per_second);
        println!(
            "replay against {server}: room {room} filled with {n} messages of {payload} B by {FILLERS} \
             connections ({FILL_WINDOW} sends outstanding each) in {fill:.2}s ({fill_rate:.0}/s)"
        );
        println!(
            "join since 0: reply after {:.1} ms, first message after {:.1} ms; all {n} replayed in order \
             (seq 1..={n}) after {replay:.3}s: {rate:.0} messages/s",
            self.join_reply_ms, self.first_message_ms
        );
        Ok(())
    }
}
