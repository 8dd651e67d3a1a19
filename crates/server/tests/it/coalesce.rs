//! The flush clock over real sockets: frames others publish to a connection
//! that already wrote in the current window wait for the next window and go
//! out together; with the window at zero, each goes out on its own; and a
//! connection receiving a steady stream writes less often still when its
//! window may grow; and answers to a connection's own requests never wait.

use crate::support::{is_msg, request, wait_for, Datagrams, TestServer};
use serde_json::json;
use std::time::Duration;
use switchboard_client::Client;

/// Socket writes the server made while `alice` sent ten messages 5 ms apart
/// to a room with two other members, everything delivered.
async fn writes_for_paced_messages(window: Duration) -> f64 {
    let server = TestServer::with(|config| config.delivery.write_window = window).await;
    let mut members: Vec<Client> = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut client = server.client(name).await;
        assert_eq!(request(&mut client, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
        members.push(client);
    }
    let send = |n: u64| json!({"op": "send", "room": "lobby", "volatile": true, "body": {"n": n}}).to_string();
    // Message 0 starts a window in which everyone has written.
    members[0].send_text(send(0)).await.expect("send");
    for member in &mut members {
        wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(0)).await;
    }
    let before = server.metric("switchboard_socket_writes_total").await;
    for n in 1..=10 {
        members[0].send_text(send(n)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for member in &mut members {
        wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(10)).await;
    }
    server.metric("switchboard_socket_writes_total").await - before
}

#[tokio::test]
async fn fan_out_frames_wait_for_the_next_window_and_go_out_together() {
    // Alice reads each of her sends, so she writes each time (10); Bob and
    // Carol get everything in the next window or the one after: 1–2 each.
    // One more write answers the first /metrics request.
    let coalesced = writes_for_paced_messages(Duration::from_secs(1)).await;
    assert!(coalesced <= 10.0 + 2.0 * 2.0 + 1.0, "{coalesced} writes with a 1 s window");
    let uncoalesced = writes_for_paced_messages(Duration::ZERO).await;
    assert!(uncoalesced >= 10.0 + 2.0 * 9.0, "{uncoalesced} writes with no window");
}

/// Socket writes the server made to three WebSocket subscribers while a UDP
/// member (whose datagrams are not counted as socket writes) published 240
/// messages about 5 ms apart, with 40 ms windows that may grow to
/// `window_max`. Everything is delivered.
async fn subscriber_writes_for_a_steady_stream(window_max: Duration) -> Stream {
    let server = TestServer::with(|config| {
        config.delivery.write_window = Duration::from_millis(40);
        config.delivery.write_window_max = window_max;
    })
    .await;
    let mut subscribers: Vec<Client> = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let mut client = server.client(name).await;
        assert_eq!(request(&mut client, json!({"op": "join", "room": "feed"})).await["ok"], json!(true));
        subscribers.push(client);
    }
    let publisher = Datagrams::hello(server.udp, "sensor").await;
    publisher.send(json!({"op": "join", "room": "feed", "id": 1})).await;
    assert_eq!(publisher.until(|v| v["re"] == json!(1)).await["ok"], json!(true));
    for subscriber in &mut subscribers {
        wait_for(subscriber, |event| event["ev"] == json!("join") && event["user"] == json!("sensor")).await;
    }
    let before = server.metric("switchboard_socket_writes_total").await;
    const MESSAGES: u64 = 240;
    let started = std::time::Instant::now();
    for n in 0..MESSAGES {
        publisher.send(json!({"op": "send", "room": "feed", "volatile": true, "body": {"n": n}})).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for subscriber in &mut subscribers {
        wait_for(subscriber, |event| is_msg(event) && event["body"]["n"] == json!(MESSAGES - 1)).await;
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    // Less the write that answers this /metrics request.
    let writes = server.metric("switchboard_socket_writes_total").await - before - 1.0;
    Stream { rate, writes, grown: server.metric("switchboard_write_windows_grown_total").await }
}

/// What one steady stream did.
#[derive(Debug)]
struct Stream {
    /// Messages a second the publisher managed (about 200 unless the
    /// machine starved the test).
    rate: f64,
    /// Socket writes to the subscribers.
    writes: f64,
    /// Times a window grew (`/metrics`).
    grown: f64,
}

#[tokio::test]
async fn a_steady_stream_is_written_less_often_when_windows_may_grow() {
    // About 8 messages per 40 ms window: each subscriber writes once a
    // window (about 30 times in 1.2 s) when windows stay at 40 ms, and about
    // once every 160 ms (about 10 times, ramp included) when they may grow
    // to four windows. That holds only for a steady stream: a machine too
    // busy to send 150 messages a second here gets two more tries.
    let mut rates = Vec::new();
    for _ in 0..3 {
        let fixed = subscriber_writes_for_a_steady_stream(Duration::from_millis(40)).await;
        let growing = subscriber_writes_for_a_steady_stream(Duration::from_millis(160)).await;
        if fixed.rate < 150.0 || growing.rate < 150.0 {
            rates.push((fixed.rate, growing.rate));
            continue;
        }
        assert!(fixed.writes >= 3.0 * 20.0, "{fixed:?} with fixed 40 ms windows");
        assert!(growing.writes <= 3.0 * 15.0, "{growing:?} with windows growing to 160 ms");
        // Each subscriber's window doubles twice (40 → 80 → 160 ms) and stays.
        assert_eq!(fixed.grown, 0.0, "{fixed:?}");
        assert!((6.0..=12.0).contains(&growing.grown), "{growing:?}");
        return;
    }
    panic!("no steady stream of 150 messages a second in three tries (fixed, growing): {rates:?}");
}

#[tokio::test]
async fn answers_to_a_connections_own_requests_do_not_wait_for_the_window() {
    // With 1 s windows, an ack that waited for the clock would make each of
    // these sends after the first take up to a second: about 20 s in all.
    // The acks come from the storage thread, after the connection already
    // wrote (its previous ack) in the same window, beside its own copy of
    // each message, which does wait.
    let server = TestServer::with(|config| config.delivery.write_window = Duration::from_secs(1)).await;
    let mut alice = server.client("alice").await;
    assert_eq!(request(&mut alice, json!({"op": "join", "room": "acks"})).await["ok"], json!(true));
    let started = std::time::Instant::now();
    for n in 0..20 {
        let ack = request(&mut alice, json!({"op": "send", "room": "acks", "body": {"n": n}})).await;
        assert_eq!(ack["seq"], json!(n + 1), "{ack}");
    }
    let history = request(&mut alice, json!({"op": "history", "room": "acks", "limit": 5})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(5), "{history}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "20 acks and a history reply took {elapsed:?}");
    for n in 0..20 {
        wait_for(&mut alice, |event| is_msg(event) && event["body"]["n"] == json!(n)).await;
    }
}
