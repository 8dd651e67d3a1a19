//! permessage-deflate over real sockets: negotiation, compressed fan-out,
//! compressed client messages, the inflated-size limit and the echo endpoint.

use crate::support::{is_msg, request, wait_for, RawClient, TestServer};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

/// What browsers offer.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
const RSV1: u8 = 0x40;

async fn compressing_server() -> TestServer {
    TestServer::with(|config| config.websocket.compression = true).await
}

/// The `Sec-WebSocket-Extensions` value of an answer's head, if any.
fn extensions(head: &str) -> Option<&str> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim())
    })
}

/// A client's compressed message: raw deflate, sync-flushed, tail removed.
/// `compressor` keeps its context between calls unless reset.
fn deflate(compressor: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let base = compressor.total_in();
    loop {
        let read = (compressor.total_in() - base) as usize;
        compressor.compress_vec(&data[read..], &mut out, FlushCompress::Sync).expect("compress");
        if (compressor.total_in() - base) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

fn deflate_alone(data: &[u8]) -> Vec<u8> {
    deflate(&mut Compress::new(Compression::default(), false), data)
}

/// A server message inflated with a `window_bits` window, as RFC 7692 7.2.2 says.
fn inflate(payload: &[u8], window_bits: u8) -> Vec<u8> {
    let mut inflater = Decompress::new_with_window_bits(false, window_bits);
    let mut out = Vec::with_capacity(payload.len() * 20 + 1024);
    inflater.decompress_vec(payload, &mut out, FlushDecompress::Sync).expect("valid deflate");
    inflater.decompress_vec(&TAIL, &mut out, FlushDecompress::Sync).expect("valid tail");
    assert!(out.len() < out.capacity(), "inflate buffer large enough");
    out
}

/// Reads text frames until one parses to JSON `wanted` accepts; returns it
/// with its frame's first header byte and payload as sent.
async fn next_event(client: &mut RawClient, window_bits: u8, wanted: impl Fn(&Value) -> bool) -> (u8, Vec<u8>, Value) {
    loop {
        let (first, payload) = client.read_frame_whole().await;
        if first & 0x0F != 0x1 {
            continue;
        }
        let text = if first & RSV1 != 0 { inflate(&payload, window_bits) } else { payload.clone() };
        let event: Value = serde_json::from_slice(&text).expect("JSON event");
        if wanted(&event) {
            return (first, payload, event);
        }
    }
}

async fn raw_member(server: &TestServer, name: &str, headers: &str) -> (RawClient, String) {
    let (mut client, head) = RawClient::connect_with(server.addr, &format!("/ws?name={name}"), headers).await;
    let join = json!({"op": "join", "room": "lobby", "id": 1}).to_string();
    client.send_frame(0x81, join.as_bytes()).await;
    let (_, _, reply) = next_event(&mut client, 15, |event| event["re"] == json!(1)).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    (client, head)
}

#[tokio::test]
async fn deflate_is_agreed_only_when_offered_and_enabled() {
    let server = compressing_server().await;
    let (_, head) = RawClient::connect_with(server.addr, "/ws", OFFER).await;
    assert_eq!(extensions(&head), Some("permessage-deflate; server_no_context_takeover"));
    let (_, head) = RawClient::connect_with(server.addr, "/ws", "").await;
    assert_eq!(extensions(&head), None, "no offer, no extension");
    let limited = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
                   server_max_window_bits=10\r\n";
    let (_, head) = RawClient::connect_with(server.addr, "/ws", limited).await;
    assert_eq!(
        extensions(&head),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
    );
    let too_small = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, x-other\r\n";
    let (_, head) = RawClient::connect_with(server.addr, "/ws", too_small).await;
    assert_eq!(extensions(&head), None, "declined, and the handshake still succeeds");
}

#[tokio::test]
async fn a_server_with_compression_off_declines_and_refuses_compressed_frames() {
    let server = TestServer::start().await;
    let (mut client, head) = RawClient::connect_with(server.addr, "/ws", OFFER).await;
    assert_eq!(extensions(&head), None);
    client.read_frame().await; // hello
    client.send_frame(0x80 | RSV1 | 0x1, &deflate_alone(br#"{"op":"ping","id":1}"#)).await;
    assert_eq!(client.close_code().await, 1002);
}

#[tokio::test]
async fn a_publish_is_compressed_once_and_inflates_for_every_subscriber() {
    let server = compressing_server().await;
    let (mut alice, _) = raw_member(&server, "alice", OFFER).await;
    let (mut bob, _) = raw_member(&server, "bob", OFFER).await;
    let small_window = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n";
    let (mut dave, _) = raw_member(&server, "dave", small_window).await;
    let (mut plain, _) = raw_member(&server, "carol", "").await;
    let mut publisher = server.client("publisher").await;
    request(&mut publisher, json!({"op": "join", "room": "lobby"})).await;

    let text = "every subscriber reads the same words again and again; ".repeat(40);
    let reply = request(&mut publisher, json!({"op": "send", "room": "lobby", "body": {"text": text}})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let (a_first, a_payload, a_event) = next_event(&mut alice, 15, is_msg).await;
    let (b_first, b_payload, b_event) = next_event(&mut bob, 15, is_msg).await;
    let (d_first, _, d_event) = next_event(&mut dave, 9, is_msg).await;
    let (p_first, p_payload, p_event) = next_event(&mut plain, 15, is_msg).await;
    for (first, event) in [(a_first, &a_event), (b_first, &b_event), (d_first, &d_event)] {
        assert_eq!(first, 0x80 | RSV1 | 0x1, "FIN, RSV1, text");
        assert_eq!(event["body"]["text"], json!(text));
    }
    assert_eq!(a_payload, b_payload, "the same compressed bytes for both");
    // Alice and Bob share one compression; Dave's 9-bit window is smaller
    // than the message, so his copy is compressed again: two, not three.
    assert_eq!(server.metric("switchboard_ws_compressions_total").await, 2.0, "one compression per event and window");
    assert_eq!((p_first, &p_event), (0x81, &a_event), "the plain member gets the same event uncompressed");
    assert!(a_payload.len() * 5 < p_payload.len(), "{} compressed bytes for {}", a_payload.len(), p_payload.len());
    let saved = server.metric("switchboard_ws_compression_saved_bytes_total").await;
    assert_eq!(server.metric("switchboard_ws_compressed_frames_total").await, 3.0);
    assert!(saved >= 2.0 * (p_payload.len() - a_payload.len()) as f64, "saved {saved}");

    // Below the threshold (256 bytes) a message goes out plain.
    request(&mut publisher, json!({"op": "send", "room": "lobby", "body": "short"})).await;
    let (first, _, event) = next_event(&mut alice, 15, is_msg).await;
    assert_eq!((first, &event["body"]), (0x81, &json!("short")));
    assert_eq!(server.metric("switchboard_ws_compressed_frames_total").await, 3.0);
    assert_eq!(server.metric("switchboard_ws_compressions_total").await, 2.0, "nothing compressed below it");
}

#[tokio::test]
async fn compressed_client_messages_are_inflated_with_and_without_context() {
    let server = compressing_server().await;
    let (mut alice, head) = raw_member(&server, "alice", OFFER).await;
    assert!(!head.contains("client_no_context_takeover"), "{head}");
    let mut watcher = server.client("watcher").await;
    request(&mut watcher, json!({"op": "join", "room": "lobby"})).await;

    // Alice keeps context: her second message refers back into her first.
    let mut compressor = Compress::new(Compression::default(), false);
    let send = |id: u32| json!({"op": "send", "room": "lobby", "body": {"n": "same words each time"}, "id": id});
    let first = deflate(&mut compressor, send(2).to_string().as_bytes());
    let second = deflate(&mut compressor, send(3).to_string().as_bytes());
    assert!(second.len() < first.len() / 2, "context taken over: {} then {} bytes", first.len(), second.len());
    alice.send_frame(0x80 | RSV1 | 0x1, &first).await;
    // Fragmented: RSV1 on the first frame only.
    let (head_part, tail_part) = second.split_at(second.len() / 2);
    alice.send_frame(RSV1 | 0x1, head_part).await;
    alice.send_frame(0x80, tail_part).await;
    for id in [2, 3] {
        let (_, _, reply) = next_event(&mut alice, 15, |event| event["re"] == json!(id)).await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        let event = wait_for(&mut watcher, is_msg).await;
        assert_eq!(event["body"]["n"], json!("same words each time"));
    }

    // A client that compresses each message on its own says so, and is heard too.
    let alone = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";
    let (mut bob, _) = raw_member(&server, "bob", alone).await;
    let message = json!({"op": "send", "room": "lobby", "body": "from bob", "id": 7}).to_string();
    bob.send_frame(0x80 | RSV1 | 0x1, &deflate_alone(message.as_bytes())).await;
    let (_, _, reply) = next_event(&mut bob, 15, |event| event["re"] == json!(7)).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(wait_for(&mut watcher, is_msg).await["body"], json!("from bob"));
}

#[tokio::test]
async fn a_compression_bomb_closes_with_1009_and_is_counted() {
    let server = TestServer::with(|config| {
        config.websocket.compression = true;
        config.limits.max_message_size = 4096;
    })
    .await;
    let (mut client, _) = RawClient::connect_with(server.addr, "/ws", OFFER).await;
    client.read_frame().await; // hello
    let bomb = deflate(&mut Compress::new(Compression::best(), false), &vec![b' '; 1 << 20]);
    assert!(bomb.len() < 4096, "1 MiB deflates to {} bytes, under the limit on the wire", bomb.len());
    client.send_frame(0x80 | RSV1 | 0x1, &bomb).await;
    assert_eq!(client.close_code().await, 1009);
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"ws_inflated_too_large\"}").await, 1.0);
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"1009\"}").await, 1.0);

    let (mut garbage, _) = RawClient::connect_with(server.addr, "/ws", OFFER).await;
    garbage.read_frame().await;
    garbage.send_frame(0x80 | RSV1 | 0x1, &[0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(garbage.close_code().await, 1007);
    assert_eq!(server.metric("switchboard_messages_dropped_total{reason=\"ws_inflate_failed\"}").await, 1.0);
}

#[tokio::test]
async fn the_echo_endpoint_compresses_its_echoes() {
    let server = compressing_server().await;
    let (mut client, _) = RawClient::connect_with(server.addr, "/ws/echo", OFFER).await;
    let text = "echo me, echo me, echo me; ".repeat(50);
    client.send_frame(0x80 | RSV1 | 0x1, &deflate_alone(text.as_bytes())).await;
    let (first, payload) = client.read_frame_whole().await;
    assert_eq!(first, 0x80 | RSV1 | 0x1);
    assert_eq!(inflate(&payload, 15), text.as_bytes());
    client.send_frame(0x82, b"tiny").await;
    assert_eq!(client.read_frame_whole().await, (0x82, b"tiny".to_vec()), "under the threshold: plain");
}
