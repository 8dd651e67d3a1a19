//! The connection table over HTTP (`GET /api/connections?user=&room=`, the
//! "diary": which socket is whose) and kicks: `DELETE /api/connections/{id}`
//! and `DELETE /api/users/{user}/connections`, with an optional
//! `{"reason": TEXT}`, close the connections with 4010 and the reason
//! (`hub::table` builds the rows and does the closing). Every route needs
//! the API key.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{json_answer, operation, parameter, secured};
use super::{ApiState, Endpoint};
use crate::hub::TableFilter;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_protocol::command::validate_user;
use switchboard_protocol::ErrorCode;

pub fn endpoints() -> Vec<Endpoint> {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let row = json!({ "id": 7, "fd": 23, "transport": "websocket", "peer": "127.0.0.1:52144", "user": "alice",
        "rooms": ["lobby"], "bytes_in": 1_830, "bytes_out": 96_412, "queued_bytes": 0, "age_ms": 73_021 });
    let reason = json!({ "type": "object", "properties": { "reason": { "type": "string",
        "description": "sent with the close (at most 123 bytes are)" } } });
    let kick_body = json!({ "required": false, "content": { "application/json": { "schema": reason } } });
    let closed = |description: &str| json_answer(description, json!({ "closed": 1 }));
    let mut kick = secured(operation(
        "connections",
        "Closes one connection with 4010 and the reason: WebSocket close frame, raw TCP and UDP close line.",
        &[parameter("id", "path", json!({ "type": "integer" }), "the connection's id")],
        json!({ "200": closed("closed"), "400": error, "404": error, "413": error, "415": error }),
    ));
    kick["requestBody"] = kick_body.clone();
    let mut kick_user = secured(operation(
        "connections",
        "Closes every connection of a user with 4010 and the reason.",
        &[parameter("user", "path", json!({ "type": "string", "maxLength": 64 }), "the user")],
        json!({ "200": closed("how many were closed (0: none was open)"), "400": error, "413": error, "415": error }),
    ));
    kick_user["requestBody"] = kick_body;
    let table = secured(operation(
        "connections",
        "The connection table: each open connection's socket, transport, peer, user, rooms, bytes and age.",
        &[
            parameter("user", "query", json!({ "type": "string" }), "only this user's connections"),
            parameter("room", "query", json!({ "type": "string" }), "only this room's members"),
        ],
        json!({ "200": json_answer("the table, by id", json!({ "connections": [row] })) }),
    ));
    vec![
        Endpoint { method: Method::GET, path: "/api/connections", handler: get(list), operation: table },
        Endpoint { method: Method::DELETE, path: "/api/connections/{id}", handler: delete(close_one), operation: kick },
        Endpoint {
            method: Method::DELETE,
            path: "/api/users/{user}/connections",
            handler: delete(close_user),
            operation: kick_user,
        },
    ]
}

#[derive(Debug, Deserialize)]
struct TableParams {
    user: Option<String>,
    room: Option<String>,
}

async fn list(State(state): State<ApiState>, _caller: Caller, Query(params): Query<TableParams>) -> Response {
    let rows = state.hub.connection_table(&TableFilter { user: params.user, room: params.room });
    super::openapi::json_response(StatusCode::OK, &json!({ "connections": rows }))
}

async fn close_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Reason(reason): Reason,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad(ErrorCode::BadRequest, "a connection id is a number"))?;
    tracing::info!(caller = %caller.name, conn = id, "kick requested");
    if !state.hub.kick(id, reason.as_deref()) {
        return Err(ApiError::NotFound(format!("connection {id} (none open has this id)")));
    }
    Ok(closed(1))
}

async fn close_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
    Reason(reason): Reason,
) -> Result<Response, ApiError> {
    validate_user(&user).map_err(|message| ApiError::bad(ErrorCode::BadUser, message))?;
    tracing::info!(caller = %caller.name, %user, "kick of every connection of a user requested");
    Ok(closed(state.hub.kick_user(&user, reason.as_deref())))
}

fn closed(count: usize) -> Response {
    super::openapi::json_response(StatusCode::OK, &json!({ "closed": count }))
}

/// The optional `{"reason": TEXT}` of a kick: no body at all (no
/// `Content-Type`, nothing declared), or a JSON object read as every body is.
#[derive(Debug)]
struct Reason(Option<String>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickRequest {
    reason: Option<Value>,
}

impl FromRequest<ApiState> for Reason {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Reason, ApiError> {
        let headers = request.headers();
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok());
        let bodiless = !headers.contains_key(header::CONTENT_TYPE)
            && !headers.contains_key(header::TRANSFER_ENCODING)
            && declared.is_none_or(|length| length.trim() == "0");
        if bodiless {
            return Ok(Reason(None));
        }
        let JsonBody(KickRequest { reason }) = JsonBody::from_request(request, state).await?;
        match reason {
            None | Some(Value::Null) => Ok(Reason(None)),
            Some(Value::String(text)) => Ok(Reason(Some(text))),
            Some(_) => Err(ApiError::bad(ErrorCode::BadRequest, "`reason` must be a string")),
        }
    }
}
