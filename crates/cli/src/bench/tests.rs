//! The loss accounting, checked against a fake server that speaks just
//! enough of the JSON-lines protocol and drops every tenth message; and the
//! RESP reader, checked on split and whole frames.

use super::fanout::{self, FanoutArgs, Protocol};
use super::lines::parse_resp;
use super::measure::LoadArgs;
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
        load: LoadArgs { duration: 1.0, size: 100, pid: None, server_core: Some(0), sources: 2, drain: 2.0 },
        json: false,
    };
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
    assert!(report.server_core_busy_seconds.is_some_and(|busy| busy >= 0.0));
    let latency = report.latency_ms.expect("latencies were recorded");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.max);
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
