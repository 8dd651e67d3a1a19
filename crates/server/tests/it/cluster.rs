//! Several Switchboard nodes on one real `redis-server` (and on a 3-master
//! Redis Cluster): every message reaches every member on every node once
//! and in `seq` order, DMs cross nodes, presence is one per user across
//! nodes, a client that moves to another node recovers with `since`, and a
//! Redis crash and restart loses no acked message (publishes during the
//! outage are answered `unavailable`). A node killed with SIGKILL is in
//! crates/cli/tests/cluster_crash.rs: it needs the binary as a process.

use crate::redis_support::{FreezingProxy, RedisCluster, RedisServer};
use crate::support::{request, wait_for, within, TestServer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use switchboard_client::{Connection, Error};

/// A node on `redis` named `id`, with short timeouts for the tests.
async fn node(redis: &str, id: &str) -> TestServer {
    node_with(redis, id, |_| {}).await
}

/// [`node`], with `tweak` applied to its configuration.
async fn node_with(
    redis: &str,
    id: &str,
    tweak: impl FnOnce(&mut switchboard_server::config::Config) + Send + 'static,
) -> TestServer {
    let (redis, id) = (redis.to_owned(), id.to_owned());
    TestServer::with(move |config| {
        tweak(config);
        config.cluster.redis = redis;
        config.cluster.node_id = id;
        // Long enough that a node starved of CPU on a loaded machine is not
        // reaped as dead (the reaper is timed in crates/cli/tests/cluster_crash.rs).
        config.cluster.node_timeout = Duration::from_secs(15);
        config.cluster.command_timeout = Duration::from_millis(500);
    })
    .await
}

/// Reads until the connection ends; how it ended.
async fn closed(client: &mut Connection) -> Error {
    within(async {
        loop {
            if let Err(error) = client.next_event().await {
                return error;
            }
        }
    })
    .await
}

async fn nodes(redis: &str) -> Vec<TestServer> {
    vec![node(redis, "a").await, node(redis, "b").await, node(redis, "c").await]
}

/// Reads until `count` room messages arrived; returns them in order.
async fn messages(client: &mut Connection, count: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < count {
        let event = wait_for(client, |event| event["ev"] == json!("msg")).await;
        got.push(event);
    }
    got
}

/// Checks that `got` holds seqs `1..=count` in order, and each
/// `(from, n)` of `sent` once.
fn exactly_once_in_order(got: &[Value], sent: &HashSet<(String, u64)>, who: &str) {
    let seqs: Vec<u64> = got.iter().map(|event| event["seq"].as_u64().expect("seq")).collect();
    let expected: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(seqs, expected, "{who}: every seq once, in order");
    let bodies: HashSet<(String, u64)> = got
        .iter()
        .map(|event| (event["from"].as_str().expect("from").to_owned(), event["body"]["n"].as_u64().expect("n")))
        .collect();
    assert_eq!(&bodies, sent, "{who}: every message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_room_message_and_dm_once_and_in_order_on_every_node() {
    let Some(redis) = RedisServer::start("cluster::three_nodes") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut clients = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for tab in 0..2 {
            let mut client = node.client(&format!("u{index}{tab}")).await;
            assert_eq!(request(&mut client, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
            clients.push(client);
        }
    }
    // Every client sends 15 messages without waiting, all at once.
    const EACH: u64 = 15;
    let mut sent = HashSet::new();
    for n in 0..EACH {
        for client in &mut clients {
            let send = json!({"op": "send", "room": "lobby", "body": {"n": n}});
            within(client.send_text(send.to_string())).await.expect("send");
            sent.insert((client.user.clone(), n));
        }
    }
    let total = sent.len();
    for client in &mut clients {
        let got = messages(client, total).await;
        exactly_once_in_order(&got, &sent, &client.user.clone());
    }
    // Nothing more arrives: no copy from the channel after the publisher's own.
    for client in &mut clients {
        let extra = client.next_event_within(Duration::from_millis(300)).await;
        assert!(extra.is_err() || extra.as_ref().is_ok_and(|event| event["ev"] != json!("msg")), "{extra:?}");
    }

    // A DM from node a to a user on node c.
    let (first, rest) = clients.split_at_mut(1);
    let reply = request(&mut first[0], json!({"op": "dm", "to": "u21", "body": "psst"})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let to = rest.iter_mut().find(|client| client.user == "u21").expect("u21");
    let dm = wait_for(to, |event| event["ev"] == json!("dm")).await;
    assert_eq!((&dm["from"], &dm["body"], &dm["seq"]), (&json!("u00"), &json!("psst"), &reply["seq"]));
}

/// A connection's sends are stored in the order it sent them, as on one
/// node, although it does not wait for each ack: the `seq`s Redis hands
/// out follow the sending order, and a member on another node sees the
/// bodies in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_sends_are_stored_in_the_order_it_sent_them() {
    let Some(redis) = RedisServer::start("cluster::send_order") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut reader = nodes[1].client("reader").await;
    request(&mut reader, json!({"op": "join", "room": "line"})).await;
    let mut writer = nodes[0].client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "line"})).await;
    const SENT: u64 = 300;
    for n in 0..SENT {
        let send = json!({"op": "send", "room": "line", "body": {"n": n}});
        within(writer.send_text(send.to_string())).await.expect("send");
    }
    let got: Vec<u64> = messages(&mut reader, SENT as usize)
        .await
        .iter()
        .map(|event| event["body"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(got, (0..SENT).collect::<Vec<_>>(), "stored and delivered in the order sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_node_recovers_what_it_missed_with_since() {
    let Some(redis) = RedisServer::start("cluster::moves") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut sender = nodes[1].client("sender").await;
    request(&mut sender, json!({"op": "join", "room": "news"})).await;
    let mut reader = nodes[0].client("reader").await;
    let joined = request(&mut reader, json!({"op": "join", "room": "news"})).await;
    for n in 0..3 {
        assert_eq!(sender.send("news", json!({"n": n})).await.expect("send")["ok"], json!(true));
    }
    let seen = messages(&mut reader, 3).await;
    let last = seen[2]["seq"].as_u64().expect("seq");
    let epoch = joined["epoch"].clone();
    within(reader.close()).await.expect("close");
    let mut acked = Vec::new();
    for n in 3..8 {
        acked.push(sender.send("news", json!({"n": n})).await.expect("send")["seq"].as_u64().expect("seq"));
    }
    let mut moved = nodes[2].client("reader").await;
    let rejoin = json!({"op": "join", "room": "news", "since": last, "epoch": epoch});
    let reply = request(&mut moved, rejoin).await;
    assert_eq!(reply["recovered"], json!(true), "{reply}");
    let replayed = messages(&mut moved, 5).await;
    let seqs: Vec<u64> = replayed.iter().map(|event| event["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, acked, "exactly what was missed, in order");
    // Live again from here.
    sender.send("news", json!({"n": 8})).await.expect("send");
    assert_eq!(messages(&mut moved, 1).await[0]["body"]["n"], json!(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_nodes_is_one_member_and_leaves_when_their_last_connection_does() {
    let Some(redis) = RedisServer::start("cluster::presence") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut bob = nodes[2].client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "lobby"})).await;
    let mut alice_a = nodes[0].client("alice").await;
    request(&mut alice_a, json!({"op": "join", "room": "lobby"})).await;
    let joined = wait_for(&mut bob, |event| event["ev"] == json!("join")).await;
    assert_eq!(joined["user"], json!("alice"));
    let mut alice_b = nodes[1].client("alice").await;
    request(&mut alice_b, json!({"op": "join", "room": "lobby"})).await;
    // Each node applies presence on a task of its own: wait until Redis
    // counts both of her nodes, or her first leave could be her last.
    redis.cli_until(&["HGET", "sb:{r:lobby}:pu", "alice"], |nodes| nodes.trim() == "2").await;
    let members = request(&mut bob, json!({"op": "presence", "room": "lobby"})).await;
    assert_eq!(members["users"], json!(["alice", "bob"]), "one alice across two nodes: {members}");
    request(&mut alice_a, json!({"op": "leave", "room": "lobby"})).await;
    request(&mut alice_b, json!({"op": "presence", "room": "lobby"})).await;
    // Her second connection keeps her in: the next presence event bob sees
    // is her leave after her last connection goes, not a leave now.
    request(&mut alice_b, json!({"op": "leave", "room": "lobby"})).await;
    let event = wait_for(&mut bob, |event| event["ev"] == json!("leave") || event["ev"] == json!("join")).await;
    assert_eq!((&event["ev"], &event["user"]), (&json!("leave"), &json!("alice")), "{event}");
    let members = request(&mut bob, json!({"op": "presence", "room": "lobby"})).await;
    assert_eq!(members["users"], json!(["bob"]));
}

/// The presence limit counts the room's users cluster-wide: with a limit
/// of 2 and one user on each of two nodes, a third on another node joins
/// and leaves without a join event; the leave back to 2 users is announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_stop_when_a_room_is_over_the_limit_cluster_wide() {
    let Some(redis) = RedisServer::start("cluster::presence_limit") else { return };
    let limited = |config: &mut switchboard_server::config::Config| config.limits.presence_events_max_members = 2;
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(node_with(&redis.url(), id, limited).await);
    }
    let mut ann = nodes[0].client("ann").await;
    request(&mut ann, json!({"op": "join", "room": "hall"})).await;
    let mut bob = nodes[1].client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "hall"})).await;
    let joined = wait_for(&mut ann, |event| event["ev"] == json!("join")).await;
    assert_eq!(joined["user"], json!("bob"), "2 users: within the limit");
    // Both in Redis (each node applies presence on a task of its own), so
    // cid is the third user whenever his node's scripts run.
    redis.cli_until(&["HLEN", "sb:{r:hall}:pu"], |users| users.trim() == "2").await;
    let mut cid = nodes[2].client("cid").await;
    request(&mut cid, json!({"op": "join", "room": "hall"})).await;
    request(&mut cid, json!({"op": "leave", "room": "hall"})).await;
    // cid's node decides both in order: a join announced would come first.
    let event = wait_for(&mut ann, |event| event["ev"] == json!("join") || event["ev"] == json!("leave")).await;
    assert_eq!((&event["ev"], &event["user"]), (&json!("leave"), &json!("cid")), "no join at 3 users: {event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volatile_message_reaches_the_members_on_every_node() {
    let Some(redis) = RedisServer::start("cluster::volatile") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut watchers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let mut client = node.client(&format!("w{index}")).await;
        request(&mut client, json!({"op": "join", "room": "game"})).await;
        watchers.push(client);
    }
    let reply =
        request(&mut watchers[0], json!({"op": "send", "room": "game", "body": {"x": 1}, "volatile": true})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    for watcher in &mut watchers {
        let event = wait_for(watcher, |event| event["ev"] == json!("msg")).await;
        assert_eq!(
            (&event["volatile"], &event["from"], &event["body"]),
            (&json!(true), &json!("w0"), &json!({"x": 1}))
        );
        let extra = watcher.next_event_within(Duration::from_millis(300)).await;
        assert!(extra.is_err() || extra.as_ref().is_ok_and(|event| event["ev"] != json!("msg")), "once: {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acked_message_and_publishes_meanwhile_are_refused() {
    let Some(mut redis) = RedisServer::start("cluster::redis_restart") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut sender = nodes[0].client("sender").await;
    request(&mut sender, json!({"op": "join", "room": "feed"})).await;
    let mut reader = nodes[1].client("reader").await;
    request(&mut reader, json!({"op": "join", "room": "feed"})).await;
    let mut acked = Vec::new();
    for n in 0..5 {
        acked.push(sender.send("feed", json!({"n": n})).await.expect("send")["seq"].as_u64().expect("seq"));
    }
    redis.kill9();
    // Until the node notices, a publish waits for its command timeout; then
    // it is refused at once. Either way: `unavailable`, never an ack.
    let mut refused = 0;
    for n in 5..10 {
        let reply = request(&mut sender, json!({"op": "send", "room": "feed", "body": {"n": n}})).await;
        assert_eq!(reply["code"], json!("unavailable"), "no false ack while Redis is down: {reply}");
        refused += 1;
    }
    assert_eq!(refused, 5);
    let ready = reqwest::get(format!("http://{}/readyz", nodes[0].addr)).await.expect("readyz");
    assert_eq!(ready.status(), 503, "not ready while Redis is down");
    let metric = "switchboard_messages_dropped_total{reason=\"cluster_unavailable\"}";
    assert!(nodes[0].metric(metric).await >= 5.0);
    redis.restart();
    // The node resubscribes; a send succeeds again within the patience.
    let again = within(async {
        loop {
            let reply = request(&mut sender, json!({"op": "send", "room": "feed", "body": {"n": 10}})).await;
            if reply["ok"] == json!(true) {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    acked.push(again["seq"].as_u64().expect("seq"));
    // Every acked message reached the reader once, in order: the five
    // before, then the one after (AOF with fsync always kept the seq).
    let got = messages(&mut reader, acked.len()).await;
    let seqs: Vec<u64> = got.iter().map(|event| event["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, acked, "no acked message lost, none twice");
    assert_eq!(acked, vec![1, 2, 3, 4, 5, 6], "the refused sends consumed no seq");
    let history = request(&mut reader, json!({"op": "history", "room": "feed", "limit": 50})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(6), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_chat_on_a_three_master_redis_cluster_with_sharded_pubsub() {
    let Some(cluster) = RedisCluster::start("cluster::redis_cluster") else { return };
    let nodes = nodes(&cluster.url()).await;
    let mut clients = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let mut client = node.client(&format!("c{index}")).await;
        for room in ["red", "green", "blue"] {
            assert_eq!(request(&mut client, json!({"op": "join", "room": room})).await["ok"], json!(true));
        }
        clients.push(client);
    }
    let mut sent = HashSet::new();
    for n in 0..5 {
        for client in &mut clients {
            for room in ["red", "green", "blue"] {
                let send = json!({"op": "send", "room": room, "body": {"n": n}});
                within(client.send_text(send.to_string())).await.expect("send");
            }
            sent.insert((client.user.clone(), n));
        }
    }
    for client in &mut clients {
        let got = messages(client, sent.len() * 3).await;
        for room in ["red", "green", "blue"] {
            let in_room: Vec<Value> = got.iter().filter(|event| event["room"] == json!(room)).cloned().collect();
            exactly_once_in_order(&in_room, &sent, &format!("{} in {room}", client.user));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_room_whose_history_redis_lost_are_closed_with_4012_and_then_told_recovered_false() {
    let Some(redis) = RedisServer::start("cluster::history_lost") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut sender = nodes[0].client("sender").await;
    request(&mut sender, json!({"op": "join", "room": "feed"})).await;
    let mut reader = nodes[1].client("reader").await;
    request(&mut reader, json!({"op": "join", "room": "feed"})).await;
    for n in 0..2 {
        sender.send("feed", json!({"n": n})).await.expect("send");
    }
    messages(&mut reader, 2).await;
    let epoch = request(&mut reader, json!({"op": "history", "room": "feed"})).await["epoch"].clone();
    assert!(epoch.is_u64(), "{epoch}");
    // Redis loses everything (as after a restart without persistence).
    redis.cli(&["FLUSHALL"]);
    // A message from a backend starts the new epoch (the sender, a member
    // here too, is closed with 4012 like the reader).
    let url = format!("http://{}/api/rooms/feed/messages", nodes[2].addr);
    let published = reqwest::Client::new().post(url).json(&json!({"body": {"n": 2}})).send().await.expect("publish");
    assert_eq!(published.status(), 201);
    let closed = closed(&mut reader).await;
    let Error::Closed(Some(close)) = closed else { panic!("closed with a code: {closed:?}") };
    assert_eq!(close.code.as_u16(), 4012, "history lost: {close:?}");
    let mut back = nodes[1].client("reader").await;
    let rejoin = json!({"op": "join", "room": "feed", "since": 2, "epoch": epoch});
    let reply = request(&mut back, rejoin).await;
    assert_eq!(reply["recovered"], json!(false), "what it held cannot be continued: {reply}");
    assert_ne!(reply["epoch"], epoch, "a new epoch");
}

/// Redis goes back in time while a node is cut off from it (as after a
/// failover to a replica that lagged), and new messages reuse the `seq`s
/// that node delivered, past its position: back on Redis, it finds another
/// message at its position, moves the room to a new epoch and closes its
/// members with 4012, who rejoin with `recovered: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_went_back_in_time_and_reused_seqs_is_caught_and_the_room_starts_a_new_epoch() {
    let Some(mut redis) = RedisServer::start("cluster::went_back") else { return };
    let proxy = FreezingProxy::start(redis.port).await;
    let cut_off = node(&proxy.url(), "cut-off").await;
    let backend = node(&redis.url(), "backend").await;
    let mut reader = cut_off.client("reader").await;
    request(&mut reader, json!({"op": "join", "room": "hall"})).await;
    let url = format!("http://{}/api/rooms/hall/messages", backend.addr);
    let publish = |n: u32| {
        let url = url.clone();
        async move {
            let body = json!({"body": {"n": n}, "idempotency_key": format!("n-{n}")});
            reqwest::Client::new().post(url).json(&body).send().await.expect("publish").status()
        }
    };
    let mut snapshot = None;
    for n in 1..=4 {
        assert_eq!(publish(n).await, 201);
        if n == 2 {
            // What a lagging replica holds.
            snapshot = Some(redis.snapshot());
        }
    }
    messages(&mut reader, 4).await;
    let epoch = request(&mut reader, json!({"op": "history", "room": "hall"})).await["epoch"].clone();
    proxy.cut();
    redis.restart_from(snapshot.as_ref().expect("snapshot"));
    // Three new messages take `seq`s 3 to 5: past the reader's 4.
    let started = std::time::Instant::now();
    for n in 13..=15 {
        while publish(n).await != 201 {
            assert!(started.elapsed() < Duration::from_secs(20), "the backend's node never published again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    proxy.mend();
    let closed = closed(&mut reader).await;
    let Error::Closed(Some(close)) = closed else { panic!("closed with a code: {closed:?}") };
    assert_eq!(close.code.as_u16(), 4012, "the room's history went back in time: {close:?}");
    let mut back = cut_off.client("reader").await;
    let reply = request(&mut back, json!({"op": "join", "room": "hall", "since": 4, "epoch": epoch})).await;
    assert_eq!(reply["recovered"], json!(false), "messages 3 and 4 it holds are not the room's: {reply}");
    assert_ne!(reply["epoch"], epoch, "a new epoch: {reply}");
    let history = request(&mut back, json!({"op": "history", "room": "hall"})).await;
    let bodies: Vec<&Value> =
        history["messages"].as_array().expect("messages").iter().map(|m| &m["body"]["n"]).collect();
    assert_eq!(bodies, [&json!(1), &json!(2), &json!(13), &json!(14), &json!(15)], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_to_a_user_connected_nowhere_waits_in_redis_for_them_on_another_node() {
    let Some(redis) = RedisServer::start("cluster::offline_dm") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut alice = nodes[0].client("alice").await;
    let sent = request(&mut alice, json!({"op": "dm", "to": "bob", "body": "while you were out"})).await;
    assert_eq!(sent["ok"], json!(true), "{sent}");
    let mut bob = nodes[2].client("bob").await;
    let inbox = &bob.hello["inbox"];
    assert_eq!((&inbox["seq"], &inbox["waiting"]), (&sent["seq"], &json!(1)), "hello: {}", bob.hello);
    assert!(inbox["epoch"].is_u64(), "hello: {}", bob.hello);
    let reply = request(&mut bob, json!({"op": "inbox", "since": 0})).await;
    assert_eq!(reply["recovered"], json!(true), "{reply}");
    let dm = wait_for(&mut bob, |event| event["ev"] == json!("dm")).await;
    assert_eq!((&dm["from"], &dm["body"]), (&json!("alice"), &json!("while you were out")));
    within(bob.close()).await.expect("close");
    // The delivery cursor is shared: on another node nothing waits. It is
    // recorded after the delivery, so a hello may come before it lands.
    let waiting = |hello: &Value| hello["inbox"]["waiting"].clone();
    within(async {
        loop {
            let again = nodes[0].client("bob").await;
            let now = waiting(&again.hello);
            within(again.close()).await.expect("close");
            if now == json!(0) {
                break;
            }
            assert_eq!(now, json!(1), "{now}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let later = request(&mut alice, json!({"op": "dm", "to": "bob", "body": "and again"})).await;
    assert_eq!(later["ok"], json!(true), "{later}");
    let back = nodes[1].client("bob").await;
    assert_eq!(waiting(&back.hello), json!(1), "only the new DM waits: {}", back.hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_reads_a_rooms_history_on_a_node_where_nobody_follows_it() {
    let Some(redis) = RedisServer::start("cluster::api_history") else { return };
    let nodes = nodes(&redis.url()).await;
    let mut sender = nodes[0].client("sender").await;
    request(&mut sender, json!({"op": "join", "room": "archive"})).await;
    for n in 0..3 {
        sender.send("archive", json!({"n": n})).await.expect("send");
    }
    let url = format!("http://{}/api/rooms/archive/messages", nodes[2].addr);
    let page: Value = reqwest::get(url).await.expect("history").json().await.expect("JSON");
    let bodies: Vec<&Value> = page["messages"].as_array().expect("messages").iter().map(|m| &m["body"]["n"]).collect();
    assert_eq!(bodies, [&json!(0), &json!(1), &json!(2)], "{page}");
    assert_eq!(page["last_seq"], json!(3), "{page}");
    let url = format!("http://{}/api/rooms/nothing-here/messages", nodes[2].addr);
    let empty: Value = reqwest::get(url).await.expect("history").json().await.expect("JSON");
    assert_eq!(empty["messages"], json!([]), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_repeated_with_its_idempotency_key_on_another_node_is_stored_once() {
    let Some(redis) = RedisServer::start("cluster::idempotent") else { return };
    let nodes = nodes(&redis.url()).await;
    let send = json!({"op": "send", "room": "orders", "body": "pay 10", "idempotency_key": "k-1"});
    let mut first = nodes[0].client("shop").await;
    request(&mut first, json!({"op": "join", "room": "orders"})).await;
    let stored = request(&mut first, send.clone()).await;
    assert_eq!(stored["ok"], json!(true), "{stored}");
    within(first.close()).await.expect("close");
    // The client lost its connection before the ack and resends elsewhere.
    let mut again = nodes[1].client("shop").await;
    request(&mut again, json!({"op": "join", "room": "orders"})).await;
    let repeat = request(&mut again, send).await;
    assert_eq!((&repeat["ok"], &repeat["seq"]), (&json!(true), &stored["seq"]), "the first attempt's seq: {repeat}");
    let history = request(&mut again, json!({"op": "history", "room": "orders"})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "stored once: {history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_repeated_with_its_idempotency_key_on_another_node_is_stored_once() {
    let Some(redis) = RedisServer::start("cluster::api_idempotent") else { return };
    let nodes = nodes(&redis.url()).await;
    let publish = json!({"body": {"order": 42}, "idempotency_key": "order-42-shipped"});
    let post = |node: usize| {
        let url = format!("http://{}/api/rooms/orders/messages", nodes[node].addr);
        let publish = publish.clone();
        async move {
            let response = reqwest::Client::new().post(url).json(&publish).send().await.expect("publish");
            assert_eq!(response.status(), 201, "stored");
            response.json::<Value>().await.expect("JSON")
        }
    };
    let first = post(0).await;
    // The backend's first answer was lost; it retries through another node.
    let repeat = post(1).await;
    assert_eq!(repeat, first, "the first attempt's seq, epoch and ts");
    let url = format!("http://{}/api/rooms/orders/messages", nodes[2].addr);
    let page: Value = reqwest::get(url).await.expect("history").json().await.expect("JSON");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "stored once: {page}");
}
