//! Rooms over HTTP: publish (`POST /api/rooms/{room}/messages`), history
//! pages (`GET` on the same path), presence and the list of rooms. Every
//! route needs the API key (see [`Caller`]); an API key may publish to and
//! read any room.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{json_answer, json_body, json_response, operation, parameter, secured};
use super::publish::{publish, Fields};
use super::{ApiState, Endpoint};
use crate::hub::PageQuery;
use crate::store::LogKind;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchboard_protocol::command::validate_room;
use switchboard_protocol::ErrorCode;

/// Messages in a page when no `limit` is given, and the most one may ask for.
pub const PAGE_DEFAULT: u64 = 50;
pub const PAGE_MAX: u64 = crate::hub::HISTORY_MAX_LIMIT;

pub fn endpoints() -> Vec<Endpoint> {
    let room = || parameter("room", "path", json!({ "type": "string", "maxLength": 128 }), "the room");
    let error = json!({ "$ref": "#/components/responses/Error" });
    let publish_body = json!({ "type": "object", "required": ["body"], "properties": {
        "body": { "description": "any JSON value" },
        "from": { "type": "string", "description": "the sender shown to members (default: the API key's name)" },
        "volatile": { "type": "boolean", "description": "deliver now, do not store (answer: ts only)" },
        "idempotency_key": { "type": "string", "maxLength": 256,
            "description": "a repeat within api.idempotency_window gets the first answer and stores nothing" } } });
    let mut publish_op = secured(operation(
        "rooms",
        "Publishes a message to a room's members on every transport, once stored as storage.sync promises.",
        &[room()],
        json!({ "201": json_answer("stored", json!({ "seq": 12, "epoch": 4_503_599_627_370_495_u64, "ts": 1_767_225_600_000_u64 })),
                "200": json_answer("volatile: delivered, not stored", json!({ "ts": 1_767_225_600_000_u64 })),
                "400": error, "413": error, "415": error, "503": error }),
    ));
    publish_op["requestBody"] = json_body(publish_body);
    let history_op = secured(operation(
        "rooms",
        "A page of the room's stored messages, oldest first.",
        &[
            room(),
            parameter("before", "query", json!({ "type": "integer" }), "only messages with a smaller seq"),
            parameter(
                "after",
                "query",
                json!({ "type": "integer" }),
                "only messages with a greater seq (pages forward)",
            ),
            parameter("limit", "query", json!({ "type": "integer", "minimum": 1, "maximum": PAGE_MAX }), "default 50"),
        ],
        json!({ "200": json_answer("a page", json!({ "room": "lobby", "epoch": 4_503_599_627_370_495_u64, "first_seq": 1,
                    "last_seq": 12, "messages": [{ "seq": 12, "from": "alice", "ts": 1_767_225_600_000_u64, "body": "hi" }],
                    "more": true })),
                "400": error, "503": error }),
    ));
    vec![
        Endpoint {
            method: Method::POST,
            path: "/api/rooms/{room}/messages",
            handler: post(publish_to_room),
            operation: publish_op,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/rooms/{room}/messages",
            handler: get(history),
            operation: history_op,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/rooms/{room}/presence",
            handler: get(presence),
            operation: secured(operation(
                "rooms",
                "The users present in a room, with their token's info.",
                &[room()],
                json!({ "200": json_answer("the users", json!({ "room": "lobby",
                    "users": [{ "user": "alice", "info": { "name": "Alice" } }, { "user": "bob" }] })), "400": error }),
            )),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/rooms",
            handler: get(rooms),
            operation: secured(operation(
                "rooms",
                "Every room with members, with its counts.",
                &[],
                json!({ "200": json_answer("the rooms", json!({ "rooms": [{ "room": "lobby", "users": 2, "connections": 3 }] })) }),
            )),
        },
    ]
}

fn checked_room(room: String) -> Result<String, ApiError> {
    validate_room(&room).map_err(|message| ApiError::bad(ErrorCode::BadRoom, message))?;
    Ok(room)
}

async fn publish_to_room(
    State(state): State<ApiState>,
    caller: Caller,
    Path(room): Path<String>,
    JsonBody(fields): JsonBody<Fields>,
) -> Result<Response, ApiError> {
    publish(&state, &caller, LogKind::Room, checked_room(room)?, fields).await
}

/// A page of history as answered: bodies verbatim, as sent.
#[derive(Serialize)]
struct Page<'a> {
    room: &'a str,
    epoch: Option<u64>,
    first_seq: u64,
    last_seq: u64,
    messages: Vec<PageMessage<'a>>,
    more: bool,
}

#[derive(Serialize)]
struct PageMessage<'a> {
    seq: u64,
    from: &'a str,
    ts: u64,
    body: &'a RawValue,
}

#[derive(Serialize)]
struct Presence<'a> {
    room: &'a str,
    users: Vec<Present<'a>>,
}

#[derive(Serialize)]
struct Present<'a> {
    user: &'a str,
    /// The token's public `info`, verbatim (token mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct PageParams {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u64>,
}

async fn history(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(room): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Response, ApiError> {
    let room = checked_room(room)?;
    let limit = params.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad(ErrorCode::BadRequest, format!("`limit` must be 1 to {PAGE_MAX}")));
    }
    let query = PageQuery { before: params.before, after: params.after, limit };
    let page = state.hub.history_page(&room, query).await.map_err(|error| {
        tracing::error!(%error, room, "history read failed");
        ApiError::unavailable(ErrorCode::StorageFailed, "history could not be read")
    })?;
    let messages = page
        .messages
        .iter()
        .map(|message| PageMessage { seq: message.seq, from: &message.from, ts: message.ts, body: &message.body })
        .collect();
    let (epoch, first_seq, last_seq, more) = (page.epoch, page.first_seq, page.last_seq, page.more);
    let answer = Page { room: &room, epoch, first_seq, last_seq, messages, more };
    Ok(json_response(StatusCode::OK, &answer))
}

async fn presence(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    let room = checked_room(room)?;
    let members = state.hub.members_of(&room).await.map_err(|error| {
        tracing::warn!(room, %error, "presence could not be listed");
        ApiError::unavailable(ErrorCode::Unavailable, "the cluster cannot reach Redis to list presence; retry")
    })?;
    let present: Vec<Present<'_>> =
        members.iter().map(|(user, info)| Present { user, info: info.as_deref() }).collect();
    Ok(json_response(StatusCode::OK, &Presence { room: &room, users: present }))
}

async fn rooms(State(state): State<ApiState>, _caller: Caller) -> Response {
    let rooms: Vec<Value> = state
        .hub
        .room_summaries()
        .into_iter()
        .map(|room| json!({ "room": room.name, "users": room.users, "connections": room.connections }))
        .collect();
    json_response(StatusCode::OK, &json!({ "rooms": rooms }))
}
