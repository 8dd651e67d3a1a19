//! The WebSocket scenarios checked against fakes: `fanout` must count
//! exactly the deliveries a broadcast server dropped, and `echo` and
//! `churn` must count what they did.

use super::churn::{self, ChurnArgs};
use super::measure::LoadArgs;
use super::target::Target;
use super::wsfanout::{self, WsFanoutArgs};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// A broadcast server in the shape of the `ws` README's (the node-ws
/// target): every text message goes to every client, sender included,
/// except every tenth, which nobody gets.
#[derive(Default)]
struct FakeBroadcast {
    clients: Mutex<Vec<mpsc::UnboundedSender<Message>>>,
    messages: AtomicU64,
    dropped: AtomicU64,
}

async fn serve(listener: TcpListener, fake: Arc<FakeBroadcast>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(broadcast_conn(stream, Arc::clone(&fake)));
    }
}

// tungstenite's handshake callback type has a large error variant.
#[allow(clippy::result_large_err)]
async fn broadcast_conn(stream: TcpStream, fake: Arc<FakeBroadcast>) {
    let (outbox, mut queue) = mpsc::unbounded_channel();
    // Registered before the handshake's answer goes out, so a client that
    // has its 101 is already a member.
    let register = |_: &Request, response: Response| {
        fake.clients.lock().expect("clients").push(outbox.clone());
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, register).await else { return };
    let (mut write, mut read) = socket.split();
    tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if write.send(message).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = read.next().await {
        let Message::Text(text) = message else { continue };
        let n = fake.messages.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(10) {
            fake.dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        for client in fake.clients.lock().expect("clients").iter() {
            let _ = client.send(Message::Text(text.clone()));
        }
    }
}

async fn start_fake() -> (std::net::SocketAddr, Arc<FakeBroadcast>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = listener.local_addr().expect("address");
    let fake = Arc::new(FakeBroadcast::default());
    tokio::spawn(serve(listener, Arc::clone(&fake)));
    (server, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fanout_counts_exactly_the_dropped_deliveries() {
    let (server, fake) = start_fake().await;
    let subscribers = 10;
    let args = WsFanoutArgs {
        also: Vec::new(),
        server,
        target: Target::NodeWs,
        room: "fan".to_owned(),
        subscribers,
        publishers: 2,
        rate: 400.0,
        stored: false,
        concurrency: 4,
        load: LoadArgs {
            duration: 1.0,
            size: 100,
            pid: None,
            also_pid: Vec::new(),
            server_core: None,
            sources: 2,
            drain: 2.0,
            drain_still: 2.0,
        },
        sse: false,
        workers: 1,
        tls: Default::default(),
        json: false,
        worker: None,
    };
    let report = wsfanout::run(&args).await.expect("the bench runs");
    assert_eq!(fake.messages.load(Ordering::SeqCst), 400, "{report:?}");
    assert_eq!((report.sent, report.expected), (400, 400 * 10));
    assert_eq!(fake.dropped.load(Ordering::SeqCst), 40);
    // Which numbers were dropped depends on how the two publishers'
    // messages interleaved at the server; how many does not.
    assert_eq!(report.lost, 40 * 10, "{report:?}");
    assert_eq!(report.received, 360 * 10);
    assert!((report.loss_percent - 10.0).abs() < 1e-9);
    assert_eq!((report.members_with_loss, report.members_closed, report.publisher_errors), (10, 0, 0));
    let latency = report.latency_ms.expect("latencies were recorded");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_counts_each_completed_cycle() {
    let (server, fake) = start_fake().await;
    let args = ChurnArgs {
        server,
        target: Target::NodeWs,
        concurrency: 4,
        room: "churn".to_owned(),
        rooms: 1,
        duration: 0.5,
        sources: 2,
        pid: None,
        tls: Default::default(),
        json: true,
    };
    let cycles = churn::cycles(&args).await.expect("the bench runs");
    let accepted = fake.clients.lock().expect("clients").len() as u64;
    assert!(cycles.done > 0, "no cycle completed");
    assert_eq!((cycles.done + cycles.failed, cycles.failed), (accepted, 0), "{:?}", cycles.first_failure);
}
