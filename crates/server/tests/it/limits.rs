//! Bad input and limits: every one answered clearly, none fatal to the server.

use crate::support::{is_msg, request, wait_for, within, RawClient, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use switchboard_client::tungstenite::Message;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn bad_json_and_unknown_ops_get_error_replies_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    alice.send_text("{this is not json").await.expect("send");
    let error = within(alice.next_event()).await.expect("event");
    assert_eq!((error["ev"].clone(), error["code"].clone()), (json!("error"), json!("bad_json")));
    assert!(error["error"].as_str().expect("message").contains("JSON"));

    let unknown = request(&mut alice, json!({"op": "teleport"})).await;
    assert_eq!((unknown["ok"].clone(), unknown["code"].clone()), (json!(false), json!("unknown_op")));
    let missing = request(&mut alice, json!({"op": "join"})).await;
    assert_eq!(missing["code"], json!("bad_request"));
    assert!(missing["error"].as_str().expect("message").contains("room"));

    let pong = request(&mut alice, json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], json!(true), "still connected and served");
}

#[tokio::test]
async fn an_oversize_message_closes_with_1009() {
    let server = TestServer::with(|config| config.limits.max_message_size = 1024).await;
    let mut alice = server.client("alice").await;
    alice.send_text("x".repeat(2000)).await.expect("send");
    let closed = within(alice.next_event()).await;
    let Err(switchboard_client::Error::Closed(Some(frame))) = closed else {
        panic!("expected a close frame, got {closed:?}");
    };
    assert_eq!(u16::from(frame.code), 1009);
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1009\"}").await, 1.0);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_protocol_violations_with_1002() {
    let server = TestServer::start().await;
    let mut bad_text = RawClient::connect(server.addr, "/ws").await;
    bad_text.read_frame().await; // hello
    bad_text.send_frame(0x81, &[b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(bad_text.close_code().await, 1007);
    bad_text.wait_eof().await;

    let mut bad_opcode = RawClient::connect(server.addr, "/ws").await;
    bad_opcode.send_frame(0x83, b"reserved opcode").await;
    assert_eq!(bad_opcode.close_code().await, 1002);

    let mut unmasked = RawClient::connect(server.addr, "/ws").await;
    tokio::io::AsyncWriteExt::write_all(&mut unmasked.stream, &[0x81, 0x02, b'h', b'i']).await.expect("write");
    assert_eq!(unmasked.close_code().await, 1002);
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_4008_while_others_keep_receiving() {
    let server = TestServer::with(|config| {
        config.limits.outbound_queue_bytes = 64 * 1024;
        // The publisher sends faster than one connection may by default.
        config.limits.bytes_per_second = 0;
    })
    .await;
    let mut slow = server.client("slow").await;
    request(&mut slow, json!({"op": "join", "room": "feed"})).await;
    let mut fast = server.client("fast").await;
    request(&mut fast, json!({"op": "join", "room": "feed"})).await;
    let mut publisher = server.client("publisher").await;
    request(&mut publisher, json!({"op": "join", "room": "feed"})).await;

    let (progress, mut fast_received) = tokio::sync::watch::channel(0);
    let fast_reader = tokio::spawn(async move {
        let mut expected_seq = 1;
        loop {
            let message = wait_for(&mut fast, |e| is_msg(e) && e["from"] == json!("publisher")).await;
            assert_eq!(message["seq"], json!(expected_seq), "the fast client misses nothing");
            if message["body"]["last"] == json!(true) {
                return expected_seq;
            }
            progress.send_replace(expected_seq);
            expected_seq += 1;
        }
    });
    // Publish until the server gives up on the slow client: its socket
    // buffers fill first, then its 64 KiB queue. The fast client is never
    // let fall more than 8 messages (about 32 KiB) behind.
    let payload = "x".repeat(4000);
    let mut published = 0;
    while server.metric("switchboard_slow_consumer_disconnects_total").await == 0.0 {
        for _ in 0..100 {
            request(&mut publisher, json!({"op": "send", "room": "feed", "body": {"pad": payload}})).await;
            published += 1;
            within(fast_received.wait_for(|received| received + 8 >= published)).await.expect("fast reader");
        }
        assert!(published < 50_000, "slow consumer never detected");
    }
    request(&mut publisher, json!({"op": "send", "room": "feed", "body": {"last": true}})).await;
    let received = within(fast_reader).await.expect("fast reader");
    assert_eq!(received, published + 1);
    assert!(server.metric("switchboard_messages_dropped_total{reason=\"slow_consumer\"}").await >= 1.0);

    // The slow client reads what reached it, then the close frame.
    let close = within(async {
        loop {
            match slow.socket().expect("a WebSocket").next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await;
    let frame = close.expect("close frame has a code");
    assert_eq!((u16::from(frame.code), frame.reason.as_ref()), (4008, "slow consumer"));
}

#[tokio::test]
async fn frames_of_every_size_reach_a_client_that_paused_whole_and_in_order() {
    // Small frames are copied into one buffer per write and large ones are
    // written from the queue: both, cut anywhere by a full socket, must
    // join up again. The paused client reads nothing (no library reads
    // ahead for it) while about 9 MB is published, more than its small
    // receive buffer and the server's send buffer (4 MiB at most) hold, so
    // writes stop partway through frames.
    let server = TestServer::with(|config| {
        config.limits.outbound_queue_bytes = 32 * 1024 * 1024;
        // 12,000 messages at once: far past one connection's default rate.
        (config.limits.messages_per_second, config.limits.bytes_per_second) = (0, 0);
    })
    .await;
    let mut paused = RawClient::connect_small(server.addr, "/ws?name=paused", 4096).await;
    paused.send_frame(0x81, br#"{"op": "join", "room": "mix", "id": 1}"#).await;
    while !paused.read_event().await.get("re").is_some_and(|re| re == &json!(1)) {}
    let mut publisher = server.client("publisher").await;
    request(&mut publisher, json!({"op": "join", "room": "mix"})).await;
    let sizes = [10, 300, 40, 60, 700, 900, 1023, 1025, 3000];
    let count = 12_000;
    for i in 0..count {
        let body = json!({"i": i, "pad": "x".repeat(sizes[i % sizes.len()])});
        let send = json!({"op": "send", "room": "mix", "volatile": true, "body": body});
        publisher.send_text(send.to_string()).await.expect("send");
    }
    let mut next = 0;
    while next < count {
        let event = paused.read_event().await;
        if !is_msg(&event) || event["from"] != json!("publisher") {
            continue;
        }
        assert_eq!(event["body"]["i"], json!(next), "in order, none missing");
        let pad = event["body"]["pad"].as_str().expect("pad");
        assert_eq!(pad.len(), sizes[next % sizes.len()], "message {next} arrived whole");
        next += 1;
    }
    assert_eq!(server.metric("switchboard_slow_consumer_disconnects_total").await, 0.0);
}

#[tokio::test]
async fn the_connection_limit_refuses_extras_and_the_server_keeps_serving() {
    let server = TestServer::with(|config| config.limits.max_connections = 2).await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let refused = within(tokio_tungstenite::connect_async(server.url("carol"))).await;
    let Err(switchboard_client::tungstenite::Error::Http(response)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(response.status(), 503);
    assert_eq!(request(&mut bob, json!({"op": "ping"})).await["ok"], json!(true));

    within(alice.close()).await.expect("close");
    // The slot frees when the server finishes the close; retry until then.
    let carol = within(async {
        loop {
            if let Ok(client) = switchboard_client::Connection::connect(&server.url("carol")).await {
                return client;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(carol.user, "carol");
    within(carol.close()).await.expect("close");
    let refused = server.metric("switchboard_connections_refused_total{reason=\"limit\"}").await;
    assert!(refused >= 1.0, "the refusal was counted");
}

#[tokio::test]
async fn a_silent_connection_is_answered_408_at_the_handshake_timeout() {
    let server = TestServer::with(|config| config.websocket.handshake_timeout = Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let mut answer = String::new();
    within(silent.read_to_string(&mut answer)).await.expect("the server answers and closes");
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the timeout");
    let refused = server.metric("switchboard_connections_refused_total{reason=\"handshake_timeout\"}").await;
    assert_eq!(refused, 1.0);
}

#[tokio::test]
async fn an_upgrade_without_a_key_is_refused_with_400() {
    let server = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let request =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 512];
    let count = within(stream.read(&mut buffer)).await.expect("read");
    let answer = String::from_utf8_lossy(&buffer[..count]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Key"), "{answer}");
}

#[tokio::test]
async fn frames_over_64_kib_carry_a_64_bit_length_both_ways() {
    // Echoed whole when the limit allows it; over the limit (64 KiB by
    // default), closed with 1009 as soon as the header is read.
    let server = TestServer::with(|config| config.limits.max_message_size = 256 * 1024).await;
    let mut echo = RawClient::connect(server.addr, "/ws/echo").await;
    let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    echo.send_frame(0x82, &message).await;
    assert_eq!(echo.read_frame_whole().await, (0x82, message), "echoed whole");

    let strict = TestServer::start().await;
    let mut alice = RawClient::connect(strict.addr, "/ws").await;
    alice.read_frame().await; // hello
    alice.send_frame(0x81, &vec![b' '; 70_000]).await;
    assert_eq!(alice.close_code().await, 1009);
}
