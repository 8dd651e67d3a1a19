//! The client library (`switchboard_client::Client`) against a real
//! server: recovery after its connection is cut while messages are
//! published, `recovered: false` after a memory-storage server restarts
//! (a new epoch), and a `send` whose ack was lost resent and stored once.
//! A proxy between client and server cuts and holds connections
//! (`proxy.rs`).

use crate::proxy::Proxy;
use crate::support::{request, wait_for, within, TestServer};
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_client::{Backoff, Client, Error, Event, Events, Recovery};

/// Quick retries: tests wait for reconnects, not for backoff.
const FAST: Backoff = Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(200), max_attempts: None };

async fn connect(proxy: &Proxy, name: &str) -> (Client, Events) {
    let builder = Client::builder(&proxy.url()).name(name).backoff(FAST).jitter_seed(7);
    within(builder.connect()).await.expect("the client connects")
}

/// The next event that `wanted` picks out; the events before it are returned too.
async fn until(events: &mut Events, mut wanted: impl FnMut(&Event) -> bool) -> (Event, Vec<Event>) {
    within(async {
        let mut before = Vec::new();
        loop {
            let event = events.next().await.expect("the client is running");
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    })
    .await
}

/// The `n` of each message among `events`, with its seq.
fn numbered(events: &[Event]) -> Vec<(u64, Value)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Message(message) => Some((message.seq.expect("stored"), message.body["n"].clone())),
            _ => None,
        })
        .collect()
}

/// Sends `{"n": n}` to `room` from a raw connection and returns its seq.
async fn publish(publisher: &mut switchboard_client::Connection, room: &str, n: u64) -> u64 {
    let ack = request(publisher, json!({"op": "send", "room": room, "body": {"n": n}})).await;
    ack["seq"].as_u64().unwrap_or_else(|| panic!("stored: {ack}"))
}

#[tokio::test]
async fn a_cut_connection_recovers_exactly_the_messages_published_meanwhile_in_order() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut events) = connect(&proxy, "alice").await;
    let mut bob = server.client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "news"})).await;
    let joined = within(alice.join("news")).await.expect("join");
    assert_eq!((joined.seq, joined.recovered), (0, None));
    for n in 1..=3 {
        publish(&mut bob, "news", n).await;
    }
    let (_, before) = until(&mut events, |event| matches!(event, Event::Message(m) if m.body["n"] == 3)).await;
    assert_eq!(numbered(&before), [(1, json!(1)), (2, json!(2))]);

    proxy.hold();
    proxy.cut();
    until(&mut events, |event| matches!(event, Event::Reconnecting { .. })).await;
    for n in 4..=8 {
        publish(&mut bob, "news", n).await;
    }
    proxy.release();
    let (recovered, meanwhile) = until(&mut events, |event| matches!(event, Event::Recovered(_))).await;
    let expected = Recovery { room: Some("news".into()), recovered: true, replayed: 5, epoch_changed: false };
    assert_eq!(recovered, Event::Recovered(expected));
    assert!(meanwhile.iter().any(|event| matches!(event, Event::Connected { reconnected: true, .. })), "{meanwhile:?}");
    let missed: Vec<(u64, Value)> = (4..=8).map(|n| (n, json!(n))).collect();
    assert_eq!(numbered(&meanwhile), missed, "each missed message once, in seq order");

    publish(&mut bob, "news", 9).await;
    let (live, between) = until(&mut events, |event| matches!(event, Event::Message(_))).await;
    assert_eq!(numbered(&[live]), [(9, json!(9))], "then the live stream, nothing repeated: {between:?}");
    assert_eq!(alice.joined(), ["news"]);
    assert_eq!(alice.position("news").map(|position| position.seq), Some(9));
    alice.close().await;
    let (closed, _) = until(&mut events, |event| matches!(event, Event::Closed { .. })).await;
    assert_eq!(closed, Event::Closed { reason: "closed by the caller".into() });
}

#[tokio::test]
async fn a_restarted_memory_server_is_reported_as_recovered_false_with_a_new_epoch() {
    let first = TestServer::start().await;
    let proxy = Proxy::start(first.addr).await;
    let (alice, mut events) = connect(&proxy, "alice").await;
    // Joined before the room's first message: the client learns the epoch later.
    assert_eq!(within(alice.join("news")).await.expect("join").epoch, None);
    let mut bob = first.client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "news"})).await;
    for n in 1..=2 {
        publish(&mut bob, "news", n).await;
    }
    until(&mut events, |event| matches!(event, Event::Message(m) if m.seq == Some(2))).await;
    let old_epoch = within(async {
        loop {
            match alice.position("news").and_then(|position| position.epoch) {
                Some(epoch) => return epoch,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;

    proxy.hold();
    within(first.shutdown()).await.expect("the first server stops");
    until(&mut events, |event| matches!(event, Event::Reconnecting { .. })).await;
    let second = TestServer::start().await;
    let mut carol = second.client("carol").await;
    request(&mut carol, json!({"op": "join", "room": "news"})).await;
    for n in 10..=12 {
        publish(&mut carol, "news", n).await;
    }
    proxy.retarget(second.addr);
    proxy.release();

    let (recovered, meanwhile) = until(&mut events, |event| matches!(event, Event::Recovered(_))).await;
    let expected = Recovery { room: Some("news".into()), recovered: false, replayed: 0, epoch_changed: true };
    assert_eq!(recovered, Event::Recovered(expected), "the lost history is reported, not hidden");
    assert_eq!(numbered(&meanwhile), [], "another history's numbers are not replayed as if they were ours");
    let new_epoch = alice.position("news").and_then(|position| position.epoch);
    assert!(new_epoch.is_some_and(|epoch| epoch != old_epoch), "{new_epoch:?} after {old_epoch}");
    publish(&mut carol, "news", 13).await;
    let (live, _) = until(&mut events, |event| matches!(event, Event::Message(_))).await;
    assert_eq!(numbered(&[live]), [(4, json!(13))], "the new history's live messages arrive");
}

#[tokio::test]
async fn a_send_whose_ack_was_lost_is_resent_and_stored_once_and_other_commands_fail() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut events) = connect(&proxy, "alice").await;
    within(alice.join("orders")).await.expect("join");
    let mut bob = server.client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "orders"})).await;

    proxy.swallow(true);
    let sender = alice.clone();
    let sending = tokio::spawn(async move { sender.send("orders", json!({"n": 1})).await });
    let stored = wait_for(&mut bob, |event| event["ev"] == "msg").await;
    let asker = alice.clone();
    let asking = tokio::spawn(async move { asker.presence("orders").await });
    // The presence request is on its way: bob's ping after it is answered.
    request(&mut bob, json!({"op": "ping"})).await;
    proxy.cut();
    proxy.swallow(false);

    let ack = within(sending).await.expect("joined").expect("acked after the resend");
    assert_eq!((ack.seq, ack.duplicate), (stored["seq"].as_u64().expect("seq"), true), "{stored}");
    let refused = within(asking).await.expect("joined");
    assert!(
        matches!(refused, Err(Error::Disconnected { op: "presence" }) | Err(Error::NotConnected { .. })),
        "{refused:?}"
    );
    let history = request(&mut bob, json!({"op": "history", "room": "orders"})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "stored once: {history}");
    let (recovered, meanwhile) = until(&mut events, |event| matches!(event, Event::Recovered(_))).await;
    assert_eq!(numbered(&meanwhile), [(1, json!(1))], "alice sees her message once, replayed");
    assert!(matches!(recovered, Event::Recovered(Recovery { recovered: true, replayed: 1, .. })), "{recovered:?}");
    assert_eq!(server.metric("switchboard_idempotent_repeats_total").await, 1.0);
    assert_eq!(proxy.passed(), 2, "one reconnect");
}

#[tokio::test]
async fn the_client_speaks_raw_tcp_json_lines_with_typed_commands() {
    let server = TestServer::start().await;
    let url = format!("tcp://{}?name=dave", server.tcp);
    let (dave, mut events) = within(Client::connect(&url)).await.expect("connect over raw TCP");
    assert_eq!(dave.hello().map(|hello| hello.user), Some("dave".into()));
    within(dave.join("lobby")).await.expect("join");
    let mut erin = server.client("erin").await;
    request(&mut erin, json!({"op": "join", "room": "lobby"})).await;
    let ack = within(dave.send("lobby", json!({"n": 1}))).await.expect("stored");
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    let (event, _) = until(&mut events, |event| matches!(event, Event::Message(_))).await;
    assert_eq!(numbered(&[event]), [(1, json!(1))]);
    let presence = within(dave.presence("lobby")).await.expect("presence");
    assert_eq!(presence.users, ["dave", "erin"]);
    assert_eq!(within(dave.rooms()).await.expect("rooms"), ["lobby"]);
    let page = within(dave.history("lobby", None, Some(10))).await.expect("history");
    assert_eq!(page.messages.len(), 1);
    within(dave.dm("erin", "psst")).await.expect("dm stored");
    assert_eq!(wait_for(&mut erin, |event| event["ev"] == "dm").await["from"], "dave");
    let refused = within(dave.send("elsewhere", "x")).await.expect_err("not a member");
    let code = refused.server().map(|refusal| refusal.code.clone());
    assert_eq!(code.as_deref(), Some("not_member"), "a wire code, kept apart: {refused}");
    within(dave.leave("lobby")).await.expect("leave");
    assert!(dave.joined().is_empty());
}

#[tokio::test]
async fn dms_sent_while_cut_off_arrive_after_the_reconnect_once_each() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (_alice, mut events) = connect(&proxy, "alice").await;
    let mut bob = server.client("bob").await;
    request(&mut bob, json!({"op": "dm", "to": "alice", "body": {"n": 1}})).await;
    let (first, _) = until(&mut events, |event| matches!(event, Event::Direct(_))).await;
    assert!(matches!(first, Event::Direct(ref dm) if dm.seq == 1 && dm.from == "bob"), "{first:?}");

    proxy.hold();
    proxy.cut();
    until(&mut events, |event| matches!(event, Event::Reconnecting { .. })).await;
    for n in 2..=3 {
        request(&mut bob, json!({"op": "dm", "to": "alice", "body": {"n": n}})).await;
    }
    proxy.release();
    let (recovered, meanwhile) = until(&mut events, |event| matches!(event, Event::Recovered(_))).await;
    assert_eq!(
        recovered,
        Event::Recovered(Recovery { room: None, recovered: true, replayed: 2, epoch_changed: false })
    );
    let seqs: Vec<u64> = meanwhile
        .iter()
        .filter_map(|event| match event {
            Event::Direct(dm) => Some(dm.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [2, 3], "the missed DMs, once each: {meanwhile:?}");
}
