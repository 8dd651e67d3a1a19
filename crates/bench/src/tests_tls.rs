//! The WebSocket scenarios over TLS, against a real Switchboard server with
//! a self-signed certificate made here: `fanout` trusting that certificate
//! (`--tls --ca`), `churn` trusting any (`--tls --insecure`).

use super::churn::{self, ChurnArgs};
use super::measure::LoadArgs;
use super::target::Target;
use super::tls::TlsArgs;
use super::wsfanout::{self, WsFanoutArgs};
use std::net::SocketAddr;
use switchboard_server::{Config, Listeners};
use tokio::net::TcpListener;

/// A Switchboard server with TLS on a port-0 listener, and the directory
/// holding its certificate (`cert.pem`) and key.
async fn start_tls_server() -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let mut config = Config::default();
    config.storage.backend = switchboard_server::config::StorageBackend::Memory;
    config.tls.cert = dir.path().join("cert.pem");
    config.tls.key = dir.path().join("key.pem");
    std::fs::write(&config.tls.cert, made.cert.pem()).expect("write cert");
    std::fs::write(&config.tls.key, made.signing_key.serialize_pem()).expect("write key");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = http.local_addr().expect("address");
    let listeners = Listeners { http, tcp: None, udp: None };
    tokio::spawn(switchboard_server::run(config, listeners, std::future::pending()));
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_wss_delivers_everything() {
    fanout_over_tls(false).await;
}

/// Server-Sent Events followers over HTTPS (the follower's codec over the
/// TLS socket), the publisher over WSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_to_event_streams_over_https_delivers_everything() {
    fanout_over_tls(true).await;
}

async fn fanout_over_tls(sse: bool) {
    let (server, dir) = start_tls_server().await;
    let mut tls = TlsArgs::default();
    (tls.tls, tls.ca) = (true, Some(dir.path().join("cert.pem")));
    let args = WsFanoutArgs {
        also: Vec::new(),
        server,
        target: Target::Switchboard,
        room: "fan".to_owned(),
        subscribers: 20,
        publishers: 1,
        rate: 200.0,
        stored: false,
        concurrency: 8,
        load: LoadArgs {
            duration: 1.0,
            size: 100,
            pid: None,
            also_pid: Vec::new(),
            server_core: None,
            sources: 2,
            drain: 5.0,
            drain_still: 5.0,
        },
        sse,
        workers: 1,
        tls,
        json: false,
        worker: None,
    };
    let report = wsfanout::run(&args).await.expect("the bench runs over TLS");
    assert_eq!((report.sent, report.expected), (200, 200 * 20), "{report:?}");
    assert_eq!((report.received, report.lost), (200 * 20, 0), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_over_wss_completes_cycles() {
    let (server, _dir) = start_tls_server().await;
    let mut tls = TlsArgs::default();
    (tls.tls, tls.insecure) = (true, true);
    let args = ChurnArgs {
        server,
        target: Target::Switchboard,
        concurrency: 4,
        room: "churn".to_owned(),
        rooms: 1,
        duration: 0.5,
        sources: 2,
        pid: None,
        tls,
        json: true,
    };
    let cycles = churn::cycles(&args).await.expect("the bench runs over TLS");
    assert!(cycles.done > 0, "no cycle completed");
    assert_eq!(cycles.failed, 0, "{:?}", cycles.first_failure);
}
