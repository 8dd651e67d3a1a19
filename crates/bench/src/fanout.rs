//! `switchboard bench tcp-fanout`: N subscribers on raw TCP, one publisher
//! on its own connection at a fixed rate; every subscriber counts, checks
//! and times what it receives. Speaks the switchboard JSON-lines protocol
//! or redis pub/sub (RESP), so both servers face the same load.

use super::common::{now_micros, payload, source_ip, stamp, Pacer, Tally, CLOSE_EVENT, MSG_EVENT};
use super::lines::{connect, hello, is_error_line, join, parse_resp, Lines, HANDSHAKE_TIMEOUT};
use super::measure::{measure, next_read, Errors, Feed, LoadArgs, Members, Published, Report, Spec};
use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The room (switchboard) or channel (redis) everyone is in.
const ROOM: &str = "fan";
/// Subscribers connecting at once.
const CONCURRENCY: usize = 128;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Switchboard's raw TCP JSON lines.
    Switchboard,
    /// Redis pub/sub (RESP2).
    Redis,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Server address: switchboard's raw TCP listener, or redis.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub server: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Switchboard)]
    pub protocol: Protocol,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages published per second (in total).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl FanoutArgs {
    fn spec(&self) -> Spec {
        let protocol = match self.protocol {
            Protocol::Switchboard => "switchboard",
            Protocol::Redis => "redis",
        };
        self.load.spec("tcp-fanout", protocol, self.server, self.rate)
    }
}

/// Connects every subscriber, publishes, and reports.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<Report> {
    let spec = args.spec();
    let connections: Vec<Lines<TcpStream>> = futures_util::stream::iter(0..args.subscribers)
        .map(|index| subscribe(args, index))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut members = Members::new()?;
    for connection in connections {
        let protocol = args.protocol;
        members.spawn(move |feed| subscriber(connection, protocol, feed));
    }
    measure(&spec, members, publish(args)).await
}

/// One subscriber, connected and in the room.
async fn subscribe(args: &FanoutArgs, index: usize) -> anyhow::Result<Lines<TcpStream>> {
    let stream = connect(args.server, source_ip(args.server, index, args.load.sources)).await?;
    let mut lines = Lines::new(stream);
    let handshake = async {
        match args.protocol {
            Protocol::Switchboard => join_switchboard(&mut lines, &format!("sub{index}")).await,
            Protocol::Redis => subscribe_redis(&mut lines).await,
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .with_context(|| format!("subscriber {index}: no answer in {HANDSHAKE_TIMEOUT:?}"))?
        .with_context(|| format!("subscriber {index}"))?;
    Ok(lines)
}

/// `hello` as `name`, then `join` the room and wait for its reply.
async fn join_switchboard(lines: &mut Lines<TcpStream>, name: &str) -> anyhow::Result<()> {
    hello(lines, name).await?;
    join(lines, ROOM, &serde_json::json!(1)).await?;
    Ok(())
}

/// `SUBSCRIBE fan` and wait for the confirmation.
async fn subscribe_redis(lines: &mut Lines<TcpStream>) -> anyhow::Result<()> {
    lines.send(format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{ROOM}\r\n", ROOM.len()).as_bytes()).await?;
    let reply = lines.next_resp().await?;
    if reply.first().map(Vec::as_slice) != Some(b"subscribe".as_slice()) {
        let text: Vec<_> = reply.iter().map(|item| String::from_utf8_lossy(item).into_owned()).collect();
        bail!("SUBSCRIBE answered with {text:?}");
    }
    Ok(())
}

/// Reads until told to stop or closed, counting every message.
async fn subscriber(mut lines: Lines<TcpStream>, protocol: Protocol, feed: Feed) -> Tally {
    let Feed { received, mut stop, mut tally } = feed;
    loop {
        if !next_read(&mut stop, &mut tally, lines.fill()).await {
            break;
        }
        let before = tally.received;
        let decoded = match protocol {
            Protocol::Switchboard => decode_lines(&mut lines, &mut tally),
            Protocol::Redis => decode_resp(&mut lines, &mut tally),
        };
        received.fetch_add(tally.received - before, Ordering::Relaxed);
        tally.flush();
        if let Err(error) = decoded {
            tally.close(format!("unreadable data: {error:#}"));
            break;
        }
    }
    tally
}

fn decode_lines(lines: &mut Lines<TcpStream>, tally: &mut Tally) -> anyhow::Result<()> {
    let now = now_micros();
    while let Some(line) = lines.line() {
        on_event(line, now, tally);
    }
    Ok(())
}

/// One switchboard event (a line, or a datagram): a message is counted, a
/// close event noted, anything else (presence, pongs) ignored.
pub fn on_event(event: &[u8], now: u64, tally: &mut Tally) {
    if event.starts_with(b"{\"ev\":\"msg\"") || MSG_EVENT.find(event).is_some() {
        if let Some((n, t)) = stamp(event) {
            return tally.record(n, t, now);
        }
    }
    if CLOSE_EVENT.find(event).is_some() {
        tally.close(String::from_utf8_lossy(event).trim());
    }
}

fn decode_resp(lines: &mut Lines<TcpStream>, tally: &mut Tally) -> anyhow::Result<()> {
    let now = now_micros();
    while let Some((value, used)) = parse_resp(lines.pending())? {
        let frame = lines.consume(used);
        if value.item(0).map(|kind| kind.bytes(frame)) == Some(b"message".as_slice()) {
            if let Some((n, t)) = value.item(2).and_then(|body| stamp(body.bytes(frame))) {
                tally.record(n, t, now);
            }
        }
    }
    Ok(())
}

/// Connects the publisher and publishes on schedule.
async fn publish(args: &FanoutArgs) -> anyhow::Result<Published> {
    let mut lines = Lines::new(connect(args.server, None).await?);
    if args.protocol == Protocol::Switchboard {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, join_switchboard(&mut lines, "pub"))
            .await
            .context("publisher: no answer to hello and join")?
            .context("publisher")?;
    }
    let (read, write) = lines.into_inner().into_split();
    let errors = Arc::new(Errors::default());
    // The publisher reads too: switchboard sends it its own messages, redis
    // answers every PUBLISH.
    let reader = tokio::spawn(count_errors(Lines::new(read), Arc::clone(&errors)));
    let size = args.load.size;
    let mut body = Vec::with_capacity(size);
    let encode = |out: &mut Vec<u8>, n: u64, t: u64| match args.protocol {
        Protocol::Switchboard => {
            out.extend_from_slice(b"{\"op\":\"send\",\"room\":\"fan\",\"body\":");
            payload(out, n, t, size);
            out.extend_from_slice(b"}\n");
        }
        Protocol::Redis => {
            body.clear();
            payload(&mut body, n, t, size);
            out.extend_from_slice(format!("*3\r\n$7\r\nPUBLISH\r\n$3\r\nfan\r\n${}\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n");
        }
    };
    let (sent, seconds) = pace(args.rate, Duration::from_secs_f64(args.load.duration.max(0.0)), write, encode).await?;
    Ok(Published { sent, seconds, errors, reader: Some(reader) })
}

/// Writes messages on a [`Pacer`] schedule, each tick's batch in one write;
/// returns how many went out and how long that took.
pub async fn pace<W, E>(rate: f64, duration: Duration, mut out: W, mut encode: E) -> anyhow::Result<(u64, f64)>
where
    W: AsyncWrite + Unpin,
    E: FnMut(&mut Vec<u8>, u64, u64),
{
    let mut pacer = Pacer::new(rate, duration);
    let mut batch = Vec::new();
    while let Some(count) = pacer.next_batch().await {
        if count == 0 {
            continue;
        }
        let t = now_micros();
        batch.clear();
        for n in pacer.sent() - count + 1..=pacer.sent() {
            encode(&mut batch, n, t);
        }
        out.write_all(&batch).await.context("publishing")?;
    }
    out.flush().await?;
    Ok((pacer.sent(), pacer.elapsed().as_secs_f64()))
}

/// The close line after a client shut its side: the expected end.
const NORMAL_CLOSE: &[u8] = br#"{"ev":"close","code":1000,"#;

/// Drains the publisher's connection, noting error events or replies.
async fn count_errors<R: AsyncRead + Unpin>(mut lines: Lines<R>, errors: Arc<Errors>) {
    // Ends at end of stream too, which comes when the publisher is done:
    // dropping its write half shuts the connection down, and switchboard
    // answers what is pending, then says goodbye with a normal close line.
    while let Ok(1..) = lines.fill().await {
        while let Some(line) = lines.line() {
            if is_error_line(line) && memchr::memmem::find(line, NORMAL_CLOSE).is_none() {
                errors.note(line);
            }
        }
    }
}
