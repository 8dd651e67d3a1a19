//! One bad client cannot hurt good ones: each abuse case runs beside
//! well-behaved members of a room ([`Watch`]), which must keep receiving
//! with bounded latency, while the server's resident memory stays bounded.
//! This file: the harness, and the abuse of one WebSocket connection
//! (floods, pings while not reading, unfinished messages). Tests with a
//! [`Watch`] run on two worker threads, as the server does in production:
//! on one, the abuser's client and the server's work on it would starve
//! the well-behaved members' tasks, which measures the test, not the server.

use crate::support::{masked_frame, request, within, RawClient, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_client::Connection;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The worst publish-to-receive latency a well-behaved member may see while
/// an abuser does its thing: generous enough to survive a stall of the
/// machine of a second or two (measured: 25-160 ms with the suite running
/// on two cores at a load of 11), far below what a starved member shows.
pub const LATENCY_BOUND: Duration = Duration::from_secs(3);

/// How much the test process's resident memory may grow during one abuse
/// case (the server runs in this process; other tests run beside it).
pub const RSS_GROWTH_BOUND: u64 = 96 << 20;

/// Resident memory of this process (the server runs in it), in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// Whether the calling test should run its body here: true in a child
/// process of this test binary that runs `test` (its full name) alone. In
/// the parent it starts that child, waits for it, fails if it failed, and
/// returns false. Resident memory is the process's, and the other tests of
/// this binary run beside each other in it: their allocations (kept by the
/// allocator after they are freed) made a memory bound fail under load, so
/// a test that asserts one measures a process of its own.
pub async fn alone(test: &'static str) -> bool {
    const ALONE: &str = "SWITCHBOARD_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let status = tokio::task::spawn_blocking(move || {
        let binary = std::env::current_exe().expect("the test binary");
        let arguments = [test, "--exact", "--test-threads=1", "--nocapture"];
        std::process::Command::new(binary).args(arguments).env(ALONE, "1").status()
    })
    .await
    .expect("the child's waiter")
    .expect("start the test binary again");
    assert!(status.success(), "{test} failed in a process of its own ({status}; its output is above)");
    false
}

/// Asserts the process grew by less than [`RSS_GROWTH_BOUND`] since `before`.
pub fn assert_rss_bounded(before: u64, what: &str) {
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < RSS_GROWTH_BOUND, "{what}: resident memory grew by {} MiB", grown >> 20);
}

/// Well-behaved members of a room: a canary that publishes a timestamped
/// message every 20 ms (and reads everything it is sent), and readers that
/// measure how long each canary message took to reach them.
pub struct Watch {
    stop: watch::Sender<bool>,
    canary: JoinHandle<Result<(), String>>,
    readers: Vec<JoinHandle<Result<Duration, String>>>,
}

impl Watch {
    pub async fn start(server: &TestServer, room: &str, readers: usize) -> Watch {
        let start = Arc::new(Instant::now());
        let mut handles = Vec::new();
        for index in 0..readers {
            let mut client = server.client(&format!("reader{index}")).await;
            request(&mut client, json!({"op": "join", "room": room})).await;
            handles.push(tokio::spawn(read_canary(client, Arc::clone(&start))));
        }
        let mut canary = server.client("canary").await;
        request(&mut canary, json!({"op": "join", "room": room})).await;
        let (stop, stopped) = watch::channel(false);
        let canary = tokio::spawn(publish_canary(canary, room.to_owned(), start, stopped));
        Watch { stop, canary, readers: handles }
    }

    /// Stops the canary and waits for every reader to receive its last
    /// message. Panics if any well-behaved member was closed or starved;
    /// returns the worst latency seen.
    pub async fn finish(self) -> Duration {
        self.stop.send_replace(true);
        let wait = Duration::from_secs(30);
        let canary = tokio::time::timeout(wait, self.canary).await.expect("canary finishes").expect("canary task");
        canary.expect("the canary kept publishing");
        let mut worst = Duration::ZERO;
        for reader in self.readers {
            let result = tokio::time::timeout(wait, reader).await.expect("reader finishes").expect("reader task");
            worst = worst.max(result.expect("a well-behaved member kept receiving"));
        }
        assert!(worst < LATENCY_BOUND, "a well-behaved member waited {worst:?} for a message");
        eprintln!("worst latency of a well-behaved member: {worst:?}");
        worst
    }
}

async fn publish_canary(
    mut canary: Connection,
    room: String,
    start: Arc<Instant>,
    stopped: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut sequence = 0u64;
    loop {
        let last = *stopped.borrow();
        let at = start.elapsed().as_millis() as u64;
        let body = json!({"canary": sequence, "at": at, "last": last});
        let send = json!({"op": "send", "room": room, "body": body}).to_string();
        canary.send_text(send).await.map_err(|error| format!("canary send: {error}"))?;
        sequence += 1;
        if last {
            return Ok(());
        }
        // Read what arrives for 20 ms (the canary is a member too): this
        // paces the canary and keeps it a good consumer.
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        loop {
            match tokio::time::timeout_at(until, canary.next_event()).await {
                Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(format!("canary closed: {error}")),
            }
        }
    }
}

async fn read_canary(mut client: Connection, start: Arc<Instant>) -> Result<Duration, String> {
    let mut worst = Duration::ZERO;
    loop {
        let event = client.next_event().await.map_err(|error| format!("{} closed: {error}", client.user))?;
        if event["ev"] != json!("msg") || event["from"] != json!("canary") {
            continue;
        }
        let at = Duration::from_millis(event["body"]["at"].as_u64().unwrap_or_default());
        worst = worst.max(start.elapsed().saturating_sub(at));
        if event["body"]["last"] == json!(true) {
            return Ok(worst);
        }
    }
}

/// A raw WebSocket member of `room` named `name` (hello and join reply read).
pub async fn raw_member(server: &TestServer, name: &str, room: &str) -> RawClient {
    let mut client = RawClient::connect(server.addr, &format!("/ws?name={name}")).await;
    client.read_event().await;
    client.send_frame(0x81, json!({"op": "join", "room": room, "id": 1}).to_string().as_bytes()).await;
    let reply = client.read_event().await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_messages_closes_the_flooder_not_the_room() {
    if !alone("abuse::a_flood_of_large_messages_closes_the_flooder_not_the_room").await {
        return;
    }
    // The issue's flood: one member sends 200 messages of 60 KB in about
    // 20 ms. Before per-connection limits every other member got 4008.
    let server = TestServer::start().await;
    let before = rss_bytes();
    let watch = Watch::start(&server, "feed", 3).await;
    let mut flooder = raw_member(&server, "flooder", "feed").await;
    let body = "x".repeat(60 * 1024 - 64);
    let send = json!({"op": "send", "room": "feed", "body": body}).to_string();
    let frame = masked_frame(0x81, send.as_bytes());
    let flood: Vec<u8> = (0..200).flat_map(|_| frame.iter().copied()).collect();
    // The server may close the flooder before it has read everything.
    let _ = flooder.stream.write_all(&flood).await;
    let code = within(flooder.close_code()).await;
    assert_eq!(code, 1008, "sustained abuse closes with 1008");
    watch.finish().await;
    assert_eq!(server.metric("switchboard_slow_consumer_disconnects_total").await, 0.0, "nobody was closed with 4008");
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1008\"}").await, 1.0);
    assert!(server.metric("switchboard_limit_hits_total{reason=\"rate_bytes\"}").await >= 90.0);
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"rate_close\"}").await, 1.0);
    assert_rss_bounded(before, "a flood of 12 MB");
}

#[tokio::test]
async fn a_command_over_the_rate_is_refused_with_rate_limited_and_the_connection_survives() {
    let server = TestServer::with(|config| {
        config.limits.messages_per_second = 5;
        config.limits.messages_burst = 3;
    })
    .await;
    let mut alice = server.client("alice").await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(request(&mut alice, json!({"op": "ping"})).await);
    }
    assert_eq!(answers[..3].iter().filter(|reply| reply["ok"] == json!(true)).count(), 3, "{answers:?}");
    let refused = &answers[3];
    assert_eq!((refused["ok"].clone(), refused["code"].clone()), (json!(false), json!("rate_limited")), "{refused}");
    assert!(refused["error"].as_str().expect("message").contains("slow down"));
    // 5 a second: within a second (or a stalled machine's few) one passes again.
    let again = within(async {
        loop {
            let reply = request(&mut alice, json!({"op": "ping"})).await;
            if reply["ok"] == json!(true) {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(again["ok"], json!(true));
    assert!(server.metric("switchboard_limit_hits_total{reason=\"rate_messages\"}").await >= 1.0);
    assert!(server.metric("switchboard_command_errors_total{code=\"rate_limited\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_from_a_client_that_does_not_read_close_it_with_1008() {
    if !alone("abuse::pings_from_a_client_that_does_not_read_close_it_with_1008").await {
        return;
    }
    let server = TestServer::with(|config| config.limits.outbound_queue_bytes = 64 * 1024).await;
    let before = rss_bytes();
    let watch = Watch::start(&server, "feed", 2).await;
    let mut pinger = RawClient::connect_small(server.addr, "/ws?name=pinger", 4096).await;
    let ping = masked_frame(0x89, &[b'p'; 125]);
    let pings: Vec<u8> = (0..4000).flat_map(|_| ping.iter().copied()).collect();
    // 4000 pongs of 127 bytes are 500 KB: far more than the queue and the socket hold.
    let _ = pinger.stream.write_all(&pings).await;
    within(async {
        while server.metric("switchboard_limit_hits_total{reason=\"ping_flood\"}").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    watch.finish().await;
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1008\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_slow_consumer_disconnects_total").await, 0.0);
    assert_rss_bounded(before, "a ping flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_fragmented_message_is_closed_at_its_deadline_even_with_pings() {
    let server = TestServer::with(|config| config.limits.message_timeout = Duration::from_millis(300)).await;
    let watch = Watch::start(&server, "feed", 1).await;
    let mut slow = raw_member(&server, "slow", "feed").await;
    // The first fragment of a text message, then pings, never the last fragment.
    slow.send_frame(0x01, br#"{"op":"send","room":"feed","body":"#).await;
    let started = Instant::now();
    let code = within(async {
        loop {
            slow.send_frame(0x89, b"still here").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if server.metric("switchboard_limit_hits_total{reason=\"ws_message_timeout\"}").await >= 1.0 {
                return slow.close_code().await;
            }
        }
    })
    .await;
    assert_eq!(code, 1008);
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the deadline");

    // A partial frame is held to the same deadline.
    let mut partial = raw_member(&server, "partial", "feed").await;
    let frame = masked_frame(0x81, br#"{"op":"ping"}"#);
    partial.stream.write_all(&frame[..5]).await.expect("write part of a frame");
    assert_eq!(within(partial.close_code()).await, 1008);
    watch.finish().await;
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"ws_message_timeout\"}").await, 2.0);
}

#[tokio::test]
async fn a_message_that_completes_in_time_is_served() {
    let server = TestServer::with(|config| config.limits.message_timeout = Duration::from_secs(5)).await;
    let mut client = RawClient::connect(server.addr, "/ws?name=frag").await;
    client.read_event().await;
    client.send_frame(0x01, br#"{"op":"ping","#).await;
    client.send_frame(0x89, b"ping between fragments").await;
    client.send_frame(0x80, br#""id":7}"#).await;
    let (opcode, _) = client.read_frame().await;
    assert_eq!(opcode, 0xA, "the pong");
    let reply: Value = client.read_event().await;
    assert_eq!((reply["re"].clone(), reply["ok"].clone()), (json!(7), json!(true)));
}

#[tokio::test]
async fn limits_change_on_reload_without_dropping_connections() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut config = server.config.clone();
    (config.limits.messages_per_second, config.limits.messages_burst) = (1, 1);
    server.reload(config.clone()).await;
    // Applied as soon as the reload is: two pings in a row, the second refused.
    within(async {
        loop {
            request(&mut alice, json!({"op": "ping"})).await;
            if request(&mut alice, json!({"op": "ping"})).await["code"] == json!("rate_limited") {
                return;
            }
        }
    })
    .await;
    config.limits = server.config.limits.clone();
    server.reload(config).await;
    within(async {
        loop {
            let mut replies = Vec::new();
            for _ in 0..5 {
                replies.push(request(&mut alice, json!({"op": "ping"})).await);
            }
            if replies.iter().all(|reply| reply["ok"] == json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1008\"}").await, 0.0, "alice stayed");
}
