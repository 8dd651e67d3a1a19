//! Server-Sent Events followers and trust: tokens (`?token=`, because
//! EventSource cannot set headers, or `Authorization: Bearer`), the rooms a
//! token allows, expiry, origins and CORS, per-address limits.

use crate::auth::{now, token, token_for, token_server};
use crate::sse_client::{code, refused, EventStream};
use crate::support::{request, within, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn token_mode_followers_need_a_token_that_allows_every_room() {
    let server = token_server(|_| {}).await;
    let addr = server.addr;
    for (target, status, wire) in [
        ("/api/rooms/news.a/events", 401, "token_required"),
        ("/api/rooms/news.a/events?name=nina", 401, "name_not_allowed"),
        ("/api/rooms/news.a/events?token=not-a-jwt", 401, "token_malformed"),
    ] {
        let (got, _, body) = refused(addr, target, "").await;
        assert_eq!((got, code(&body).as_str()), (status, wire), "{target}");
    }
    let expired = token(json!({"sub": "nina", "exp": now() - 10}));
    let (got, _, body) = refused(addr, &format!("/api/rooms/news.a/events?token={expired}"), "").await;
    assert_eq!((got, code(&body).as_str()), (401, "token_expired"));

    let news_only = token(json!({
        "sub": "nina",
        "exp": now() + 600,
        "info": {"team": "desk"},
        "rooms": [{"match": "news.*", "allow": ["join"]}]
    }));
    let (got, _, body) = refused(addr, &format!("/api/events?rooms=news.a,chat&token={news_only}"), "").await;
    assert_eq!((got, code(&body).as_str()), (403, "forbidden"), "one room it may not join refuses the stream");
    assert_eq!(server.metric("switchboard_connections_refused_total{reason=\"forbidden\"}").await, 1.0);

    let mut follower = EventStream::open(addr, &format!("/api/events?rooms=news.a,news.b&token={news_only}"), "").await;
    assert_eq!(follower.until("hello").await.json()["user"], json!("nina"), "the token names the follower");
    let mut bearer =
        EventStream::open(addr, "/api/rooms/news.a/events", &format!("Authorization: Bearer {news_only}\r\n")).await;
    assert_eq!(bearer.until("hello").await.json()["user"], json!("nina"));

    // The follower is in the room's presence with its token's info.
    let mut editor = server.client_with_token(&token_for("ed")).await;
    request(&mut editor, json!({"op": "join", "room": "news.a"})).await;
    let present = request(&mut editor, json!({"op": "presence", "room": "news.a"})).await;
    assert_eq!(
        (present["users"].clone(), present["info"].clone()),
        (json!(["ed", "nina"]), json!({"nina": {"team": "desk"}}))
    );
    request(&mut editor, json!({"op": "send", "room": "news.a", "body": "hello"})).await;
    let message = follower.until("message").await;
    assert_eq!((message.json()["from"].clone(), message.json()["body"].clone()), (json!("ed"), json!("hello")));
}

#[tokio::test]
async fn an_expiring_token_is_announced_and_closes_the_stream_with_4005() {
    let server = token_server(|config| config.auth.expiry_warning = Duration::from_secs(60)).await;
    let short = token(json!({"sub": "otto", "exp": now() + 2}));
    let mut follower = EventStream::open(server.addr, &format!("/api/rooms/lobby/events?token={short}"), "").await;
    let warned = follower.until("token_expiring").await.json();
    assert!(warned["seconds_left"].as_u64().expect("seconds_left") <= 2, "{warned}");
    let close = follower.last_event().await.expect("a close event");
    assert_eq!(
        (close.name(), close.json()),
        ("close", json!({"ev": "close", "code": 4005, "reason": "token expired"}))
    );
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"4005\"}").await, 1.0);
}

#[tokio::test]
async fn cross_origin_pages_are_refused_and_listed_ones_are_told_they_may_read() {
    let same = TestServer::start().await;
    let own = format!("Origin: http://{}\r\n", same.addr);
    let follower = EventStream::open(same.addr, "/api/rooms/a/events", &own).await;
    assert!(follower.head.contains(&format!("Access-Control-Allow-Origin: http://{}\r\n", same.addr)));
    let programs = EventStream::open(same.addr, "/api/rooms/a/events", "").await;
    assert!(!programs.head.contains("Access-Control"), "no Origin, no CORS: {}", programs.head);
    let (status, _, body) = refused(same.addr, "/api/rooms/a/events", "Origin: https://evil.example\r\n").await;
    assert_eq!((status, code(&body).as_str()), (403, "origin_not_allowed"));
    assert_eq!(same.metric("switchboard_connections_refused_total{reason=\"origin\"}").await, 1.0);

    let listed = TestServer::with(|config| config.auth.allowed_origins = vec!["https://*.example.com".into()]).await;
    let allowed = EventStream::open(listed.addr, "/api/rooms/a/events", "Origin: https://app.example.com\r\n").await;
    assert!(allowed.head.contains("\r\nAccess-Control-Allow-Origin: https://app.example.com\r\nVary: Origin\r\n"));
    let (status, _, _) = refused(listed.addr, "/api/rooms/a/events", "Origin: https://example.org\r\n").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn followers_count_against_their_address_s_connections() {
    let server = TestServer::with(|config| {
        config.limits.exempt_networks = Vec::new();
        config.limits.connections_per_ip = 2;
    })
    .await;
    let first = EventStream::open(server.addr, "/api/rooms/a/events", "").await;
    let alice = server.client("alice").await;
    let (status, head, _) = refused(server.addr, "/api/rooms/a/events", "").await;
    assert!(status == 429 && head.contains("Retry-After: 1"), "{head}");
    // The follower leaves: its slot is free again (once the server saw it go).
    drop(first);
    let _again = within(async {
        loop {
            let mut stream = TcpStream::connect(server.addr).await.expect("connect");
            let request = format!("GET /api/rooms/a/events HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut status = [0u8; 12];
            stream.read_exact(&mut status).await.expect("status line");
            if &status[9..] == b"200" {
                return stream;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Room for the scrape.
    drop(alice);
    assert!(server.metric("switchboard_limit_hits_total{reason=\"ip_connections\"}").await >= 1.0);
}
