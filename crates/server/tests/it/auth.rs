//! Token mode over WebSocket: who may connect as whom, which rooms a token
//! opens, refreshing and expiry, origins, the metrics key and reloads.

use crate::support::{request, wait_for, within, RawClient, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_client::{Connection, Error};
use switchboard_server::config::ApiKey;
use switchboard_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const SECRET: &str = "integration-test-secret-32-bytes";

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An HS256 token with `claims`, signed with [`SECRET`].
pub(crate) fn token(claims: Value) -> String {
    signed(&claims, SECRET.as_bytes())
}

pub(crate) fn signed(claims: &Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).expect("key");
    encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign")
}

/// A token for `user` valid for ten minutes, every room allowed.
pub(crate) fn token_for(user: &str) -> String {
    token(json!({"sub": user, "exp": now() + 600}))
}

/// A server in token mode with [`SECRET`] and an API key for `/metrics`
/// (which the test server's metric readers send), adjusted by `adjust`.
pub(crate) async fn token_server(adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with(|config| {
        config.auth.jwt_hmac_secret = SECRET.into();
        let key = "metrics-key-for-the-tests".into();
        config.auth.api_keys = vec![ApiKey { name: "tests".into(), key, ..ApiKey::default() }];
        adjust(config);
    })
    .await
}

/// Sends an upgrade request for `path` with `headers` (CRLF-terminated
/// lines) and returns the answer's status and body.
pub(crate) async fn upgrade(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(within(stream.read(&mut byte)).await.expect("read"), 1, "closed inside the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ascii");
    let status = head[9..12].parse().expect("status");
    if status == 101 {
        return (101, String::new());
    }
    let mut body = String::new();
    within(stream.read_to_string(&mut body)).await.expect("body");
    (status, body)
}

/// The `code` of a refusal's JSON body.
fn code_of(body: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {body}"));
    parsed["code"].as_str().expect("code").to_owned()
}

async fn connect(server: &TestServer, token: &str) -> Connection {
    server.client_with_token(token).await
}

#[tokio::test]
async fn a_valid_token_names_the_connection_and_each_bad_one_is_refused_with_its_code() {
    let server = token_server(|config| {
        config.auth.jwt_audience = "chat".into();
        config.auth.jwt_issuer = "https://issuer.test".into();
    })
    .await;
    let claims = |extra: Value| {
        let mut claims = json!({"sub": "alice", "exp": now() + 600, "aud": "chat", "iss": "https://issuer.test"});
        for (key, value) in extra.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let good = token(claims(json!({})));
    let alice = connect(&server, &good).await;
    assert_eq!(alice.user, "alice");
    let (via_header, _) =
        RawClient::connect_with(server.addr, "/ws", &format!("Authorization: Bearer {good}\r\n")).await;
    drop(via_header);

    let cases = [
        (String::new(), "token_required"),
        (format!("?token={good}&name=mallory"), "name_not_allowed"),
        ("?name=alice".to_owned(), "name_not_allowed"),
        ("?token=not-a-jwt".to_owned(), "token_malformed"),
        (format!("?token={}", signed(&claims(json!({})), b"guess")), "token_invalid_signature"),
        (format!("?token={}", token(claims(json!({"exp": now() - 1})))), "token_expired"),
        (format!("?token={}", token(claims(json!({"nbf": now() + 300})))), "token_not_yet_valid"),
        (format!("?token={}", token(claims(json!({"aud": "other"})))), "token_wrong_audience"),
        (format!("?token={}", token(claims(json!({"iss": "https://evil.test"})))), "token_wrong_issuer"),
        (format!("?token={}", token(claims(json!({"sub": null})))), "token_invalid_claims"),
    ];
    for (query, code) in &cases {
        let (status, body) = upgrade(server.addr, &format!("/ws{query}"), "").await;
        assert_eq!((status, code_of(&body).as_str()), (401, *code), "{query}: {body}");
        assert!(!body.contains(SECRET), "no hint of the secret: {body}");
    }
    let counted = server.metric("switchboard_auth_failures_total{code=\"token_expired\"}").await;
    assert_eq!(counted, 1.0);
    assert_eq!(server.metric("switchboard_connections_refused_total{reason=\"auth\"}").await, cases.len() as f64);
}

#[tokio::test]
async fn an_es256_token_verifies_with_the_configured_public_key() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let dir = tempfile::tempdir().expect("dir");
    let public = dir.path().join("public.pem");
    std::fs::write(&public, pair.public_key_pem()).expect("write key");
    let server = TestServer::with(|config| config.auth.jwt_public_key = public).await;
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("private key");
    let claims = json!({"sub": "dana", "exp": now() + 600});
    let es256 = encode(&Header::new(Algorithm::ES256), &claims, &key).expect("sign");
    assert_eq!(connect(&server, &es256).await.user, "dana");
    let (status, body) = upgrade(server.addr, &format!("/ws?token={}", token(claims)), "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "token_invalid_signature"), "HS256 is not accepted");
}

#[tokio::test]
async fn a_token_opens_only_the_rooms_it_names_for_each_command() {
    let server = token_server(|_| {}).await;
    let rooms = json!([
        {"match": "chat.*", "allow": ["join", "send"]},
        {"match": "news", "allow": ["join", "history", "presence"]},
        {"match": "archive", "allow": ["history"]},
    ]);
    let mut bob = connect(&server, &token(json!({"sub": "bob", "exp": now() + 600, "rooms": rooms}))).await;
    let code = |reply: Value| reply["code"].as_str().map(str::to_owned);
    assert_eq!(code(request(&mut bob, json!({"op": "join", "room": "ops"})).await).as_deref(), Some("forbidden"));
    assert_eq!(request(&mut bob, json!({"op": "join", "room": "chat.lobby"})).await["ok"], json!(true));
    let sent = request(&mut bob, json!({"op": "send", "room": "chat.lobby", "body": "hi"})).await;
    assert_eq!(sent["ok"], json!(true), "{sent}");
    for op in ["history", "presence"] {
        let refused = request(&mut bob, json!({"op": op, "room": "chat.lobby"})).await;
        assert_eq!(code(refused).as_deref(), Some("forbidden"), "{op} is not allowed in chat.*");
    }
    assert_eq!(request(&mut bob, json!({"op": "join", "room": "news"})).await["ok"], json!(true));
    let refused = request(&mut bob, json!({"op": "send", "room": "news", "body": "x", "volatile": true})).await;
    assert_eq!(code(refused).as_deref(), Some("forbidden"), "news is read-only for bob");
    assert_eq!(request(&mut bob, json!({"op": "presence", "room": "news"})).await["users"], json!(["bob"]));
    let archive = request(&mut bob, json!({"op": "history", "room": "archive"})).await;
    assert_eq!(archive["ok"], json!(true), "history by permission, without membership: {archive}");
    let mut carol = connect(&server, &token_for("carol")).await;
    request(&mut carol, json!({"op": "join", "room": "secret"})).await;
    let listed = request(&mut bob, json!({"op": "rooms"})).await;
    assert_eq!(listed["rooms"], json!(["chat.lobby", "news"]), "only rooms bob's token lets him join: {listed}");
    let everything = request(&mut carol, json!({"op": "rooms"})).await;
    assert_eq!(everything["rooms"], json!(["chat.lobby", "news", "secret"]));
    assert_eq!(server.metric("switchboard_command_errors_total{code=\"forbidden\"}").await, 4.0);
}

#[tokio::test]
async fn nobody_can_read_another_users_dms_by_claiming_the_name() {
    let server = token_server(|_| {}).await;
    let mut carol = connect(&server, &token_for("carol")).await;
    let mut alice = connect(&server, &token_for("alice")).await;
    let stored = request(&mut carol, json!({"op": "dm", "to": "alice", "body": "the secret plan"})).await;
    assert_eq!(stored["ok"], json!(true));
    wait_for(&mut alice, |event| event["ev"] == json!("dm")).await;
    let (status, body) = upgrade(server.addr, "/ws?name=alice", "").await;
    assert_eq!((status, code_of(&body).as_str()), (401, "name_not_allowed"));
    let mut mallory = connect(&server, &token_for("mallory")).await;
    let inbox = request(&mut mallory, json!({"op": "inbox", "since": 0})).await;
    assert_eq!((inbox["ok"].clone(), inbox["seq"].clone()), (json!(true), json!(0)), "mallory's own, empty: {inbox}");
    let second_tab =
        request(&mut connect(&server, &token_for("alice")).await, json!({"op": "inbox", "since": 0})).await;
    assert_eq!(second_tab["seq"], json!(1), "alice's own inbox, from her second tab");
}

#[tokio::test]
async fn presence_shows_the_public_info_of_each_token() {
    let server = token_server(|_| {}).await;
    let info = json!({"name": "Erin E.", "avatar": 7});
    let mut erin = connect(&server, &token(json!({"sub": "erin", "exp": now() + 600, "info": info}))).await;
    let mut frank = connect(&server, &token_for("frank")).await;
    request(&mut frank, json!({"op": "join", "room": "r"})).await;
    request(&mut erin, json!({"op": "join", "room": "r"})).await;
    let joined = wait_for(&mut frank, |event| event["ev"] == json!("join")).await;
    assert_eq!(joined, json!({"ev": "join", "room": "r", "user": "erin", "info": info}));
    let listed = request(&mut frank, json!({"op": "presence", "room": "r"})).await;
    assert_eq!((listed["users"].clone(), listed["info"].clone()), (json!(["erin", "frank"]), json!({"erin": info})));
}

#[tokio::test]
async fn a_fresh_token_extends_the_connection_and_may_not_change_its_user() {
    let server = token_server(|config| config.auth.expiry_warning = Duration::from_secs(60)).await;
    // Four seconds: the refresh below must arrive before `exp` even on a
    // machine that stalls for a second or two.
    let short = token(json!({"sub": "gina", "exp": now() + 4}));
    let mut refreshed = connect(&server, &short).await;
    let mut lapsed = connect(&server, &short).await;
    // Inside the warning period from the start: warned at once.
    let warned = wait_for(&mut refreshed, |event| event["ev"] == json!("token_expiring")).await;
    assert!(warned["seconds_left"].as_u64().expect("seconds_left") <= 4, "{warned}");
    let other = request(&mut refreshed, json!({"op": "auth", "token": token_for("mallory")})).await;
    assert_eq!(other["code"], json!("token_user_mismatch"));
    let stale =
        request(&mut refreshed, json!({"op": "auth", "token": token(json!({"sub": "gina", "exp": now() - 5}))})).await;
    assert_eq!(stale["code"], json!("token_expired"));
    let later = now() + 600;
    let fresh =
        request(&mut refreshed, json!({"op": "auth", "token": token(json!({"sub": "gina", "exp": later}))})).await;
    assert_eq!((fresh["ok"].clone(), fresh["exp"].clone()), (json!(true), json!(later)));
    // The connection that kept its token is closed at `exp` with 4005...
    let closed = within(async {
        loop {
            match lapsed.next_event().await {
                Err(Error::Closed(frame)) => return frame,
                Err(error) => panic!("{error}"),
                Ok(_) => {}
            }
        }
    })
    .await;
    let frame = closed.expect("a close frame");
    assert_eq!((u16::from(frame.code), frame.reason.as_ref()), (4005, "token expired"));
    // ...and the refreshed one, past the same `exp`, is still served.
    assert_eq!(request(&mut refreshed, json!({"op": "ping"})).await["ok"], json!(true));
    assert_eq!(server.metric("switchboard_connections_closed_total{code=\"4005\"}").await, 1.0);
}

#[tokio::test]
async fn a_refreshed_token_that_drops_a_room_removes_the_connection_from_it() {
    let server = token_server(|_| {}).await;
    let wide = token(json!({"sub": "hal", "exp": now() + 600}));
    let mut hal = connect(&server, &wide).await;
    request(&mut hal, json!({"op": "join", "room": "ops"})).await;
    request(&mut hal, json!({"op": "join", "room": "chat.x"})).await;
    let narrow =
        token(json!({"sub": "hal", "exp": now() + 600, "rooms": [{"match": "chat.*", "allow": ["join", "send"]}]}));
    assert_eq!(request(&mut hal, json!({"op": "auth", "token": narrow})).await["ok"], json!(true));
    let removed = wait_for(&mut hal, |event| event["ev"] == json!("removed")).await;
    assert_eq!((removed["room"].clone(), removed["code"].clone()), (json!("ops"), json!("forbidden")));
    let send = request(&mut hal, json!({"op": "send", "room": "ops", "body": 1})).await;
    assert_eq!(send["code"], json!("not_member"));
    assert_eq!(request(&mut hal, json!({"op": "send", "room": "chat.x", "body": 1})).await["ok"], json!(true));
}

#[tokio::test]
async fn browser_upgrades_from_other_origins_are_refused_and_listed_ones_accepted() {
    let same = TestServer::start().await;
    let own = format!("Origin: http://{}\r\n", same.addr);
    assert_eq!(upgrade(same.addr, "/ws", &own).await.0, 101, "the page's own origin");
    assert_eq!(upgrade(same.addr, "/ws", "").await.0, 101, "no Origin: not a browser");
    let (status, body) = upgrade(same.addr, "/ws", "Origin: https://evil.example\r\n").await;
    assert_eq!((status, code_of(&body).as_str()), (403, "origin_not_allowed"));
    assert_eq!(same.metric("switchboard_connections_refused_total{reason=\"origin\"}").await, 1.0);

    let listed = TestServer::with(|config| config.auth.allowed_origins = vec!["https://*.example.com".into()]).await;
    assert_eq!(upgrade(listed.addr, "/ws", "Origin: https://app.example.com\r\n").await.0, 101);
    assert_eq!(upgrade(listed.addr, "/ws", "Origin: https://example.org\r\n").await.0, 403);
    let own = format!("Origin: http://{}\r\n", listed.addr);
    assert_eq!(upgrade(listed.addr, "/ws", &own).await.0, 403, "a list replaces same-origin");
}

/// `/metrics` as `key` (none: no Authorization header): the status and,
/// for a refusal, the JSON body's `code`.
async fn metrics_status(addr: SocketAddr, key: Option<&str>) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    within(stream.read_to_string(&mut answer)).await.expect("read");
    let status = answer[9..12].parse().expect("status");
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    (status, (status != 200).then(|| code_of(body)))
}

#[tokio::test]
async fn in_token_mode_metrics_need_an_api_key_unless_made_public() {
    let server = token_server(|_| {}).await;
    let key = server.config.auth.api_keys[0].key.clone();
    let refused = |code: &str| (401, Some(code.to_owned()));
    assert_eq!(metrics_status(server.addr, None).await, refused("api_key_required"));
    assert_eq!(metrics_status(server.addr, Some("wrong-key-0123456789")).await, refused("api_key_invalid"));
    assert_eq!(metrics_status(server.addr, Some(&key)).await, (200, None));
    let public = token_server(|config| config.metrics.public = true).await;
    assert_eq!(metrics_status(public.addr, None).await, (200, None));
    assert_eq!(metrics_status(TestServer::start().await.addr, None).await, (200, None), "open mode");
}

#[tokio::test]
async fn a_reload_rotates_the_secret_without_dropping_connections_and_a_broken_one_changes_nothing() {
    let server = token_server(|_| {}).await;
    let mut ida = connect(&server, &token_for("ida")).await;
    let mut rotated = server.config.clone();
    rotated.auth.jwt_hmac_secret = "the-next-secret-of-thirty-two-b".into();
    rotated.auth.jwt_hmac_previous_secret = SECRET.into();
    server.reload(rotated.clone()).await;
    let next = signed(&json!({"sub": "jon", "exp": now() + 600}), b"the-next-secret-of-thirty-two-b");
    let jon = within(async {
        loop {
            if let Ok(client) = Connection::connect(&format!("ws://{}/ws?token={next}", server.addr)).await {
                return client;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(jon.user, "jon");
    assert_eq!(connect(&server, &token_for("kim")).await.user, "kim", "the previous secret still works");
    let mut broken = rotated;
    broken.auth.jwt_hmac_secret = "a-secret-nobody-signs-with-at-all".into();
    broken.auth.jwt_public_key = "/nonexistent/key.pem".into();
    server.reload(broken).await;
    within(async {
        while server.metric("switchboard_config_reloads_total{result=\"refused\"}").await < 1.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(server.metric("switchboard_config_reloads_total{result=\"applied\"}").await, 1.0);
    assert_eq!(connect(&server, &next).await.user, "jon", "the running secrets stay in force");
    assert_eq!(connect(&server, &token_for("lee")).await.user, "lee");
    assert_eq!(request(&mut ida, json!({"op": "ping"})).await["ok"], json!(true), "connections stay open");
}
