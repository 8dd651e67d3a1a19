//! `/api/openapi.json`: an OpenAPI 3.1 description of every route, built
//! from the same [`Endpoint`] list the router is built from (see the
//! module docs of [`super`]), plus the routes the front door serves
//! ([`SERVED_ELSEWHERE`]). Every `GET` is also listed as `HEAD`, which axum
//! answers for every `GET` route.
//!
//! Written by hand with `serde_json` rather than derived by a crate such as
//! utoipa: the document then comes from the route list itself, with no
//! second set of annotations that could drift from the router, and the
//! front door's routes, which no axum handler serves, fit in the same list.

use super::{ApiState, Endpoint};
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Routes in the document that this router does not serve, with who does.
/// `tests/it/api_openapi.rs` tolerates a 404 for exactly these (until they are served).
pub const SERVED_ELSEWHERE: &[(&str, &str, &str)] = &[
    ("GET", "/api/rooms/{room}/events", "the front door (Server-Sent Events, transport::follow)"),
    ("GET", "/api/events", "the front door (Server-Sent Events, transport::follow)"),
];

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint {
        method: Method::GET,
        path: "/api/openapi.json",
        handler: get(document),
        operation: operation(
            "meta",
            "This document: an OpenAPI 3.1 description of every route. Public.",
            &[],
            json!({ "200": { "description": "the document", "content": { "application/json": {} } } }),
        ),
    }]
}

async fn document(State(state): State<ApiState>) -> Response {
    let mut response = state.shared.openapi.clone().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An operation object: `tag`, a summary, parameters and responses. No
/// security requirement: [`secured`] adds the API key's.
pub fn operation(tag: &str, summary: &str, parameters: &[Value], responses: Value) -> Value {
    json!({ "tags": [tag], "summary": summary, "parameters": parameters, "responses": responses, "security": [] })
}

/// `operation` behind the API key (401 and 429 added to its responses).
pub fn secured(mut operation: Value) -> Value {
    operation["security"] = json!([{ "apiKey": [] }]);
    operation["responses"]["401"] = json!({ "$ref": "#/components/responses/Error" });
    operation["responses"]["429"] = json!({ "$ref": "#/components/responses/Error" });
    operation
}

/// A parameter `name` in `place` (`path` or `query`) of JSON schema `schema`.
pub fn parameter(name: &str, place: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": place, "required": place == "path", "schema": schema, "description": description })
}

/// A JSON request body of `schema`.
pub fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// A `200`-style response with a JSON example.
pub fn json_answer(description: &str, example: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "example": example } } })
}

/// The shared error response: every error is `{"code", "error"}`.
fn components() -> Value {
    json!({
        "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer",
            "description": "An API key of [[auth.api_keys]]. Not needed when no key is configured and the server \
                            runs in open mode." } },
        "responses": { "Error": { "description": "an error: see docs/PROTOCOL.md, HTTP API",
            "content": { "application/json": { "schema": { "type": "object", "required": ["code", "error"],
                "properties": { "code": { "type": "string" }, "error": { "type": "string" } } } } } } },
    })
}

/// The routes served elsewhere, described here.
fn elsewhere() -> Vec<(&'static str, &'static str, Value)> {
    let room = parameter("room", "path", json!({ "type": "string" }), "the room");
    let events = |summary: &str, mut parameters: Vec<Value>| {
        parameters.extend([
            parameter("since", "query", json!({ "type": "integer" }), "resume after this seq"),
            parameter("token", "query", json!({ "type": "string" }), "a JWT, in token mode"),
            parameter("name", "query", json!({ "type": "string" }), "a name, in open mode"),
            parameter("Last-Event-ID", "header", json!({ "type": "string" }), "what EventSource sends to resume"),
        ]);
        let stream = json!({ "description": "the event stream", "content": { "text/event-stream": {} } });
        operation("events", summary, &parameters, json!({ "200": stream }))
    };
    let rooms = parameter("rooms", "query", json!({ "type": "string" }), "rooms, separated by commas");
    vec![
        ("GET", "/api/rooms/{room}/events", events("Follows a room as Server-Sent Events.", vec![room])),
        ("GET", "/api/events", events("Follows several rooms as Server-Sent Events.", vec![rooms])),
    ]
}

/// The whole document as JSON bytes.
pub fn render(endpoints: &[Endpoint]) -> Bytes {
    let served = endpoints.iter().map(|endpoint| (endpoint.method.as_str(), endpoint.path, endpoint.operation.clone()));
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, mut operation) in served.chain(elsewhere()) {
        let by = SERVED_ELSEWHERE.iter().find(|(m, p, _)| *m == method && *p == path).map(|(_, _, by)| *by);
        if let Some(by) = by {
            operation["x-served-by"] = json!(by);
        }
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        if method == "GET" && by.is_none() {
            let mut head = operation.clone();
            head["summary"] = json!(format!("The headers of GET {path}, without its body."));
            entry["head"] = head;
        }
        entry[method.to_ascii_lowercase()] = operation;
    }
    let document = json!({
        "openapi": "3.1.0",
        "info": { "title": "Switchboard HTTP API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Publish to rooms and users, read history and presence, check health. \
                                  docs/PROTOCOL.md (HTTP API) has the details." },
        "components": components(),
        "paths": paths,
    });
    Bytes::from(document.to_string())
}

/// `value` as a JSON answer with `status`.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(value).unwrap_or_else(|_| String::from("null"));
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text answer.
pub fn text_response(text: &'static str) -> Response {
    let mut response = text.into_response();
    let plain = HeaderValue::from_static("text/plain; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, plain);
    response
}
