//! A cluster node killed with SIGKILL: its users leave presence on the
//! other nodes within the documented bound (twice `cluster.node_timeout`:
//! its heartbeat goes stale, the reaper's lock it may have held lapses,
//! the next reaper round removes it), and a client of the dead node reconnects to another and
//! recovers what was sent meanwhile. Two `switchboard` processes on one
//! real `redis-server`.

mod support;

#[allow(dead_code)] // The engine's tests use the rest of the harness.
#[path = "../../server/tests/it/redis_support.rs"]
mod redis_support;

use redis_support::RedisServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::Server;
use switchboard_client::Connection;

const NODE_TIMEOUT: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(20);

fn node(redis: &RedisServer, id: &str) -> Server {
    let timeout = format!("{}ms", NODE_TIMEOUT.as_millis());
    let env = [
        ("SWITCHBOARD_CLUSTER__NODE_ID", id),
        ("SWITCHBOARD_CLUSTER__NODE_TIMEOUT", timeout.as_str()),
        ("SWITCHBOARD_CLUSTER__PRESENCE_GRACE", "3s"),
    ];
    Server::start_with_env(["--redis".to_owned(), redis.url()], env)
}

async fn next_matching(client: &mut Connection, wanted: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let event = client.next_event().await.expect("event");
            if wanted(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait).await.expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_takes_its_users_out_of_presence_on_the_others_in_bounded_time() {
    let Some(redis) = RedisServer::start("cluster_crash::sigkill") else { return };
    let mut doomed = node(&redis, "doomed");
    let survivor = node(&redis, "survivor");
    let mut bob = Connection::connect(&survivor.url("bob")).await.expect("connect");
    bob.request(json!({"op": "join", "room": "lobby"})).await.expect("join");
    let mut alice = Connection::connect(&doomed.url("alice")).await.expect("connect");
    let joined = alice.request(json!({"op": "join", "room": "lobby"})).await.expect("join");
    let event = next_matching(&mut bob, |event| event["ev"] == json!("join")).await;
    assert_eq!(event["user"], json!("alice"));
    let sent = bob.send("lobby", json!("before")).await.expect("send");
    let seen = next_matching(&mut alice, |event| event["ev"] == json!("msg")).await;
    assert_eq!(seen["seq"], sent["seq"]);

    doomed.kill();
    let killed = Instant::now();
    let missed = bob.send("lobby", json!("while alice was away")).await.expect("send");
    let left = next_matching(&mut bob, |event| event["ev"] == json!("leave")).await;
    let took = killed.elapsed();
    assert_eq!(left["user"], json!("alice"));
    // Twice the node timeout, and a margin for a loaded machine.
    let bound = NODE_TIMEOUT * 2 + Duration::from_secs(2);
    assert!(took < bound, "alice left after {took:?}, over {bound:?}");
    eprintln!("the dead node's user left presence {took:?} after SIGKILL (node_timeout {NODE_TIMEOUT:?})");
    let members = bob.request(json!({"op": "presence", "room": "lobby"})).await.expect("presence");
    assert_eq!(members["users"], json!(["bob"]), "no ghost: {members}");

    // Alice comes back on the survivor and recovers the message she missed.
    let mut back = Connection::connect(&survivor.url("alice")).await.expect("connect");
    let since = seen["seq"].as_u64().expect("seq");
    let mut rejoin = json!({"op": "join", "room": "lobby", "since": since});
    // The room had no history when she joined: no epoch to hold it to.
    if joined["epoch"].is_u64() {
        rejoin["epoch"] = joined["epoch"].clone();
    }
    let reply = back.request(rejoin).await.expect("rejoin");
    assert_eq!(reply["recovered"], json!(true), "{reply}");
    let recovered = next_matching(&mut back, |event| event["ev"] == json!("msg")).await;
    assert_eq!((&recovered["seq"], &recovered["body"]), (&missed["seq"], &json!("while alice was away")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_keeps_its_users_present_while_they_reconnect_elsewhere() {
    let Some(redis) = RedisServer::start("cluster_crash::graceful") else { return };
    let mut leaving = node(&redis, "leaving");
    let staying = node(&redis, "staying");
    let mut bob = Connection::connect(&staying.url("bob")).await.expect("connect");
    bob.request(json!({"op": "join", "room": "lobby"})).await.expect("join");
    let mut alice = Connection::connect(&leaving.url("alice")).await.expect("connect");
    alice.request(json!({"op": "join", "room": "lobby"})).await.expect("join");
    next_matching(&mut bob, |event| event["ev"] == json!("join")).await;

    leaving.terminate();
    // Alice's socket closes (1001) and she reconnects to the other node.
    let closed = tokio::time::timeout(PATIENCE, async { while alice.next_event().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "the draining node closed alice");
    let mut back = Connection::connect(&staying.url("alice")).await.expect("connect");
    back.request(json!({"op": "join", "room": "lobby"})).await.expect("join");
    // Past the grace (3 s) and a reaper round: the departing node's entry is
    // reaped, and alice, present on the other node, never left or joined again.
    let quiet = tokio::time::timeout(NODE_TIMEOUT * 3 + Duration::from_secs(1), async {
        next_matching(&mut bob, |event| event["ev"] == json!("leave") || event["ev"] == json!("join")).await
    })
    .await;
    assert!(quiet.is_err(), "no leave or join flapped: {quiet:?}");
    let members = bob.request(json!({"op": "presence", "room": "lobby"})).await.expect("presence");
    assert_eq!(members["users"], json!(["alice", "bob"]), "{members}");
    // Her last connection going now is a leave.
    back.close().await.expect("close");
    let left = next_matching(&mut bob, |event| event["ev"] == json!("leave")).await;
    assert_eq!(left["user"], json!("alice"));
}
