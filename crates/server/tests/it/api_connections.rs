//! The connection table (`GET /api/connections`) and kicks (`DELETE
//! /api/connections/{id}`, `DELETE /api/users/{user}/connections`) over
//! real HTTP, against connections on every transport: what each row says,
//! byte counts that are real, filters, HEAD, the API key, and the close
//! with 4010 and the operator's reason on WebSocket, raw TCP (JSON lines
//! and text), UDP and Server-Sent Events.

use crate::api_support::{with_key, Api};
use crate::sse_client::EventStream;
use crate::support::{request, within, Datagrams, Lines, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard_client::{Connection, Error};

/// The rows of the table, optionally filtered by `query` (`?user=..`).
async fn table(api: &Api, query: &str) -> Vec<Value> {
    let answer = api.get(&format!("/api/connections{query}")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["connections"].as_array().cloned().expect("a list of connections")
}

fn row<'a>(rows: &'a [Value], user: &str) -> &'a Value {
    rows.iter().find(|row| row["user"] == json!(user)).unwrap_or_else(|| panic!("no row for {user}: {rows:?}"))
}

/// Waits until `user`'s row satisfies `wanted` (its counters are updated
/// by the connection's task, after the bytes moved).
async fn row_until(api: &Api, user: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    within(async {
        loop {
            let rows = table(api, "").await;
            let found = row(&rows, user).clone();
            if wanted(&found) {
                return found;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn the_table_lists_every_transport_with_real_counts_and_filters() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "lobby"})).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"dev\"}\n{\"op\":\"join\",\"room\":\"lobby\",\"id\":1}\n").await;
    device.json_until(|v| v["re"] == json!(1)).await;
    let mut person = Lines::connect(server.tcp).await;
    person.send("/nick ada\n").await;
    person.until("you are now ada").await;
    let player = Datagrams::hello(server.udp, "player").await;
    let other = Datagrams::hello(server.udp, "other").await;

    let rows = table(&api, "").await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let ids: Vec<u64> = rows.iter().map(|row| row["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "by id: {ids:?}");
    for (user, transport) in [("alice", "websocket"), ("dev", "tcp_json"), ("ada", "tcp_text"), ("player", "udp")] {
        let found = row(&rows, user);
        assert_eq!(found["transport"], json!(transport), "{found}");
        assert!(found["fd"].as_i64().is_some_and(|fd| fd > 2), "a socket's descriptor: {found}");
        let peer: std::net::SocketAddr = found["peer"].as_str().expect("peer").parse().expect("an address");
        assert!(peer.ip().is_loopback(), "{found}");
        for field in ["bytes_in", "bytes_out", "queued_bytes", "age_ms"] {
            assert!(found[field].is_u64(), "{field}: {found}");
        }
    }
    assert_eq!(row(&rows, "alice")["rooms"], json!(["lobby"]));
    assert_eq!(row(&rows, "ada")["rooms"], json!([]));
    assert_eq!(row(&rows, "player")["fd"], row(&rows, "other")["fd"], "UDP sessions share the socket");
    assert_ne!(row(&rows, "alice")["fd"], row(&rows, "dev")["fd"]);

    // Real counts: 10,000 bytes sent and 10,000 received are seen.
    let before = row(&rows, "alice").clone();
    let body = "x".repeat(10_000);
    alice.send("lobby", json!(body)).await.expect("stored");
    let after =
        row_until(&api, "alice", |row| row["bytes_out"].as_u64() >= before["bytes_out"].as_u64().map(|n| n + 10_000))
            .await;
    assert!(after["bytes_in"].as_u64() >= before["bytes_in"].as_u64().map(|n| n + 10_000), "{before} {after}");
    let dev = row_until(&api, "dev", |row| row["bytes_out"].as_u64() > Some(10_000)).await;
    assert!(dev["bytes_in"].as_u64() > Some(40), "its two lines: {dev}");
    let older = row_until(&api, "alice", |row| row["age_ms"].as_u64() > before["age_ms"].as_u64()).await;
    assert!(older["age_ms"].as_u64() >= before["age_ms"].as_u64());

    let lobby = table(&api, "?room=lobby").await;
    let users: Vec<&Value> = lobby.iter().map(|row| &row["user"]).collect();
    assert_eq!(users, [&json!("alice"), &json!("dev")]);
    assert_eq!(table(&api, "?user=ada").await.len(), 1);
    assert_eq!(table(&api, "?user=ada&room=lobby").await.len(), 0);
    let head = api.send(api.request(Method::HEAD, "/api/connections")).await;
    assert_eq!((head.status, head.body.clone()), (200, json!("")), "HEAD: the headers alone");
    assert_eq!(Api::new(&server).get("/api/connections").await.status, 401, "the table needs the API key");
    drop((player, other));
}

/// The close a WebSocket client receives: code and reason.
async fn close_of(client: &mut Connection) -> (u16, String) {
    loop {
        match within(client.next_event()).await {
            Ok(_) => continue,
            Err(Error::Closed(Some(frame))) => return (u16::from(frame.code), frame.reason.to_string()),
            Err(other) => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_kick_closes_with_4010_and_the_reason_on_every_transport() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let kick = |path: String, reason: Option<&str>| {
        let request = api.request(Method::DELETE, &path);
        let request = match reason {
            Some(reason) => request.json(&json!({ "reason": reason })),
            None => request,
        };
        api.send(request)
    };
    let mut web = server.client("mallory").await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"dev\"}\n").await;
    device.json_until(|v| v["ev"] == json!("hello")).await;
    let mut person = Lines::connect(server.tcp).await;
    person.send("/nick ada\n").await;
    person.until("you are now ada").await;
    let player = Datagrams::hello(server.udp, "player").await;
    let rows = table(&api, "").await;
    let id = |user: &str| row(&rows, user)["id"].as_u64().expect("id");

    let long = format!("{} and more", "spam ".repeat(30));
    let answer = kick(format!("/api/connections/{}", id("mallory")), Some(&long)).await;
    assert_eq!((answer.status, answer.body.clone()), (200, json!({"closed": 1})));
    let (code, reason) = close_of(&mut web).await;
    assert_eq!(code, 4010);
    assert_eq!(reason, long[..123], "cut to the 123 bytes a close frame holds");

    kick(format!("/api/connections/{}", id("dev")), Some("maintenance")).await;
    let close = device.json_until(|v| v["ev"] == json!("close")).await;
    assert_eq!(close, json!({"ev": "close", "code": 4010, "reason": "maintenance"}));
    device.eof().await;

    kick(format!("/api/connections/{}", id("ada")), None).await;
    assert_eq!(person.until("disconnected").await, "* disconnected: kicked by an operator\n");
    person.eof().await;

    let answer = kick("/api/users/player/connections".to_owned(), Some("bye, player")).await;
    assert_eq!((answer.status, answer.body.clone()), (200, json!({"closed": 1})));
    let close = player.until(|v| v["ev"] == json!("close")).await;
    assert_eq!(close, json!({"ev": "close", "code": 4010, "reason": "bye, player"}));

    let gone = kick(format!("/api/connections/{}", id("mallory")), None).await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"), "{gone:?}");
    let none = kick("/api/users/nobody/connections".to_owned(), None).await;
    assert_eq!((none.status, none.body.clone()), (200, json!({"closed": 0})));
    let bad = kick("/api/connections/seven".to_owned(), None).await;
    assert_eq!((bad.status, bad.code()), (400, "bad_request"));
    let typed = api.send(api.request(Method::DELETE, "/api/connections/1").json(&json!({"reason": 7}))).await;
    assert_eq!((typed.status, typed.code()), (400, "bad_request"));
    assert_eq!(server.metric_reaching("switchboard_kicks_total", 4.0).await, 4.0);
    let closes = "switchboard_connections_closed_total{code=\"4010\"}";
    assert_eq!(server.metric_reaching(closes, 4.0).await, 4.0, "the UDP session's once it is reaped");
    within(async {
        while !table(&api, "").await.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// An event stream follower is a row like any other (transport `sse`, its
/// socket's descriptor, its room, the bytes it was sent), and a kick ends
/// its stream with a `close` event carrying 4010 and the reason.
#[tokio::test]
async fn an_event_stream_follower_is_listed_and_kicked_like_any_connection() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let mut follower = EventStream::open(server.addr, "/api/rooms/feed/events?name=wall", "").await;
    follower.until("joined").await;
    let listed = row_until(&api, "wall", |row| row["bytes_out"].as_u64() > Some(0)).await;
    assert_eq!((listed["transport"].clone(), listed["rooms"].clone()), (json!("sse"), json!(["feed"])), "{listed}");
    assert!(listed["fd"].as_i64() > Some(2), "{listed}");
    let only = table(&api, "?room=feed").await;
    assert_eq!(only.len(), 1, "{only:?}");

    let id = listed["id"].as_u64().expect("id");
    let answer = api
        .send(api.request(Method::DELETE, &format!("/api/connections/{id}")).json(&json!({"reason": "moved"})))
        .await;
    assert_eq!((answer.status, answer.body.clone()), (200, json!({"closed": 1})));
    let close = follower.until("close").await;
    assert_eq!(close.json(), json!({"ev": "close", "code": 4010, "reason": "moved"}));
    assert_eq!(follower.last_event().await, None, "the stream ends after its close event");
    assert_eq!(server.metric_reaching("switchboard_kicks_total", 1.0).await, 1.0);
}
