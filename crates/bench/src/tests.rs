//! The loss accounting, checked against a fake server that speaks just
//! enough of the JSON-lines protocol and drops every tenth message; the
//! storage scenarios, against a fake that stores, acks, refuses and
//! replays; and the RESP reader, checked on split and whole frames.

use super::fanout::{self, FanoutArgs, Protocol};
use super::lines::parse_resp;
use super::measure::LoadArgs;
use super::replay::{self, ReplayArgs};
use super::stored::{self, StoredArgs};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The fake server's room and counters.
#[derive(Default)]
struct Fake {
    members: Mutex<Vec<mpsc::UnboundedSender<Arc<[u8]>>>>,
    sends: AtomicU64,
    dropped: AtomicU64,
}

async fn fake_server(listener: TcpListener, fake: Arc<Fake>) {
    let mut conn = 0;
    while let Ok((stream, _)) = listener.accept().await {
        conn += 1;
        tokio::spawn(fake_conn(stream, conn, Arc::clone(&fake)));
    }
}

/// Answers hello and join; fans each send out to every member as a msg
/// event, except every tenth, which nobody gets.
async fn fake_conn(stream: TcpStream, conn: u64, fake: Arc<Fake>) {
    let (read, mut write) = stream.into_split();
    let (outbox, mut queue) = mpsc::unbounded_channel::<Arc<[u8]>>();
    tokio::spawn(async move {
        while let Some(line) = queue.recv().await {
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let command: serde_json::Value = serde_json::from_str(&line).expect("the bench sends JSON lines");
        let say = |text: String| outbox.send(Arc::from(text.into_bytes())).is_ok();
        match command["op"].as_str() {
            Some("hello") => say(format!("{{\"ev\":\"hello\",\"user\":{},\"conn\":{conn}}}\n", command["name"])),
            Some("join") => {
                fake.members.lock().expect("members").push(outbox.clone());
                say(format!("{{\"re\":{},\"ok\":true,\"room\":\"fan\",\"presence_events\":true}}\n", command["id"]))
            }
            Some("send") => {
                assert!(command.get("id").is_none(), "the publisher asks for no acks");
                let seq = fake.sends.fetch_add(1, Ordering::SeqCst) + 1;
                if seq.is_multiple_of(10) {
                    fake.dropped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let body = &command["body"];
                let event = format!(
                    "{{\"ev\":\"msg\",\"room\":\"fan\",\"seq\":{seq},\"from\":\"pub\",\"ts\":1,\"body\":{body}}}\n"
                );
                let event: Arc<[u8]> = Arc::from(event.into_bytes());
                for member in fake.members.lock().expect("members").iter() {
                    let _ = member.send(Arc::clone(&event));
                }
                true
            }
            _ => true,
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_deliveries_are_exactly_the_dropped_ones() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = listener.local_addr().expect("address");
    let fake = Arc::new(Fake::default());
    tokio::spawn(fake_server(listener, Arc::clone(&fake)));
    let subscribers = 20;
    let args = FanoutArgs {
        server,
        protocol: Protocol::Switchboard,
        subscribers,
        rate: 500.0,
        load: LoadArgs {
            duration: 1.0,
            size: 100,
            pid: None,
            also_pid: Vec::new(),
            server_core: Some(0),
            sources: 2,
            drain: 2.0,
            drain_still: 2.0,
        },
        json: false,
    };
    let started = std::time::Instant::now();
    let report = fanout::run(&args).await.expect("the bench runs");
    let dropped = fake.dropped.load(Ordering::SeqCst) * subscribers as u64;
    assert_eq!(fake.sends.load(Ordering::SeqCst), 500, "{report:?}");
    assert_eq!((report.sent, report.expected), (500, 500 * 20));
    assert_eq!(dropped, 50 * 20);
    assert_eq!(report.lost, dropped as i64, "{report:?}");
    assert_eq!(report.received, 450 * 20);
    assert!((report.loss_percent - 10.0).abs() < 1e-9);
    // Messages 10, 20, .. 490 are gaps; 500 is missing at the end.
    assert_eq!(report.gaps, 49 * 20);
    assert_eq!((report.out_of_order, report.members_with_loss, report.members_closed), (0, 20, 0));
    assert_core_busy_within(report.server_core_busy_seconds, started.elapsed());
    let latency = report.latency_ms.expect("latencies were recorded");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.max);
}

/// The server core's busy time is a reading over the run: more than nothing
/// (the fake server and the bench kept both cores of this machine busy) and
/// no more than the time that passed, one clock tick aside (a reading since
/// boot, or over every core, would be more).
fn assert_core_busy_within(busy: Option<f64>, elapsed: std::time::Duration) {
    let busy = busy.expect("the core was read");
    assert!(busy > 0.0 && busy <= elapsed.as_secs_f64() + 0.01, "core busy {busy} s in a run of {elapsed:?}");
}

#[test]
fn resp_values_are_read_whole_or_not_at_all() {
    let push = b"*3\r\n$7\r\nmessage\r\n$3\r\nfan\r\n$5\r\nhello\r\n:1\r\n";
    let frame_len = push.len() - 4;
    for cut in 0..frame_len {
        assert!(parse_resp(&push[..cut]).expect("a prefix is not an error").is_none(), "cut at {cut}");
    }
    let (value, used) = parse_resp(push).expect("valid").expect("complete");
    assert_eq!(used, frame_len);
    let items: Vec<&[u8]> = value.items().map(|item| item.bytes(push)).collect();
    assert_eq!(items, [b"message".as_slice(), b"fan", b"hello"]);
    let (value, used) = parse_resp(&push[frame_len..]).expect("valid").expect("complete");
    assert_eq!((used, value.item(0).map(|item| item.bytes(&push[frame_len..]))), (4, Some(b":1".as_slice())));
    assert!(parse_resp(b"*9\r\n").is_err());
}

/// A fake storing server: rooms of stored bodies, every `refuse_every`th
/// send refused with `overloaded` (none if 0), and `skip` left out of every replay.
#[derive(Default)]
struct FakeStore {
    rooms: Mutex<HashMap<String, Vec<String>>>,
    sends: AtomicU64,
    refuse_every: u64,
    skip: Option<u64>,
}

fn fake_msg(room: &str, seq: u64, body: &str) -> String {
    format!("{{\"ev\":\"msg\",\"room\":\"{room}\",\"seq\":{seq},\"from\":\"u\",\"ts\":1,\"body\":{body}}}\n")
}

/// Answers one command as the storing server would.
fn fake_store_answer(store: &FakeStore, command: &serde_json::Value) -> String {
    let (id, room) = (&command["id"], command["room"].as_str().unwrap_or_default().to_owned());
    let mut rooms = store.rooms.lock().expect("rooms");
    let log = rooms.entry(room.clone()).or_default();
    match command["op"].as_str() {
        Some("hello") => "{\"ev\":\"hello\",\"user\":\"u\",\"conn\":1}\n".to_owned(),
        Some("join") if command.get("since").is_some() => {
            let n = log.len() as u64;
            let mut out = format!("{{\"re\":{id},\"ok\":true,\"room\":\"{room}\",\"seq\":{n},\"recovered\":true}}\n");
            for (seq, body) in (1..).zip(log.iter()).filter(|(seq, _)| Some(*seq) != store.skip) {
                out.push_str(&fake_msg(&room, seq, body));
            }
            out + &format!("{{\"ev\":\"replayed\",\"room\":\"{room}\",\"count\":{n},\"recovered\":true}}\n")
        }
        Some("join") => format!("{{\"re\":{id},\"ok\":true,\"room\":\"{room}\",\"seq\":{}}}\n", log.len()),
        Some("send") if (store.sends.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(store.refuse_every) => {
            format!("{{\"re\":{id},\"ok\":false,\"code\":\"overloaded\",\"error\":\"busy\"}}\n")
        }
        Some("send") => {
            log.push(command["body"].to_string());
            let seq = log.len();
            fake_msg(&room, seq as u64, &command["body"].to_string())
                + &format!("{{\"re\":{id},\"ok\":true,\"seq\":{seq},\"ts\":1}}\n")
        }
        _ => String::new(),
    }
}

async fn fake_store(store: Arc<FakeStore>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let command: serde_json::Value = serde_json::from_str(&line).expect("the bench sends JSON lines");
                    let answer = fake_store_answer(&store, &command);
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_counts_acks_and_refusals_by_code() {
    let tcp = fake_store(Arc::new(FakeStore { refuse_every: 10, ..FakeStore::default() })).await;
    let args = StoredArgs {
        tcp,
        publishers: 3,
        duration: 0.5,
        warmup: 0.2,
        payload: 64,
        pid: None,
        server_core: Some(0),
        json: true,
    };
    let started = std::time::Instant::now();
    let report = stored::run_stored(&args).await.expect("the bench runs");
    let counts = &report.counts;
    assert!(counts.acked > 0 && counts.acked < counts.acked_total, "{report:?}");
    assert_eq!((counts.msg_events_total, counts.seq_breaks), (counts.acked_total, 0), "{report:?}");
    let refused = counts.errors_by_code.get("overloaded").copied().unwrap_or(0);
    assert!(refused > 0 && refused == report.errors, "{report:?}");
    assert!(counts.first_error.as_deref().is_some_and(|first| first.contains("overloaded")));
    assert!((report.acked_per_second - counts.acked as f64 / 0.5).abs() < 1e-6);
    assert!(report.ack_latency_ms.is_some_and(|latency| latency.p50 > 0.0 && latency.p50 <= latency.max));
    assert_core_busy_within(report.server_core_busy_seconds, started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_checks_every_message_arrives_in_order() {
    let tcp = fake_store(Arc::new(FakeStore::default())).await;
    let args = ReplayArgs { tcp, messages: 1001, payload: 50, json: false };
    let report = replay::run_replay(&args).await.expect("a whole replay passes");
    assert_eq!(report.messages, 1001);
    assert!(report.replayed_per_second > 0.0 && report.replay_seconds > 0.0);
    let gap = fake_store(Arc::new(FakeStore { skip: Some(500), ..FakeStore::default() })).await;
    let error = replay::run_replay(&ReplayArgs { tcp: gap, ..args }).await.expect_err("a gap fails the replay");
    assert!(format!("{error:#}").contains("expected message 500"), "{error:#}");
}
