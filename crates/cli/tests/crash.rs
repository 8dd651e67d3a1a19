//! Crash safety: a client sends 10,000 messages with ids and records every
//! ack while the server process is killed with SIGKILL mid-stream; after a
//! restart on the same data directory every acked message is in history,
//! in order, and `seq` has no gaps. One test per sync mode: each promises
//! to survive a crash of the process (they differ on power loss).

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::Server;
use switchboard_client::Connection;
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: u64 = 10_000;
/// Acks to collect before the kill.
const KILL_AFTER: usize = 3_000;
/// Sends in flight at once.
const WINDOW: u64 = 200;
const PATIENCE: Duration = Duration::from_secs(30);

/// Storage on `data` with `sync`.
fn server_flags(data: &std::path::Path, sync: &str) -> Vec<std::ffi::OsString> {
    vec!["--data".into(), data.into(), "--sync".into(), sync.into()]
}

/// Sends every message (ids 1..=MESSAGES) with a window of outstanding
/// sends and kills the server after `KILL_AFTER` acks. Returns id → seq of
/// every ack received before the connection died.
async fn send_until_killed(server: &mut Server) -> BTreeMap<u64, u64> {
    let mut client = Connection::connect(&server.url("writer")).await.expect("connect");
    let joined = client.request(json!({"op": "join", "room": "ledger"})).await.expect("join");
    assert_eq!(joined["ok"], json!(true));
    let (mut sink, mut stream) = client.socket().expect("a WebSocket").split();
    let (mut acked, mut sent) = (BTreeMap::new(), 0u64);
    let mut killed = false;
    loop {
        while sent < MESSAGES && sent < acked.len() as u64 + WINDOW && !killed {
            sent += 1;
            let send = json!({"op": "send", "room": "ledger", "id": sent, "body": {"id": sent}});
            if sink.send(Message::text(send.to_string())).await.is_err() {
                break;
            }
        }
        let frame = match tokio::time::timeout(PATIENCE, stream.next()).await.expect("server answers") {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let event: Value = serde_json::from_str(&frame).expect("json");
        if let (Some(id), Some(seq)) = (event["re"].as_u64(), event["seq"].as_u64()) {
            assert_eq!(event["ok"], json!(true), "{event}");
            acked.insert(id, seq);
        }
        if !killed && acked.len() >= KILL_AFTER {
            server.kill();
            killed = true;
        }
        if acked.len() as u64 == MESSAGES {
            break;
        }
    }
    assert!(killed, "the server was killed mid-stream (acked {})", acked.len());
    acked
}

/// The whole stored history of `room`, oldest first, paging backwards.
async fn whole_history(client: &mut Connection, room: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = client
            .request(json!({"op": "history", "room": room, "before": before, "limit": 500}))
            .await
            .expect("history");
        let batch = page["messages"].as_array().expect("messages").clone();
        if let Some(oldest) = batch.first() {
            before = oldest["seq"].clone();
        }
        messages.splice(0..0, batch);
        if page["more"] != json!(true) {
            return messages;
        }
    }
}

async fn crash_and_check(sync: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(server_flags(dir.path(), sync));
    let acked = send_until_killed(&mut server).await;
    assert!(acked.len() >= KILL_AFTER && (acked.len() as u64) < MESSAGES, "killed mid-stream: {}", acked.len());

    let server = Server::start(server_flags(dir.path(), sync));
    let mut reader = Connection::connect(&server.url("auditor")).await.expect("connect after restart");
    // History needs membership.
    let next = reader.request(json!({"op": "join", "room": "ledger"})).await.expect("join");
    let history = tokio::time::timeout(PATIENCE, whole_history(&mut reader, "ledger")).await.expect("history in time");
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq has no gaps");
    let ids: Vec<u64> = history.iter().map(|m| m["body"]["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "history is in sending order");
    let stored: BTreeMap<u64, u64> = ids.iter().copied().zip(seqs.iter().copied()).collect();
    for (id, seq) in &acked {
        assert_eq!(stored.get(id), Some(seq), "acked message {id} (seq {seq}) is stored under its acked seq");
    }
    assert_eq!(next["seq"], json!(seqs.len()), "the room's seq continues from what is stored");
    eprintln!("{sync}: {} acked before SIGKILL, {} stored", acked.len(), seqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_with_sync_always() {
    crash_and_check("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_with_sync_batch() {
    crash_and_check("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_with_sync_none() {
    crash_and_check("none").await;
}
