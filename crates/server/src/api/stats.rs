//! What the web pages (and any program) ask of the server as a whole.
//!
//! - `GET /api/info`, public: the version, the authentication mode and
//!   whether the API needs a key. The chat page reads it to ask for a name
//!   (open mode) or a token (token mode), the dashboard to ask for an API
//!   key only when one is needed. It tells nothing an upgrade's 401 or the
//!   API's 401 would not.
//! - `GET /api/stats`, behind the API key: the dashboard's numbers, once a
//!   second. Counters are totals since the server started (`uptime_ms` says
//!   when that was); a reader takes differences between two answers for
//!   rates. They are the counters `/metrics` exposes (`crate::metrics`),
//!   read where they are kept; `queued_bytes` is summed over the open
//!   connections when asked (O(connections), like the connection table).

use super::auth::{is_open, Caller};
use super::openapi::{json_answer, json_response, operation, secured};
use super::{ApiState, Endpoint};
use crate::hub::conn::Transport;
use crate::metrics::DropReason;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{json, Map, Value};

pub fn endpoints() -> Vec<Endpoint> {
    let info = operation(
        "meta",
        "The server's version, authentication mode (open or token) and whether the API needs a key. Public.",
        &[],
        json!({ "200": json_answer("the server", json!({ "version": "0.1.0", "auth": "open", "api_key_required": false })) }),
    );
    let example = json!({
        "uptime_ms": 73_021, "connections": { "websocket": 2, "sse": 1, "tcp_json": 0, "tcp_text": 0, "udp": 0, "echo": 0 },
        "rooms": 1, "messages_published": 40, "messages_stored": 42, "deliveries": 120,
        "dropped": { "slow_consumer": 0, "closing": 1 }, "queued_bytes": 0 });
    let stats = secured(operation(
        "meta",
        "Live totals for the dashboard: open connections by transport, rooms, room messages published, messages \
         stored (rooms and DMs), deliveries, drops by reason (every reason, 0 included), bytes in outbound queues. \
         Counters count since the server started (uptime_ms).",
        &[],
        json!({ "200": json_answer("a snapshot", example) }),
    ));
    vec![
        Endpoint { method: Method::GET, path: "/api/info", handler: get(server_info), operation: info },
        Endpoint { method: Method::GET, path: "/api/stats", handler: get(snapshot), operation: stats },
    ]
}

async fn server_info(State(state): State<ApiState>) -> Response {
    let auth = if state.hub.policy().token_mode() { "token" } else { "open" };
    let body = json!({ "version": env!("CARGO_PKG_VERSION"), "auth": auth, "api_key_required": !is_open(&state.hub) });
    json_response(StatusCode::OK, &body)
}

async fn snapshot(State(state): State<ApiState>, _caller: Caller) -> Response {
    let hub = &state.hub;
    let metrics = &hub.metrics;
    let connections: Map<String, Value> = Transport::ALL
        .iter()
        .map(|transport| (transport.as_str().to_owned(), metrics.open_count(*transport).into()))
        .collect();
    let dropped: Map<String, Value> = DropReason::ALL
        .iter()
        .map(|reason| (reason.as_str().to_owned(), metrics.dropped_count(*reason).into()))
        .collect();
    let body = json!({
        "uptime_ms": hub.now_ms(),
        "connections": connections,
        "rooms": metrics.rooms.get(),
        "messages_published": metrics.messages_published.get(),
        "messages_stored": metrics.messages_stored.get(),
        "deliveries": metrics.deliveries.get(),
        "dropped": dropped,
        "queued_bytes": hub.queued_bytes_total(),
    });
    json_response(StatusCode::OK, &body)
}
