//! Per-address limits: connections and handshakes per client address on
//! every port, loopback exempt by default, and client addresses from
//! trusted proxies only.

use crate::support::{within, RawClient, TestServer};
use serde_json::json;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upgrade request with `headers` added; returns the answer's head (and
/// body, for a refusal) and the stream, whatever the status.
async fn upgrade(addr: SocketAddr, headers: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    within(async {
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await;
    (String::from_utf8(head).expect("ascii head"), stream)
}

fn limited(adjust: impl FnOnce(&mut switchboard_server::Config)) -> impl FnOnce(&mut switchboard_server::Config) {
    move |config| {
        config.limits.exempt_networks = Vec::new();
        adjust(config);
    }
}

#[tokio::test]
async fn connections_per_address_are_limited_and_released_on_close() {
    let server = TestServer::with(limited(|config| config.limits.connections_per_ip = 3)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(RawClient::connect(server.addr, "/ws").await);
    }
    // Raw TCP counts towards the same limit.
    let mut device = TcpStream::connect(server.tcp).await.expect("connect");
    device.write_all(b"{\"op\":\"hello\",\"name\":\"dev\"}\n").await.expect("write");
    let (refused, _) = upgrade(server.addr, "").await;
    assert!(refused.starts_with("HTTP/1.1 429") && refused.contains("Retry-After: 1"), "{refused}");
    let mut extra = TcpStream::connect(server.tcp).await.expect("connect");
    let mut said = String::new();
    within(extra.read_to_string(&mut said)).await.expect("read");
    let close: serde_json::Value = serde_json::from_str(said.trim()).expect("close line");
    assert_eq!((close["ev"].clone(), close["code"].clone()), (json!("close"), json!(1008)));
    assert_eq!(close["reason"], json!("too many connections from your address"));
    // One closes: its slot is free again.
    drop(device);
    within(async {
        loop {
            let (answer, _stream) = upgrade(server.addr, "").await;
            if answer.starts_with("HTTP/1.1 101") {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(open);
    assert!(server.metric("switchboard_limit_hits_total{reason=\"ip_connections\"}").await >= 2.0);
}

#[tokio::test]
async fn handshakes_per_second_are_limited_and_loopback_is_exempt_by_default() {
    let configure = |config: &mut switchboard_server::Config| {
        config.limits.handshakes_per_second_per_ip = 1;
        config.limits.handshakes_burst_per_ip = 2;
    };
    let exempt = TestServer::with(configure).await;
    for _ in 0..20 {
        RawClient::connect(exempt.addr, "/ws").await;
    }
    let server = TestServer::with(limited(configure)).await;
    let _first = RawClient::connect(server.addr, "/ws").await;
    let _second = RawClient::connect(server.addr, "/ws").await;
    let (refused, _) = upgrade(server.addr, "").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    // (Reading /metrics is a handshake too, refused and retried until a second passed.)
    assert!(server.metric("switchboard_limit_hits_total{reason=\"ip_handshakes\"}").await >= 1.0);
    assert_eq!(exempt.metric("switchboard_limit_hits_total{reason=\"ip_handshakes\"}").await, 0.0);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let trusted = TestServer::with(limited(|config| {
        config.limits.connections_per_ip = 1;
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    }))
    .await;
    // Behind the proxy, each client address has its own count...
    let (first, _a) = upgrade(trusted.addr, "X-Forwarded-For: 203.0.113.7\r\n").await;
    let (other, _b) = upgrade(trusted.addr, "X-Forwarded-For: 203.0.113.8\r\n").await;
    let (again, _c) = upgrade(trusted.addr, "Forwarded: for=203.0.113.7\r\n").await;
    assert!(first.starts_with("HTTP/1.1 101") && other.starts_with("HTTP/1.1 101"), "{first}{other}");
    assert!(again.starts_with("HTTP/1.1 429"), "the same client through either header: {again}");
    // ...and the proxy itself is not limited.
    let (direct, _d) = upgrade(trusted.addr, "").await;
    assert!(direct.starts_with("HTTP/1.1 101"), "{direct}");

    // From an untrusted peer the header is ignored: its own address counts.
    let untrusted = TestServer::with(limited(|config| config.limits.connections_per_ip = 1)).await;
    let (one, _e) = upgrade(untrusted.addr, "X-Forwarded-For: 203.0.113.7\r\n").await;
    let (two, _f) = upgrade(untrusted.addr, "X-Forwarded-For: 198.51.100.1\r\n").await;
    assert!(one.starts_with("HTTP/1.1 101") && two.starts_with("HTTP/1.1 429"), "{one}{two}");
}
