//! Users over HTTP: a direct message from the backend
//! (`POST /api/users/{user}/messages`), stored in the user's inbox and
//! pushed to their open connections, as a `dm` command is.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{json_answer, json_body, operation, parameter, secured};
use super::publish::{publish, Fields};
use super::{ApiState, Endpoint};
use crate::store::LogKind;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::post;
use serde_json::json;
use switchboard_protocol::command::validate_user;
use switchboard_protocol::ErrorCode;

pub fn endpoints() -> Vec<Endpoint> {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let body = json!({ "type": "object", "required": ["body"], "properties": {
        "body": { "description": "any JSON value" },
        "from": { "type": "string", "description": "the sender shown (default: the API key's name)" },
        "idempotency_key": { "type": "string", "maxLength": 256 } } });
    let user = parameter("user", "path", json!({ "type": "string", "maxLength": 64 }), "the recipient");
    let stored = json!({ "seq": 3, "epoch": 1_234_567, "ts": 1_767_225_600_000_u64 });
    let mut dm = secured(operation(
        "users",
        "A direct message: stored in the user's inbox, pushed to their open connections, delivered on connect.",
        &[user],
        json!({ "201": json_answer("stored", stored), "400": error, "413": error, "415": error, "503": error }),
    ));
    dm["requestBody"] = json_body(body);
    vec![Endpoint { method: Method::POST, path: "/api/users/{user}/messages", handler: post(direct), operation: dm }]
}

async fn direct(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
    JsonBody(fields): JsonBody<Fields>,
) -> Result<Response, ApiError> {
    validate_user(&user).map_err(|message| ApiError::bad(ErrorCode::BadUser, message))?;
    publish(&state, &caller, LogKind::Inbox, user, fields).await
}
