//! Starting servers and talking to them, raw or through the client library.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_client::Connection;
use switchboard_server::store::Backend;
use switchboard_server::{Config, Listeners};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running on an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Raw TCP and UDP, on their own ephemeral ports.
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
    /// Hands the server a new configuration, as SIGHUP does in the binary.
    reload: tokio::sync::mpsc::Sender<Config>,
    /// The configuration it started with, for tests that change it.
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::launch(None, adjust).await
    }

    /// A server over `backend` instead of the storage its config names
    /// (`switchboard_server::run_with_backend`).
    pub async fn with_backend(backend: Box<dyn Backend>, adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::launch(Some(backend), adjust).await
    }

    async fn launch(backend: Option<Box<dyn Backend>>, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::default();
        config.websocket.close_timeout = Duration::from_secs(2);
        config.shutdown.drain_timeout = Duration::from_secs(5);
        // Tests that need a data directory set one; the rest never touch disk.
        config.storage.backend = switchboard_server::config::StorageBackend::Memory;
        adjust(&mut config);
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = http.local_addr().expect("local addr");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp port 0");
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind udp port 0");
        let (tcp_addr, udp_addr) = (tcp.local_addr().expect("tcp addr"), udp.local_addr().expect("udp addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        let started = config.clone();
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let listeners = Listeners { http, tcp: Some(tcp), udp: Some(udp) };
            let ran = match backend {
                // No reloads for these: the channel stays open, unread.
                Some(backend) => {
                    let _reloads = reloads;
                    switchboard_server::run_with_backend(config, listeners, backend, shutdown).await
                }
                None => switchboard_server::run_with_reload(config, listeners, shutdown, Some(reloads)).await,
            };
            ran.expect("server runs");
        });
        TestServer { addr, tcp: tcp_addr, udp: udp_addr, stop: Some(stop), handle, reload, config: started }
    }

    /// Applies `config` as a SIGHUP would. The channel holds one
    /// configuration: once a second reload has returned, the first was
    /// taken, and once a third has, the first was applied (or refused);
    /// `switchboard_config_reloads_total` counts both.
    pub async fn reload(&self, config: Config) {
        self.reload.send(config).await.expect("server running");
    }

    pub fn url(&self, name: &str) -> String {
        format!("ws://{}/ws?name={name}", self.addr)
    }

    pub async fn client(&self, name: &str) -> Connection {
        within(Connection::connect(&self.url(name))).await.expect("connect")
    }

    /// A client that presents `token` (token mode).
    pub async fn client_with_token(&self, token: &str) -> Connection {
        within(Connection::connect(&format!("ws://{}/ws?token={token}", self.addr))).await.expect("connect")
    }

    /// Starts a graceful shutdown and returns the server task to await.
    pub fn shutdown(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
    }

    /// The Prometheus text from `/metrics`. Retries while the server
    /// refuses the request (a test may hold every connection slot).
    pub async fn metrics(&self) -> String {
        within(async {
            loop {
                let mut stream = TcpStream::connect(self.addr).await.expect("connect for metrics");
                // In token mode /metrics takes an API key: the first one configured.
                let key = self.config.auth.api_keys.iter().find(|key| !key.key.is_empty());
                let auth = key.map(|key| format!("Authorization: Bearer {}\r\n", key.key)).unwrap_or_default();
                let request = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).await.expect("write");
                let mut body = String::new();
                if stream.read_to_string(&mut body).await.is_ok() && body.starts_with("HTTP/1.1 200") {
                    return body;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    }

    /// One sample's value from `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().expect("numeric sample"))
    }

    /// Waits until a counter reaches `at_least` and returns its value then.
    /// For counts made on the storage threads: a member may receive a
    /// stored message's frame before the thread that queued it has counted
    /// it (counts are added once per fan-out, after the last member).
    pub async fn metric_reaching(&self, sample: &str, at_least: f64) -> f64 {
        within(async {
            loop {
                let value = self.metric(sample).await;
                if value >= at_least {
                    return value;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.expect("timed out")
}

/// Reads events until one matches `wanted`, failing after [`PATIENCE`].
pub async fn wait_for(client: &mut Connection, mut wanted: impl FnMut(&Value) -> bool) -> Value {
    within(async {
        loop {
            let event = client.next_event().await.expect("event");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
}

/// Sends a command with an id and returns its reply.
pub async fn request(client: &mut Connection, command: Value) -> Value {
    within(client.request(command)).await.expect("reply")
}

/// Sends a ping without an id and reads events until its `pong`; returns
/// the replies (events with `re`) that came before it. Commands are
/// handled in order, so everything sent before the ping has been by then.
pub async fn replies_before_pong(client: &mut Connection) -> Vec<Value> {
    client.send_text(json!({"op": "ping"}).to_string()).await.expect("ping");
    let mut replies = Vec::new();
    within(async {
        loop {
            let event = client.next_event().await.expect("event");
            if event["ev"] == json!("pong") {
                return;
            }
            if event.get("re").is_some() {
                replies.push(event);
            }
        }
    })
    .await;
    replies
}

pub fn is_msg(event: &Value) -> bool {
    event["ev"] == json!("msg")
}

/// A masked client frame (payloads under 64 KiB).
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first_byte];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    frame
}

/// A WebSocket client with no library in between, for sending frames a
/// well-behaved library refuses to send.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> RawClient {
        RawClient::connect_with(addr, path, "").await.0
    }

    /// Connects with `headers` (each line ending in CRLF) added to the
    /// upgrade request; returns the client and the answer's head.
    pub async fn connect_with(addr: SocketAddr, path: &str, headers: &str) -> (RawClient, String) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient::handshake(stream, addr, path, headers).await
    }

    /// Connects with a receive buffer of `bytes` (which also stops the
    /// kernel from growing it), so that a client that stops reading backs
    /// the server's writes up quickly.
    pub async fn connect_small(addr: SocketAddr, path: &str, bytes: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect");
        RawClient::handshake(stream, addr, path, "").await.0
    }

    async fn handshake(mut stream: TcpStream, addr: SocketAddr, path: &str, headers: &str) -> (RawClient, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write upgrade");
        let mut client = RawClient { stream, buffer: Vec::new() };
        let head = client.read_until_blank_line().await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        (client, head)
    }

    async fn read_until_blank_line(&mut self) -> String {
        within(async {
            while !self.buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                self.fill().await;
            }
        })
        .await;
        let end = self.buffer.windows(4).position(|w| w == b"\r\n\r\n").expect("head end") + 4;
        let head: Vec<u8> = self.buffer.drain(..end).collect();
        String::from_utf8(head).expect("ascii head")
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let count = self.stream.read(&mut chunk).await.expect("read");
        self.buffer.extend_from_slice(&chunk[..count]);
        count
    }

    /// Writes one masked frame.
    pub async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.stream.write_all(&masked_frame(first_byte, payload)).await.expect("write frame");
    }

    /// Reads one server frame: (opcode, payload). Panics at end of stream.
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let (first, payload) = self.read_frame_whole().await;
        (first & 0x0F, payload)
    }

    /// Reads one server frame: (first header byte, payload).
    pub async fn read_frame_whole(&mut self) -> (u8, Vec<u8>) {
        within(async {
            loop {
                if let Some(frame) = self.take_frame() {
                    return frame;
                }
                assert!(self.fill().await > 0, "connection closed before a frame arrived");
            }
        })
        .await
    }

    fn take_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let [first, second, ..] = self.buffer[..] else { return None };
        let (len, header) = match second & 0x7F {
            126 if self.buffer.len() >= 4 => (u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize, 4),
            127 if self.buffer.len() >= 10 => {
                let bytes: [u8; 8] = self.buffer[2..10].try_into().expect("eight bytes");
                (usize::try_from(u64::from_be_bytes(bytes)).expect("a frame that fits memory"), 10)
            }
            126 | 127 => return None,
            short => (short as usize, 2),
        };
        if self.buffer.len() < header + len {
            return None;
        }
        let payload = self.buffer[header..header + len].to_vec();
        self.buffer.drain(..header + len);
        Some((first, payload))
    }

    /// Reads one text frame as a JSON event.
    pub async fn read_event(&mut self) -> Value {
        let (opcode, payload) = self.read_frame().await;
        assert_eq!(opcode, 0x1, "expected a text frame");
        serde_json::from_slice(&payload).expect("a JSON event")
    }

    /// Reads frames until a close frame and returns its status code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.read_frame().await;
            if opcode == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    /// Waits until the server closes the TCP connection.
    pub async fn wait_eof(&mut self) {
        within(async { while self.fill().await > 0 {} }).await;
    }
}

/// A line-oriented TCP client, as nc would be.
pub struct Lines {
    pub reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Lines {
    pub async fn connect(addr: SocketAddr) -> Lines {
        let (read, writer) = TcpStream::connect(addr).await.expect("connect").into_split();
        Lines { reader: BufReader::new(read), writer }
    }

    pub async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.expect("write");
    }

    /// The next line, failing at end of stream or after the test's patience.
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        let count = within(self.reader.read_line(&mut line)).await.expect("read");
        assert!(count > 0, "connection closed while a line was expected");
        line
    }

    /// Reads lines until one contains `needle`.
    pub async fn until(&mut self, needle: &str) -> String {
        loop {
            let line = self.line().await;
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub async fn json_until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value: Value = serde_json::from_str(&self.line().await).expect("a JSON line");
            if wanted(&value) {
                return value;
            }
        }
    }

    pub async fn eof(&mut self) {
        let mut rest = Vec::new();
        within(self.reader.read_to_end(&mut rest)).await.expect("read to end");
    }
}

/// A UDP client with a session.
pub struct Datagrams {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub token: String,
}

impl Datagrams {
    pub async fn hello(server: SocketAddr, name: &str) -> Datagrams {
        let (client, hello) = Datagrams::hello_with(server, json!({"op": "hello", "name": name})).await;
        assert_eq!((hello["ev"].as_str(), hello["user"].as_str()), (Some("hello"), Some(name)));
        assert!(!client.token.is_empty(), "a session token");
        client
    }

    /// Sends `hello` from a new address and returns the client with the
    /// first answer, taking the session token from it when it has one.
    pub async fn hello_with(server: SocketAddr, hello: Value) -> (Datagrams, Value) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut client = Datagrams { socket, server, token: String::new() };
        client.send_raw(&hello).await;
        let answer = client.next().await;
        client.token = answer["session"].as_str().unwrap_or_default().to_owned();
        (client, answer)
    }

    pub async fn send_raw(&self, value: &Value) {
        self.socket.send_to(value.to_string().as_bytes(), self.server).await.expect("send");
    }

    pub async fn send(&self, mut value: Value) {
        value["session"] = json!(self.token);
        self.send_raw(&value).await;
    }

    pub async fn next(&self) -> Value {
        let mut buffer = vec![0u8; 65_536];
        let count = within(self.socket.recv(&mut buffer)).await.expect("recv");
        serde_json::from_slice(&buffer[..count]).expect("a JSON datagram")
    }

    pub async fn until(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value = self.next().await;
            if wanted(&value) {
                return value;
            }
        }
    }
}

/// Reads until the server closes (a reset after the answer counts as
/// closed too), within [`within`]'s patience; what it said.
pub async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    within(async {
        let mut chunk = [0u8; 4096];
        while let Ok(count @ 1..) = stream.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..count]);
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}
