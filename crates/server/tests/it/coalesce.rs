//! The flush clock over real sockets: frames others publish to a connection
//! that already wrote in the current window wait for the next window and go
//! out together; with the window at zero, each goes out on its own; a
//! connection receiving a steady stream writes less often still when its
//! window may grow; and answers to a connection's own requests never wait.
//!
//! None of these depends on how fast the machine is: counts are bounded by
//! the windows the test itself saw pass, or compared between two servers fed
//! the same stream at the same time.

use crate::support::{is_msg, request, wait_for, Datagrams, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_client::Connection;

/// Three members of `lobby` on a server with `window`, each having read
/// message 0 from the first: everyone has just written.
async fn lobby(window: Duration) -> (TestServer, Vec<Connection>) {
    let server = TestServer::with(|config| config.delivery.write_window = window).await;
    let mut members: Vec<Connection> = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut client = server.client(name).await;
        assert_eq!(request(&mut client, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
        members.push(client);
    }
    members[0].send_text(volatile(0)).await.expect("send");
    for member in &mut members {
        wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(0)).await;
    }
    (server, members)
}

fn volatile(n: u64) -> String {
    json!({"op": "send", "room": "lobby", "volatile": true, "body": {"n": n}}).to_string()
}

async fn receive(member: &mut Connection, n: u64) {
    wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(n)).await;
}

#[tokio::test]
async fn fan_out_frames_wait_for_the_next_window_and_go_out_together() {
    // Alice publishes messages 1-10, each once her copy of the one before
    // arrived, so each reaches Bob and Carol on its own. She reads each
    // send, so she writes each time (10). Bob and Carol wrote message 0 in
    // the current window: what reaches them waits for the next window, so
    // each writes once per window the ten publishes spanned, plus one.
    let window = Duration::from_secs(1);
    let (server, mut members) = lobby(window).await;
    let before = server.metric("switchboard_socket_writes_total").await;
    let started = Instant::now();
    for n in 1..=10 {
        members[0].send_text(volatile(n)).await.expect("send");
        receive(&mut members[0], n).await;
    }
    // Alice's task fans message 10 out to everyone before writing her copy.
    let spanned = (started.elapsed().as_secs_f64() / window.as_secs_f64()).floor() + 2.0;
    for member in &mut members[1..] {
        receive(member, 10).await;
    }
    let writes = server.metric("switchboard_socket_writes_total").await - before;
    // One more may answer the /metrics request.
    assert!(writes <= 10.0 + 2.0 * spanned + 1.0, "{writes} writes for 10 + 2 x 10 frames over {spanned} windows");
}

#[tokio::test]
async fn with_the_window_at_zero_each_frame_goes_out_on_its_own() {
    // In lockstep (each message published once every member read the one
    // before) each frame is written alone, to each member: 30 writes. With
    // a window, the lockstep would wait a window per message.
    let (server, mut members) = lobby(Duration::ZERO).await;
    let before = server.metric("switchboard_socket_writes_total").await;
    for n in 1..=10 {
        members[0].send_text(volatile(n)).await.expect("send");
        for member in &mut members {
            receive(member, n).await;
        }
    }
    let writes = server.metric("switchboard_socket_writes_total").await - before;
    assert!((30.0..=31.0).contains(&writes), "{writes} writes for 10 messages to 3 members");
}

/// A server whose three WebSocket subscribers of `feed` receive what a UDP
/// member (whose datagrams are not counted as socket writes) publishes,
/// with 100 ms windows that may grow to `window_max`.
struct Feed {
    server: TestServer,
    subscribers: Vec<Connection>,
    publisher: Datagrams,
}

impl Feed {
    async fn start(window_max: Duration) -> Feed {
        let server = TestServer::with(|config| {
            config.delivery.write_window = Duration::from_millis(100);
            config.delivery.write_window_max = window_max;
        })
        .await;
        let mut subscribers: Vec<Connection> = Vec::new();
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
        Feed { server, subscribers, publisher }
    }

    async fn publish(&self, n: u64) {
        self.publisher.send(json!({"op": "send", "room": "feed", "volatile": true, "body": {"n": n}})).await;
    }

    /// Waits for message `last` everywhere; returns the writes since `before`
    /// and the times a window grew.
    async fn finish(&mut self, last: u64, before: f64) -> (f64, f64) {
        for subscriber in &mut self.subscribers {
            wait_for(subscriber, |event| is_msg(event) && event["body"]["n"] == json!(last)).await;
        }
        let writes = self.server.metric("switchboard_socket_writes_total").await - before;
        (writes, self.server.metric("switchboard_write_windows_grown_total").await)
    }
}

#[tokio::test]
async fn a_steady_stream_is_written_less_often_when_windows_may_grow() {
    // Two servers get the same stream at the same time, about 100 messages
    // a second for 3 s: whatever pace this machine manages, both see it.
    // About 10 frames a window: each subscriber of the first writes once a
    // window; the second's window doubles after a write of 4 frames or more
    // per window (hub::flush), 100 -> 200 -> 400 ms, and stays there, so its
    // subscribers write about a third as often. Growth needs only 4 frames
    // a window, 40 messages a second.
    let mut fixed = Feed::start(Duration::from_millis(100)).await;
    let mut growing = Feed::start(Duration::from_millis(400)).await;
    let fixed_before = fixed.server.metric("switchboard_socket_writes_total").await;
    let growing_before = growing.server.metric("switchboard_socket_writes_total").await;
    const MESSAGES: u64 = 300;
    for n in 0..MESSAGES {
        fixed.publish(n).await;
        growing.publish(n).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (fixed_writes, fixed_grown) = fixed.finish(MESSAGES - 1, fixed_before).await;
    let (growing_writes, growing_grown) = growing.finish(MESSAGES - 1, growing_before).await;
    let counts = format!("writes {fixed_writes} fixed, {growing_writes} growing; grown {fixed_grown}, {growing_grown}");
    assert_eq!(fixed_grown, 0.0, "{counts}");
    assert!(growing_grown >= 3.0 * 2.0, "each subscriber's window doubles at least twice: {counts}");
    // A third as often when the stream is steady throughout; two thirds
    // leaves room for the ramp to start again after a stall of the machine.
    assert!(growing_writes * 3.0 <= fixed_writes * 2.0, "{counts}");
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
    let started = Instant::now();
    for n in 0..20 {
        let ack = request(&mut alice, json!({"op": "send", "room": "acks", "body": {"n": n}})).await;
        assert_eq!(ack["seq"], json!(n + 1), "{ack}");
    }
    let history = request(&mut alice, json!({"op": "history", "room": "acks", "limit": 5})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(5), "{history}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "20 acks and a history reply took {elapsed:?}");
    for n in 0..20 {
        wait_for(&mut alice, |event| is_msg(event) && event["body"]["n"] == json!(n)).await;
    }
}
