//! Keepalive, idle timeouts and graceful shutdown.

use crate::support::{within, RawClient, TestServer};
use std::time::Duration;

#[tokio::test]
async fn silent_clients_are_pinged_then_closed_with_4001() {
    // The idle timeout is 1.5 s past the ping: a sweep delayed by a stall of
    // the machine still finds the client due a ping before it is due a close.
    let server = TestServer::with(|config| {
        config.websocket.ping_interval = Duration::from_millis(100);
        config.websocket.idle_timeout = Duration::from_millis(1600);
    })
    .await;
    let mut silent = RawClient::connect(server.addr, "/ws").await;
    let (opcode, _) = silent.read_frame().await;
    assert_eq!(opcode, 0x1, "hello first");
    let (opcode, _) = silent.read_frame().await;
    assert_eq!(opcode, 0x9, "then a ping");
    assert_eq!(silent.close_code().await, 4001);
}

#[tokio::test]
async fn answered_pings_keep_a_connection_open() {
    // Pings every 100 ms, answered at once; the idle timeout leaves a stall
    // of the machine more than a second between a ping and its answer.
    let idle_timeout = Duration::from_millis(1500);
    let server = TestServer::with(|config| {
        config.websocket.ping_interval = Duration::from_millis(100);
        config.websocket.idle_timeout = idle_timeout;
    })
    .await;
    let mut lively = RawClient::connect(server.addr, "/ws").await;
    lively.read_frame().await; // hello
    let started = std::time::Instant::now();
    let mut pings = 0;
    // Answer pings for longer than the idle timeout: no close comes.
    while started.elapsed() < idle_timeout * 2 {
        let (opcode, payload) = lively.read_frame().await;
        assert_eq!(opcode, 0x9, "only pings arrive while idle, no close");
        lively.send_frame(0x8A, &payload).await;
        pings += 1;
    }
    assert!(pings >= 2, "{pings} pings in {:?}", started.elapsed());
}

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_1001() {
    let server = TestServer::start().await;
    let mut alice = RawClient::connect(server.addr, "/ws").await;
    alice.read_frame().await; // hello
    let addr = server.addr;
    let stopped = server.shutdown();
    assert_eq!(alice.close_code().await, 1001);
    alice.send_frame(0x88, &1001u16.to_be_bytes()).await;
    alice.wait_eof().await;
    within(stopped).await.expect("server task ends cleanly");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
