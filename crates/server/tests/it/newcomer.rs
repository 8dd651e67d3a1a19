//! What a newcomer meets first on the raw transports: a greeting on a
//! silent TCP connection that JSON-lines clients are not broken by, UDP
//! replies one per line in `nc -u`, and text-mode TCP counted as `tcp_text`.

use crate::auth::{token_for, token_server};
use crate::support::{within, Datagrams, Lines, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const GREETING_DELAY: Duration = Duration::from_millis(150);

async fn greeting_server() -> TestServer {
    TestServer::with(|config| config.tcp_options.greeting_delay = GREETING_DELAY).await
}

fn greeting(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("the greeting is JSON: {line:?}"));
    assert_eq!(value["ev"], json!("greeting"), "{value}");
    value
}

#[tokio::test]
async fn a_silent_person_is_greeted_with_how_to_get_help_then_talks_text() {
    let server = greeting_server().await;
    let started = Instant::now();
    let mut person = Lines::connect(server.tcp).await;
    let first = person.line().await;
    assert!(started.elapsed() >= GREETING_DELAY, "only after the delay");
    let text = greeting(&first)["text"].as_str().expect("text").to_owned();
    assert!(text.contains("welcome") && text.contains("/help"), "{text}");
    person.send("/help\n").await;
    assert!(person.line().await.starts_with("* welcome to switchboard. commands:"), "text mode, its help");
    person.until("/quit").await;
    person.send("/nick ada\n").await;
    person.until("you are now ada").await;
}

#[tokio::test]
async fn a_json_client_that_sends_at_once_never_sees_the_greeting() {
    let server = greeting_server().await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"hello\",\"name\":\"sensor\"}\n").await;
    let hello: Value = serde_json::from_str(&device.line().await).expect("JSON");
    assert_eq!((hello["ev"].clone(), hello["user"].clone()), (json!("hello"), json!("sensor")));
    // Let the greeting's time pass (a timer that must not fire: there is no
    // event to wait for), then see that only the pong came.
    tokio::time::sleep(GREETING_DELAY * 3).await;
    device.send("{\"op\":\"ping\",\"id\":1}\n").await;
    assert_eq!(serde_json::from_str::<Value>(&device.line().await).expect("JSON"), json!({"re": 1, "ok": true}));
}

#[tokio::test]
async fn a_json_client_that_waits_reads_the_greeting_as_an_event_and_goes_on() {
    let server = greeting_server().await;
    let mut device = Lines::connect(server.tcp).await;
    greeting(&device.line().await);
    device.send("{\"op\":\"hello\",\"name\":\"slow-boot\"}\n{\"op\":\"ping\",\"id\":1}\n").await;
    let hello = device.json_until(|v| v["ev"] != json!("greeting")).await;
    assert_eq!((hello["ev"].clone(), hello["user"].clone()), (json!("hello"), json!("slow-boot")));
    assert_eq!(device.json_until(|v| v.get("re").is_some()).await, json!({"re": 1, "ok": true}));
}

#[tokio::test]
async fn in_token_mode_the_greeting_asks_for_a_token_first() {
    let server = token_server(|config| config.tcp_options.greeting_delay = GREETING_DELAY).await;
    let mut person = Lines::connect(server.tcp).await;
    let text = greeting(&person.line().await)["text"].as_str().expect("text").to_owned();
    assert!(text.contains("/auth TOKEN"), "{text}");
    person.send(&format!("/auth {}\n", token_for("ada"))).await;
    person.until("you are ada").await;
}

#[tokio::test]
async fn with_no_greeting_delay_a_silent_socket_hears_only_its_close() {
    let server = TestServer::with(|config| {
        config.tcp_options.greeting_delay = Duration::ZERO;
        config.tcp_options.first_line_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = Lines::connect(server.tcp).await;
    let first: Value = serde_json::from_str(&silent.line().await).expect("JSON");
    assert_eq!(first, json!({"ev": "close", "code": 1008, "reason": "policy violation"}));
}

#[tokio::test]
async fn text_mode_is_counted_as_tcp_text_and_json_lines_as_tcp_json() {
    let server = TestServer::start().await;
    let mut person = Lines::connect(server.tcp).await;
    person.send("/nick ada\n").await;
    person.until("you are now ada").await;
    let mut device = Lines::connect(server.tcp).await;
    device.send("{\"op\":\"ping\",\"id\":1}\n").await;
    device.json_until(|v| v["re"] == json!(1)).await;
    // Gone before its first line: served (and counted) as JSON lines.
    drop(Lines::connect(server.tcp).await);
    let accepted = |transport: &str| format!("switchboard_connections_accepted_total{{transport=\"{transport}\"}}");
    assert_eq!(server.metric(&accepted("tcp_text")).await, 1.0);
    assert_eq!(server.metric_reaching(&accepted("tcp_json"), 2.0).await, 2.0);
    assert_eq!(server.metric("switchboard_connections_open{transport=\"tcp_text\"}").await, 1.0);
}

/// One datagram as it arrives, bytes and all.
async fn datagram(socket: &UdpSocket) -> String {
    let mut buffer = vec![0u8; 65_536];
    let count = within(socket.recv(&mut buffer)).await.expect("recv");
    String::from_utf8(buffer[..count].to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn udp_replies_and_events_end_with_a_newline() {
    let server = TestServer::start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(server.udp).await.expect("connect");
    socket.send(b"{\"op\":\"hello\",\"name\":\"player\"}").await.expect("send");
    let hello = datagram(&socket).await;
    assert!(hello.ends_with("}\n") && hello.matches('\n').count() == 1, "{hello:?}");
    let session = serde_json::from_str::<Value>(&hello).expect("JSON")["session"].as_str().expect("token").to_owned();
    let join = json!({"op": "join", "room": "r", "id": 1, "session": session}).to_string();
    socket.send(join.as_bytes()).await.expect("send");
    let joined = datagram(&socket).await;
    assert!(joined.starts_with("{\"re\":1,\"ok\":true") && joined.ends_with("}\n"), "{joined:?}");
    let send = json!({"op": "send", "room": "r", "body": "hi", "volatile": true, "session": session}).to_string();
    socket.send(send.as_bytes()).await.expect("send");
    let message = datagram(&socket).await;
    assert!(message.starts_with("{\"ev\":\"msg\"") && message.ends_with("}\n"), "{message:?}");
    socket.send(b"{\"op\":\"ping\"}").await.expect("send");
    let error = datagram(&socket).await;
    assert!(error.contains("no_session") && error.ends_with("}\n"), "{error:?}");
    // The test helper, like any JSON parser, reads them as before.
    let player = Datagrams::hello(server.udp, "other").await;
    player.send(json!({"op": "ping", "id": 2})).await;
    assert_eq!(player.until(|v| v["re"] == json!(2)).await["ok"], json!(true));
}
