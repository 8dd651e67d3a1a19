//! The load generator's Server-Sent Events follower: the request, the
//! `200`, the wait for the `joined` event, then events cut in place from
//! one buffer per connection (like [`super::wsclient`], no copy and no
//! allocation per delivered message).

use super::lines::{Lines, HANDSHAKE_TIMEOUT};
use super::tls::{Stream, TlsArgs};
use super::wsclient::exchange;
use anyhow::{bail, Context};
use memchr::memmem;
use std::net::{IpAddr, SocketAddr};

/// One open event stream.
#[derive(Debug)]
pub struct SseConn {
    lines: Lines<Stream>,
}

/// Opens the stream at `path` on `server` from `source` (through TLS when
/// `tls` says so) and waits until its first room is `joined`, within
/// [`HANDSHAKE_TIMEOUT`]. `buffer` is the read buffer's starting size.
pub async fn open(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    buffer: usize,
    tls: &TlsArgs,
) -> anyhow::Result<SseConn> {
    let opening = async {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\n\r\n");
        let (lines, head) = exchange(server, source, tls, buffer, &request).await?;
        if !head.starts_with(b"HTTP/1.1 200") {
            let body = String::from_utf8_lossy(lines.pending()).into_owned();
            bail!(
                "the server refused the stream: {} {body}",
                String::from_utf8_lossy(&head).lines().next().unwrap_or("")
            );
        }
        let mut conn = SseConn { lines };
        // The events may have come with the head: look before reading more.
        let mut joined = false;
        conn.drain(|name, _| joined |= name == Some(&b"joined"[..]));
        while !joined {
            if conn.fill().await? == 0 {
                bail!("the server closed the stream before `joined`");
            }
            conn.drain(|name, _| joined |= name == Some(&b"joined"[..]));
        }
        anyhow::Ok(conn)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, opening)
        .await
        .with_context(|| format!("no event stream from {server}{path} in {HANDSHAKE_TIMEOUT:?}"))?
}

impl SseConn {
    /// Reads once; 0 at end of stream. Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.lines.fill().await
    }

    /// Hands every complete event in the buffer to `on_event` as its name
    /// (`None` for a room message) and its `data`; comments (heartbeats)
    /// and `retry` are skipped.
    pub fn drain(&mut self, mut on_event: impl FnMut(Option<&[u8]>, &[u8])) {
        let Some(end) = memmem::rfind(self.lines.pending(), b"\n\n") else { return };
        let (mut name, mut data) = (None, None);
        for line in self.lines.consume(end + 2).split(|&byte| byte == b'\n') {
            if line.is_empty() {
                if let Some(data) = data.take() {
                    on_event(name, data);
                }
                name = None;
            } else if let Some(value) = line.strip_prefix(b"event: ") {
                name = Some(value);
            } else if let Some(value) = line.strip_prefix(b"data: ") {
                data = Some(value);
            }
        }
    }
}
