//! Inbox fairness: one sender cannot push everyone else's DMs out of an
//! offline user's inbox, and what it loses is counted and visible.

use crate::support::{request, wait_for, within, TestServer};
use serde_json::json;
use std::collections::HashMap;

#[tokio::test]
async fn a_dm_flood_keeps_the_newest_per_sender_and_everyone_elses_dms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_owned();
    let server = TestServer::with(move |config| {
        config.storage.backend = switchboard_server::config::StorageBackend::Sqlite;
        config.data = data;
    })
    .await;
    let mut alice = server.client("alice").await;
    for n in 0..2 {
        let reply = request(&mut alice, json!({"op": "dm", "to": "bob", "body": {"alice": n}})).await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    // 1,100 DMs: past the inbox's bound of 1,000, which alone would push
    // alice's two out. The sender keeps its newest 100.
    let mut spammer = server.client("spammer").await;
    for n in 0..1100 {
        let dm = json!({"op": "dm", "to": "bob", "body": {"spam": n}});
        spammer.send_text(dm.to_string()).await.expect("send");
    }
    let last = request(&mut spammer, json!({"op": "dm", "to": "bob", "body": {"spam": "last"}})).await;
    assert_eq!(last["ok"], json!(true), "{last}");
    let dropped = "switchboard_messages_dropped_total{reason=\"inbox_per_sender\"}";
    within(async {
        while server.metric(dropped).await < 1001.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let mut bob = server.client("bob").await;
    let waiting = bob.hello["inbox"]["waiting"].as_u64().expect("waiting");
    assert_eq!(waiting, 102, "{}", bob.hello);
    let reply = request(&mut bob, json!({"op": "inbox", "since": 0})).await;
    assert_eq!(reply["recovered"], json!(false), "the fetch crosses what was removed: {reply}");
    let mut from: HashMap<String, u64> = HashMap::new();
    let replayed = wait_for(&mut bob, |event| {
        if event["ev"] == json!("dm") {
            *from.entry(event["from"].as_str().expect("from").to_owned()).or_default() += 1;
        }
        event["ev"] == json!("replayed")
    })
    .await;
    assert_eq!(replayed["recovered"], json!(false));
    assert_eq!(from.get("alice"), Some(&2), "{from:?}");
    assert_eq!(from.get("spammer"), Some(&100), "{from:?}");
    // A fetch from after the gap is whole.
    let after = request(&mut bob, json!({"op": "inbox", "since": reply["seq"]})).await;
    assert_eq!(after["recovered"], json!(true), "{after}");
    assert_eq!(server.metric(dropped).await, 1001.0);
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"inbox_per_sender\"}").await, 1001.0);
}
