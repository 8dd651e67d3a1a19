//! `/api/info` (public: how the pages learn the mode) and `/api/stats` (the
//! dashboard's numbers, behind the API key) over HTTP: who may read them,
//! and that the numbers are the server's counters, moving with what the
//! test does on WebSocket and UDP.

use crate::api_support::{with_key, Answer, Api, KEY};
use crate::auth::token_server;
use crate::support::{request, within, Datagrams, TestServer, PATIENCE};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn in_token_mode_info_is_public_and_the_dashboard_data_needs_an_api_key() {
    let server = token_server(with_key).await;
    let anonymous = Api::new(&server);
    let info = anonymous.get("/api/info").await;
    assert_eq!((info.body["auth"].clone(), info.body["api_key_required"].clone()), (json!("token"), json!(true)));
    assert_eq!(info.body["version"], json!(env!("CARGO_PKG_VERSION")));
    for path in ["/api/stats", "/api/connections"] {
        let refused = anonymous.get(path).await;
        assert_eq!((refused.status, refused.code()), (401, "api_key_required"), "{path}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        let wrong = Api { key: Some("not-a-key-of-this-server".into()), ..Api::new(&server) };
        let refused = wrong.get(path).await;
        assert_eq!((refused.status, refused.code()), (401, "api_key_invalid"), "{path}");
        assert_eq!(Api { key: Some(KEY.into()), ..Api::new(&server) }.get(path).await.status, 200, "{path}");
    }
}

/// `/api/stats` once it satisfies `check` (within [`PATIENCE`]; the last answer is shown otherwise).
async fn stats_when(api: &Api, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            let Answer { status, body, .. } = api.get("/api/stats").await;
            assert_eq!(status, 200, "{body}");
            if check(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("the stats never got there; the last answer: {last}"))
}

#[tokio::test]
async fn stats_count_connections_by_transport_messages_deliveries_drops_and_queued_bytes() {
    // Small enough for a datagram over it: a drop (`udp_too_large`) to count.
    let server = TestServer::with(|config| config.limits.max_message_size = 1400).await;
    let api = Api::new(&server);
    let info = api.get("/api/info").await;
    assert_eq!((info.body["auth"].clone(), info.body["api_key_required"].clone()), (json!("open"), json!(false)));
    let idle = stats_when(&api, |_| true).await;
    assert_eq!(
        idle["connections"],
        json!({"websocket": 0, "sse": 0, "tcp_json": 0, "tcp_text": 0, "udp": 0, "echo": 0})
    );
    let reasons = idle["dropped"].as_object().cloned().unwrap_or_default();
    assert!(reasons.len() >= 12 && reasons.values().all(|count| count == &json!(0)), "every reason, at 0: {reasons:?}");
    assert_eq!((idle["messages_published"].clone(), idle["queued_bytes"].clone()), (json!(0), json!(0)));

    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for client in [&mut alice, &mut bob] {
        request(client, json!({"op": "join", "room": "lobby"})).await;
    }
    request(&mut alice, json!({"op": "send", "room": "lobby", "body": "hi"})).await;
    let player = Datagrams::hello(server.udp, "player").await;
    player.send(json!({"op": "ping", "pad": "y".repeat(1500)})).await;
    player.until(|v| v["ev"] == json!("error")).await;

    let busy =
        stats_when(&api, |s| s["messages_published"] == json!(1) && s["dropped"]["udp_too_large"] == json!(1)).await;
    assert_eq!((busy["connections"]["websocket"].clone(), busy["connections"]["udp"].clone()), (json!(2), json!(1)));
    assert_eq!(busy["rooms"], json!(1));
    assert!(busy["deliveries"].as_u64().unwrap_or_default() >= 2, "the message reached both members: {busy}");
    assert!(busy["uptime_ms"].as_u64() >= idle["uptime_ms"].as_u64());
    // The same counters /metrics exposes.
    let published = server.metric("switchboard_messages_published_total").await;
    assert_eq!(busy["messages_published"].as_f64(), Some(published));
    // Queues drain between two reads (the flush clock ticks on): compare
    // a table and the stats read back to back until they agree.
    within(async {
        loop {
            let table = api.get("/api/connections").await;
            let rows = table.body["connections"].as_array().cloned().unwrap_or_default();
            let queued: u64 = rows.iter().filter_map(|row| row["queued_bytes"].as_u64()).sum();
            if api.get("/api/stats").await.body["queued_bytes"] == json!(queued) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    within(bob.close()).await.expect("close");
    stats_when(&api, |s| s["connections"]["websocket"] == json!(1)).await;
}
