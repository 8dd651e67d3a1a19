//! Raw TCP (JSON lines and human text) and UDP, in the same rooms as
//! WebSocket clients.

use crate::support::{is_msg, request, wait_for, within, Datagrams, Lines, TestServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_telnet_user_chats_with_a_websocket_user() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "lobby"})).await;

    let mut human = Lines::connect(server.tcp).await;
    human.send("hi\r\n").await;
    assert!(human.line().await.contains("welcome"), "a greeting with help comes first");
    human.until("join a room first").await;
    human.send("/nick alice\r\n/join lobby\r\n").await;
    human.until("you are now alice").await;
    human.until("you joined lobby").await;
    assert_eq!(wait_for(&mut web, |e| e["ev"] == json!("join")).await["user"], json!("alice"));

    human.send("hello from telnet\n").await;
    let said = wait_for(&mut web, is_msg).await;
    assert_eq!((said["from"].clone(), said["body"].clone()), (json!("alice"), json!("hello from telnet")));

    request(&mut web, json!({"op": "send", "room": "lobby", "body": {"text": "hi alice"}})).await;
    assert_eq!(human.until("webby:").await, "[lobby] webby: hi alice\n");
    human.send("/who\n").await;
    assert_eq!(human.until("* in lobby").await, "* in lobby: alice, webby\n");
    human.send("/quit\n").await;
    human.until("bye").await;
    human.eof().await;
}

#[tokio::test]
async fn json_lines_speak_the_websocket_protocol() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "r"})).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"sensor-1\"}\n").await;
    let hello = device.json_until(|v| v["ev"] == json!("hello")).await;
    assert_eq!(hello["user"], json!("sensor-1"));
    device.send("{\"op\":\"join\",\"room\":\"r\",\"id\":1}\n{\"op\":\"send\",\"room\":\"r\",\"body\":{\"t\":21.5},\"id\":2}\n").await;
    let ack = device.json_until(|v| v["re"] == json!(2)).await;
    assert_eq!((ack["ok"].clone(), ack["seq"].clone()), (json!(true), json!(1)));
    let reading = wait_for(&mut web, is_msg).await;
    assert_eq!((reading["from"].clone(), reading["body"].clone()), (json!("sensor-1"), json!({"t": 21.5})));

    device.send("{not json\n").await;
    let error = device.json_until(|v| v["ev"] == json!("error")).await;
    assert_eq!(error["code"], json!("bad_json"));
    request(&mut web, json!({"op": "send", "room": "r", "body": "ack"})).await;
    let relayed = device.json_until(is_msg).await;
    assert_eq!((relayed["from"].clone(), relayed["seq"].clone()), (json!("webby"), json!(2)));
}

#[tokio::test]
async fn a_client_that_sends_without_a_newline_still_gets_replies() {
    let server = TestServer::start().await;
    let mut tutorial = TcpStream::connect(server.tcp).await.expect("connect");
    // The classic tutorial client: send, then wait for an answer.
    tutorial.write_all(b"{\"op\":\"ping\",\"id\":7}").await.expect("send");
    let mut buffer = vec![0u8; 1024];
    let mut received = String::new();
    while !received.contains("\"re\":7") {
        let count = within(tutorial.read(&mut buffer)).await.expect("read");
        assert!(count > 0, "closed before the reply");
        received.push_str(std::str::from_utf8(&buffer[..count]).expect("utf8"));
    }
    assert!(received.contains("{\"re\":7,\"ok\":true}"), "{received}");
}

#[tokio::test]
async fn udp_members_share_rooms_with_websocket_and_tcp() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "game"})).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"tcpdev\"}\n{\"op\":\"join\",\"room\":\"game\",\"id\":1}\n").await;
    device.json_until(|v| v["re"] == json!(1)).await;

    let player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "join", "room": "game", "id": 1})).await;
    assert_eq!(player.until(|v| v["re"] == json!(1)).await["ok"], json!(true));
    player.send(json!({"op": "send", "room": "game", "body": {"x": 3, "y": 4}})).await;
    let moved = wait_for(&mut web, is_msg).await;
    assert_eq!((moved["from"].clone(), moved["body"].clone()), (json!("player"), json!({"x": 3, "y": 4})));
    assert_eq!(device.json_until(is_msg).await["from"], json!("player"));

    request(&mut web, json!({"op": "send", "room": "game", "body": "from the web"})).await;
    device.send("{\"op\":\"send\",\"room\":\"game\",\"body\":\"from tcp\"}\n").await;
    let first = player.until(|v| is_msg(v) && v["from"] != json!("player")).await;
    let second = player.until(|v| is_msg(v) && v["from"] != json!("player")).await;
    assert_eq!((first["from"].clone(), second["from"].clone()), (json!("webby"), json!("tcpdev")));
}

#[tokio::test]
async fn udp_sessions_expire_and_unknown_sources_get_a_short_error() {
    // Long enough that a stall of the machine between the hello and the
    // join does not expire the session first.
    let server = TestServer::with(|config| config.udp_options.session_timeout = Duration::from_millis(1500)).await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "r"})).await;
    let player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "join", "room": "r", "id": 1})).await;
    player.until(|v| v["re"] == json!(1)).await;

    let forged = json!({"op": "send", "room": "r", "body": "forged", "session": "0000000000000000"});
    player.send_raw(&forged).await;
    assert_eq!(player.until(|v| v["ev"] == json!("error")).await["code"], json!("no_session"));

    // Silence: the session expires, its member leaves, it is told why.
    let closed = player.until(|v| v["ev"] == json!("close")).await;
    assert_eq!(closed["code"], json!(4001));
    assert_eq!(wait_for(&mut web, |e| e["ev"] == json!("leave")).await["user"], json!("player"));
    // An address gets at most one error a second: ask until told.
    let error = within(async {
        loop {
            player.send(json!({"op": "ping", "id": 2})).await;
            let mut buffer = [0u8; 512];
            let reply = tokio::time::timeout(Duration::from_millis(200), player.socket.recv(&mut buffer)).await;
            if let Ok(Ok(count)) = reply {
                return serde_json::from_slice::<Value>(&buffer[..count]).expect("json");
            }
        }
    })
    .await;
    assert_eq!(error["code"], json!("no_session"));
}

#[tokio::test]
async fn oversize_lines_and_datagrams_are_refused_and_counted() {
    // 1400: a 1300-byte body fits a WebSocket send but not a 1200-byte UDP event.
    let server = TestServer::with(|config| config.limits.max_message_size = 1400).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send(&format!("{{\"op\":\"ping\",\"pad\":\"{}\"}}\n", "x".repeat(2000))).await;
    let closed = device.json_until(|v| v["ev"] == json!("close")).await;
    assert_eq!((closed["code"].clone(), closed["reason"].clone()), (json!(1009), json!("message too big")));
    device.eof().await;

    let player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "ping", "pad": "y".repeat(1500)})).await;
    assert_eq!(player.until(|v| v["ev"] == json!("error")).await["code"], json!("too_large"));

    // An event too large for one UDP datagram is not sent to UDP members.
    player.send(json!({"op": "join", "room": "r", "id": 1})).await;
    player.until(|v| v["re"] == json!(1)).await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "r"})).await;
    request(&mut web, json!({"op": "send", "room": "r", "body": "z".repeat(1300)})).await;
    request(&mut web, json!({"op": "send", "room": "r", "body": "small"})).await;
    let next = player.until(is_msg).await;
    assert_eq!(next["body"], json!("small"), "the oversize event was skipped, the next one arrived");
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1009\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"udp_too_large\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"udp_oversize\"}").await, 1.0);
}

#[tokio::test]
async fn a_udp_flood_is_rate_limited() {
    // 10 a second with a burst of 10: of 200, at most 10 + 10 per second the
    // sending took pass, so at least 100 are dropped unless it took 9 s.
    let server = TestServer::with(|config| config.udp_options.datagrams_per_second = 10).await;
    let flooder = Datagrams::hello(server.udp, "flooder").await;
    for _ in 0..200 {
        flooder.send(json!({"op": "ping"})).await;
    }
    // Pongs for what was admitted, and one rate_limited error (at most one a second).
    let error = flooder.until(|v| v["ev"] == json!("error")).await;
    assert_eq!(error["code"], json!("rate_limited"));
    server.metric_reaching("switchboard_messages_dropped_total{reason=\"udp_rate_limited\"}", 100.0).await;
}

#[tokio::test]
async fn a_peer_that_disconnects_mid_line_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "r"})).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"flaky\"}\n{\"op\":\"join\",\"room\":\"r\",\"id\":1}\n").await;
    device.json_until(|v| v["re"] == json!(1)).await;
    device.send("{\"op\":\"send\",\"room\":\"r\",\"body\":\"never fini").await;
    drop(device);
    assert_eq!(wait_for(&mut web, |e| e["ev"] == json!("leave") || is_msg(e)).await["ev"], json!("leave"));
    within(async {
        while server.metric("switchboard_connections_open{transport=\"tcp_json\"}").await != 0.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let listed = request(&mut web, json!({"op": "presence", "room": "r"})).await;
    assert_eq!(listed["users"], json!(["webby"]));
}

#[tokio::test]
async fn a_tcp_client_that_stops_reading_is_closed_as_a_slow_consumer() {
    let server = TestServer::with(|config| {
        config.limits.outbound_queue_bytes = 64 * 1024;
        // The publisher sends faster than one connection may by default.
        config.limits.bytes_per_second = 0;
    })
    .await;
    let mut slow = Lines::connect(server.tcp).await;
    slow.send("{\"op\":\"hello\",\"name\":\"slow\"}\n{\"op\":\"join\",\"room\":\"feed\",\"id\":1}\n").await;
    slow.json_until(|v| v["re"] == json!(1)).await;
    let mut publisher = server.client("publisher").await;
    request(&mut publisher, json!({"op": "join", "room": "feed"})).await;
    let payload = "x".repeat(4000);
    while server.metric("switchboard_slow_consumer_disconnects_total").await == 0.0 {
        for _ in 0..100 {
            request(&mut publisher, json!({"op": "send", "room": "feed", "body": payload})).await;
        }
    }
    let closed = slow.json_until(|v| v["ev"] == json!("close")).await;
    assert_eq!((closed["code"].clone(), closed["reason"].clone()), (json!(4008), json!("slow consumer")));
    slow.eof().await;
}

#[tokio::test]
async fn shutdown_is_announced_on_tcp_and_udp_too() {
    let server = TestServer::start().await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"dev\"}\n").await;
    device.json_until(|v| v["ev"] == json!("hello")).await;
    let mut human = Lines::connect(server.tcp).await;
    human.send("/nick tom\n").await;
    human.until("you are now tom").await;
    let player = Datagrams::hello(server.udp, "player").await;

    let stopped = server.shutdown();
    let closed = device.json_until(|v| v["ev"] == json!("close")).await;
    assert_eq!(closed["code"], json!(1001));
    assert_eq!(human.until("disconnected").await, "* disconnected: server shutting down\n");
    assert_eq!(player.until(|v| v["ev"] == json!("close")).await["code"], json!(1001));
    device.eof().await;
    within(stopped).await.expect("server task ends cleanly");
}

/// Regression: a UDP session closed as a slow consumer kept its room
/// membership and could still publish.
#[tokio::test]
async fn a_udp_session_closed_by_the_server_is_gone_from_its_rooms() {
    let server = TestServer::with(|config| config.limits.outbound_queue_bytes = 2000).await;
    let stalled = Datagrams::hello(server.udp, "stalled").await;
    stalled.send(json!({"op": "join", "room": "z", "id": 1})).await;
    stalled.until(|v| v["re"] == json!(1)).await;
    let publisher = Datagrams::hello(server.udp, "publisher").await;
    publisher.send(json!({"op": "join", "room": "z", "id": 1})).await;
    publisher.until(|v| v["re"] == json!(1)).await;
    // A burst of datagrams is handled before the members' sender tasks
    // run, so a 2000-byte queue overflows.
    for n in 0..300 {
        publisher.send(json!({"op": "send", "room": "z", "body": {"n": n}})).await;
    }
    assert_eq!(stalled.until(|v| v["ev"] == json!("close")).await["code"], json!(4008));
    stalled.send(json!({"op": "send", "room": "z", "body": "zombie", "id": 5})).await;
    assert_eq!(stalled.until(|v| v["ev"] == json!("error")).await["code"], json!("no_session"));
    let mut observer = server.client("observer").await;
    request(&mut observer, json!({"op": "join", "room": "z"})).await;
    let listed = request(&mut observer, json!({"op": "presence", "room": "z"})).await;
    let users = listed["users"].as_array().expect("users").clone();
    assert!(!users.contains(&json!("stalled")), "the closed session left the room: {users:?}");
}

#[tokio::test]
async fn a_client_that_shuts_its_side_still_gets_every_answer() {
    let server = TestServer::start().await;
    request(&mut server.client("carol").await, json!({"op": "dm", "to": "dave", "body": "stored"})).await;
    let mut script = Lines::connect(server.tcp).await;
    // What `printf ... | nc -N` does: every command, then end of input.
    script
        .send(concat!(
            "{\"op\":\"hello\",\"name\":\"dave\"}\n",
            "{\"op\":\"join\",\"room\":\"r\",\"id\":1}\n",
            "{\"op\":\"send\",\"room\":\"r\",\"body\":1,\"id\":2}\n",
            "{\"op\":\"inbox\",\"since\":0,\"id\":3}\n",
            "{\"op\":\"history\",\"room\":\"r\",\"id\":4}", // no newline: the last line still counts
        ))
        .await;
    script.writer.shutdown().await.expect("half-close");
    let mut rest = String::new();
    within(script.reader.read_to_string(&mut rest)).await.expect("read to the server's close");
    let lines: Vec<Value> = rest.lines().map(|line| serde_json::from_str(line).expect("json line")).collect();
    // Stores and reads answer when done, so replies may come out of order.
    let mut answered: Vec<u64> = lines.iter().filter_map(|line| line["re"].as_u64()).collect();
    answered.sort_unstable();
    assert_eq!(answered, [1, 2, 3, 4], "{rest}");
    assert!(lines.iter().any(|line| line["ev"] == json!("dm") && line["body"] == json!("stored")), "{rest}");
    assert_eq!(lines.last().map(|line| line["ev"].clone()), Some(json!("close")), "the close line comes last: {rest}");
}

#[tokio::test]
async fn a_second_udp_hello_from_the_same_address_replaces_the_session() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "r"})).await;
    let mut player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "join", "room": "r", "id": 1})).await;
    player.until(|v| v["re"] == json!(1)).await;
    wait_for(&mut web, |e| e["ev"] == json!("join") && e["user"] == json!("player")).await;

    let old = player.token.clone();
    player.send_raw(&json!({"op": "hello", "name": "player2"})).await;
    // The old session is closed (1000) and a new one greeted, in either order.
    let (mut hello, mut closed) = (None, None);
    while hello.is_none() || closed.is_none() {
        let datagram = player.next().await;
        match datagram["ev"].as_str() {
            Some("hello") => hello = Some(datagram),
            Some("close") => closed = Some(datagram),
            _ => {}
        }
    }
    let (hello, closed) = (hello.expect("hello"), closed.expect("close"));
    assert_eq!((hello["user"].clone(), closed["code"].clone()), (json!("player2"), json!(1000)));
    player.token = hello["session"].as_str().expect("a new token").to_owned();
    assert_ne!(player.token, old);
    assert_eq!(wait_for(&mut web, |e| e["ev"] == json!("leave")).await["user"], json!("player"));
    player.send_raw(&json!({"op": "ping", "id": 5, "session": old})).await;
    assert_eq!(player.until(|v| v["ev"] == json!("error")).await["code"], json!("no_session"));
    player.send(json!({"op": "ping", "id": 6})).await;
    assert_eq!(player.until(|v| v.get("re").is_some()).await, json!({"re": 6, "ok": true}));
    let listed = request(&mut web, json!({"op": "presence", "room": "r"})).await;
    assert_eq!(listed["users"], json!(["webby"]), "the replaced session left its room");
}
