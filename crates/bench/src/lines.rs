//! Reading frames off a stream without a copy per frame: one buffer per
//! connection, filled by `read` and cut into newline-terminated lines (the
//! switchboard JSON-lines protocol) or RESP values (redis); and the
//! JSON-lines handshakes every raw TCP scenario shares (connect, `hello`,
//! `join`).

use super::common::{CLOSE_EVENT, ERROR_EVENT};
use anyhow::{bail, Context};
use memchr::memmem;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const INITIAL_BUFFER: usize = 64 * 1024;
/// Less room than this at the end of the buffer, and it is compacted first.
const MIN_READ: usize = 4 * 1024;
/// Largest frame accepted: well above the server's 64 KiB message limit.
const MAX_BUFFER: usize = 4 * 1024 * 1024;
/// How long a handshake step may wait for its answer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Lines<S> {
    stream: S,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: AsyncRead + Unpin> Lines<S> {
    pub fn new(stream: S) -> Self {
        Self::with_capacity(stream, INITIAL_BUFFER)
    }

    /// A reader whose buffer starts at `capacity` bytes (at least 1 KiB) and
    /// grows for large frames.
    pub fn with_capacity(stream: S, capacity: usize) -> Self {
        Lines { stream, buffer: vec![0; capacity.max(1024)], start: 0, end: 0 }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Reads once; returns how many bytes arrived (0 at end of stream).
    /// Cancel-safe: a cancelled call has read nothing.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buffer.len() - self.end < MIN_READ.min(self.buffer.len() / 4) {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else if self.buffer.len() < MAX_BUFFER {
                self.buffer.resize(self.buffer.len() * 2, 0);
            } else if self.end == self.buffer.len() {
                return Err(std::io::Error::other("a frame over 4 MiB"));
            }
        }
        let count = self.stream.read(&mut self.buffer[self.end..]).await?;
        self.end += count;
        Ok(count)
    }

    /// The next complete line in the buffer, without its newline.
    pub fn line(&mut self) -> Option<&[u8]> {
        let pending = &self.buffer[self.start..self.end];
        let newline = memchr::memchr(b'\n', pending)?;
        let line = self.start..self.start + newline;
        self.start += newline + 1;
        Some(&self.buffer[line])
    }

    /// Bytes read but not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Consumes `count` pending bytes and returns them.
    pub fn consume(&mut self, count: usize) -> &[u8] {
        let taken = self.start..(self.start + count).min(self.end);
        self.start = taken.end;
        &self.buffer[taken]
    }

    /// Waits for the next line and returns a copy (handshakes only).
    pub async fn next_line(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(line) = self.line() {
                return Ok(line.to_vec());
            }
            if self.fill().await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// Waits for the next RESP value (handshakes only): its items, copied.
    pub async fn next_resp(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        loop {
            if let Some((value, used)) = parse_resp(self.pending())? {
                let frame = self.consume(used);
                return Ok(value.items().map(|item| item.bytes(frame).to_vec()).collect());
            }
            if self.fill().await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Lines<S> {
    /// Writes `data` and flushes it (TLS records; nothing for plain TCP).
    pub async fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(data).await.context("writing to the server")?;
        self.stream.flush().await.context("writing to the server")
    }
}

/// A TCP connection to `server`, from `source` if given, without Nagle.
pub(super) async fn connect(server: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding {source}"))?;
    }
    let stream = socket.connect(server).await.with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection to `server`, named `name` with `hello`: connected and
/// greeted within [`HANDSHAKE_TIMEOUT`].
pub(super) async fn connect_hello(server: SocketAddr, name: &str) -> anyhow::Result<Lines<TcpStream>> {
    let handshake = async {
        let mut lines = Lines::new(connect(server, None).await?);
        hello(&mut lines, name).await?;
        anyhow::Ok(lines)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .with_context(|| format!("{name}: no hello from {server} in {HANDSHAKE_TIMEOUT:?}"))?
        .with_context(|| name.to_owned())
}

/// Says `hello` as `name` and waits for the hello event.
pub(super) async fn hello<S: AsyncRead + AsyncWrite + Unpin>(lines: &mut Lines<S>, name: &str) -> anyhow::Result<()> {
    lines.send(format!("{}\n", serde_json::json!({"op": "hello", "name": name})).as_bytes()).await?;
    expect_line(lines, b"\"ev\":\"hello\"").await?;
    Ok(())
}

/// Joins `room` with request id `id` and returns the reply, which must be `ok`.
pub(super) async fn join<S>(lines: &mut Lines<S>, room: &str, id: &serde_json::Value) -> anyhow::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    lines.send(format!("{}\n", serde_json::json!({"op": "join", "room": room, "id": id})).as_bytes()).await?;
    let reply = expect_line(lines, format!("\"re\":{id}").as_bytes()).await?;
    if memmem::find(&reply, b"\"ok\":true").is_none() {
        bail!("join {room} refused: {}", text(&reply));
    }
    Ok(reply)
}

/// Skips lines until one containing `marker`; fails on a close or error event.
pub(super) async fn expect_line<S: AsyncRead + Unpin>(lines: &mut Lines<S>, marker: &[u8]) -> anyhow::Result<Vec<u8>> {
    loop {
        let line = lines.next_line().await?;
        if memmem::find(&line, marker).is_some() {
            return Ok(line);
        }
        if is_error_line(&line) {
            bail!("the server said {}", text(&line));
        }
    }
}

/// A switchboard error or close event, or a redis error reply.
pub(super) fn is_error_line(line: &[u8]) -> bool {
    line.starts_with(b"-") || ERROR_EVENT.find(line).is_some() || CLOSE_EVENT.find(line).is_some()
}

/// A line from the server as text, for an error message.
pub(super) fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim().to_owned()
}

/// One item of a RESP value, as a range of the frame it was parsed from.
/// Integers and simple strings keep their type byte (`:1`, `-ERR ..`).
#[derive(Debug, Clone, Default)]
pub struct Item {
    range: Range<usize>,
}

impl Item {
    pub fn bytes<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.range.clone()).unwrap_or_default()
    }
}

/// A RESP value: an array of up to four bulk strings or integers (pub/sub
/// pushes have three; pattern messages four), or a single simple value.
#[derive(Debug, Default)]
pub struct Resp {
    items: [Item; 4],
    count: usize,
}

impl Resp {
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items[..self.count].iter()
    }

    pub fn item(&self, index: usize) -> Option<&Item> {
        self.items[..self.count].get(index)
    }
}

/// Parses one RESP value at the start of `data`: `Ok(None)` until it is
/// complete, then the value and how many bytes it took.
pub fn parse_resp(data: &[u8]) -> anyhow::Result<Option<(Resp, usize)>> {
    let Some((header, mut at)) = header(data, 0)? else { return Ok(None) };
    let mut value = Resp::default();
    if header.0 != b'*' {
        let Some(used) = scalar(data, 0, &mut value.items[0])? else { return Ok(None) };
        value.count = 1;
        return Ok(Some((value, used)));
    }
    let count = usize::try_from(header.1).unwrap_or(0);
    if count > value.items.len() {
        bail!("a RESP array of {count} items");
    }
    for slot in &mut value.items[..count] {
        let Some(next) = scalar(data, at, slot)? else { return Ok(None) };
        at = next;
    }
    value.count = count;
    Ok(Some((value, at)))
}

/// A type byte and number line (`*3\r\n`, `$7\r\n`, `:1\r\n`) at `at`:
/// (type, number) and where the next line starts.
fn header(data: &[u8], at: usize) -> anyhow::Result<Option<((u8, i64), usize)>> {
    let rest = data.get(at..).unwrap_or_default();
    let Some(newline) = memchr::memchr(b'\n', rest) else { return Ok(None) };
    let line = rest[..newline].strip_suffix(b"\r").context("RESP line without \\r")?;
    let (&kind, number) = line.split_first().context("empty RESP line")?;
    let number = match kind {
        b'*' | b'$' | b':' => std::str::from_utf8(number)?.parse()?,
        _ => 0,
    };
    Ok(Some(((kind, number), at + newline + 1)))
}

/// One bulk string, integer or simple line at `at` into `slot`; returns
/// where the next value starts.
fn scalar(data: &[u8], at: usize, slot: &mut Item) -> anyhow::Result<Option<usize>> {
    let Some(((kind, number), body)) = header(data, at)? else { return Ok(None) };
    match kind {
        b'$' if number < 0 => {
            slot.range = body..body;
            Ok(Some(body))
        }
        b'$' => {
            let end = body + usize::try_from(number)?;
            if data.len() < end + 2 {
                return Ok(None);
            }
            slot.range = body..end;
            Ok(Some(end + 2))
        }
        b':' | b'+' | b'-' => {
            slot.range = at..body.saturating_sub(2);
            Ok(Some(body))
        }
        other => bail!("unexpected RESP type {:?}", char::from(other)),
    }
}
