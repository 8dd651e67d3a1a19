//! Who may call the HTTP API and how it answers what it cannot serve: API
//! keys (open on loopback in open mode, required otherwise), origins and
//! CORS, rates, unknown routes and methods, HEAD, media types, bad JSON,
//! body limits and keep-alive. Real HTTP clients against a real server.

use crate::api_support::{raw, with_key, Api, KEY};
use crate::support::TestServer;
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "a-secret-of-thirty-two-bytes-yes";

#[tokio::test]
async fn the_api_is_open_in_open_mode_without_keys_and_needs_a_valid_key_otherwise() {
    let open = TestServer::start().await;
    let answer = Api::new(&open).post("/api/rooms/lobby/messages", &json!({"body": "hi"})).await;
    assert_eq!(answer.status, 201, "{answer:?}");

    let keyed = TestServer::with(with_key).await;
    let anonymous = Api::new(&keyed).post("/api/rooms/lobby/messages", &json!({"body": "hi"})).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "api_key_required"));
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let wrong = Api { key: Some("not-the-key-0123456789".into()), ..Api::new(&keyed) };
    let refused = wrong.post("/api/rooms/lobby/messages", &json!({"body": "hi"})).await;
    assert_eq!((refused.status, refused.code()), (401, "api_key_invalid"));
    let accepted = Api::keyed(&keyed).post("/api/rooms/lobby/messages", &json!({"body": "hi"})).await;
    assert_eq!(accepted.status, 201, "{accepted:?}");

    // Token mode: a key is needed, and without any configured none can be given.
    let token = TestServer::with(|config| {
        config.auth.jwt_hmac_secret = SECRET.into();
        with_key(config);
    })
    .await;
    assert_eq!(Api::new(&token).get("/api/rooms").await.code(), "api_key_required");
    assert_eq!(Api::keyed(&token).get("/api/rooms").await.status, 200);
    let keyless = TestServer::with(|config| config.auth.jwt_hmac_secret = SECRET.into()).await;
    assert_eq!(Api { key: Some(KEY.into()), ..Api::new(&keyless) }.get("/api/rooms").await.code(), "api_key_invalid");
    assert_eq!(keyed.metric("switchboard_auth_failures_total{code=\"api_key_required\"}").await, 1.0);
    // Health stays public.
    assert_eq!(Api::new(&token).get("/healthz").await.status, 200);
}

#[tokio::test]
async fn preflights_from_allowed_origins_are_answered_and_other_origins_get_403() {
    let server = TestServer::with(|config| {
        config.auth.allowed_origins = vec!["https://app.example.com".into()];
        with_key(config);
    })
    .await;
    let api = Api::new(&server);
    let preflight = |origin: &str| {
        api.request(Method::OPTIONS, "/api/rooms/lobby/messages")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
    };
    let allowed = api.send(preflight("https://app.example.com")).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example.com"));
    let methods = allowed.header("access-control-allow-methods").unwrap_or_default().to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");

    let refused = api.send(preflight("https://evil.example")).await;
    assert_eq!((refused.status, refused.code()), (403, "origin_not_allowed"));
    assert!(refused.header("access-control-allow-origin").is_none());

    let keyed = Api::keyed(&server);
    let from_page =
        keyed.send(keyed.request(Method::GET, "/api/rooms").header("Origin", "https://app.example.com")).await;
    assert_eq!(from_page.status, 200);
    assert_eq!(from_page.header("access-control-allow-origin"), Some("https://app.example.com"));
    let other = keyed.send(keyed.request(Method::GET, "/api/rooms").header("Origin", "https://evil.example")).await;
    assert_eq!((other.status, other.code()), (403, "origin_not_allowed"));
    // A program sends no Origin and is not affected.
    assert_eq!(keyed.get("/api/rooms").await.status, 200);

    // By default only the server's own origin.
    let same = TestServer::start().await;
    let api = Api::new(&same);
    let own = api.send(api.request(Method::GET, "/api/rooms").header("Origin", format!("http://{}", same.addr))).await;
    assert_eq!(own.status, 200);
    let foreign = api.send(api.request(Method::GET, "/api/rooms").header("Origin", "http://127.0.0.1:1")).await;
    assert_eq!(foreign.code(), "origin_not_allowed");
}

#[tokio::test]
async fn requests_over_the_rate_get_429_with_retry_after() {
    let server = TestServer::with(|config| {
        with_key(config);
        config.api.requests_per_second = 1;
        config.api.requests_burst = 2;
    })
    .await;
    let api = Api::keyed(&server);
    // A burst of 2 passes; at 1 a second the next few cannot all pass, even
    // on a machine that stalls for a second between two of them.
    let mut passed = 0;
    let limited = loop {
        let answer = api.get("/api/rooms").await;
        if answer.status != 200 || passed == 6 {
            break answer;
        }
        passed += 1;
    };
    assert!(passed >= 2, "the burst passes");
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    // Health and metrics are not charged.
    assert_eq!(api.get("/healthz").await.status, 200);
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"api_rate\"}").await, 1.0);
}

#[tokio::test]
async fn unknown_routes_get_404_and_other_methods_405_with_allow() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let missing = api.get("/api/nothing-here").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    let wrong = api.send(api.request(Method::DELETE, "/api/rooms/lobby/messages")).await;
    assert_eq!((wrong.status, wrong.code()), (405, "method_not_allowed"));
    let allow = wrong.header("allow").unwrap_or_default().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST") && allow.contains("HEAD"), "{allow}");
    let put = api.send(api.request(Method::PUT, "/healthz")).await;
    assert_eq!(put.status, 405);
    assert!(put.header("allow").unwrap_or_default().contains("GET"), "{put:?}");
    let counted =
        "switchboard_http_requests_total{route=\"/api/rooms/{room}/messages\",method=\"DELETE\",status=\"405\"}";
    assert_eq!(server.metric(counted).await, 1.0);
    assert_eq!(
        server.metric("switchboard_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}").await,
        1.0
    );
}

#[tokio::test]
async fn head_answers_wherever_get_does_without_a_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/healthz", "/readyz", "/metrics", "/api/rooms", "/api/openapi.json", "/api/rooms/r/messages"] {
        let get = api.get(path).await;
        let head = api.send(api.request(Method::HEAD, path)).await;
        assert_eq!((head.status, get.status), (200, 200), "{path}");
        assert_eq!(head.body, json!(""), "{path}: HEAD has no body");
        assert_eq!(head.header("content-type"), get.header("content-type"), "{path}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_get_415_and_malformed_ones_400_saying_where() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let path = "/api/rooms/lobby/messages";
    let text = api.send(api.request(Method::POST, path).header("content-type", "text/plain").body("hello")).await;
    assert_eq!((text.status, text.code()), (415, "unsupported_media_type"));
    let json_body =
        |body: &'static str| api.request(Method::POST, path).header("content-type", "application/json").body(body);
    let broken = api.send(json_body("{\"body\": 1,")).await;
    assert_eq!((broken.status, broken.code()), (400, "bad_json"));
    assert!(broken.body["error"].as_str().unwrap_or_default().contains("line 1 column"), "{broken:?}");
    assert_eq!(api.send(json_body("[1, 2]")).await.code(), "bad_json");
    let missing = api.post(path, &json!({"text": "no body"})).await;
    assert_eq!(missing.code(), "bad_request");
    assert!(missing.body["error"].as_str().unwrap_or_default().contains("`body`"), "{missing:?}");
    let typed = api.post(path, &json!({"body": 1, "volatile": "yes"})).await;
    assert!(typed.body["error"].as_str().unwrap_or_default().contains("`volatile`"), "{typed:?}");
    let from = api.post(path, &json!({"body": 1, "from": "not a name"})).await;
    assert_eq!((from.status, from.code()), (400, "bad_user"));
    let long_room = format!("/api/rooms/{}/messages", "r".repeat(129));
    assert_eq!(api.post(&long_room, &json!({"body": 1})).await.code(), "bad_room");
    assert_eq!(api.post("/api/users/a%20b/messages", &json!({"body": 1})).await.code(), "bad_user");
    let limit = api.get("/api/rooms/lobby/messages?limit=501").await;
    assert_eq!((limit.status, limit.code()), (400, "bad_request"));
    let query = api.get("/api/rooms/lobby/messages?before=soon").await;
    assert_eq!((query.status, query.code()), (400, "bad_request"));
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_declared_or_chunked() {
    let server = TestServer::with(|config| {
        config.limits.http_max_body = 1024;
        config.limits.max_message_size = 200;
    })
    .await;
    let padding = "x".repeat(4000);
    let body = format!("{{\"body\": \"{padding}\"}}");
    let declared = format!(
        "POST /api/rooms/r/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&server, declared.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("\"too_large\""), "{answer}");
    let chunks: String = body
        .as_bytes()
        .chunks(500)
        .map(|chunk| format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)))
        .collect();
    let chunked = format!(
        "POST /api/rooms/r/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
    );
    let answer = raw(&server, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("\"too_large\""), "{answer}");
    assert_eq!(server.metric("switchboard_limit_hits_total{reason=\"http_body_too_large\"}").await, 2.0);
    // A body within the request limit but a message over limits.max_message_size.
    let message = Api::new(&server).post("/api/rooms/r/messages", &json!({"body": "y".repeat(300)})).await;
    assert_eq!((message.status, message.code()), (413, "too_large"));
    assert!(message.body["error"].as_str().unwrap_or_default().contains("message body"), "{message:?}");
}

#[tokio::test]
async fn one_connection_serves_request_after_request() {
    let server = TestServer::start().await;
    let request = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let last = "GET /api/rooms HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = raw(&server, format!("{request}{request}{last}").as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    assert!(answer.ends_with("{\"rooms\":[]}"), "{answer}");
}
