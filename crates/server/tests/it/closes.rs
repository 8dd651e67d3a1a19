//! Close codes and refused upgrades of docs/PROTOCOL.md over real sockets,
//! each checked on the wire: the orderly close (1000, and the echo of a
//! client's own code), the raw TCP close line at the connection limit
//! (1013), and the HTTP answers 400, 405, 426 and 431.

use crate::support::{within, Lines, RawClient, TestServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` as an upgrade request; returns the server's whole answer.
async fn answer_to(server: &TestServer, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    within(stream.read_to_end(&mut answer)).await.expect("answered and closed");
    String::from_utf8(answer).expect("a text answer")
}

/// An upgrade request for `path` with `method` and `extra` header lines.
fn upgrade(method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_client_s_close_is_echoed_and_the_server_then_closes_the_connection() {
    let server = TestServer::start().await;
    // (what the client sends, the code it gets back): 1000 for none.
    for (sent, echoed) in [(Some(1000u16), 1000u16), (None, 1000), (Some(4321), 4321), (Some(1011), 1011)] {
        let mut client = RawClient::connect(server.addr, "/ws").await;
        client.read_event().await; // hello
        let payload = sent.map(|code| code.to_be_bytes().to_vec()).unwrap_or_default();
        client.send_frame(0x88, &payload).await;
        let (opcode, reply) = client.read_frame().await;
        assert_eq!((opcode, reply.get(..2)), (0x8, Some(&echoed.to_be_bytes()[..])), "after {sent:?}");
        // The handshake is complete: the server closes without waiting for us.
        client.wait_eof().await;
    }
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1000\"}").await, 2.0);
}

#[tokio::test]
async fn quit_closes_a_text_mode_connection_with_1000() {
    let server = TestServer::start().await;
    let mut human = Lines::connect(server.tcp).await;
    human.send("/nick tom\n").await;
    human.until("you are now tom").await;
    human.send("/quit\n").await;
    assert_eq!(human.until("bye").await, "* bye\n");
    human.eof().await;
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1000\"}").await, 1.0);
}

#[tokio::test]
async fn raw_tcp_at_the_connection_limit_gets_a_1013_close_line() {
    let server = TestServer::with(|config| config.limits.max_connections = 1).await;
    let _alice = server.client("alice").await;
    let mut device = Lines::connect(server.tcp).await;
    let line = device.line().await;
    let close: serde_json::Value = serde_json::from_str(&line).expect("a JSON close line");
    assert_eq!(close, json!({"ev": "close", "code": 1013, "reason": "server at connection limit"}));
    device.eof().await;
}

#[tokio::test]
async fn refused_upgrades_get_400_405_426_and_431() {
    let server = TestServer::start().await;
    let version = "Sec-WebSocket-Version: 13\r\n";
    let answer = answer_to(&server, &upgrade("GET", "/ws?name=bad%20name", version)).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "an invalid name: {answer}");
    let answer = answer_to(&server, &upgrade("POST", "/ws", version)).await;
    assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
    let answer = answer_to(&server, &upgrade("GET", "/ws", "Sec-WebSocket-Version: 8\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{answer}");
    assert!(answer.contains("\r\nSec-WebSocket-Version: 13\r\n"), "names the version it speaks: {answer}");
    // Over 8 KiB of head, or over 32 header lines.
    let long = format!("{version}X-Pad: {}\r\n", "p".repeat(9000));
    let answer = answer_to(&server, &upgrade("GET", "/ws", &long)).await;
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
    let many: String = (0..40).map(|i| format!("X-Line-{i}: {i}\r\n")).collect();
    let answer = answer_to(&server, &upgrade("GET", "/ws", &format!("{version}{many}"))).await;
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
    let refused = server.metric("switchboard_connections_refused_total{reason=\"handshake\"}").await;
    assert_eq!(refused, 5.0);
}
