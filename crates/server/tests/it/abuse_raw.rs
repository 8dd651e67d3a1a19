//! Abuse on the raw transports and plain HTTP, beside well-behaved WebSocket
//! members ([`Watch`]): silent and trickling raw TCP sockets, UDP floods
//! from addresses without a session, oversized HTTP requests.

use crate::abuse::{alone, assert_rss_bounded, rss_bytes, Watch};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_tcp_sockets_are_closed_at_the_first_line_deadline() {
    if !alone("abuse_raw::silent_and_trickling_tcp_sockets_are_closed_at_the_first_line_deadline").await {
        return;
    }
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

/// A UDP socket on loopback and what it receives within `wait`.
async fn datagrams_within(socket: &tokio::net::UdpSocket, wait: Duration) -> Vec<Value> {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 65_536];
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Ok(count)) = tokio::time::timeout_at(until, socket.recv(&mut buffer)).await {
        received.push(serde_json::from_slice(&buffer[..count]).expect("a JSON datagram"));
    }
    received
}

#[tokio::test]
async fn an_address_without_a_session_gets_at_most_one_error_a_second() {
    let server = TestServer::start().await;
    let spoofed = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let started = Instant::now();
    for _ in 0..500 {
        spoofed.send_to(b"x", server.udp).await.expect("send");
    }
    // Every datagram was read (or dropped by the kernel, and counted).
    within(async {
        let dropped = "switchboard_messages_dropped_total{reason=\"udp_receive_buffer\"}";
        while server.metric("switchboard_udp_datagrams_received_total").await + server.metric(dropped).await < 500.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let replies = datagrams_within(&spoofed, Duration::from_millis(100)).await;
    let seconds = started.elapsed().as_secs_f64().ceil() as usize;
    assert!(!replies.is_empty() && replies.len() <= seconds, "{} replies in {seconds} s", replies.len());
    assert!(replies[0]["ev"] == json!("error") && replies[0].to_string().len() < 100, "{}", replies[0]);
    let suppressed = server.metric("switchboard_limit_hits_total{reason=\"udp_error_suppressed\"}").await;
    let received = server.metric("switchboard_udp_datagrams_received_total").await;
    assert_eq!(suppressed, received - replies.len() as f64, "every datagram not answered is counted");
}

#[tokio::test]
async fn udp_sessions_count_towards_the_connection_limit_and_the_per_address_limit() {
    let server = TestServer::with(|config| {
        config.limits.max_connections = 4;
        config.limits.connections_per_ip = 2;
        config.limits.exempt_networks = Vec::new();
    })
    .await;
    let hello = |name: &str| json!({"op": "hello", "name": name}).to_string();
    let mut sockets = Vec::new();
    let mut answers = Vec::new();
    // From 127.0.0.2, so that reading /metrics from 127.0.0.1 is not refused.
    for name in ["p1", "p2", "p3"] {
        let socket = tokio::net::UdpSocket::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
        socket.send_to(hello(name).as_bytes(), server.udp).await.expect("send");
        answers.push(datagrams_within(&socket, Duration::from_millis(300)).await.remove(0));
        sockets.push(socket);
    }
    assert_eq!(answers[0]["ev"], json!("hello"));
    assert_eq!(answers[1]["ev"], json!("hello"));
    assert_eq!((answers[2]["ev"].clone(), answers[2]["code"].clone()), (json!("error"), json!("rate_limited")));
    assert!(answers[2]["error"].as_str().expect("why").contains("too many connections from your address"));
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"ip_connections\"}").await, 1.0);

    // From a new address (127.0.0.3) the per-address limit is no bar, but
    // the server-wide one holds: two sessions and two WebSockets are 4.
    let _a = server.client("a").await;
    let b = server.client("b").await;
    let other = tokio::net::UdpSocket::bind("127.0.0.3:0").await.expect("bind 127.0.0.3");
    other.send_to(hello("p4").as_bytes(), server.udp).await.expect("send");
    let refused = datagrams_within(&other, Duration::from_millis(300)).await;
    assert_eq!(refused[0]["code"], json!("overloaded"), "{refused:?}");
    b.close().await.expect("close"); // a slot for reading /metrics
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"udp_connection_limit\"}").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_http_heads_get_431_and_hold_no_memory() {
    if !alone("abuse_raw::oversized_http_heads_get_431_and_hold_no_memory").await {
        return;
    }
    let server = TestServer::start().await;
    let before = rss_bytes();
    let watch = Watch::start(&server, "feed", 1).await;
    // Each head is 400 KB and never finished: hyper's own bound (about
    // 400 KB) would hold every one of them until the header timeout.
    let head = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: {}", "a".repeat(400 * 1024));
    let mut open = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let _ = stream.write_all(head.as_bytes()).await;
        open.push(stream);
    }
    assert_rss_bounded(before, "300 unfinished 400 KB request heads");
    for mut stream in open {
        let answer = read_all(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(80)]);
    }
    watch.finish().await;
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"http_head_too_large\"}").await, 300.0);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\nstart of a large body";
    stream.write_all(request.as_bytes()).await.expect("write");
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"http_body_too_large\"}").await, 1.0);
    // A small request is still served.
    let mut ok = TcpStream::connect(server.addr).await.expect("connect");
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.expect("write");
    assert!(read_all(&mut ok).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_terminal_shows_every_body_and_no_fake_lines() {
    let server = TestServer::start().await;
    let mut person = TcpStream::connect(server.tcp).await.expect("connect");
    person.write_all(b"/nick tom\n/join r\n").await.expect("write");
    let mut seen = Vec::new();
    within(async {
        while !String::from_utf8_lossy(&seen).contains("you joined r") {
            let mut chunk = [0u8; 4096];
            let count = person.read(&mut chunk).await.expect("read");
            assert!(count > 0, "closed early");
            seen.extend_from_slice(&chunk[..count]);
        }
    })
    .await;
    // A raw client: a library would refuse to parse its own echo of the deep body.
    let mut web = crate::abuse::raw_member(&server, "web", "r").await;
    let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
    web.send_frame(0x81, format!(r#"{{"op":"send","room":"r","body":{deep}}}"#).as_bytes()).await;
    let fake = json!({"op": "send", "room": "r", "id": 2, "body": "hi\u{2028}[r] tom: my password is\u{202E}drowssap"});
    web.send_frame(0x81, fake.to_string().as_bytes()).await;
    within(async { while !String::from_utf8_lossy(&web.read_frame().await.1).contains(r#""re":2"#) {} }).await;
    person.write_all(b"/history\n").await.expect("write");
    let live = format!("[r] web: {deep}\n");
    within(async {
        while String::from_utf8_lossy(&seen).matches(&live).count() < 2 {
            let mut chunk = [0u8; 4096];
            let count = person.read(&mut chunk).await.expect("read");
            assert!(count > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..count]);
        }
    })
    .await;
    person.write_all(b"/quit\n").await.expect("write");
    let said = String::from_utf8_lossy(&seen).into_owned() + &read_all(&mut person).await;
    assert_eq!(said.matches(&live).count(), 2, "live and in /history: {said}");
    let defused = "[r] web: hi?[r] tom: my password is?drowssap\n";
    assert_eq!(said.matches(defused).count(), 2, "{said}");
    assert!(!said.contains('\u{2028}') && !said.contains('\u{202E}'));
}

#[tokio::test]
async fn every_typed_line_counts_against_the_rate() {
    let server = TestServer::with(|config| {
        (config.limits.messages_per_second, config.limits.messages_burst) = (1, 3);
    })
    .await;
    let mut person = TcpStream::connect(server.tcp).await.expect("connect");
    // The first line (help, greeting), then /rooms twice: three admitted; the rest refused.
    person.write_all(b"/help\n/rooms\n/rooms\n/rooms\n/who\n").await.expect("write");
    let mut seen = String::new();
    within(async {
        while seen.matches("! too many commands per second: slow down").count() < 2 {
            let mut chunk = [0u8; 4096];
            let count = person.read(&mut chunk).await.expect("read");
            assert!(count > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..count]));
        }
    })
    .await;
    assert_eq!(seen.matches("* rooms: none").count(), 2, "{seen}");
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"rate_messages\"}").await, 2.0);
}
