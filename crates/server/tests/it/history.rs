//! Stored history over real sockets: recovery with `since`, retention,
//! epochs, history pages, volatile messages, offline DMs and the data
//! directory's checks.

use crate::support::{is_msg, request, wait_for, within, Lines, TestServer};
use serde_json::{json, Value};
use std::path::Path;
use switchboard_client::Connection;
use switchboard_server::config::StorageBackend;
use switchboard_server::store::sqlite::{Sqlite, DATABASE_FILE};
use switchboard_server::store::SyncMode;
use switchboard_server::{Config, Listeners};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn on_disk(dir: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |config| {
        config.storage.backend = StorageBackend::Sqlite;
        config.data = dir.to_owned();
    }
}

/// Publishes `{"n": i}` to `room` until told to stop; returns what was acked.
fn keep_publishing(
    server: &TestServer,
    name: &str,
    room: &'static str,
) -> (tokio::sync::watch::Sender<bool>, JoinHandle<u64>) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let url = server.url(name);
    let task = tokio::spawn(async move {
        let mut client = within(Connection::connect(&url)).await.expect("publisher connects");
        request(&mut client, json!({"op": "join", "room": room})).await;
        let mut acked = 0;
        while !*stopped.borrow_and_update() {
            let reply = request(&mut client, json!({"op": "send", "room": room, "body": {"n": acked}})).await;
            assert_eq!(reply["ok"], json!(true), "{reply}");
            acked += 1;
            tokio::task::yield_now().await;
        }
        acked
    });
    (stop, task)
}

#[tokio::test]
async fn a_rejoin_with_since_gets_exactly_what_was_missed_then_the_live_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    rejoin_while_publishing(&TestServer::with(on_disk(dir.path())).await, 100, 2).await;
}

/// The same with a replay of many pages and more publishers (memory
/// storage commits faster, so far more live messages race the replay).
/// Alice's 3,000 sends may take less than a second here, past the default
/// per-connection rate (1,000/s, burst 2,000), so this test lifts it: it is
/// about replay, and `abuse.rs` covers the limit.
#[tokio::test]
async fn a_long_replay_under_load_switches_to_live_without_gap_or_duplicate() {
    let server = TestServer::with(|config| config.limits.messages_per_second = 0).await;
    rejoin_while_publishing(&server, 3000, 6).await;
}

/// Bob misses exactly `missed` acked messages while disconnected, then
/// rejoins with `since` while `publishers` keep sending.
async fn rejoin_while_publishing(server: &TestServer, missed: usize, publishers: usize) {
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let mut bob = server.client("bob").await;
    let joined = request(&mut bob, json!({"op": "join", "room": "r"})).await;
    assert_eq!(joined["epoch"], Value::Null, "no epoch before the first stored message");
    let first = request(&mut alice, json!({"op": "send", "room": "r", "body": "before"})).await;
    let seen = wait_for(&mut bob, is_msg).await;
    assert_eq!(seen["seq"], first["seq"]);
    let since = seen["seq"].as_u64().expect("seq");
    let epoch = request(&mut alice, json!({"op": "history", "room": "r", "limit": 1})).await["epoch"].clone();
    assert!(epoch.is_u64(), "{epoch}");
    within(bob.close()).await.expect("bob leaves");

    let mut acked = Vec::new();
    for n in 0..missed {
        let reply = request(&mut alice, json!({"op": "send", "room": "r", "body": {"missed": n}})).await;
        acked.push(reply["seq"].as_u64().unwrap_or_else(|| panic!("acked seq: {reply}")));
    }
    assert_eq!(acked, (since + 1..=since + missed as u64).collect::<Vec<_>>(), "seq has no gaps");

    let running: Vec<_> = (0..publishers).map(|i| keep_publishing(server, &format!("p{i}"), "r")).collect();
    let mut bob = server.client("bob").await;
    let rejoin = request(&mut bob, json!({"op": "join", "room": "r", "since": since, "epoch": epoch})).await;
    assert_eq!(rejoin["recovered"], json!(true), "{rejoin}");

    let (mut seqs, mut replayed) = (Vec::new(), None);
    within(async {
        while seqs.len() < missed + 300 {
            let event = bob.next_event().await.expect("event");
            if is_msg(&event) {
                if seqs.len() < missed {
                    assert_eq!(event["body"], json!({"missed": seqs.len()}), "the missed ones come first, in order");
                }
                seqs.push(event["seq"].as_u64().expect("stored messages have a seq"));
            } else if event["ev"] == json!("replayed") {
                replayed = Some(event);
            }
        }
    })
    .await;
    for (stop, task) in running {
        stop.send(true).expect("stop publisher");
        assert!(within(task).await.expect("publisher") > 0);
    }
    let replayed = replayed.expect("a replayed event");
    assert_eq!(replayed["recovered"], json!(true));
    let count = replayed["count"].as_u64().expect("count") as usize;
    assert!(count >= missed, "at least the missed ones are replayed: {replayed}");
    let expected: Vec<u64> = (since + 1..since + 1 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no gap and no duplicate across the switch from replay to live");
}

#[tokio::test]
async fn recovery_is_refused_past_retention_and_volatile_messages_are_not_stored() {
    let server = TestServer::with(|config| config.storage.room_max_messages = 10).await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    for n in 1..=30 {
        request(&mut alice, json!({"op": "send", "room": "r", "body": n})).await;
    }
    // Retention runs on the storage thread after the commits it follows:
    // wait until it has (history's `more` turns false once the room's
    // oldest kept message is seq 21, 10 kept of 30).
    within(async {
        loop {
            let page = request(&mut alice, json!({"op": "history", "room": "r", "limit": 100})).await;
            if page["more"] == json!(false) && page["messages"][0]["seq"] == json!(21) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut bob = server.client("bob").await;
    let trimmed = request(&mut bob, json!({"op": "join", "room": "r", "since": 5})).await;
    assert_eq!((trimmed["recovered"].clone(), trimmed["seq"].clone()), (json!(false), json!(30)));
    // What retention kept is replayed.
    let mut replayed = Vec::new();
    let done = wait_for(&mut bob, |event| {
        if is_msg(event) {
            replayed.push(event["seq"].as_u64().expect("seq"));
        }
        event["ev"] == json!("replayed")
    })
    .await;
    assert_eq!(done["recovered"], json!(true), "nothing went missing during the replay itself");
    assert_eq!(replayed.len(), 10, "only the retained messages: {replayed:?}");
    assert_eq!(replayed, (21..=30).collect::<Vec<u64>>());

    let volatile = request(&mut alice, json!({"op": "send", "room": "r", "body": "cursor", "volatile": true})).await;
    assert_eq!((volatile["volatile"].clone(), volatile.get("seq")), (json!(true), None));
    let live = wait_for(&mut bob, is_msg).await;
    assert_eq!((live["body"].clone(), live["volatile"].clone(), live.get("seq")), (json!("cursor"), json!(true), None));
    let stored = request(&mut alice, json!({"op": "send", "room": "r", "body": "stored"})).await;
    assert_eq!(stored["seq"], json!(31), "a volatile message takes no seq");
    let history = request(&mut bob, json!({"op": "history", "room": "r", "limit": 100})).await;
    let bodies: Vec<Value> =
        history["messages"].as_array().expect("messages").iter().map(|m| m["body"].clone()).collect();
    assert!(!bodies.contains(&json!("cursor")), "volatile messages are absent from history: {bodies:?}");
    assert_eq!(bodies.last(), Some(&json!("stored")));
}

#[tokio::test]
async fn history_pages_backwards() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    for n in 1..=25 {
        request(&mut alice, json!({"op": "send", "room": "r", "body": n})).await;
    }
    let mut pages = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = request(&mut alice, json!({"op": "history", "room": "r", "before": before, "limit": 10})).await;
        let seqs: Vec<u64> =
            page["messages"].as_array().expect("messages").iter().map(|m| m["seq"].as_u64().expect("seq")).collect();
        before = json!(seqs[0]);
        pages.push(seqs);
        if page["more"] == json!(false) {
            break;
        }
    }
    assert_eq!(pages, vec![(16..=25).collect::<Vec<u64>>(), (6..=15).collect(), (1..=5).collect()]);
    // History needs membership (or, in token mode, the token's permission).
    request(&mut alice, json!({"op": "join", "room": "nowhere"})).await;
    let unknown = request(&mut alice, json!({"op": "history", "room": "nowhere"})).await;
    assert_eq!((unknown["messages"].clone(), unknown["epoch"].clone()), (json!([]), Value::Null));
}

#[tokio::test]
async fn an_offline_user_gets_their_dms_on_the_next_connection() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut acked = Vec::new();
    for text in ["are you there?", "call me"] {
        let reply = request(&mut alice, json!({"op": "dm", "to": "carol", "body": text})).await;
        assert_eq!(reply["ok"], json!(true), "a DM to an offline user is stored: {reply}");
        acked.push(reply["seq"].clone());
    }
    assert_eq!(acked, [json!(1), json!(2)]);

    let mut carol = server.client("carol").await;
    assert_eq!(carol.hello["inbox"]["waiting"], json!(2), "{}", carol.hello);
    let epoch = carol.hello["inbox"]["epoch"].clone();
    let fetched = request(&mut carol, json!({"op": "inbox", "since": 0, "epoch": epoch})).await;
    assert_eq!((fetched["recovered"].clone(), fetched["seq"].clone()), (json!(true), json!(2)));
    let mut bodies = Vec::new();
    wait_for(&mut carol, |event| {
        if event["ev"] == json!("dm") {
            bodies.push(event["body"].clone());
        }
        event["ev"] == json!("replayed")
    })
    .await;
    assert_eq!(bodies, [json!("are you there?"), json!("call me")]);

    // Delivered now: the next connection has nothing waiting.
    let again = server.client("carol").await;
    assert_eq!(again.hello["inbox"]["waiting"], json!(0), "{}", again.hello);
}

/// Runs a server on `dir` until `stop` completes; returns what `run` said.
async fn run_on(dir: &Path) -> Result<(), switchboard_server::ServerError> {
    let config = Config { data: dir.to_owned(), ..Config::default() };
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    switchboard_server::run(config, Listeners { http, tcp: None, udp: None }, std::future::ready(())).await
}

#[tokio::test]
async fn restarts_keep_seq_and_epoch_and_a_reset_changes_the_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::with(on_disk(dir.path())).await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    for n in 1..=3 {
        request(&mut alice, json!({"op": "send", "room": "r", "body": n})).await;
    }
    let epoch = request(&mut alice, json!({"op": "history", "room": "r"})).await["epoch"].clone();
    drop(alice);
    within(server.shutdown()).await.expect("stopped");

    let server = TestServer::with(on_disk(dir.path())).await;
    let mut alice = server.client("alice").await;
    let rejoin = request(&mut alice, json!({"op": "join", "room": "r", "since": 3, "epoch": epoch})).await;
    assert_eq!(
        (rejoin["recovered"].clone(), rejoin["epoch"].clone(), rejoin["seq"].clone()),
        (json!(true), epoch.clone(), json!(3))
    );
    let next = request(&mut alice, json!({"op": "send", "room": "r", "body": 4})).await;
    assert_eq!(next["seq"], json!(4), "seq continues after a restart");
    drop(alice);
    within(server.shutdown()).await.expect("stopped");

    let mut store = Sqlite::open(dir.path(), SyncMode::Always).expect("open for reset");
    let new_epoch = store.reset_room("r").expect("reset").expect("room existed");
    drop(store);
    assert_ne!(json!(new_epoch), epoch);

    let server = TestServer::with(on_disk(dir.path())).await;
    let mut alice = server.client("alice").await;
    let after_reset = request(&mut alice, json!({"op": "join", "room": "r", "since": 4, "epoch": epoch})).await;
    assert_eq!(after_reset["recovered"], json!(false), "{after_reset}");
    assert_eq!((after_reset["epoch"].clone(), after_reset["seq"].clone()), (json!(new_epoch), json!(0)));
}

#[tokio::test]
async fn an_unusable_data_directory_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = b"this is not a database, and it is somebody's file".repeat(100);
    std::fs::write(dir.path().join(DATABASE_FILE), &garbage).expect("write garbage");
    let error = within(run_on(dir.path())).await.expect_err("a corrupt database stops the start");
    let message = error.to_string();
    assert!(message.contains(DATABASE_FILE) && message.contains("not a usable switchboard database"), "{message}");
    assert_eq!(std::fs::read(dir.path().join(DATABASE_FILE)).expect("still there"), garbage, "never replaced");

    let used = tempfile::tempdir().expect("tempdir");
    let running = TestServer::with(on_disk(used.path())).await;
    let _client = running.client("x").await;
    let error = within(run_on(used.path())).await.expect_err("a second server on the same directory");
    assert!(error.to_string().contains("in use by another switchboard process"), "{error}");
}

#[tokio::test]
async fn a_graceful_shutdown_acks_every_message_it_stored() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::with(on_disk(dir.path())).await;
    let mut writer = server.client("writer").await;
    request(&mut writer, json!({"op": "join", "room": "r"})).await;
    let (mut sink, mut stream) = writer.socket().expect("a WebSocket").split();
    const SENDS: usize = 300;
    for n in 1..=SENDS {
        let send = json!({"op": "send", "room": "r", "id": n, "body": n});
        sink.send(Message::text(send.to_string())).await.expect("send");
    }
    // The ping is answered once every send before it was read and queued for
    // storage: the shutdown then races their commits, not their reading.
    sink.send(Message::text(json!({"op": "ping", "id": "last"}).to_string())).await.expect("ping");
    let mut acked = std::collections::BTreeSet::new();
    let mut count = |frame: Message| {
        let Message::Text(text) = frame else { return false };
        let reply: Value = serde_json::from_str(&text).expect("json");
        if let Some(id) = reply["re"].as_u64() {
            assert_eq!(reply["ok"], json!(true), "accepted before the shutdown, so stored and acked: {reply}");
            assert!(acked.insert(id), "one answer per send: {reply}");
        }
        reply["re"] == json!("last")
    };
    within(async { while !count(stream.next().await.expect("open").expect("frame")) {} }).await;
    let stopped = server.shutdown();
    within(async {
        while let Some(Ok(frame)) = stream.next().await {
            count(frame);
        }
    })
    .await;
    within(stopped).await.expect("server stopped");
    assert_eq!(acked.len(), SENDS, "every send was answered before the close");
    let server = TestServer::with(on_disk(dir.path())).await;
    let mut reader = server.client("reader").await;
    request(&mut reader, json!({"op": "join", "room": "r"})).await;
    let history = request(&mut reader, json!({"op": "history", "room": "r", "limit": 500})).await;
    let stored = history["messages"].as_array().expect("messages").len();
    assert_eq!(stored, acked.len(), "exactly the acked messages were stored");
}

#[tokio::test]
async fn a_replay_does_not_wait_for_the_flush_clock() {
    // A replay waits for room in the queue (half of its 16 KiB bound here),
    // so 500 messages of about 200 bytes go out in a dozen rounds or more.
    // With 1 s windows, a replay whose writes waited for the clock would
    // take about that many seconds.
    let server = TestServer::with(|config| {
        config.delivery.write_window = std::time::Duration::from_secs(1);
        config.limits.outbound_queue_bytes = 16 * 1024;
    })
    .await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let pad = "x".repeat(100);
    for n in 0..500 {
        request(&mut alice, json!({"op": "send", "room": "r", "body": {"n": n, "pad": pad}})).await;
    }
    let mut bob = server.client("bob").await;
    let started = std::time::Instant::now();
    let joined = request(&mut bob, json!({"op": "join", "room": "r", "since": 0})).await;
    assert_eq!(joined["ok"], json!(true), "{joined}");
    let done = wait_for(&mut bob, |e| e["ev"] == json!("replayed")).await;
    assert_eq!((done["count"].clone(), done["recovered"].clone()), (json!(500), json!(true)), "{done}");
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(4), "500 replayed messages took {elapsed:?}");
}

#[tokio::test]
async fn history_returns_at_most_500_messages_over_websocket_and_in_text_mode() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    for n in 1..510 {
        alice.send_text(json!({"op": "send", "room": "r", "body": n}).to_string()).await.expect("send");
    }
    // Sends from one connection are stored in order: this ack follows them all.
    assert_eq!(request(&mut alice, json!({"op": "send", "room": "r", "body": 510})).await["seq"], json!(510));
    let page = request(&mut alice, json!({"op": "history", "room": "r", "limit": 900})).await;
    let seqs: Vec<u64> =
        page["messages"].as_array().expect("messages").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, (11..=510).collect::<Vec<u64>>(), "the newest 500");
    assert_eq!(page["more"], json!(true));

    let mut human = Lines::connect(server.tcp).await;
    human.send("/join r\n/history 900\n").await;
    human.until("you joined r").await;
    for n in 11..=510 {
        assert_eq!(human.line().await, format!("[r] alice: {n}\n"));
    }
    human.send("/rooms\n").await;
    assert_eq!(human.line().await, "* rooms: r\n", "500 lines and no more");
}

#[tokio::test]
async fn an_inbox_past_its_retention_is_recovered_false_and_replays_what_it_kept() {
    let server = TestServer::with(|config| config.storage.inbox_max_messages = 3).await;
    let mut alice = server.client("alice").await;
    for n in 1..=5 {
        let reply = request(&mut alice, json!({"op": "dm", "to": "carol", "body": n})).await;
        assert_eq!(reply["seq"], json!(n), "{reply}");
    }
    // Retention runs after the commits: wait until carol's greeting counts
    // only the 3 kept (nothing was delivered, so all kept ones wait).
    let epoch = within(async {
        loop {
            let carol = server.client("carol").await;
            if carol.hello["inbox"]["waiting"] == json!(3) {
                return carol.hello["inbox"]["epoch"].clone();
            }
            within(carol.close()).await.expect("close");
        }
    })
    .await;
    let mut carol = server.client("carol").await;
    let fetched = request(&mut carol, json!({"op": "inbox", "since": 0, "epoch": epoch})).await;
    assert_eq!((fetched["recovered"].clone(), fetched["seq"].clone()), (json!(false), json!(5)), "{fetched}");
    let mut replayed = Vec::new();
    let done = wait_for(&mut carol, |event| {
        if event["ev"] == json!("dm") {
            replayed.push(event["seq"].clone());
        }
        event["ev"] == json!("replayed")
    })
    .await;
    assert_eq!(replayed, [json!(3), json!(4), json!(5)], "the kept ones are replayed");
    assert_eq!(done, json!({"ev": "replayed", "inbox": true, "count": 3, "recovered": true}));
}
