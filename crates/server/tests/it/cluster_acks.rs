//! What a cluster node's ack promises when Redis is slow or short of
//! copies: the durability waits (`WAIT`, `WAITAOF`, on one Redis and on
//! Redis Cluster), and a publish Redis did not confirm in time.

use crate::redis_support::{RedisCluster, RedisServer};
use crate::support::{request, wait_for, within, TestServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_an_ack_means_a_replica_has_the_message_and_without_the_replica_sends_are_refused() {
    let Some(mut set) = crate::redis_support::RedisSentinelSet::start("cluster::wait_replicas") else { return };
    let url = format!("redis://127.0.0.1:{}", set.master.port);
    let node = TestServer::with(move |config| {
        config.cluster.redis = url;
        config.cluster.node_id = "careful".to_owned();
        config.cluster.command_timeout = Duration::from_secs(1);
        config.cluster.wait_replicas = 1;
    })
    .await;
    let mut writer = node.client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "ledger"})).await;
    let acked = request(&mut writer, json!({"op": "send", "room": "ledger", "body": 1})).await;
    assert_eq!(acked["ok"], json!(true), "{acked}");
    // Acked means the replica has it already: no waiting for it here.
    assert_eq!(set.replica.cli(&["XLEN", "sb:{r:ledger}:x"]).trim(), "1", "the replica holds the acked message");
    set.replica.kill9();
    let refused = request(&mut writer, json!({"op": "send", "room": "ledger", "body": 2})).await;
    assert_eq!(refused["code"], json!("unavailable"), "no replica confirmed it: {refused}");
}

/// Redis stalls past `command_timeout` (`CLIENT PAUSE`) while the
/// subscription stays up: the publisher hears its message is unconfirmed,
/// which is true (Redis stores it once it resumes), and publishing resumes
/// when the probe's echo comes back, without a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_leaves_a_send_unconfirmed_and_publishing_resumes_on_the_next_echo() {
    let Some(redis) = RedisServer::start("cluster::stall") else { return };
    let url = redis.url();
    let node = TestServer::with(move |config| {
        config.cluster.redis = url;
        config.cluster.node_id = "patient".to_owned();
        config.cluster.command_timeout = Duration::from_millis(500);
    })
    .await;
    let mut writer = node.client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "ledger"})).await;
    let send = json!({"op": "send", "room": "ledger", "body": "pay 10", "idempotency_key": "pay-1"});
    // The join's presence script runs on a task of its own: let it finish,
    // so the only script paused below is the send's.
    redis.cli_until(&["EXISTS", "sb:{r:ledger}:pu"], |exists| exists.trim() == "1").await;
    redis.cli(&["CLIENT", "PAUSE", "2000", "WRITE"]);
    let with_id = |mut command: Value, id: &str| {
        command["id"] = json!(id);
        command.to_string()
    };
    within(writer.send_text(with_id(send.clone(), "stalled"))).await.expect("send");
    // Two more queue behind it once its script waits in Redis; when it times
    // out they are answered at once and never sent, not after a timeout each.
    let script_waits = |client: &str| client.contains(" flags=b ") && client.contains(" cmd=evalsha ");
    redis.cli_until(&["CLIENT", "LIST"], |clients| clients.lines().any(script_waits)).await;
    for key in ["pay-2", "pay-3"] {
        let queued = json!({"op": "send", "room": "ledger", "body": "pay 20", "idempotency_key": key});
        within(writer.send_text(with_id(queued, key))).await.expect("send");
    }
    let mut replies = HashMap::new();
    while replies.len() < 3 {
        let reply = wait_for(&mut writer, |event| event.get("re").is_some()).await;
        replies.insert(reply["re"].as_str().unwrap_or_default().to_owned(), reply);
    }
    let stalled = &replies["stalled"];
    assert_eq!(stalled["code"], json!("unavailable"), "{stalled}");
    assert!(stalled["error"].as_str().is_some_and(|text| text.contains("may have been stored")), "{stalled}");
    for key in ["pay-2", "pay-3"] {
        let queued = &replies[key];
        assert_eq!(queued["code"], json!("unavailable"), "{queued}");
        assert!(queued["error"].as_str().is_some_and(|text| text.contains("was not stored")), "never sent: {queued}");
    }
    let started = std::time::Instant::now();
    let acked = loop {
        let reply = request(&mut writer, send.clone()).await;
        if reply["ok"] == json!(true) {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "publishing never resumed: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(acked["seq"], json!(1), "the stalled attempt was stored, and its retry learns its seq: {acked}");
    let history = request(&mut writer, json!({"op": "history", "room": "ledger"})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "stored once: {history}");
}

/// On Redis Cluster the wait goes to the master of the room's slot: with
/// that shard's replica gone (the others' still up), sends to the room are
/// refused, and sends to a room on another shard are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_on_redis_cluster_the_wait_goes_to_the_rooms_own_shard() {
    let Some(mut cluster) = RedisCluster::start_with_replicas("cluster::wait_on_cluster", 1) else { return };
    let url = cluster.url();
    let node = TestServer::with(move |config| {
        config.cluster.redis = url;
        config.cluster.node_id = "sharded".to_owned();
        config.cluster.command_timeout = Duration::from_secs(2);
        config.cluster.wait_replicas = 1;
    })
    .await;
    let mut writer = node.client("writer").await;
    let send = |room: &str| json!({"op": "send", "room": room, "body": "entry"});
    request(&mut writer, json!({"op": "join", "room": "ledger"})).await;
    let acked = request(&mut writer, send("ledger")).await;
    assert_eq!(acked["ok"], json!(true), "{acked}");
    let doomed = cluster.replica_of_key("sb:{r:ledger}:m");
    let elsewhere = (0..100)
        .map(|n| format!("room-{n}"))
        .find(|room| cluster.replica_of_key(&format!("sb:{{r:{room}}}:m")) != doomed)
        .expect("a room on another shard");
    cluster.nodes[doomed].kill9();
    let refused = request(&mut writer, send("ledger")).await;
    assert_eq!(refused["code"], json!("unavailable"), "the ledger's shard has no replica now: {refused}");
    request(&mut writer, json!({"op": "join", "room": elsewhere})).await;
    let other = request(&mut writer, send(&elsewhere)).await;
    assert_eq!(other["ok"], json!(true), "{elsewhere}'s shard still has its replica: {other}");
}

/// Runs on Valkey (Redis 7.2's API): `WAITAOF` is not in Debian 12's Redis.
/// A replica that holds the message only in memory does not count, which is
/// what sets `WAITAOF` apart from `WAIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_aof_an_ack_means_the_master_and_a_replica_have_the_message_in_their_append_only_files() {
    let Some((master, replica)) = RedisServer::start_valkey_pair("cluster::wait_aof_valkey") else { return };
    let url = master.url();
    let node = TestServer::with(move |config| {
        config.cluster.redis = url;
        config.cluster.node_id = "durable".to_owned();
        config.cluster.command_timeout = Duration::from_secs(2);
        config.cluster.wait_replicas = 1;
        config.cluster.wait_aof = true;
    })
    .await;
    let mut writer = node.client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "ledger"})).await;
    let send = |body: u32| json!({"op": "send", "room": "ledger", "body": body});
    let acked = request(&mut writer, send(1)).await;
    assert_eq!(acked["ok"], json!(true), "{acked}");
    assert_eq!(replica.cli(&["XLEN", "sb:{r:ledger}:x"]).trim(), "1", "the replica holds the acked message");

    replica.cli(&["CONFIG", "SET", "appendonly", "no"]);
    let in_memory_only = request(&mut writer, send(2)).await;
    assert_eq!(in_memory_only["code"], json!("unavailable"), "the replica's AOF is off: {in_memory_only}");

    replica.cli(&["CONFIG", "SET", "appendonly", "yes"]);
    replica.wait_for_aof();
    let again = request(&mut writer, send(3)).await;
    assert_eq!(again["ok"], json!(true), "both AOFs are on again: {again}");

    master.cli(&["CONFIG", "SET", "appendonly", "no"]);
    let no_local_aof = request(&mut writer, send(4)).await;
    assert_eq!(no_local_aof["code"], json!("unavailable"), "the master's AOF is off: {no_local_aof}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_aof_on_a_redis_without_waitaof_is_refused_when_the_node_connects() {
    let Some(redis) = RedisServer::start("cluster::wait_aof") else { return };
    let version = redis.cli(&["INFO", "server"]);
    let version = version.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("").trim().to_owned();
    let mut config = switchboard_server::cluster::ClusterConfig::new(redis.url(), "n");
    config.wait_aof = true;
    let connected = switchboard_server::cluster::Engine::connect(config).await;
    let newer =
        version.split('.').take(2).map(|part| part.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>() >= vec![7, 2];
    match (newer, connected) {
        (true, Ok(_)) => {}
        (false, Err(error)) => assert!(error.to_string().contains("7.2"), "{error}"),
        (newer, other) => panic!("Redis {version} (WAITAOF: {newer}): {other:?}"),
    }
}
