//! TLS with real sockets: WSS and HTTPS on the HTTP port, TLS on the raw TCP
//! port, plain clients on TLS ports, and certificates reloaded while
//! connections stay open. Certificates are made in the test with rcgen.

use crate::support::{read_until_closed, within, TestServer, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_server::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Certificate {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Certificate {
    fn new() -> Certificate {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        Certificate {
            der: made.cert.der().clone(),
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// Writes the PEM files where `config` says they are.
    fn install(&self, config: &Config) {
        std::fs::write(&config.tls.cert, &self.cert_pem).expect("write cert");
        std::fs::write(&config.tls.key, &self.key_pem).expect("write key");
    }
}

/// A directory with `cert.pem` and `key.pem` for `certificate`, and a
/// config adjustment that serves them.
fn tls_files(certificate: &Certificate) -> (tempfile::TempDir, impl FnOnce(&mut Config)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &certificate.cert_pem).expect("write cert");
    std::fs::write(&key, &certificate.key_pem).expect("write key");
    let adjust = move |config: &mut Config| {
        config.tls.cert = cert;
        config.tls.key = key;
    };
    (dir, adjust)
}

/// A server presenting `certificate`, with `tweak` applied to its config;
/// keep the directory while the server runs.
async fn tls_server(certificate: &Certificate, tweak: impl FnOnce(&mut Config)) -> (TestServer, tempfile::TempDir) {
    let (dir, adjust) = tls_files(certificate);
    let server = TestServer::with(|config| {
        adjust(config);
        tweak(config);
    })
    .await;
    (server, dir)
}

/// A client that trusts `certificates` (and nothing else) and offers `alpn`.
/// It never resumes a session, so every handshake shows the certificate
/// the server presents now.
fn connector(certificates: &[&Certificate], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate.der.clone()).expect("a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    within(async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("server name");
        connector.connect(name, tcp).await.expect("TLS handshake")
    })
    .await
}

/// The certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let certificates = stream.get_ref().1.peer_certificates().expect("the server's certificates");
    certificates[0].clone().into_owned()
}

async fn wss(connector: &TlsConnector, addr: SocketAddr, path: &str) -> Wss {
    upgrade(tls_connect(connector, addr).await, addr, path).await
}

/// The WebSocket upgrade for `path` over an open TLS stream to `addr`.
async fn upgrade(stream: TlsStream<TcpStream>, addr: SocketAddr, path: &str) -> Wss {
    let url = format!("wss://localhost:{}{path}", addr.port());
    within(tokio_tungstenite::client_async(url, stream)).await.expect("WebSocket upgrade over TLS").0
}

async fn send(socket: &mut Wss, command: Value) {
    within(socket.send(Message::text(command.to_string()))).await.expect("send");
}

/// Reads events until one matches `wanted`.
async fn event(socket: &mut Wss, wanted: impl Fn(&Value) -> bool) -> Value {
    within(async {
        loop {
            let message = socket.next().await.expect("still open").expect("a frame");
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).expect("JSON");
                if wanted(&event) {
                    return event;
                }
            }
        }
    })
    .await
}

async fn joined(socket: &mut Wss, room: &str) {
    send(socket, json!({"op": "join", "room": room, "id": 1})).await;
    let reply = event(socket, |event| event["re"] == json!(1)).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
}

/// Bob speaks in `room`; `listener` must hear it.
async fn heard(listener: &mut Wss, bob: &mut Wss, room: &str, text: &str) {
    send(bob, json!({"op": "send", "room": room, "body": text})).await;
    let message = event(listener, |event| event["ev"] == json!("msg") && event["body"] == json!(text)).await;
    assert_eq!(message["from"], json!("bob"));
}

#[tokio::test]
async fn wss_and_https_share_the_http_port() {
    let certificate = Certificate::new();
    let (server, _dir) = tls_server(&certificate, |_| {}).await;
    let trusting = connector(&[&certificate], &[b"http/1.1"]);

    let mut alice = wss(&trusting, server.addr, "/ws?name=alice").await;
    let hello = event(&mut alice, |event| event["ev"] == json!("hello")).await;
    assert_eq!(hello["user"], json!("alice"));
    joined(&mut alice, "lobby").await;
    let mut bob = wss(&trusting, server.addr, "/ws?name=bob").await;
    joined(&mut bob, "lobby").await;
    heard(&mut alice, &mut bob, "lobby", "over TLS").await;

    let https = tls_connect(&trusting, server.addr).await;
    assert_eq!(https.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let answer = https_get(&trusting, server.addr, "/healthz").await;
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
}

/// Large messages through the echo endpoint to a client that reads nothing
/// until it has sent them all, through a small receive buffer: records split
/// at 16 KiB, and the server's writes block with encrypted records left to
/// send, more than the kernel's buffers can hold.
#[tokio::test]
async fn large_messages_cross_tls_intact_while_writes_block() {
    let certificate = Certificate::new();
    let (server, _dir) = tls_server(&certificate, |config| config.limits.outbound_queue_bytes = 32 << 20).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8192).expect("SO_RCVBUF");
    let tcp = within(socket.connect(server.addr)).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = within(connector(&[&certificate], &[]).connect(name, tcp)).await.expect("TLS handshake");
    let mut echo = upgrade(stream, server.addr, "/ws/echo").await;
    let messages: Vec<String> =
        (0..160u8).map(|i| char::from(b'a' + i % 26).to_string().repeat(50_000 + usize::from(i))).collect();
    for message in &messages {
        within(echo.send(Message::text(message.clone()))).await.expect("send");
    }
    for expected in &messages {
        match within(echo.next()).await.expect("open").expect("a frame") {
            Message::Text(text) => assert!(text.as_str() == expected.as_str(), "a message came back changed"),
            other => panic!("expected text, got {other:?}"),
        }
    }
    within(echo.close(None)).await.expect("close");
}

/// A client that sends its first frame right behind the upgrade request:
/// rustls has decrypted more than the head when the connection is handed
/// to the driver, and that rest is the first frame, which no socket
/// readiness will announce again.
#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_not_lost() {
    let certificate = Certificate::new();
    let (server, _dir) = tls_server(&certificate, |_| {}).await;
    let mut stream = tls_connect(&connector(&[&certificate], &[]), server.addr).await;
    let payload = "x".repeat(10_000);
    let mut bytes = b"GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let mask = [7u8, 1, 2, 3];
    bytes.extend_from_slice(&[0x81, 0x80 | 126]);
    bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&mask);
    bytes.extend(payload.bytes().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    stream.write_all(&bytes).await.expect("write");
    let mut answer = Vec::new();
    let echoed = within(async {
        loop {
            let mut chunk = [0u8; 4096];
            let count = stream.read(&mut chunk).await.expect("read");
            assert!(count > 0, "closed before the echo: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..count]);
            let Some(head) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let frame = &answer[head + 4..];
            if frame.len() >= 4 + payload.len() {
                return frame.to_vec();
            }
        }
    })
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(&echoed[..4], &[0x81, 126, 0x27, 0x10]);
    assert!(echoed[4..] == *payload.as_bytes(), "the echo differs");
}

#[tokio::test]
async fn raw_tcp_speaks_json_lines_over_tls_and_answers_before_closing() {
    let certificate = Certificate::new();
    let (server, _dir) = tls_server(&certificate, |_| {}).await;
    let mut stream = tls_connect(&connector(&[&certificate], &[]), server.tcp).await;
    let commands = [
        json!({"op": "hello", "name": "sensor"}),
        json!({"op": "join", "room": "lab", "id": 1}),
        json!({"op": "send", "room": "lab", "body": {"t": 21.5}, "id": 2}),
    ];
    for command in commands {
        stream.write_all(format!("{command}\n").as_bytes()).await.expect("write");
    }
    // close_notify and our FIN: the server answers everything, then closes.
    stream.shutdown().await.expect("shutdown");
    let mut lines = BufReader::new(stream).lines();
    let mut seen = Vec::new();
    within(async {
        while let Some(line) = lines.next_line().await.expect("read a line") {
            seen.push(serde_json::from_str::<Value>(&line).expect("JSON line"));
        }
    })
    .await;
    assert_eq!(seen.first().map(|e| &e["ev"]), Some(&json!("hello")), "{seen:?}");
    assert!(seen.iter().any(|e| e["ev"] == json!("msg") && e["body"] == json!({"t": 21.5})), "{seen:?}");
    assert!(seen.iter().any(|e| e["re"] == json!(2) && e["ok"] == json!(true)), "{seen:?}");
    assert_eq!(seen.last().map(|e| (&e["ev"], &e["code"])), Some((&json!("close"), &json!(1000))), "{seen:?}");
}

#[tokio::test]
async fn clients_without_tls_are_told_and_closed_and_counted() {
    let certificate = Certificate::new();
    let (server, _dir) =
        tls_server(&certificate, |config| config.websocket.handshake_timeout = Duration::from_millis(300)).await;

    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    let upgrade = "GET /ws?name=eve HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    plain.write_all(upgrade.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut plain).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("TLS"), "{answer}");

    let mut plain = TcpStream::connect(server.tcp).await.expect("connect");
    plain.write_all(b"{\"op\":\"hello\",\"name\":\"eve\"}\n").await.expect("write");
    let answer = read_until_closed(&mut plain).await;
    assert!(answer.contains("\"code\":1002") && answer.contains("TLS"), "{answer}");

    // Silent clients are closed at the handshake timeout, on both ports.
    for addr in [server.addr, server.tcp] {
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        read_until_closed(&mut silent).await;
    }
    let metrics = https_get(&connector(&[&certificate], &[]), server.addr, "/metrics").await;
    let refused = metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_connections_refused_total{reason=\"tls_handshake\"} "));
    assert_eq!(refused, Some("4"), "{metrics}");
}

/// The body of a GET over HTTPS.
async fn https_get(connector: &TlsConnector, addr: SocketAddr, path: &str) -> String {
    let mut https = tls_connect(connector, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    https.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    within(https.read_to_string(&mut answer)).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections() {
    let (first, second) = (Certificate::new(), Certificate::new());
    let (_dir, adjust) = tls_files(&first);
    let server = TestServer::with(adjust).await;
    let config = server.config.clone();
    let both = connector(&[&first, &second], &[]);

    let stream = tls_connect(&both, server.addr).await;
    assert_eq!(presented(&stream), first.der);
    let mut alice = upgrade(stream, server.addr, "/ws?name=alice").await;
    joined(&mut alice, "lobby").await;

    second.install(&config);
    apply(&server, &config).await;
    assert_eq!(presented(&tls_connect(&both, server.addr).await), second.der, "HTTP port");
    assert_eq!(presented(&tls_connect(&both, server.tcp).await), second.der, "raw TCP port");
    let mut bob = wss(&both, server.addr, "/ws?name=bob").await;
    joined(&mut bob, "lobby").await;
    heard(&mut alice, &mut bob, "lobby", "after the reload").await;

    // A broken file is refused; the certificate in force stays.
    std::fs::write(&config.tls.cert, "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        .expect("write");
    apply(&server, &config).await;
    assert_eq!(presented(&tls_connect(&both, server.addr).await), second.der);
    heard(&mut alice, &mut bob, "lobby", "after a broken reload").await;
}

/// Sends `config` and returns once the server has applied or refused it
/// (see `TestServer::reload`).
async fn apply(server: &TestServer, config: &Config) {
    for _ in 0..3 {
        tokio::time::timeout(PATIENCE, server.reload(config.clone())).await.expect("in time");
    }
}

#[tokio::test]
async fn the_client_library_speaks_wss_and_tls_trusting_a_private_certificate() {
    use switchboard_client::{Client, Event};
    let certificate = Certificate::new();
    let (server, _dir) = tls_server(&certificate, |_| {}).await;
    let tls = switchboard_client::tls_trusting_pem(certificate.cert_pem.as_bytes()).expect("a PEM certificate");
    let (http, tcp) = (server.addr.port(), server.tcp.port());
    for url in [format!("wss://127.0.0.1:{http}/ws"), format!("tls://127.0.0.1:{tcp}")] {
        let connecting = Client::builder(&url).name("alice").tls(tls.clone()).connect();
        let (client, mut events) = within(connecting).await.unwrap_or_else(|error| panic!("{url}: {error}"));
        within(client.join("secure")).await.expect("join");
        let ack = within(client.send("secure", json!({"over": url}))).await.expect("stored");
        let heard = within(async {
            loop {
                if let Some(Event::Message(message)) = events.next().await {
                    return message;
                }
            }
        })
        .await;
        assert_eq!((heard.seq, &heard.body["over"]), (Some(ack.seq), &json!(url)));
        client.close().await;
    }
    // Without the certificate the default roots refuse it.
    let untrusted = within(Client::connect(&format!("wss://127.0.0.1:{http}/ws"))).await;
    assert!(matches!(untrusted, Err(switchboard_client::Error::Connect { .. })), "{untrusted:?}");
}
