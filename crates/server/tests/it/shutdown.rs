//! Graceful shutdown over real sockets: how long it takes when clients
//! close as asked.

use crate::support::{within, Datagrams, Lines, RawClient, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_client::ClientError;

/// Long enough that a shutdown that waited for it would fail the test.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn shutdown_ends_as_soon_as_every_client_has_closed() {
    let server = TestServer::with(|config| {
        config.websocket.close_timeout = CLOSE_TIMEOUT;
        config.shutdown.drain_timeout = 2 * CLOSE_TIMEOUT;
    })
    .await;
    // A library client that answers the close and then drops its socket.
    let mut library = server.client("library").await;
    // A raw client that answers the close but keeps its socket open: the
    // server must close the TCP connection first (RFC 6455 section 7.1.1).
    let mut raw = RawClient::connect(server.addr, "/ws?name=raw").await;
    raw.read_event().await;
    // A raw TCP client, which has no close handshake: it closes on the close line.
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"device\"}\n").await;
    device.json_until(|v| v["ev"] == json!("hello")).await;
    let player = Datagrams::hello(server.udp, "player").await;

    let started = Instant::now();
    let stopped = server.shutdown();
    let closed = within(library.next_event()).await;
    assert!(matches!(&closed, Err(ClientError::Closed(Some(frame))) if u16::from(frame.code) == 1001), "{closed:?}");
    drop(library);
    assert_eq!(raw.close_code().await, 1001);
    raw.send_frame(0x88, &1001u16.to_be_bytes()).await;
    assert_eq!(device.json_until(|v| v["ev"] == json!("close")).await["code"], json!(1001));
    device.eof().await;
    drop(device);
    assert_eq!(player.until(|v| v["ev"] == json!("close")).await["code"], json!(1001));
    within(stopped).await.expect("server task ends cleanly");
    let took = started.elapsed();
    assert!(took < CLOSE_TIMEOUT / 3, "shutdown took {took:?} with every client closed");
    raw.wait_eof().await;
}
