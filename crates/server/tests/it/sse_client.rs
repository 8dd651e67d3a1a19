//! A Server-Sent Events client with no library in between: the request as
//! bytes, the answer's head, then the stream read line by line into the
//! fields the format defines (`id`, `event`, `data`, `retry`, comments).

use crate::support::{read_until_closed, within};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One block of the stream, up to its blank line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data` lines, joined with `\n` as a browser joins them.
    pub data: Option<String>,
    pub retry: Option<u64>,
    /// Comment lines (`:`), such as heartbeats.
    pub comments: usize,
}

impl Block {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        let data = self.data.as_deref().unwrap_or_else(|| panic!("no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|error| panic!("data is not JSON ({error}): {data}"))
    }

    /// The event's type as `EventSource` dispatches it.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// An open event stream.
pub struct EventStream {
    reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    /// The response head, status line included.
    pub head: String,
}

/// The request for `target` with `headers` (CRLF-terminated lines) added.
fn request(addr: SocketAddr, target: &str, headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n")
}

/// Reads a response head, through its blank line.
async fn read_head(reader: &mut BufReader<OwnedReadHalf>) -> String {
    let mut head = String::new();
    within(async {
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).await.expect("read head") > 0, "closed inside the head: {head}");
            head.push_str(&line);
            if line == "\r\n" {
                return;
            }
        }
    })
    .await;
    head
}

impl EventStream {
    /// Opens a stream and checks that it was accepted.
    pub async fn open(addr: SocketAddr, target: &str, headers: &str) -> EventStream {
        let stream = TcpStream::connect(addr).await.expect("connect");
        EventStream::open_on(stream, addr, target, headers).await
    }

    /// Opens a stream on a connected socket (one with a small receive
    /// buffer, say).
    pub async fn open_on(stream: TcpStream, addr: SocketAddr, target: &str, headers: &str) -> EventStream {
        let (read, mut writer) = stream.into_split();
        writer.write_all(request(addr, target, headers).as_bytes()).await.expect("write request");
        let mut reader = BufReader::new(read);
        let head = read_head(&mut reader).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "not accepted: {head}");
        EventStream { reader, writer, head }
    }

    /// The next block; `None` at the end of the stream.
    pub async fn block(&mut self) -> Option<Block> {
        within(async {
            let mut block = Block::default();
            let mut started = false;
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line).await.expect("read") == 0 {
                    assert!(!started, "the stream ended inside a block: {block:?}");
                    return None;
                }
                let line = line.strip_suffix('\n').expect("a whole line").trim_end_matches('\r');
                if line.is_empty() {
                    if started {
                        return Some(block);
                    }
                    continue;
                }
                started = true;
                if line.starts_with(':') {
                    block.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "id" => block.id = Some(value),
                    "event" => block.event = Some(value),
                    "retry" => block.retry = Some(value.parse().expect("retry is a number")),
                    "data" => match &mut block.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(&value);
                        }
                        None => block.data = Some(value),
                    },
                    other => panic!("unknown field `{other}`"),
                }
            }
        })
        .await
    }

    /// The next event with data (comments and `retry` skipped).
    pub async fn event(&mut self) -> Block {
        loop {
            let block = self.block().await.expect("an event before the end of the stream");
            if block.data.is_some() {
                return block;
            }
        }
    }

    /// Events until one named `name` (`message` for room messages).
    pub async fn until(&mut self, name: &str) -> Block {
        loop {
            let event = self.event().await;
            if event.name() == name {
                return event;
            }
        }
    }

    /// Reads to the end of the stream and returns the last event.
    pub async fn last_event(&mut self) -> Option<Block> {
        let mut last = None;
        while let Some(block) = self.block().await {
            if block.data.is_some() {
                last = Some(block);
            }
        }
        last
    }
}

/// Sends a request expected to be refused and ends the sending side;
/// returns the status, the head and the body.
pub async fn refused(addr: SocketAddr, target: &str, headers: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A refusal at accept comes before the request is read, and the server
    // may have closed by the time it is written: both are best effort.
    let _ = stream.write_all(request(addr, target, headers).as_bytes()).await;
    // Nothing more will come: the server need not wait to see it.
    let _ = stream.shutdown().await;
    // Read to the end; a refusal at accept may end in a reset (the server
    // closed with the request unread) after its answer.
    let answer = read_until_closed(&mut stream).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP answer: {answer}"));
    let status = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("a status: {head}"));
    (status, head.to_owned(), body.to_owned())
}

/// The `code` of a refusal's JSON body.
pub fn code(body: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {body}"));
    parsed["code"].as_str().unwrap_or_else(|| panic!("a code: {body}")).to_owned()
}
