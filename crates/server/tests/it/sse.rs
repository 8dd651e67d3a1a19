//! Server-Sent Events followers over real sockets: events and their ids,
//! resuming with `Last-Event-ID` and `since`, `recovered: false`, several
//! rooms in one stream, heartbeats, slow consumers, refusals and closes.

use crate::sse_client::{code, refused, Block, EventStream};
use crate::support::{is_msg, request, wait_for, within, TestServer};
use serde_json::json;
use std::time::Duration;
use switchboard_client::Connection;
use tokio::io::AsyncWriteExt;

/// Sends `count` messages to `room`, numbered from `first`, each acked
/// (stored) before the next.
async fn publish(client: &mut Connection, room: &str, first: u64, count: u64) {
    for n in first..first + count {
        let ack = request(client, json!({"op": "send", "room": room, "body": {"n": n}})).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
}

/// The room's epoch, from a history page.
async fn epoch_of(client: &mut Connection, room: &str) -> u64 {
    request(client, json!({"op": "history", "room": room, "limit": 1})).await["epoch"].as_u64().expect("an epoch")
}

/// Reads room messages until `count` have come; returns them.
async fn messages(stream: &mut EventStream, count: usize) -> Vec<Block> {
    let mut found = Vec::new();
    while found.len() < count {
        let event = stream.event().await;
        if event.name() == "message" {
            found.push(event);
        }
    }
    found
}

fn seq(event: &Block) -> u64 {
    event.json()["seq"].as_u64().expect("seq")
}

#[tokio::test]
async fn websocket_messages_arrive_as_events_with_ids_and_the_follower_is_a_member() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    // The follower's user has a DM waiting: that is for the user's clients.
    request(&mut alice, json!({"op": "dm", "to": "watcher", "body": "stored"})).await;
    let mut follower =
        EventStream::open(server.addr, "/api/rooms/lobby/events?name=watcher", "Accept: text/event-stream\r\n").await;
    assert!(follower.head.contains("\r\nContent-Type: text/event-stream\r\n"), "{}", follower.head);
    assert!(follower.head.contains("\r\nCache-Control: no-store\r\n"), "{}", follower.head);
    assert_eq!(follower.block().await.expect("retry").retry, Some(3000), "the reconnection delay comes first");
    let hello = follower.until("hello").await.json();
    assert_eq!((hello["user"].clone(), hello.get("inbox")), (json!("watcher"), None), "{hello}");
    let joined = follower.until("joined").await.json();
    assert_eq!(joined, json!({"ev": "joined", "room": "lobby", "epoch": null, "seq": 0, "presence_events": true}));

    request(&mut alice, json!({"op": "join", "room": "lobby"})).await;
    let join = follower.until("join").await.json();
    assert_eq!((join["user"].clone(), join["room"].clone()), (json!("alice"), json!("lobby")));
    let present = request(&mut alice, json!({"op": "presence", "room": "lobby"})).await;
    assert_eq!(present["users"], json!(["alice", "watcher"]), "a follower is a member");

    // A live DM does not reach the follower either: the next events are the messages.
    request(&mut alice, json!({"op": "dm", "to": "watcher", "body": "live"})).await;
    publish(&mut alice, "lobby", 1, 3).await;
    let epoch = epoch_of(&mut alice, "lobby").await;
    for n in 1..=3 {
        let seen_on_websocket = wait_for(&mut alice, is_msg).await;
        let event = follower.event().await;
        assert_eq!(event.event, None, "messages are unnamed: EventSource's onmessage gets them");
        assert_eq!(event.json(), seen_on_websocket, "the data is what a WebSocket member gets");
        assert_eq!(event.json()["body"], json!({"n": n}));
        assert_eq!(event.id, Some(format!("lobby:{epoch}:{n}")));
    }
    assert_eq!(server.metric("switchboard_connections_open{transport=\"sse\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_connections_accepted_total{transport=\"sse\"}").await, 1.0);

    // A follower that leaves is announced like any member.
    drop(follower);
    let left = wait_for(&mut alice, |event| event["ev"] == json!("leave")).await;
    assert_eq!(left["user"], json!("watcher"));
    within(async {
        while server.metric("switchboard_connections_open{transport=\"sse\"}").await != 0.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn last_event_id_resumes_with_exactly_the_missed_messages() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "lobby"})).await;
    let mut follower = EventStream::open(server.addr, "/api/rooms/lobby/events", "").await;
    follower.until("joined").await;
    publish(&mut alice, "lobby", 1, 2).await;
    let seen = messages(&mut follower, 2).await;
    let last_id = seen[1].id.clone().expect("an id");
    drop(follower);
    publish(&mut alice, "lobby", 3, 3).await;

    // What a browser sends when it reconnects: the URL it opened first
    // (here with `since=0`) and the id of the last event it received.
    let mut resumed =
        EventStream::open(server.addr, "/api/rooms/lobby/events?since=0", &format!("Last-Event-ID: {last_id}\r\n"))
            .await;
    let joined = resumed.until("joined").await.json();
    assert_eq!((joined["recovered"].clone(), joined["seq"].clone()), (json!(true), json!(5)));
    let replayed = messages(&mut resumed, 3).await;
    assert_eq!(replayed.iter().map(seq).collect::<Vec<_>>(), [3, 4, 5], "exactly the missed ones, in order");
    let epoch = epoch_of(&mut alice, "lobby").await;
    assert_eq!(replayed[2].id, Some(format!("lobby:{epoch}:5")));
    let done = resumed.until("replayed").await.json();
    assert_eq!((done["count"].clone(), done["recovered"].clone()), (json!(3), json!(true)));
    publish(&mut alice, "lobby", 6, 1).await;
    let live = resumed.event().await;
    assert_eq!((live.name(), seq(&live)), ("message", 6), "live after the replay, once");
}

#[tokio::test]
async fn since_resumes_and_another_epoch_says_recovered_false() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "news"})).await;
    publish(&mut alice, "news", 1, 4).await;
    let epoch = epoch_of(&mut alice, "news").await;

    let mut since = EventStream::open(server.addr, &format!("/api/rooms/news/events?since=2&epoch={epoch}"), "").await;
    assert_eq!(since.until("joined").await.json()["recovered"], json!(true));
    assert_eq!(messages(&mut since, 2).await.iter().map(seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(since.until("replayed").await.json()["count"], json!(2));

    let other = epoch + 1;
    let mut stale = EventStream::open(server.addr, &format!("/api/rooms/news/events?since=2&epoch={other}"), "").await;
    let joined = stale.until("joined").await.json();
    assert_eq!(joined["recovered"], json!(false), "those numbers belong to another history");
    assert_eq!((joined["epoch"].clone(), joined["seq"].clone()), (json!(epoch), json!(4)));
    publish(&mut alice, "news", 5, 1).await;
    let next = stale.event().await;
    assert_eq!((next.name(), seq(&next)), ("message", 5), "nothing was replayed");
    assert_eq!(next.id, Some(format!("news:{epoch}:5")), "the id carries the room's own epoch");
}

#[tokio::test]
async fn history_lost_to_retention_says_recovered_false() {
    let server = TestServer::with(|config| config.storage.room_max_messages = 3).await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    publish(&mut alice, "r", 1, 10).await;
    // Retention runs on the storage thread after the commits it follows.
    within(async {
        loop {
            let page = request(&mut alice, json!({"op": "history", "room": "r", "limit": 10})).await;
            if page["more"] == json!(false) && page["messages"][0]["seq"] == json!(8) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut follower = EventStream::open(server.addr, "/api/rooms/r/events?since=2", "").await;
    let joined = follower.until("joined").await.json();
    assert_eq!((joined["recovered"].clone(), joined["seq"].clone()), (json!(false), json!(10)));
    assert_eq!(messages(&mut follower, 3).await.iter().map(seq).collect::<Vec<_>>(), [8, 9, 10], "what was kept");
    let done = follower.until("replayed").await.json();
    assert_eq!(done["recovered"], json!(true), "nothing went missing during the replay itself");
}

#[tokio::test]
async fn one_id_resumes_every_room_of_a_multi_room_stream() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    for room in ["a", "b"] {
        request(&mut alice, json!({"op": "join", "room": room})).await;
    }
    let mut follower = EventStream::open(server.addr, "/api/events?rooms=a,b", "").await;
    publish(&mut alice, "a", 1, 1).await;
    let first = messages(&mut follower, 1).await.remove(0);
    let epoch_a = epoch_of(&mut alice, "a").await;
    assert_eq!(first.id, Some(format!("a:{epoch_a}:1,b::0")), "b has no history yet: no epoch");
    publish(&mut alice, "b", 1, 1).await;
    publish(&mut alice, "a", 2, 1).await;
    let epoch_b = epoch_of(&mut alice, "b").await;
    let seen = messages(&mut follower, 2).await;
    assert_eq!(seen[0].id, Some(format!("a:{epoch_a}:1,b:{epoch_b}:1")));
    assert_eq!(seen[1].id, Some(format!("a:{epoch_a}:2,b:{epoch_b}:1")));
    drop(follower);
    publish(&mut alice, "b", 2, 2).await;
    publish(&mut alice, "a", 3, 1).await;

    let last_id = seen[1].id.clone().expect("id");
    let mut resumed =
        EventStream::open(server.addr, "/api/events?rooms=a,b", &format!("Last-Event-ID: {last_id}\r\n")).await;
    let (mut replays, mut missed, mut last) = (0, Vec::new(), None);
    while replays < 2 {
        let event = resumed.event().await;
        match event.name() {
            "joined" => assert_eq!(event.json()["recovered"], json!(true)),
            "replayed" => replays += 1,
            "message" => {
                missed.push((event.json()["room"].as_str().expect("room").to_owned(), seq(&event)));
                last = event.id;
            }
            _ => {}
        }
    }
    missed.sort();
    assert_eq!(missed, [("a".to_owned(), 3), ("b".to_owned(), 2), ("b".to_owned(), 3)], "exactly what was missed");
    assert_eq!(last, Some(format!("a:{epoch_a}:3,b:{epoch_b}:3")));
}

#[tokio::test]
async fn quiet_streams_get_heartbeat_comments() {
    let server = TestServer::with(|config| config.sse.heartbeat = Duration::from_millis(50)).await;
    let mut follower = EventStream::open(server.addr, "/api/rooms/quiet/events", "").await;
    for _ in 0..2 {
        let beat = within(async {
            loop {
                let block = follower.block().await.expect("open");
                if block.comments > 0 {
                    return block;
                }
            }
        })
        .await;
        assert_eq!(beat, Block { comments: 1, ..Block::default() }, "a bare comment");
    }
    assert_eq!(
        server.metric("switchboard_deliveries_total").await,
        2.0,
        "hello and joined; heartbeats are not deliveries"
    );
}

#[tokio::test]
async fn a_follower_that_stops_reading_is_closed_as_a_slow_consumer() {
    let server = TestServer::with(|config| {
        config.limits.outbound_queue_bytes = 64 * 1024;
        config.limits.bytes_per_second = 0;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(server.addr).await.expect("connect");
    let mut slow = EventStream::open_on(stream, server.addr, "/api/rooms/feed/events", "").await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "feed"})).await;
    let payload = "x".repeat(4000);
    let mut published = 0;
    while server.metric("switchboard_slow_consumer_disconnects_total").await == 0.0 {
        for _ in 0..20 {
            request(&mut alice, json!({"op": "send", "room": "feed", "body": {"pad": payload}})).await;
            published += 1;
        }
        assert!(published < 20_000, "slow consumer never detected");
    }
    assert!(server.metric("switchboard_messages_dropped_total{reason=\"slow_consumer\"}").await >= 1.0);
    // The follower reads what reached it, then the close event.
    let close = slow.last_event().await.expect("events");
    assert_eq!(close.name(), "close");
    assert_eq!(close.json(), json!({"ev": "close", "code": 4008, "reason": "slow consumer"}));
}

#[tokio::test]
async fn shutdown_closes_followers_with_1001_and_refuses_new_ones_with_503() {
    let server = TestServer::start().await;
    let mut follower = EventStream::open(server.addr, "/api/rooms/lobby/events", "").await;
    follower.until("joined").await;
    // Accepted before the shutdown, its request head not finished.
    let mut late = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    late.write_all(b"GET /api/rooms/lobby/events HTTP/1.1\r\n").await.expect("write");
    server.metrics().await;
    let stopped = server.shutdown();
    let close = follower.last_event().await.expect("a close event");
    assert_eq!((close.name(), close.json()["code"].clone()), ("close", json!(1001)));
    late.write_all(b"Host: x\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    within(tokio::io::AsyncReadExt::read_to_string(&mut late, &mut answer)).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert_eq!(code(answer.split_once("\r\n\r\n").expect("body").1), "shutting_down");
    within(stopped).await.expect("server task ends cleanly");
}

#[tokio::test]
async fn bad_follow_requests_are_refused_with_their_status_and_counted() {
    let server = TestServer::with(|config| {
        config.sse.max_rooms = 2;
        config.websocket.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = server.addr;
    for (target, headers, status, wire) in [
        ("/api/events", "", 400, "bad_request"),
        ("/api/rooms/%01/events", "", 400, "bad_room"),
        ("/api/rooms/a/events?since=soon", "", 400, "bad_request"),
        ("/api/rooms/a/events", "Last-Event-ID: b:1:2\r\n", 400, "bad_request"),
        ("/api/rooms/a/events?name=not%20a%20name", "", 400, "bad_user"),
        ("/api/events?rooms=a,b,c", "", 400, "bad_request"),
        ("/api/rooms/a/events", "Accept: application/json\r\n", 406, "bad_request"),
    ] {
        let (got, head, body) = refused(addr, target, headers).await;
        assert_eq!((got, code(&body).as_str()), (status, wire), "{target} {headers}: {head}{body}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
    }
    let pad = format!("X-Pad: {}\r\n", "p".repeat(9000));
    let (got, _, body) = refused(addr, "/api/rooms/a/events", &pad).await;
    assert_eq!((got, code(&body).as_str()), (431, "bad_request"));
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"sse_max_rooms\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_connections_refused_total{reason=\"handshake\"}").await, 8.0);

    // A head that never ends.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    silent.write_all(b"GET /api/rooms/a/events HTTP/1.1\r\n").await.expect("write");
    let mut answer = String::new();
    within(tokio::io::AsyncReadExt::read_to_string(&mut silent, &mut answer)).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
    assert_eq!(server.metric("switchboard_connections_open{transport=\"sse\"}").await, 0.0);
}

#[tokio::test]
async fn a_follower_that_sends_data_is_closed_with_1008() {
    let server = TestServer::start().await;
    let mut follower = EventStream::open(server.addr, "/api/rooms/lobby/events", "").await;
    follower.until("joined").await;
    follower.writer.write_all(b"{\"op\":\"send\"}\n").await.expect("write");
    let close = follower.last_event().await.expect("a close event");
    assert_eq!(close.json(), json!({"ev": "close", "code": 1008, "reason": "policy violation"}));
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"sse_input\"}").await, 1.0);
}

/// Followers are connections like any other: counted against the limit.
#[tokio::test]
async fn followers_count_against_the_connection_limit() {
    let server = TestServer::with(|config| config.limits.max_connections = 2).await;
    let one = EventStream::open(server.addr, "/api/rooms/a/events", "").await;
    let _two = EventStream::open(server.addr, "/api/rooms/b/events", "").await;
    let (status, _, _) = refused(server.addr, "/api/rooms/c/events", "").await;
    assert_eq!(status, 503);
    // At the limit a scrape is refused too: make room for it.
    drop(one);
    assert!(server.metric("switchboard_connections_refused_total{reason=\"limit\"}").await >= 1.0);
}

/// A browser reuses a connection whose first request was a page: a stream
/// asked for there is sent to the same URL on a new connection.
#[tokio::test]
async fn a_stream_asked_for_on_a_reused_connection_is_sent_to_a_new_one() {
    let server = TestServer::start().await;
    let mut reused = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let first = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    reused.write_all(first.as_bytes()).await.expect("write");
    // The whole answer to the first request (its body is `ok\n`), however many reads it takes.
    let mut page = Vec::new();
    within(async {
        while !page.ends_with(b"\r\n\r\nok\n") {
            let mut chunk = [0u8; 1024];
            let count = tokio::io::AsyncReadExt::read(&mut reused, &mut chunk).await.expect("read");
            assert!(count > 0, "closed after {}", String::from_utf8_lossy(&page));
            page.extend_from_slice(&chunk[..count]);
        }
    })
    .await;
    let second =
        format!("GET /api/rooms/a/events?since=3 HTTP/1.1\r\nHost: {}\r\nLast-Event-ID: a::4\r\n\r\n", server.addr);
    reused.write_all(second.as_bytes()).await.expect("write");
    let mut answer = String::new();
    within(tokio::io::AsyncReadExt::read_to_string(&mut reused, &mut answer)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 307 Temporary Redirect\r\n"), "{answer}");
    let head = answer.to_ascii_lowercase();
    assert!(
        head.contains("\r\nlocation: /api/rooms/a/events?since=3\r\n") && head.contains("\r\nconnection: close\r\n")
    );
    let mut fresh = EventStream::open(server.addr, "/api/rooms/a/events?since=3", "Last-Event-ID: a::4\r\n").await;
    assert_eq!(fresh.until("joined").await.json()["recovered"], json!(false), "the id came along: seq 4 is ahead");
}
