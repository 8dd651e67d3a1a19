//! Publishing from the HTTP API: to a room (`POST /api/rooms/{room}/messages`)
//! or to a user's inbox (`POST /api/users/{user}/messages`). A stored
//! message takes the path a WebSocket `send` takes (the storage writer's
//! queue, group commit, then fan-out to the members of every transport);
//! the request waits on its [`Ticket::Http`](crate::hub::Ticket) and answers
//! `{"seq", "epoch", "ts"}` once it is stored as `storage.sync` promises.
//! Names and bodies are checked exactly as commands are.

use super::auth::Caller;
use super::error::ApiError;
use super::ApiState;
use crate::store::LogKind;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::command::{check_body, check_idempotency_key, optional, validate_user};
use switchboard_protocol::ErrorCode;

/// The answer a first request gave: its status and JSON body, which a
/// repeat within the idempotency window gets again.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// A publish request's fields as sent, each checked on its own so that an
/// error names the field.
#[derive(Debug, Deserialize)]
pub struct Fields {
    body: Option<Box<RawValue>>,
    from: Option<Box<RawValue>>,
    volatile: Option<Box<RawValue>>,
    idempotency_key: Option<Box<RawValue>>,
}

/// A checked publish request.
#[derive(Debug)]
struct Publish {
    body: Box<RawValue>,
    from: Option<String>,
    volatile: bool,
    idempotency_key: Option<String>,
}

fn bad(message: String) -> ApiError {
    ApiError::bad(ErrorCode::BadRequest, message)
}

impl Publish {
    fn check(fields: Fields, max_message_size: usize) -> Result<Publish, ApiError> {
        let body = fields.body.ok_or_else(|| bad("missing field `body`".into()))?;
        check_body(&body).map_err(bad)?;
        if body.get().len() > max_message_size {
            return Err(ApiError::TooLarge { what: "the message body", limit: max_message_size });
        }
        let from: Option<String> = optional(fields.from.as_deref(), "from").map_err(bad)?;
        if let Some(from) = &from {
            validate_user(from).map_err(|message| ApiError::bad(ErrorCode::BadUser, format!("`from`: {message}")))?;
        }
        let volatile = optional(fields.volatile.as_deref(), "volatile").map_err(bad)?.unwrap_or(false);
        let idempotency_key: Option<String> =
            optional(fields.idempotency_key.as_deref(), "idempotency_key").map_err(bad)?;
        if let Some(key) = &idempotency_key {
            check_idempotency_key(key).map_err(bad)?;
        }
        Ok(Publish { body, from, volatile, idempotency_key })
    }
}

/// Publishes `fields` from `caller` to `target` (a room or a user's inbox,
/// by `kind`, already validated), within the idempotency window when the
/// request has a key.
pub async fn publish(
    state: &ApiState,
    caller: &Caller,
    kind: LogKind,
    target: String,
    fields: Fields,
) -> Result<Response, ApiError> {
    let publish = Publish::check(fields, state.hub.limits().max_message_size)?;
    if publish.volatile && kind == LogKind::Inbox {
        return Err(bad("`volatile` is for rooms: a DM is always stored".into()));
    }
    let from: Arc<str> = Arc::from(publish.from.as_deref().unwrap_or(&caller.name));
    let Some(key) = publish.idempotency_key else {
        return store(state.clone(), kind, target, from, publish.body, publish.volatile, None)
            .await
            .map(answer_response);
    };
    let scope = format!("{}\n{}\n{target}\n{key}", caller.name, kind.code());
    // A cluster checks it in Redis too, for a repeat that reaches another
    // node; marked apart from a client's `send` scope of the same shape.
    let cluster_scope = format!("api\n{scope}");
    // Run apart from the request: a client that gives up and retries must
    // find the first attempt's answer, not start a second store.
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let run = store(task_state.clone(), kind, target, from, publish.body, publish.volatile, Some(cluster_scope));
        task_state.shared.idempotency.run(scope, &task_state.hub.metrics, run).await
    });
    let (answer, replayed) =
        task.await.map_err(|_| ApiError::unavailable(ErrorCode::StorageFailed, "the publish did not complete"))??;
    let mut response = answer_response(answer);
    if replayed {
        response.headers_mut().insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Stores the message (or delivers it at once when volatile) and makes the
/// answer; `scope` is the idempotency scope a cluster checks in Redis.
async fn store(
    state: ApiState,
    kind: LogKind,
    target: String,
    from: Arc<str>,
    body: Box<RawValue>,
    volatile: bool,
    scope: Option<String>,
) -> Result<Answer, ApiError> {
    if state.hub.is_shutting_down() {
        return Err(ApiError::unavailable(ErrorCode::ShuttingDown, "the server is shutting down"));
    }
    if volatile {
        let ts = state.hub.publish_volatile_from(&target, &from, &body);
        return Ok(Answer { status: StatusCode::OK.as_u16(), body: json!({ "ts": ts }).to_string() });
    }
    let started = std::time::Instant::now();
    let stored = state.hub.submit_from_api(kind, &target, from, body, scope.as_deref())?;
    let stored = stored.await;
    state.shared.publish_seconds.observe(started.elapsed().as_secs_f64());
    match stored {
        Ok(Ok(stored)) => {
            let body = serde_json::to_string(&stored).unwrap_or_default();
            Ok(Answer { status: StatusCode::CREATED.as_u16(), body })
        }
        Ok(Err(crate::broker::Unstored::StorageFailed)) => Err(ApiError::unavailable(
            ErrorCode::StorageFailed,
            "the message could not be stored and was not delivered",
        )),
        Ok(Err(crate::broker::Unstored::Unconfirmed)) => {
            Err(ApiError::unavailable(ErrorCode::Unavailable, crate::hub::UNCONFIRMED))
        }
        Ok(Err(crate::broker::Unstored::Unavailable)) => {
            Err(ApiError::unavailable(ErrorCode::Unavailable, crate::hub::UNAVAILABLE))
        }
        Err(_) => Err(ApiError::unavailable(ErrorCode::ShuttingDown, "the storage writer stopped")),
    }
}

fn answer_response(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
