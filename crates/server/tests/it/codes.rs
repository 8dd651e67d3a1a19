//! The error codes of docs/PROTOCOL.md provoked over real sockets, each
//! checked on the wire: `storage_failed`, `overloaded` (both bounds),
//! `bad_room` and `bad_user`. The others are provoked where their feature
//! is tested; `registry.rs` lists which test covers which code.

use crate::faulty::Faults;
use crate::support::{is_msg, replies_before_pong, request, wait_for, within, Datagrams, Lines, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_client::Connection;
use switchboard_server::hub::conn::MAX_PENDING_REQUESTS;

/// Asserts `reply` is the failure `{"re":id,"ok":false,"code":code,"error":..}`.
fn assert_refused(reply: &Value, id: Value, code: &str) {
    assert_eq!(
        (reply["re"].clone(), reply["ok"].clone(), reply["code"].clone()),
        (id, json!(false), json!(code)),
        "{reply}"
    );
    assert!(reply["error"].as_str().is_some_and(|text| !text.is_empty()), "a text for people: {reply}");
}

/// Sends every command; returns the replies that came before the answer
/// to a ping sent after them.
async fn replies_to(client: &mut Connection, commands: impl IntoIterator<Item = Value>) -> Vec<Value> {
    for command in commands {
        client.send_text(command.to_string()).await.expect("send");
    }
    replies_before_pong(client).await
}

fn send(id: u64) -> Value {
    json!({"op": "send", "room": "r", "body": id, "id": id})
}

#[tokio::test]
async fn storage_failed_answers_a_send_a_dm_and_a_history_read_that_storage_refused() {
    let faults = Arc::new(Faults::default());
    let server = TestServer::with_backend(faults.backend(), |_| {}).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for member in [&mut alice, &mut bob] {
        request(member, json!({"op": "join", "room": "r"})).await;
    }
    faults.fail_commits(true);
    let failed = request(&mut alice, json!({"op": "send", "room": "r", "body": "lost"})).await;
    assert_refused(&failed, failed["re"].clone(), "storage_failed");
    let dm = request(&mut alice, json!({"op": "dm", "to": "carol", "body": "lost too"})).await;
    assert_refused(&dm, dm["re"].clone(), "storage_failed");
    faults.fail_commits(false);
    // Not delivered either, and it took no seq: the next message is 1.
    let stored = request(&mut alice, json!({"op": "send", "room": "r", "body": "kept"})).await;
    assert_eq!((stored["ok"].clone(), stored["seq"].clone()), (json!(true), json!(1)), "{stored}");
    assert_eq!(wait_for(&mut bob, is_msg).await["body"], json!("kept"), "the failed message never reached bob");

    faults.fail_reads(true);
    let history = request(&mut alice, json!({"op": "history", "room": "r"})).await;
    assert_refused(&history, history["re"].clone(), "storage_failed");
    faults.fail_reads(false);
    let history = request(&mut alice, json!({"op": "history", "room": "r"})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"storage_error\"}").await, 2.0);
}

#[tokio::test]
async fn overloaded_answers_sends_past_the_storage_queue() {
    // Commits are held: the queue holds 8 sends and what comes after is
    // refused. The writer may also have taken a first group out of the queue
    // (then held in its commit) before the rest arrived, or not yet woken at
    // all on a loaded machine: at least 8 are accepted, and the 50 overflow.
    let faults = Arc::new(Faults::default());
    let server = TestServer::with_backend(faults.backend(), |config| config.storage.queue_capacity = 8).await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let stall = faults.stall();
    let refused = replies_to(&mut alice, (1..=50).map(send)).await;
    assert!(!refused.is_empty() && refused.len() <= 50 - 8, "{} of 50 refused", refused.len());
    for reply in &refused {
        assert_refused(reply, reply["re"].clone(), "overloaded");
    }
    stall.release();
    let refused: Vec<u64> = refused.iter().map(|reply| reply["re"].as_u64().expect("id")).collect();
    let accepted: Vec<u64> = (1..=50).filter(|id| !refused.contains(id)).collect();
    let acked = replies_to(&mut alice, []).await;
    let acked_ids = acks_until(&mut alice, acked, *accepted.last().expect("some accepted")).await;
    assert_eq!(acked_ids, accepted, "every accepted send is stored and acked");
    let busy = server.metric("switchboard_messages_dropped_total{reason=\"storage_busy\"}").await;
    assert_eq!(busy, refused.len() as f64);
}

/// The ids of successful replies, from `seen` and then from `client`, until
/// the reply to `last`.
async fn acks_until(client: &mut Connection, seen: Vec<Value>, last: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = seen.iter().filter(|r| r["ok"] == json!(true)).filter_map(|r| r["re"].as_u64()).collect();
    within(async {
        while ids.last() != Some(&last) {
            let event = client.next_event().await.expect("event");
            if event["ok"] == json!(true) {
                ids.push(event["re"].as_u64().expect("numeric id"));
            }
        }
    })
    .await;
    ids
}

#[tokio::test]
async fn overloaded_answers_a_request_past_4096_waiting_on_one_connection() {
    // Alice's acks and copies, 4,096 of each, arrive in a burst.
    let faults = Arc::new(Faults::default());
    let server = TestServer::with_backend(faults.backend(), |config| {
        config.limits.outbound_queue_bytes = 8 << 20;
        // 4,097 sends at once: past one connection's default rate.
        (config.limits.messages_per_second, config.limits.bytes_per_second) = (0, 0);
    })
    .await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let stall = faults.stall();
    let limit = u64::from(MAX_PENDING_REQUESTS);
    assert_eq!(limit, 4096, "the limit docs/PROTOCOL.md states");
    let refused = replies_to(&mut alice, (1..=limit + 1).map(send)).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_refused(&refused[0], json!(limit + 1), "overloaded");
    // Another connection is not held back by alice's.
    let mut bob = server.client("bob").await;
    assert_eq!(replies_to(&mut bob, [json!({"op": "dm", "to": "alice", "body": 1, "id": 1})]).await, [] as [Value; 0]);
    stall.release();
    assert_eq!(acks_until(&mut alice, Vec::new(), limit).await, (1..=limit).collect::<Vec<_>>());
    let pending = server.metric("switchboard_messages_dropped_total{reason=\"too_many_pending\"}").await;
    assert_eq!(pending, 1.0);
}

#[tokio::test]
async fn bad_room_answers_names_too_long_empty_or_with_control_characters() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let longest = "r".repeat(128);
    for (id, room) in [(1, "r".repeat(129)), (2, String::new()), (3, "a\u{1}b".into()), (4, "tab\there".into())] {
        let reply = request(&mut alice, json!({"op": "join", "room": room, "id": id})).await;
        assert_refused(&reply, reply["re"].clone(), "bad_room");
    }
    let send = request(&mut alice, json!({"op": "send", "room": "new\nline", "body": 1})).await;
    assert_refused(&send, send["re"].clone(), "bad_room");
    let fits = request(&mut alice, json!({"op": "join", "room": longest})).await;
    assert_eq!(fits["ok"], json!(true), "128 bytes is the longest name: {fits}");
}

#[tokio::test]
async fn bad_user_answers_names_too_long_or_outside_the_alphabet() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    for to in ["b".repeat(65), "bo\u{7}b".into(), "bob smith".into(), String::new()] {
        let reply = request(&mut alice, json!({"op": "dm", "to": to, "body": 1})).await;
        assert_refused(&reply, reply["re"].clone(), "bad_user");
    }
    let fits = request(&mut alice, json!({"op": "dm", "to": "b".repeat(64), "body": 1})).await;
    assert_eq!(fits["ok"], json!(true), "64 characters is the longest name: {fits}");

    // The name in a raw TCP or UDP hello: answered bad_user, no session.
    let mut device = Lines::connect(server.tcp).await;
    device.send(&format!("{{\"op\":\"hello\",\"name\":\"{}\",\"id\":9}}\n", "d".repeat(65))).await;
    let hello = device.json_until(|v| v["ev"] == json!("hello")).await;
    assert!(hello["user"].as_str().is_some_and(|user| user.starts_with("guest-")), "{hello}");
    assert_refused(&device.json_until(|v| v.get("re").is_some()).await, json!(9), "bad_user");
    let player = Datagrams::hello(server.udp, "player").await;
    player.send_raw(&json!({"op": "hello", "name": "bad\u{1}name"})).await;
    let error = player.until(|v| v["ev"] == json!("error")).await;
    assert_eq!((error["code"].clone(), error.get("re")), (json!("bad_user"), None), "{error}");
}
