//! `idempotency_key` on `send` and `dm` over real sockets (WebSocket and raw
//! TCP): a repeat from the same user to the same room or recipient within
//! the window is answered with the first ack (`"duplicate": true`) and
//! stored once; a repeat that arrives while the first is being stored waits
//! for it; other users, rooms and recipients have keys of their own.

use crate::support::{request, wait_for, Lines, TestServer};
use serde_json::{json, Value};

fn keyed(room: &str, text: &str, key: &str) -> Value {
    json!({"op": "send", "room": room, "body": {"text": text}, "idempotency_key": key})
}

#[tokio::test]
async fn a_repeated_send_key_gets_the_first_ack_and_the_message_is_stored_once() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = (server.client("alice").await, server.client("bob").await);
    for room in ["lobby", "side"] {
        request(&mut alice, json!({"op": "join", "room": room})).await;
    }
    request(&mut bob, json!({"op": "join", "room": "lobby"})).await;
    let first = request(&mut alice, keyed("lobby", "once", "k-1")).await;
    assert_eq!((&first["ok"], &first["seq"], first.get("duplicate")), (&json!(true), &json!(1), None), "{first}");
    let again = request(&mut alice, keyed("lobby", "a retry may differ: the first wins", "k-1")).await;
    assert_eq!((&again["seq"], &again["ts"], &again["duplicate"]), (&first["seq"], &first["ts"], &json!(true)));

    // Back to back: the repeat arrives while the first is being stored and waits for it.
    for id in ["a", "b"] {
        let mut command = keyed("lobby", "twice at once", "k-2");
        command["id"] = json!(id);
        alice.send_text(command.to_string()).await.expect("send");
    }
    let a = wait_for(&mut alice, |event| event["re"] == "a").await;
    let b = wait_for(&mut alice, |event| event["re"] == "b").await;
    assert_eq!((&a["seq"], &b["seq"], &b["duplicate"]), (&json!(2), &json!(2), &json!(true)), "{a} {b}");

    // Keys belong to a user and a room.
    let elsewhere = request(&mut alice, keyed("side", "same key, other room", "k-1")).await;
    assert_eq!((&elsewhere["seq"], elsewhere.get("duplicate")), (&json!(1), None), "{elsewhere}");
    let other_user = request(&mut bob, keyed("lobby", "same key, other user", "k-1")).await;
    assert_eq!((&other_user["seq"], other_user.get("duplicate")), (&json!(3), None), "{other_user}");

    let history = request(&mut bob, json!({"op": "history", "room": "lobby"})).await;
    let texts: Vec<&Value> =
        history["messages"].as_array().expect("messages").iter().map(|m| &m["body"]["text"]).collect();
    assert_eq!(texts, [&json!("once"), &json!("twice at once"), &json!("same key, other user")]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(wait_for(&mut bob, |event| event["ev"] == "msg").await["seq"].clone());
    }
    assert_eq!(seen, [json!(1), json!(2), json!(3)], "members receive each stored message once");
    assert_eq!(server.metric("switchboard_idempotent_repeats_total").await, 2.0);
}

#[tokio::test]
async fn a_repeated_dm_key_over_raw_tcp_is_stored_once_and_bad_keys_are_bad_requests() {
    let server = TestServer::start().await;
    let mut dave = Lines::connect(server.tcp).await;
    dave.send("{\"op\":\"hello\",\"name\":\"dave\"}\n").await;
    dave.json_until(|event| event["ev"] == "hello").await;
    let dm = json!({"op": "dm", "to": "erin", "body": "psst", "idempotency_key": "dm-1"});
    let mut acks = Vec::new();
    for id in [1, 2] {
        let mut command = dm.clone();
        command["id"] = json!(id);
        dave.send(&format!("{command}\n")).await;
        acks.push(dave.json_until(|event| event["re"] == id).await);
    }
    assert_eq!((&acks[0]["seq"], &acks[1]["seq"], &acks[1]["duplicate"]), (&json!(1), &json!(1), &json!(true)));
    let erin = server.client("erin").await;
    assert_eq!(erin.hello["inbox"]["waiting"], json!(1), "one DM in the inbox: {}", erin.hello);

    let long = "k".repeat(257);
    let volatile = json!({"op": "send", "room": "r", "body": 1, "volatile": true, "idempotency_key": "k", "id": 5});
    for (id, bad) in [
        (3, json!({"op": "dm", "to": "erin", "body": 1, "idempotency_key": "", "id": 3})),
        (4, json!({"op": "dm", "to": "erin", "body": 1, "idempotency_key": long, "id": 4})),
        (5, volatile),
        (6, json!({"op": "dm", "to": "erin", "body": 1, "idempotency_key": 7, "id": 6})),
    ] {
        dave.send(&format!("{bad}\n")).await;
        let refused = dave.json_until(|event| event["re"] == id).await;
        assert_eq!(refused["code"], "bad_request", "{refused}");
        assert!(refused["error"].as_str().is_some_and(|text| text.contains("idempotency_key")), "{refused}");
    }
}
