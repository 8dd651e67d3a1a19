//! The load generator's WebSocket client: the opening handshake, masked
//! frames out, and server frames read in place from one buffer per
//! connection (no copy and no allocation per delivered message, so the
//! client is not what limits a run). Written here rather than taken from
//! tokio-tungstenite, whose per-message `String`s and per-connection
//! buffers cost the bench more CPU than the servers it measures.

use super::lines::{connect, Lines, HANDSHAKE_TIMEOUT};
use super::tls::{Stream, TlsArgs};
use anyhow::{bail, Context};
use base64::Engine;
use memchr::memmem;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest response head accepted from a server.
const MAX_HEAD: usize = 16 * 1024;
/// Largest message accepted (fragments joined).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// What a frame (or a whole fragmented message) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    /// The server closed; the payload starts with the close code.
    Close,
}

/// One open client WebSocket.
#[derive(Debug)]
pub struct WsConn {
    lines: Lines<Stream>,
    /// A fragmented message being joined: its kind and bytes so far.
    partial: Option<(Kind, Vec<u8>)>,
    /// Control answers owed to the server (pongs), written by [`WsConn::flush`].
    owed: Vec<u8>,
}

/// Connects to `server` from `source` (through TLS when `tls` says so) and
/// completes the opening handshake for `path` within [`HANDSHAKE_TIMEOUT`].
/// `buffer` is the read buffer's starting size (it grows for large frames).
pub async fn open(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    buffer: usize,
    tls: &TlsArgs,
) -> anyhow::Result<WsConn> {
    let handshake = async {
        let key = client_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let (lines, head) = exchange(server, source, tls, buffer, &request).await?;
        check_upgrade(&head, &key)?;
        anyhow::Ok(WsConn { lines, partial: None, owed: Vec::new() })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .with_context(|| format!("no WebSocket handshake from {server}{path} in {HANDSHAKE_TIMEOUT:?}"))?
}

/// A fresh, distinct `Sec-WebSocket-Key` (16 bytes, base64).
fn client_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0x5eed_1234_abcd_0001);
    let n = NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    raw[8..].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Connects to `server` from `source` (through TLS when `tls` says so),
/// sends `request` and reads the response's head; returns the connection,
/// with a read buffer of `buffer` bytes to start with, and the head.
pub(super) async fn exchange(
    server: SocketAddr,
    source: Option<IpAddr>,
    tls: &TlsArgs,
    buffer: usize,
    request: &str,
) -> anyhow::Result<(Lines<Stream>, Vec<u8>)> {
    let stream = tls.wrap(connect(server, source).await?, server).await?;
    let mut lines = Lines::with_capacity(stream, buffer);
    lines.send(request.as_bytes()).await?;
    let head = read_head(&mut lines).await?;
    Ok((lines, head))
}

/// Reads the response head (through the blank line) and consumes it.
async fn read_head(lines: &mut Lines<Stream>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(end) = memmem::find(lines.pending(), b"\r\n\r\n") {
            return Ok(lines.consume(end + 4).to_vec());
        }
        if lines.pending().len() > MAX_HEAD {
            bail!("a response head over {MAX_HEAD} bytes");
        }
        if lines.fill().await? == 0 {
            bail!("the server closed the connection during the handshake");
        }
    }
}

fn check_upgrade(head: &[u8], key: &str) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(head);
    let status = text.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("the server refused the upgrade: {status}");
    }
    let expected = switchboard_protocol::handshake::accept_key(key.as_bytes());
    let accepted = text.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if !accepted {
        bail!("the server's Sec-WebSocket-Accept is missing or wrong");
    }
    Ok(())
}

impl WsConn {
    /// Sends one text message in a single masked frame.
    pub async fn send_text(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        encode_masked(&mut frame, 0x1, payload);
        self.lines.send(&frame).await
    }

    /// Sends several text messages, one frame each, in one write.
    pub async fn send_texts<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> anyhow::Result<()> {
        let mut frames = Vec::new();
        for payload in payloads {
            encode_masked(&mut frames, 0x1, payload);
        }
        self.lines.send(&frames).await
    }

    /// Writes frames already encoded with [`encode_masked`].
    pub async fn send_raw(&mut self, frames: &[u8]) -> anyhow::Result<()> {
        self.lines.send(frames).await
    }

    /// Starts a normal close (1000) without waiting for the answer.
    pub async fn send_close(&mut self) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(8);
        encode_masked(&mut frame, 0x8, &1000u16.to_be_bytes());
        self.lines.send(&frame).await
    }

    /// Reads once; 0 at end of stream. Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.lines.fill().await
    }

    /// Hands every complete message in the buffer to `on_message`, answers
    /// pings (see [`WsConn::flush`]) and drops pongs.
    pub fn drain(&mut self, mut on_message: impl FnMut(Kind, &[u8])) -> anyhow::Result<()> {
        while let Some((header, length)) = parse_header(self.lines.pending())? {
            if self.lines.pending().len() < header + length {
                break;
            }
            let frame = self.lines.consume(header + length);
            let (first, payload) = (frame[0], &frame[header..]);
            let fin = first & 0x80 != 0;
            match first & 0x0f {
                0x9 => encode_masked(&mut self.owed, 0xA, payload),
                0xA => {}
                0x8 => on_message(Kind::Close, payload),
                opcode @ (0x1 | 0x2) if fin && self.partial.is_none() => {
                    on_message(if opcode == 0x1 { Kind::Text } else { Kind::Binary }, payload)
                }
                opcode @ (0x1 | 0x2) if self.partial.is_none() => {
                    let kind = if opcode == 0x1 { Kind::Text } else { Kind::Binary };
                    self.partial = Some((kind, payload.to_vec()));
                }
                0x0 => {
                    let Some((kind, mut joined)) = self.partial.take() else {
                        bail!("a continuation frame out of place")
                    };
                    if joined.len() + payload.len() > MAX_MESSAGE {
                        bail!("a fragmented message over {MAX_MESSAGE} bytes");
                    }
                    joined.extend_from_slice(payload);
                    if fin {
                        on_message(kind, &joined);
                    } else {
                        self.partial = Some((kind, joined));
                    }
                }
                opcode => bail!("unexpected frame (opcode {opcode:#x})"),
            }
        }
        Ok(())
    }

    /// Writes what [`WsConn::drain`] owes the server (pong answers).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let owed = std::mem::take(&mut self.owed);
        self.lines.send(&owed).await
    }

    /// Waits for a text message for which `pick` returns something, within
    /// [`HANDSHAKE_TIMEOUT`] (handshake steps only: copies).
    pub async fn expect<T>(&mut self, mut pick: impl FnMut(&[u8]) -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
        let wait = async {
            loop {
                let mut found = None;
                let mut failure = None;
                self.drain(|kind, payload| {
                    if found.is_some() || failure.is_some() {
                        return;
                    }
                    match kind {
                        Kind::Close => failure = Some(close_reason(payload)),
                        _ => match pick(payload) {
                            Ok(value) => found = value,
                            Err(error) => failure = Some(error.to_string()),
                        },
                    }
                })?;
                self.flush().await?;
                if let Some(reason) = failure {
                    bail!("{reason}");
                }
                if let Some(value) = found {
                    return Ok(value);
                }
                if self.fill().await? == 0 {
                    bail!("the server closed the connection");
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .with_context(|| format!("no answer in {HANDSHAKE_TIMEOUT:?}"))?
    }
}

/// "closed by the server with CODE REASON", from a close frame's payload.
pub fn close_reason(payload: &[u8]) -> String {
    match payload {
        [high, low, reason @ ..] => {
            format!(
                "closed by the server with {} {}",
                u16::from_be_bytes([*high, *low]),
                String::from_utf8_lossy(reason)
            )
        }
        _ => "closed by the server".to_owned(),
    }
}

/// A server frame's header length and payload length, once the header is
/// complete. Server frames must not be masked.
fn parse_header(data: &[u8]) -> anyhow::Result<Option<(usize, usize)>> {
    let [first, second, rest @ ..] = data else { return Ok(None) };
    if second & 0x80 != 0 {
        bail!("the server sent a masked frame");
    }
    if first & 0x70 != 0 {
        bail!("the server set reserved bits (no extension was negotiated)");
    }
    let (header, length) = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => (4, usize::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => (10, u64::from_be_bytes(bytes.try_into()?) as usize),
            None => return Ok(None),
        },
        short => (2, usize::from(short)),
    };
    if length > MAX_MESSAGE {
        bail!("a frame of {length} bytes, over {MAX_MESSAGE}");
    }
    Ok(Some((header, length)))
}

/// Appends one final client frame: masked, as RFC 6455 requires.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    static NEXT_MASK: AtomicU64 = AtomicU64::new(0x1234_5678);
    let mask = (NEXT_MASK.fetch_add(0x9e37_79b9, Ordering::Relaxed) as u32).to_be_bytes();
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
}
