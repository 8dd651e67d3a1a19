//! The Redis engine (`switchboard_server::cluster`) against real
//! `redis-server` processes: seq and epoch, idempotency, bounded history,
//! reads, pub/sub exactly once and in order, a Redis killed with SIGKILL and
//! restarted, the subscription probe, presence across nodes, the reaper, and
//! the same publish/subscribe on a 3-master Redis Cluster.

use crate::redis_support::{FreezingProxy, RedisCluster, RedisSentinelSet, RedisServer};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_server::cluster::{
    ClusterConfig, ClusterError, Engine, LostReason, Outgoing, PresenceChange, Publication, Reaped, SubscriberEvent,
};
use switchboard_server::store::{LogKey, LogKind};
use tokio::sync::mpsc::Receiver;

/// How long one awaited event may take; generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

pub fn config(url: &str, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(url, node);
    config.command_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_millis(500);
    config.probe_interval = Duration::from_millis(300);
    config.probe_timeout = Duration::from_secs(2);
    config
}

pub fn room(name: &str) -> LogKey {
    LogKey { kind: LogKind::Room, name: Arc::from(name) }
}

pub fn body(n: usize) -> Box<RawValue> {
    RawValue::from_string(format!("{{\"n\":{n},\"text\":\"hello \\\"{n}\\\"\"}}")).expect("valid JSON")
}

pub async fn connect(config: ClusterConfig) -> Engine {
    tokio::time::timeout(PATIENCE, Engine::connect(config)).await.expect("connect in time").expect("connect")
}

pub async fn publish(
    engine: &Engine,
    log: &LogKey,
    n: usize,
) -> Result<switchboard_server::cluster::Published, ClusterError> {
    let body = body(n);
    engine.publish(log, Outgoing { from: "ann", body: &body, idempotency: None }).await
}

/// The next event other than the periodic `Alive`.
pub async fn next_event(events: &mut Receiver<SubscriberEvent>) -> SubscriberEvent {
    loop {
        let event =
            tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event in time").expect("subscriber running");
        if !matches!(event, SubscriberEvent::Alive) {
            return event;
        }
    }
}

pub async fn next_publication(events: &mut Receiver<SubscriberEvent>) -> Publication {
    match next_event(events).await {
        SubscriberEvent::Publication(publication) => publication,
        other => panic!("expected a publication, got {other:?}"),
    }
}

#[tokio::test]
async fn seq_is_gapless_and_ordered_under_two_concurrent_publishers() {
    let Some(redis) = RedisServer::start("seq_is_gapless_and_ordered_under_two_concurrent_publishers") else { return };
    let (a, b) = (connect(config(&redis.url(), "a")).await, connect(config(&redis.url(), "b")).await);
    let (subscriber, mut events) = a.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    let run = |engine: Engine| {
        let lobby = lobby.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..100 {
                seqs.push(publish(&engine, &lobby, n).await.expect("publish").seq);
            }
            seqs
        })
    };
    let (from_a, from_b) = (run(a.clone()), run(b.clone()));
    let (from_a, from_b) = (from_a.await.expect("a"), from_b.await.expect("b"));
    assert!(from_a.windows(2).all(|w| w[0] < w[1]) && from_b.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<u64> = from_a.into_iter().chain(from_b).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>(), "every seq once, no gap");
    let stored: Vec<u64> = a.after(&lobby, 0, 500).await.expect("read").iter().map(|m| m.seq).collect();
    assert_eq!(stored, (1..=200).collect::<Vec<u64>>());
    let mut last_ts = 0;
    for seq in 1..=200 {
        let publication = next_publication(&mut events).await;
        assert_eq!((publication.message.seq, &*publication.log.name), (seq, "lobby"), "in seq order, once");
        assert!(publication.message.ts >= last_ts, "ts never goes backwards");
        last_ts = publication.message.ts;
    }
    // Nothing else was queued: the next event is the next publish.
    publish(&b, &lobby, 999).await.expect("publish");
    let publication = next_publication(&mut events).await;
    assert_eq!(publication.message.seq, 201);
    assert!(publication.message.body.get().contains("\"n\":999"), "body intact: {}", publication.message.body.get());
}

#[tokio::test]
async fn epoch_holds_until_the_meta_is_lost() {
    let Some(redis) = RedisServer::start("epoch_holds_until_the_meta_is_lost") else { return };
    let engine = connect(config(&redis.url(), "a")).await;
    let lobby = room("lobby");
    let first = publish(&engine, &lobby, 1).await.expect("publish");
    let second = publish(&engine, &lobby, 2).await.expect("publish");
    assert_eq!((first.seq, second.seq, first.epoch), (1, 2, second.epoch));
    assert!(first.epoch > 0 && !first.duplicate);
    let meta_key = engine.keys().log(&lobby).meta;
    assert_eq!(redis.cli(&["DEL", &meta_key]).trim(), "1");
    let third = publish(&engine, &lobby, 3).await.expect("publish");
    assert_ne!(third.epoch, first.epoch, "a lost meta starts a new epoch");
    assert_eq!(third.seq, 1);
    let history = engine.after(&lobby, 0, 10).await.expect("read");
    assert_eq!(history.len(), 1, "the old epoch's history went with it");
    let meta = engine.meta(&lobby).await.expect("meta").expect("exists");
    assert_eq!((meta.epoch, meta.top_seq, meta.first_seq), (third.epoch, 1, 1));
}

#[tokio::test]
async fn an_idempotency_repeat_gets_the_first_answer() {
    let Some(redis) = RedisServer::start("an_idempotency_repeat_gets_the_first_answer") else { return };
    let engine = connect(config(&redis.url(), "a")).await;
    let lobby = room("lobby");
    let text = body(1);
    let once = |scope: &'static str| Outgoing { from: "ann", body: &text, idempotency: Some(scope) };
    let first = engine.publish(&lobby, once("ann:lobby:k1")).await.expect("publish");
    let again = engine.publish(&lobby, once("ann:lobby:k1")).await.expect("publish");
    assert!(!first.duplicate && again.duplicate);
    assert_eq!((again.seq, again.epoch, again.ts), (first.seq, first.epoch, first.ts));
    let other = engine.publish(&lobby, once("ann:lobby:k2")).await.expect("publish");
    assert_eq!((other.seq, other.duplicate), (2, false));
    assert_eq!(engine.meta(&lobby).await.expect("meta").expect("exists").top_seq, 2, "the repeat stored nothing");
}

/// One script stores a batch in the order given, each message once: a
/// repeat within the batch or of an earlier batch gets the first answer.
#[tokio::test]
async fn a_batch_is_stored_and_published_in_order_with_repeats_answered_once() {
    let Some(redis) = RedisServer::start("a_batch_is_stored_and_published_in_order") else { return };
    let engine = connect(config(&redis.url(), "a")).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    let bodies: Vec<_> = (0..6).map(body).collect();
    let message =
        |n: usize, scope: Option<&'static str>| Outgoing { from: "ann", body: &bodies[n], idempotency: scope };
    let first = [message(0, Some("k1")), message(1, None), message(2, Some("k1")), message(3, Some("k2"))];
    let answers = engine.publish_batch(&lobby, &first).await.expect("publish batch");
    let seqs: Vec<(u64, bool)> = answers.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(seqs, [(1, false), (2, false), (1, true), (3, false)], "the repeat within the batch stored nothing");
    assert!(answers.iter().all(|a| a.epoch == answers[0].epoch && a.ts >= answers[0].ts));
    let second = [message(4, Some("k2")), message(5, None)];
    let answers = engine.publish_batch(&lobby, &second).await.expect("publish batch");
    let seqs: Vec<(u64, bool)> = answers.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(seqs, [(3, true), (4, false)], "a repeat of an earlier batch gets its first answer");
    let stored: Vec<String> =
        engine.after(&lobby, 0, 10).await.expect("read").iter().map(|m| m.body.get().to_owned()).collect();
    let expected: Vec<String> = [0, 1, 3, 5].iter().map(|&n| bodies[n].get().to_owned()).collect();
    assert_eq!(stored, expected, "stored in the order given, repeats left out");
    for (seq, n) in [(1, 0), (2, 1), (3, 3), (4, 5)] {
        let publication = next_publication(&mut events).await;
        assert_eq!(publication.message.seq, seq, "published in seq order, once");
        assert_eq!(publication.message.body.get(), bodies[n].get());
    }
    assert_eq!(engine.meta(&lobby).await.expect("meta").expect("exists").top_seq, 4);
}

#[tokio::test]
async fn history_is_bounded_and_read_by_range() {
    let Some(redis) = RedisServer::start("history_is_bounded_and_read_by_range") else { return };
    let mut settings = config(&redis.url(), "a");
    settings.history_max_len = 10;
    let engine = connect(settings).await;
    let (lobby, inbox) = (room("lobby"), LogKey { kind: LogKind::Inbox, name: Arc::from("lobby") });
    assert!(engine.meta(&lobby).await.expect("meta").is_none(), "no such log yet");
    for n in 1..=300 {
        publish(&engine, &lobby, n).await.expect("publish");
    }
    let length: u64 = redis.cli(&["XLEN", &engine.keys().log(&lobby).stream]).trim().parse().expect("XLEN");
    assert!((10..=110).contains(&length), "MAXLEN ~ 10 keeps about 10 (whole macro nodes): {length}");
    let meta = engine.meta(&lobby).await.expect("meta").expect("exists");
    assert_eq!(meta.top_seq, 300);
    assert_eq!(meta.first_seq, 301 - length);
    assert!(meta.first_ts > 0);
    let tail: Vec<u64> = engine.after(&lobby, 295, 3).await.expect("after").iter().map(|m| m.seq).collect();
    assert_eq!(tail, [296, 297, 298]);
    let before: Vec<u64> = engine.before(&lobby, 296, 3).await.expect("before").iter().map(|m| m.seq).collect();
    assert_eq!(before, [293, 294, 295], "the newest 3 below 296, oldest first");
    assert!(engine.after(&lobby, 300, 10).await.expect("after").is_empty());
    assert!(engine.before(&lobby, 1, 10).await.expect("before").is_empty());
    let message = &engine.after(&lobby, 299, 1).await.expect("after")[0];
    assert_eq!((message.from.as_str(), message.body.get()), ("ann", body(300).get()));
    assert!(engine.meta(&inbox).await.expect("meta").is_none(), "an inbox is another log than the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_and_restarted_loses_no_acked_message() {
    let Some(mut redis) = RedisServer::start("a_redis_killed_and_restarted_loses_no_acked_message") else { return };
    let settings = config(&redis.url(), "a");
    let limit = settings.command_timeout;
    let engine = connect(settings).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    let mut acked = Vec::new();
    for n in 0..50 {
        acked.push(publish(&engine, &lobby, n).await.expect("publish"));
        assert_eq!(next_publication(&mut events).await.message.seq, acked[n].seq);
    }
    redis.kill9();
    let started = Instant::now();
    let refused = publish(&engine, &lobby, 50).await.expect_err("no ack while redis is down");
    assert!(refused.is_unavailable(), "{refused:?}");
    assert!(started.elapsed() < limit + Duration::from_secs(1), "failed fast: {:?}", started.elapsed());
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Lost(LostReason::Disconnected)));
    assert!(!subscriber.is_live());
    redis.restart();
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Resubscribed));
    let stored = engine.after(&lobby, 0, 100).await.expect("read after restart");
    let stored: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(stored, (1..=50).collect::<Vec<u64>>(), "every acked publish survived kill -9");
    let next = publish(&engine, &lobby, 51).await.expect("publish after restart");
    assert_eq!((next.seq, next.epoch), (51, acked[0].epoch), "seq and epoch carry on from the AOF");
    assert_eq!(next_publication(&mut events).await.message.seq, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_noticed_and_restored() {
    let Some(redis) = RedisServer::start("a_killed_subscription_is_noticed_and_restored") else { return };
    let engine = connect(config(&redis.url(), "a")).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    assert_eq!(redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).trim(), "1", "one pub/sub connection killed");
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Lost(_)));
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Resubscribed));
    assert!(subscriber.is_live());
    let published = publish(&engine, &lobby, 1).await.expect("publish");
    assert_eq!(next_publication(&mut events).await.message.seq, published.seq, "the room is subscribed again");
}

#[tokio::test]
async fn presence_joins_and_leaves_once_across_nodes() {
    let Some(redis) = RedisServer::start("presence_joins_and_leaves_once_across_nodes") else { return };
    let (a, b) = (connect(config(&redis.url(), "a")).await, connect(config(&redis.url(), "b")).await);
    let info = RawValue::from_string(r#"{"name":"Ann"}"#.to_owned()).expect("json");
    let ttl = Duration::from_secs(60);
    let change = |announce, users| PresenceChange { announce, users };
    assert_eq!(a.presence_add("lobby", "1", "ann", &info, ttl).await.expect("add"), change(true, 1), "a join");
    assert_eq!(b.presence_add("lobby", "7", "ann", &info, ttl).await.expect("add"), change(false, 1), "on b too");
    assert_eq!(a.presence_add("lobby", "1", "ann", &info, ttl).await.expect("refresh"), change(false, 1), "a refresh");
    assert_eq!(b.presence_add("lobby", "8", "bob", &info, ttl).await.expect("add"), change(true, 2));
    let count = b.presence_count("lobby").await.expect("count");
    assert_eq!((count.users, count.connections), (2, 3));
    let mut members: Vec<(String, String)> =
        a.presence_list("lobby").await.expect("list").into_iter().map(|m| (m.user, m.info.get().to_owned())).collect();
    members.sort();
    assert_eq!(members, [("ann".into(), r#"{"name":"Ann"}"#.into()), ("bob".into(), r#"{"name":"Ann"}"#.into())]);
    assert_eq!(a.presence_remove("lobby", "1").await.expect("remove"), Some(change(false, 2)), "ann is still on b");
    assert_eq!(a.presence_remove("lobby", "1").await.expect("remove again"), None, "unknown: no leave");
    assert_eq!(b.presence_remove("lobby", "7").await.expect("remove"), Some(change(true, 1)), "ann's last: a leave");
    assert_eq!(a.presence_count("lobby").await.expect("count").users, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_removes_a_dead_nodes_connections() {
    let Some(redis) = RedisServer::start("the_reaper_removes_a_dead_nodes_connections") else { return };
    let settings = |node: &str| {
        let mut settings = config(&redis.url(), node);
        settings.node_timeout = Duration::from_secs(1);
        settings
    };
    let (dead, alive, leaving) =
        (connect(settings("dead")).await, connect(settings("alive")).await, connect(settings("leaving")).await);
    let info = RawValue::from_string("{}".to_owned()).expect("json");
    let ttl = Duration::from_secs(600);
    for (engine, conn, user) in [(&dead, "1", "ann"), (&dead, "2", "bob"), (&alive, "1", "bob"), (&leaving, "1", "cid")]
    {
        engine.heartbeat().await.expect("beat");
        engine.presence_add("lobby", conn, user, &info, ttl).await.expect("add");
    }
    leaving.leave_after(Duration::from_secs(4)).await.expect("graceful leave");
    let started = Instant::now();
    let mut reaped = Vec::new();
    while reaped.is_empty() {
        assert!(started.elapsed() < PATIENCE, "the dead node was never reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!alive.heartbeat().await.expect("beat"), "a live node is never reaped");
        reaped = alive.reap().await.expect("reap");
    }
    assert_eq!(reaped, [Reaped { room: "lobby".into(), user: "ann".into(), users: 2 }], "bob is still on a live node");
    assert!(started.elapsed() < Duration::from_secs(4), "the leaving node is kept for its grace");
    let users: Vec<String> = alive.presence_list("lobby").await.expect("list").into_iter().map(|m| m.user).collect();
    assert_eq!(users.len(), 2, "bob and cid stay: {users:?}");
    while !reaped.iter().any(|r| r.user == "cid") {
        assert!(started.elapsed() < PATIENCE, "the leaving node was never reaped after its grace");
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive.heartbeat().await.expect("beat");
        reaped = alive.reap().await.expect("reap");
    }
    assert!(dead.heartbeat().await.expect("beat"), "a reaped node learns it must add its connections again");
    assert_eq!(alive.presence_count("lobby").await.expect("count").users, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_pubsub_on_a_three_master_cluster() {
    let Some(cluster) = RedisCluster::start("sharded_pubsub_on_a_three_master_cluster") else { return };
    let (a, b) = (connect(config(&cluster.url(), "a")).await, connect(config(&cluster.url(), "b")).await);
    assert!(a.is_cluster());
    let (subscriber, mut events) = a.subscriber().await.expect("subscriber");
    let rooms: Vec<LogKey> = (0..12).map(|n| room(&format!("room-{n}"))).collect();
    subscriber.subscribe(&rooms).await.expect("subscribe");
    for round in 0..5 {
        for log in &rooms {
            let published = publish(&b, log, round).await.expect("publish");
            assert_eq!(published.seq, round as u64 + 1);
        }
    }
    let mut next = std::collections::HashMap::new();
    for _ in 0..rooms.len() * 5 {
        let publication = next_publication(&mut events).await;
        let expected = next.entry(publication.log.name.to_string()).or_insert(1u64);
        assert_eq!(publication.message.seq, *expected, "per-room order, exactly once");
        *expected += 1;
    }
    assert!(next.values().all(|&n| n == 6), "every room got its 5: {next:?}");
    let info = RawValue::from_string("{}".to_owned()).expect("json");
    assert!(
        b.presence_add("room-3", "1", "ann", &info, Duration::from_secs(60))
            .await
            .expect("presence on a cluster")
            .announce
    );
    let meta = a.meta(&rooms[7]).await.expect("meta").expect("exists");
    assert_eq!((meta.top_seq, meta.first_seq), (5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_replaces_a_subscription_that_died_quietly() {
    let Some(redis) = RedisServer::start("the_probe_replaces_a_subscription_that_died_quietly") else { return };
    let proxy = FreezingProxy::start(redis.port).await;
    let engine = connect(config(&proxy.url(), "a")).await;
    assert_eq!(proxy.connections(), 1, "the command connection");
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    assert_eq!(proxy.connections(), 2, "and the pub/sub connection");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    proxy.freeze(1);
    // Redis still counts the subscriber, so only the missing echo can tell.
    let lost = publish(&engine, &lobby, 1).await.expect("publish");
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Lost(LostReason::ProbeFailed)));
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Resubscribed));
    assert!(proxy.connections() >= 3, "a new pub/sub connection");
    let meta = engine.meta(&lobby).await.expect("meta").expect("exists");
    assert_eq!(meta.top_seq, lost.seq, "what the frozen connection missed is in the stream");
    let published = publish(&engine, &lobby, 2).await.expect("publish");
    let publication = next_publication(&mut events).await;
    assert_eq!(publication.message.seq, published.seq, "the new connection delivers, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed() {
    let Some(mut set) = RedisSentinelSet::start("a_sentinel_failover_is_followed") else { return };
    let engine = connect(config(&set.url(), "a")).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    let first = publish(&engine, &lobby, 1).await.expect("publish to the first master");
    assert_eq!(next_publication(&mut events).await.message.seq, first.seq);
    set.wait_for_replica();
    set.master.kill9();
    let started = Instant::now();
    let mut refused = 0;
    let moved = loop {
        match publish(&engine, &lobby, 2).await {
            Ok(published) => break published,
            Err(error) => {
                assert!(started.elapsed() < PATIENCE, "never followed the failover: {error}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(refused > 0, "the dead master refused publishes until the sentinel moved it");
    assert_eq!((moved.seq, moved.epoch), (2, first.epoch), "the promoted replica carries the log on");
    assert!(set.replica.cli(&["ROLE"]).starts_with("master"), "the engine writes to the promoted replica");
    assert!(matches!(next_event(&mut events).await, SubscriberEvent::Lost(_)));
    loop {
        match next_event(&mut events).await {
            SubscriberEvent::Resubscribed => break,
            SubscriberEvent::Publication(publication) => assert_eq!(publication.message.seq, 2),
            other => panic!("expected the subscription back, got {other:?}"),
        }
    }
    let third = publish(&engine, &lobby, 3).await.expect("publish");
    loop {
        let publication = next_publication(&mut events).await;
        if publication.message.seq == third.seq {
            break;
        }
        assert_eq!(publication.message.seq, 2, "only the one published during the failover may come first");
    }
}

#[tokio::test]
async fn unsubscribed_logs_deliver_nothing() {
    let Some(redis) = RedisServer::start("unsubscribed_logs_deliver_nothing") else { return };
    let engine = connect(config(&redis.url(), "a")).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let (lobby, quiet) = (room("lobby"), room("quiet"));
    let dm = LogKey { kind: LogKind::Inbox, name: Arc::from("ann") };
    subscriber.subscribe(&[lobby.clone(), quiet.clone(), dm.clone()]).await.expect("subscribe");
    subscriber.unsubscribe(std::slice::from_ref(&quiet)).await.expect("unsubscribe");
    publish(&engine, &quiet, 1).await.expect("publish");
    publish(&engine, &dm, 2).await.expect("publish");
    publish(&engine, &lobby, 3).await.expect("publish");
    let first = next_publication(&mut events).await;
    assert_eq!((first.log.kind, &*first.log.name), (LogKind::Inbox, "ann"), "the quiet room's message never came");
    assert_eq!(&*next_publication(&mut events).await.log.name, "lobby");
}

#[tokio::test]
async fn a_slow_consumer_gets_drops_counted_not_unbounded_memory() {
    let Some(redis) = RedisServer::start("a_slow_consumer_gets_drops_counted_not_unbounded_memory") else { return };
    let mut settings = config(&redis.url(), "a");
    settings.subscriber_buffer = 4;
    // No probe: a dropped echo would count as a dead subscription.
    settings.probe_interval = Duration::from_secs(600);
    let engine = connect(settings).await;
    let (subscriber, mut events) = engine.subscriber().await.expect("subscriber");
    let lobby = room("lobby");
    subscriber.subscribe(std::slice::from_ref(&lobby)).await.expect("subscribe");
    for n in 1..=200 {
        publish(&engine, &lobby, n).await.expect("publish");
    }
    let (mut delivered, mut dropped, mut last) = (0u64, 0u64, 0u64);
    while delivered + dropped < 200 {
        match next_event(&mut events).await {
            SubscriberEvent::Publication(publication) => {
                assert!(publication.message.seq > last, "still in order");
                (last, delivered) = (publication.message.seq, delivered + 1);
            }
            SubscriberEvent::Dropped(count) => dropped += count,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(dropped > 0 && delivered < 200, "the small buffer overflowed: {delivered} delivered, {dropped} dropped");
}
