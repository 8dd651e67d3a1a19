//! Token mode on raw TCP (JSON lines and text) and UDP: a token names the
//! client on its first line or datagram; names, missing and bad tokens are
//! refused with their codes, and TCP is closed with 4003.

use crate::auth::{now, token, token_for, token_server};
use crate::support::{request, wait_for, Datagrams, Lines};
use serde_json::{json, Value};

#[tokio::test]
async fn a_json_lines_client_authenticates_with_hellos_token() {
    let server = token_server(|_| {}).await;
    let mut web = server.client_with_token(&token_for("web")).await;
    request(&mut web, json!({"op": "join", "room": "lobby"})).await;
    let mut device = Lines::connect(server.tcp).await;
    device.send(&format!("{}\n", json!({"op": "hello", "token": token_for("sensor-1")}))).await;
    let hello = device.json_until(|v| v["ev"] == json!("hello")).await;
    assert_eq!(hello["user"], json!("sensor-1"));
    device
        .send("{\"op\":\"join\",\"room\":\"lobby\",\"id\":1}\n{\"op\":\"send\",\"room\":\"lobby\",\"body\":21.5}\n")
        .await;
    let message = wait_for(&mut web, |event| event["ev"] == json!("msg")).await;
    assert_eq!((message["from"].clone(), message["body"].clone()), (json!("sensor-1"), json!(21.5)));
}

/// What a raw TCP client that sends `first` as its first line is told
/// before the server closes: the error's code and the close code.
async fn refused_first_line(server: &crate::support::TestServer, first: &str) -> (Value, Value) {
    let mut lines = Lines::connect(server.tcp).await;
    lines.send(&format!("{first}\n")).await;
    let error = lines.json_until(|v| v.get("code").is_some_and(Value::is_string)).await;
    let close = lines.json_until(|v| v["ev"] == json!("close")).await;
    lines.eof().await;
    (error["code"].clone(), close["code"].clone())
}

#[tokio::test]
async fn a_tcp_client_without_a_valid_token_is_told_why_and_closed_with_4003() {
    let server = token_server(|_| {}).await;
    let expired = token(json!({"sub": "alice", "exp": now() - 10}));
    let cases = [
        (json!({"op": "hello", "name": "alice"}), "name_not_allowed"),
        (json!({"op": "hello"}), "token_required"),
        (json!({"op": "join", "room": "lobby", "id": 1}), "token_required"),
        (json!({"op": "hello", "token": expired}), "token_expired"),
        (json!({"op": "hello", "token": "x.y.z", "id": 7}), "token_malformed"),
    ];
    for (first, code) in cases {
        let (error, close) = refused_first_line(&server, &first.to_string()).await;
        assert_eq!((error, close), (json!(code), json!(4003)), "{first}");
    }
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"4003\"}").await, 5.0);
}

#[tokio::test]
async fn a_person_in_telnet_authenticates_with_slash_auth_and_cannot_pick_a_name() {
    let server = token_server(|_| {}).await;
    let mut person = Lines::connect(server.tcp).await;
    person.send(&format!("/auth {}\n", token_for("maria"))).await;
    person.until("you are maria").await;
    person.send("/nick alice\n").await;
    assert!(person.until("!").await.contains("names come from tokens"));
    person.send(&format!("/auth {}\n", token_for("maria"))).await;
    person.until("* token accepted").await;
    person.send(&format!("/auth {}\n", token_for("alice"))).await;
    assert!(person.until("!").await.contains("another user"));

    let mut stranger = Lines::connect(server.tcp).await;
    stranger.send("/nick alice\n").await;
    assert!(stranger.until("!").await.contains("needs a token"));
    stranger.until("* disconnected: unauthorized").await;
    stranger.eof().await;
}

#[tokio::test]
async fn a_udp_client_authenticates_with_hellos_token_and_names_are_refused() {
    let server = token_server(|_| {}).await;
    let (player, hello) =
        Datagrams::hello_with(server.udp, json!({"op": "hello", "token": token_for("player1")})).await;
    assert_eq!(hello["user"], json!("player1"));
    let session = hello["session"].as_str().expect("session");
    assert_eq!(session.len(), 32, "128 bits of session token: {session}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    player.send(json!({"op": "ping", "id": 1})).await;
    assert_eq!(player.until(|v| v["re"] == json!(1)).await["ok"], json!(true));

    for (hello, code) in [
        (json!({"op": "hello", "name": "player1"}), "name_not_allowed"),
        (json!({"op": "hello"}), "token_required"),
        (json!({"op": "hello", "token": token(json!({"sub": "p", "exp": now() - 1}))}), "token_expired"),
    ] {
        let (impostor, answer) = Datagrams::hello_with(server.udp, hello.clone()).await;
        assert_eq!((answer["ev"].clone(), answer["code"].clone()), (json!("error"), json!(code)), "{hello}");
        assert_eq!(impostor.token.as_str(), "", "no session token was given");
    }
    // No session was made for any of them: only the player's is open.
    let open = server.metric("switchboard_connections_open{transport=\"udp\"}").await;
    assert_eq!(open, 1.0);
    // Someone else's address cannot take the session without its token.
    let mut forged = json!({"op": "join", "room": "lobby", "id": 3});
    forged["session"] = json!("0".repeat(32));
    player.send_raw(&forged).await;
    assert_eq!(player.until(|v| v["ev"] == json!("error")).await["code"], json!("no_session"));
    assert_eq!(player.token.as_str(), session);
    player.send(json!({"op": "ping", "id": 4})).await;
    assert_eq!(player.until(|v| v["re"] == json!(4)).await["ok"], json!(true));
}
