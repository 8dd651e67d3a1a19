//! Publishing over HTTP: to rooms (members on every transport, event
//! stream followers included, receive it like any message), to users (DMs, offline inbox), volatile, idempotent
//! retries, and the 503s of storage that fails or is full.

use crate::api_support::{with_key, Api};
use crate::faulty::Faults;
use crate::sse_client::EventStream;
use crate::support::{is_msg, request, wait_for, within, Datagrams, Lines, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;

/// A raw TCP client in JSON-lines mode named `name`, joined to `room`.
async fn tcp_member(server: &TestServer, name: &str, room: &str) -> Lines {
    let mut lines = Lines::connect(server.tcp).await;
    lines.send(&format!("{}\n", json!({"op": "hello", "name": name}))).await;
    lines.json_until(|event| event["ev"] == json!("hello")).await;
    lines.send(&format!("{}\n", json!({"op": "join", "room": room, "id": 1}))).await;
    lines.json_until(|event| event["re"] == json!(1)).await;
    lines
}

#[tokio::test]
async fn a_publish_reaches_websocket_tcp_udp_and_sse_members_once_stored() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "lobby"})).await;
    let mut bob = tcp_member(&server, "bob", "lobby").await;
    let carol = Datagrams::hello(server.udp, "carol").await;
    carol.send(json!({"op": "join", "room": "lobby", "id": 1})).await;
    carol.until(|event| event["re"] == json!(1)).await;
    let mut wall = EventStream::open(server.addr, "/api/rooms/lobby/events?name=wall", "").await;
    wall.until("joined").await;

    let api = Api::new(&server);
    let answer = api.post("/api/rooms/lobby/messages", &json!({"body": {"text": "order shipped", "n": [1, 2]}})).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["seq"], json!(1));
    let (epoch, ts) = (answer.body["epoch"].as_u64().expect("epoch"), answer.body["ts"].as_u64().expect("ts"));
    let expected = json!({"ev": "msg", "room": "lobby", "seq": 1, "from": "api", "ts": ts,
                          "body": {"text": "order shipped", "n": [1, 2]}});
    assert_eq!(wait_for(&mut alice, is_msg).await, expected);
    assert_eq!(bob.json_until(is_msg).await, expected);
    assert_eq!(carol.until(is_msg).await, expected);
    let followed = wall.until("message").await;
    assert_eq!((followed.json(), followed.id), (expected.clone(), Some(format!("lobby:{epoch}:1"))));

    let named = api.post("/api/rooms/lobby/messages", &json!({"body": "hi", "from": "shop"})).await;
    assert_eq!((named.body["seq"].clone(), named.body["epoch"].as_u64()), (json!(2), Some(epoch)));
    let heard = wait_for(&mut alice, is_msg).await;
    assert_eq!((heard["from"].clone(), heard["seq"].clone()), (json!("shop"), json!(2)));
    // The key's name is the default sender when a key is used.
    let keyed = TestServer::with(with_key).await;
    let mut dave = keyed.client("dave").await;
    request(&mut dave, json!({"op": "join", "room": "news"})).await;
    Api::keyed(&keyed).post("/api/rooms/news/messages", &json!({"body": "headline"})).await;
    assert_eq!(wait_for(&mut dave, is_msg).await["from"], json!("backend"));
    assert_eq!(server.metric("switchboard_api_publish_seconds_count").await, 2.0, "two stored publishes timed");
}

/// Messages of `room`'s history, through the API.
async fn history(api: &Api, room: &str) -> Vec<Value> {
    let page = api.get(&format!("/api/rooms/{room}/messages")).await;
    page.body["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_first_answer_and_stores_once() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let publish = json!({"body": {"order": 42}, "idempotency_key": "order-42-shipped"});
    let first = api.post("/api/rooms/orders/messages", &publish).await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let again = api.post("/api/rooms/orders/messages", &publish).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Concurrent duplicates: one is stored, both get its answer.
    let concurrent = json!({"body": "once", "idempotency_key": "k2"});
    let (a, b) = tokio::join!(
        api.post("/api/rooms/orders/messages", &concurrent),
        api.post("/api/rooms/orders/messages", &concurrent)
    );
    assert_eq!(a.body, b.body);
    assert_eq!(a.body["seq"], json!(2));
    // Another key, or another room, is another message.
    let other = api.post("/api/rooms/orders/messages", &json!({"body": "x", "idempotency_key": "k3"})).await;
    assert_eq!(other.body["seq"], json!(3));
    let elsewhere = api.post("/api/rooms/other/messages", &concurrent).await;
    assert_eq!((elsewhere.body["seq"].clone(), elsewhere.header("idempotent-replayed")), (json!(1), None));
    let stored: Vec<Value> = history(&api, "orders").await.iter().map(|m| m["body"].clone()).collect();
    assert_eq!(stored, vec![json!({"order": 42}), json!("once"), json!("x")]);
    assert_eq!(server.metric("switchboard_messages_stored_total").await, 4.0);
}

#[tokio::test]
async fn a_volatile_publish_is_delivered_now_and_not_stored() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "ticker"})).await;
    let api = Api::new(&server);
    let answer = api.post("/api/rooms/ticker/messages", &json!({"body": 101.5, "volatile": true})).await;
    assert_eq!(answer.status, 200);
    let ts = answer.body["ts"].clone();
    assert!(ts.is_u64() && answer.body.get("seq").is_none(), "{answer:?}");
    let heard = wait_for(&mut alice, is_msg).await;
    assert_eq!(heard, json!({"ev": "msg", "room": "ticker", "from": "api", "ts": ts, "body": 101.5, "volatile": true}));
    assert!(history(&api, "ticker").await.is_empty());
    let dm = api.post("/api/users/alice/messages", &json!({"body": 1, "volatile": true})).await;
    assert_eq!((dm.status, dm.code()), (400, "bad_request"));
}

#[tokio::test]
async fn a_dm_from_the_backend_reaches_the_user_now_or_when_they_connect() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let api = Api::new(&server);
    let answer = api.post("/api/users/bob/messages", &json!({"body": "your order shipped", "from": "shop"})).await;
    assert_eq!((answer.status, answer.body["seq"].clone()), (201, json!(1)));
    let dm = wait_for(&mut bob, |event| event["ev"] == json!("dm")).await;
    assert_eq!(
        (dm["from"].clone(), dm["to"].clone(), dm["body"].clone()),
        (json!("shop"), json!("bob"), json!("your order shipped"))
    );

    api.post("/api/users/carol/messages", &json!({"body": "while you were away"})).await;
    let mut carol = server.client("carol").await;
    assert_eq!(carol.hello["inbox"]["waiting"], json!(1), "{}", carol.hello);
    request(&mut carol, json!({"op": "inbox", "since": 0})).await;
    let kept = wait_for(&mut carol, |event| event["ev"] == json!("dm")).await;
    assert_eq!((kept["from"].clone(), kept["body"].clone()), (json!("api"), json!("while you were away")));
}

#[tokio::test]
async fn storage_that_fails_or_is_full_gets_503_and_nothing_is_delivered() {
    let faults = Arc::new(Faults::default());
    let server = TestServer::with_backend(faults.backend(), |config| config.storage.queue_capacity = 1).await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let api = Api::new(&server);
    faults.fail_commits(true);
    let failed = api.post("/api/rooms/r/messages", &json!({"body": "lost"})).await;
    assert_eq!((failed.status, failed.code()), (503, "storage_failed"));
    faults.fail_commits(false);

    // The writer holds one group and the queue one more: of five more
    // publishes one is queued and four are refused at once.
    let stall = faults.stall();
    let publish = |body: &'static str| {
        let api = Api::new(&server);
        async move { api.post("/api/rooms/r/messages", &json!({"body": body})).await }
    };
    let held = tokio::spawn(publish("held"));
    faults.until_a_commit_waits().await;
    let mut more = tokio::task::JoinSet::new();
    for _ in 0..5 {
        more.spawn(publish("more"));
    }
    // Nothing accepted can finish while commits are held: the first answer is a refusal.
    let busy = within(more.join_next()).await.expect("an answer").expect("a publish");
    assert_eq!((busy.status, busy.code()), (503, "overloaded"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    stall.release();
    assert_eq!(held.await.expect("held publish").body["seq"], json!(1));
    let mut statuses = vec![busy.status];
    while let Some(answer) = within(more.join_next()).await {
        statuses.push(answer.expect("a publish").status);
    }
    let created = statuses.iter().filter(|status| **status == 201).count();
    assert_eq!((created, statuses.len()), (1, 5), "{statuses:?}");
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"storage_busy\"}").await, 4.0);
    assert_eq!(wait_for(&mut alice, is_msg).await["body"], json!("held"), "the failed message never arrived");
}
