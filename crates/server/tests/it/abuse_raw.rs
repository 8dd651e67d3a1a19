//! Abuse on the raw transports and plain HTTP, beside well-behaved WebSocket
//! members ([`Watch`]): silent and trickling raw TCP sockets, UDP floods
//! from addresses without a session, oversized HTTP requests.

use crate::abuse::{assert_rss_bounded, rss_bytes, Watch};
use crate::support::{within, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes, as text.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut rest = Vec::new();
    within(stream.read_to_end(&mut rest)).await.expect("read to end");
    String::from_utf8_lossy(&rest).into_owned()
}

#[tokio::test]
async fn silent_and_trickling_tcp_sockets_are_closed_at_the_first_line_deadline() {
    let server = TestServer::with(|config| config.tcp_options.first_line_timeout = Duration::from_millis(400)).await;
    let before = rss_bytes();
    let watch = Watch::start(&server, "feed", 1).await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(server.tcp).await.expect("connect"));
    }
    // A trickle: a byte every 100 ms, never a newline (each byte restarts
    // the 200 ms partial-line pause, so only the deadline ends it).
    let mut trickle = TcpStream::connect(server.tcp).await.expect("connect");
    let trickled = within(async {
        let mut byte = [0u8; 1];
        loop {
            if trickle.write_all(b"x").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut byte)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => return read_all(&mut trickle).await,
                Err(_) => {}
            }
        }
        String::new()
    })
    .await;
    assert!(trickled.contains("\"code\":1008") || trickled.is_empty(), "{trickled}");
    for mut socket in silent {
        let said = read_all(&mut socket).await;
        let close: Value = serde_json::from_str(said.trim()).expect("one close line");
        assert_eq!(close, json!({"ev": "close", "code": 1008, "reason": "policy violation"}));
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "not before the deadline");
    watch.finish().await;
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"tcp_first_line_timeout\"}").await, 101.0);
    assert_rss_bounded(before, "silent raw TCP sockets");
}

#[tokio::test]
async fn a_first_line_in_time_keeps_the_connection_past_the_deadline() {
    let server = TestServer::with(|config| config.tcp_options.first_line_timeout = Duration::from_millis(200)).await;
    let mut device = TcpStream::connect(server.tcp).await.expect("connect");
    device.write_all(b"{\"op\":\"hello\",\"name\":\"dev\"}\n").await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let count = within(device.read(&mut buffer)).await.expect("hello");
    assert!(String::from_utf8_lossy(&buffer[..count]).contains("\"ev\":\"hello\""));
    // Well past the deadline, the connection still answers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    device.write_all(b"{\"op\":\"ping\",\"id\":1}\n").await.expect("write");
    let count = within(device.read(&mut buffer)).await.expect("reply");
    assert!(String::from_utf8_lossy(&buffer[..count]).contains("\"re\":1"));
    // Text mode too: a person who typed a first line may then read for hours.
    let mut person = TcpStream::connect(server.tcp).await.expect("connect");
    person.write_all(b"/nick tom\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(600)).await;
    person.write_all(b"/quit\n").await.expect("write");
    let said = read_all(&mut person).await;
    assert!(said.contains("you are now tom") && said.ends_with("* bye\n"), "{said}");
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"tcp_first_line_timeout\"}").await, 0.0);
}
