//! Graceful shutdown over real sockets: how long it takes when clients
//! close as asked, what happens to requests during the storage drain, and
//! upgrades that arrive once the server is shutting down.

use crate::faulty::Faults;
use crate::support::{is_msg, replies_before_pong, request, within, Datagrams, Lines, RawClient, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_client::{Connection, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long enough that a shutdown that waited for it would fail the test.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn shutdown_ends_as_soon_as_every_client_has_closed() {
    let server = TestServer::with(|config| {
        config.websocket.close_timeout = CLOSE_TIMEOUT;
        config.shutdown.drain_timeout = 2 * CLOSE_TIMEOUT;
    })
    .await;
    // A library client that answers the close and then drops its socket.
    let mut library = server.client("library").await;
    // A raw client that answers the close but keeps its socket open: the
    // server must close the TCP connection first (RFC 6455 section 7.1.1).
    let mut raw = RawClient::connect(server.addr, "/ws?name=raw").await;
    raw.read_event().await;
    // A raw TCP client, which has no close handshake: it closes on the close line.
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"device\"}\n").await;
    device.json_until(|v| v["ev"] == json!("hello")).await;
    let player = Datagrams::hello(server.udp, "player").await;

    let started = Instant::now();
    let stopped = server.shutdown();
    let closed = within(library.next_event()).await;
    assert!(matches!(&closed, Err(Error::Closed(Some(frame))) if u16::from(frame.code) == 1001), "{closed:?}");
    drop(library);
    assert_eq!(raw.close_code().await, 1001);
    raw.send_frame(0x88, &1001u16.to_be_bytes()).await;
    assert_eq!(device.json_until(|v| v["ev"] == json!("close")).await["code"], json!(1001));
    device.eof().await;
    drop(device);
    assert_eq!(player.until(|v| v["ev"] == json!("close")).await["code"], json!(1001));
    within(stopped).await.expect("server task ends cleanly");
    let took = started.elapsed();
    assert!(took < CLOSE_TIMEOUT / 3, "shutdown took {took:?} with every client closed");
    raw.wait_eof().await;
}

/// Sends one at a time, each followed by a ping that is answered after it,
/// until a send is refused (once the storage drain has begun). Returns the
/// ids accepted before, and the refusal.
async fn send_until_refused(client: &mut Connection) -> (Vec<u64>, Value) {
    let mut accepted = Vec::new();
    for id in 100.. {
        let send = json!({"op": "send", "room": "r", "body": id, "id": id});
        client.send_text(send.to_string()).await.expect("send");
        match replies_before_pong(client).await.as_slice() {
            [] => accepted.push(id),
            [refused] => {
                assert_eq!(refused["re"], json!(id), "{refused}");
                return (accepted, refused.clone());
            }
            more => panic!("one answer per send: {more:?}"),
        }
        assert!(accepted.len() < 1000, "no refusal after 1000 sends into a draining server");
        // Pacing only: the drain starts on its own thread.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    unreachable!("the loop returns or panics")
}

/// The same over UDP.
async fn udp_send_until_refused(player: &Datagrams) -> (Vec<u64>, Value) {
    let mut accepted = Vec::new();
    for id in 200.. {
        player.send(json!({"op": "send", "room": "r", "body": id, "id": id})).await;
        player.send(json!({"op": "ping"})).await;
        let mut replies = Vec::new();
        loop {
            let datagram = player.next().await;
            if datagram["ev"] == json!("pong") {
                break;
            }
            if datagram.get("re").is_some() {
                replies.push(datagram);
            }
        }
        match replies.as_slice() {
            [] => accepted.push(id),
            [refused] => {
                assert_eq!(refused["re"], json!(id), "{refused}");
                return (accepted, refused.clone());
            }
            more => panic!("one answer per send: {more:?}"),
        }
        assert!(accepted.len() < 1000, "no refusal after 1000 UDP sends into a draining server");
    }
    unreachable!("the loop returns or panics")
}

#[tokio::test]
async fn requests_during_the_storage_drain_are_refused_with_shutting_down_and_the_rest_acked() {
    let faults = Arc::new(Faults::default());
    let server = TestServer::with_backend(faults.backend(), |_| {}).await;
    let mut writer = server.client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "r"})).await;
    let player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "join", "room": "r", "id": 1})).await;
    assert_eq!(player.until(|v| v["re"] == json!(1)).await["ok"], json!(true));

    // The first message is in a commit that takes as long as the test
    // likes: the drain at shutdown waits for it, while clients stay connected.
    let stall = faults.stall();
    writer.send_text(json!({"op": "send", "room": "r", "body": "first", "id": 1}).to_string()).await.expect("send");
    faults.until_a_commit_waits().await;
    let stopped = server.shutdown();
    let (mut accepted, refused) = send_until_refused(&mut writer).await;
    assert_eq!((refused["ok"].clone(), refused["code"].clone()), (json!(false), json!("shutting_down")));
    assert!(refused["error"].as_str().is_some_and(|text| text.contains("shutting down")), "{refused}");
    let (udp_accepted, refused) = udp_send_until_refused(&player).await;
    assert_eq!((refused["ok"].clone(), refused["code"].clone()), (json!(false), json!("shutting_down")));
    stall.release();

    // Every accepted send is stored and acked before the close.
    accepted.insert(0, 1);
    let mut acked = Vec::new();
    let closed = within(async {
        loop {
            match writer.next_event().await {
                Ok(event) if event["ok"] == json!(true) => acked.push(event["re"].as_u64().expect("numeric id")),
                Ok(event) => assert!(is_msg(&event) || event.get("user").is_some(), "{event}"),
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(matches!(&closed, Error::Closed(Some(frame)) if u16::from(frame.code) == 1001), "{closed:?}");
    assert_eq!(acked, accepted, "acked in order, then closed");
    let mut udp_acked = Vec::new();
    loop {
        let datagram = player.next().await;
        if datagram["ev"] == json!("close") {
            assert_eq!(datagram["code"], json!(1001));
            break;
        }
        if datagram["ok"] == json!(true) {
            udp_acked.push(datagram["re"].as_u64().expect("numeric id"));
        }
    }
    assert_eq!(udp_acked, udp_accepted, "UDP sends accepted during the drain are acked before the close");
    within(stopped).await.expect("server task ends cleanly");
}

#[tokio::test]
async fn an_upgrade_that_arrives_while_shutting_down_is_answered_503() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    // Accepted before the shutdown, its request head not finished.
    let mut late = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    late.write_all(b"GET /ws?name=late HTTP/1.1\r\n").await.expect("write");
    // Connections are accepted in order: once a later one is answered, the
    // late one's handshake is under way.
    server.metrics().await;
    let stopped = server.shutdown();
    // Alice is closed only once the server is shutting down.
    let closed = within(alice.next_event()).await;
    assert!(matches!(&closed, Err(Error::Closed(Some(frame))) if u16::from(frame.code) == 1001), "{closed:?}");
    let rest = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    late.write_all(rest.as_bytes()).await.expect("write");
    let mut answer = String::new();
    within(late.read_to_string(&mut answer)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("server is shutting down"), "{answer}");
    drop(late);
    within(stopped).await.expect("server task ends cleanly");
}
