//! Reading over HTTP: history pages (back with `before`, forward with
//! `after`, `limit`, the room's `epoch`), the rooms and their counts, and
//! presence with the token's `info`.

use crate::api_support::{with_key, Api};
use crate::support::{request, TestServer};
use serde_json::{json, Value};

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .map(|messages| messages.iter().filter_map(|m| m["seq"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn history_pages_back_and_forward_with_the_rooms_epoch() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let empty = api.get("/api/rooms/feed/messages").await;
    let never = json!({"room": "feed", "epoch": null, "first_seq": 0, "last_seq": 0, "messages": [], "more": false});
    assert_eq!(empty.body, never);
    let mut epoch = Value::Null;
    for n in 1..=7 {
        let stored = api.post("/api/rooms/feed/messages", &json!({"body": {"n": n}, "from": "feeder"})).await;
        epoch = stored.body["epoch"].clone();
    }
    let newest = api.get("/api/rooms/feed/messages?limit=3").await;
    assert_eq!((newest.status, seqs(&newest.body), newest.body["more"].clone()), (200, vec![5, 6, 7], json!(true)));
    assert_eq!((newest.body["epoch"].clone(), newest.body["last_seq"].clone()), (epoch.clone(), json!(7)));
    let message = &newest.body["messages"][0];
    assert_eq!((message["from"].clone(), message["body"].clone()), (json!("feeder"), json!({"n": 5})));
    assert!(message["ts"].is_u64());
    let older = api.get("/api/rooms/feed/messages?limit=3&before=5").await;
    assert_eq!((seqs(&older.body), older.body["more"].clone()), (vec![2, 3, 4], json!(true)));
    let oldest = api.get("/api/rooms/feed/messages?limit=3&before=2").await;
    assert_eq!((seqs(&oldest.body), oldest.body["more"].clone()), (vec![1], json!(false)));
    let forward = api.get("/api/rooms/feed/messages?after=2&limit=2").await;
    assert_eq!((seqs(&forward.body), forward.body["more"].clone()), (vec![3, 4], json!(true)));
    let window = api.get("/api/rooms/feed/messages?after=4&before=7").await;
    assert_eq!((seqs(&window.body), window.body["more"].clone()), (vec![5, 6], json!(false)));
    let caught_up = api.get("/api/rooms/feed/messages?after=7").await;
    assert_eq!((seqs(&caught_up.body), caught_up.body["more"].clone()), (vec![], json!(false)));
    let all = api.get("/api/rooms/feed/messages").await;
    assert_eq!(seqs(&all.body), (1..=7).collect::<Vec<u64>>(), "50 by default");
}

#[tokio::test]
async fn a_page_holds_half_the_queue_bound_of_bodies_and_says_there_is_more() {
    let server = TestServer::with(|config| config.limits.outbound_queue_bytes = 8 * 1024).await;
    let api = Api::new(&server);
    for n in 0..10 {
        api.post("/api/rooms/big/messages", &json!({"body": format!("{n}{}", "x".repeat(1000))})).await;
    }
    let page = api.get("/api/rooms/big/messages?limit=10").await;
    let got = seqs(&page.body);
    assert!(got.len() < 10 && got.last() == Some(&10), "the newest, within 4 KiB: {got:?}");
    assert_eq!(page.body["more"], json!(true));
    let forward = api.get("/api/rooms/big/messages?after=0&limit=10").await;
    let got = seqs(&forward.body);
    assert!(got.len() < 10 && got.first() == Some(&1), "the oldest, within 4 KiB: {got:?}");
    assert_eq!(forward.body["more"], json!(true));
}

#[tokio::test]
async fn rooms_and_presence_show_who_is_where() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let mut alice = server.client("alice").await;
    let mut alice_again = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for client in [&mut alice, &mut alice_again, &mut bob] {
        request(client, json!({"op": "join", "room": "lobby"})).await;
    }
    request(&mut bob, json!({"op": "join", "room": "annex"})).await;
    let rooms = api.get("/api/rooms").await;
    assert_eq!(
        rooms.body,
        json!({"rooms": [{"room": "annex", "users": 1, "connections": 1}, {"room": "lobby", "users": 2, "connections": 3}]})
    );
    let presence = api.get("/api/rooms/lobby/presence").await;
    assert_eq!(presence.body, json!({"room": "lobby", "users": [{"user": "alice"}, {"user": "bob"}]}));
    let nobody = api.get("/api/rooms/empty/presence").await;
    assert_eq!((nobody.status, nobody.body.clone()), (200, json!({"room": "empty", "users": []})));
}

#[tokio::test]
async fn presence_carries_each_users_token_info_verbatim() {
    let server = crate::auth::token_server(with_key).await;
    let claims = json!({"sub": "alice", "exp": crate::auth::now() + 600, "info": {"name": "Alice", "a": 1}});
    let mut alice = server.client_with_token(&crate::auth::token(claims)).await;
    request(&mut alice, json!({"op": "join", "room": "lobby"})).await;
    let mut bob = server.client_with_token(&crate::auth::token_for("bob")).await;
    request(&mut bob, json!({"op": "join", "room": "lobby"})).await;
    let presence = Api::keyed(&server).get("/api/rooms/lobby/presence").await;
    let users = json!([{"user": "alice", "info": {"name": "Alice", "a": 1}}, {"user": "bob"}]);
    assert_eq!(presence.body, json!({"room": "lobby", "users": users}));
}
