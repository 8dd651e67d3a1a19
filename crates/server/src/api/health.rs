//! Health and metrics: `/healthz` (liveness: the process answers),
//! `/readyz` (readiness: every [`ReadyCheck`] passes within
//! `api.ready_timeout`) and `/metrics` (Prometheus text; in token mode behind
//! an API key unless `metrics.public`).
//!
//! Readiness is a list of checks, each with a name and a reason when it
//! fails. Today there is one: the storage takes a real write through the
//! storage writer thread ([`crate::hub::Hub::probe_storage`]), which also
//! fails once shutdown has closed the storage. A cluster's broker check
//! joins the list in [`checks`].

use super::auth::api_key;
use super::error::ApiError;
use super::openapi::{json_response, operation, text_response};
use super::{ApiState, Endpoint};
use crate::hub::Hub;
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use switchboard_protocol::ErrorCode;

/// What a check's future resolves to: `Err(reason)` when not ready.
pub type Checked<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One condition `/readyz` requires.
pub trait ReadyCheck: Send + Sync + std::fmt::Debug {
    /// The check's name in `/readyz`'s answer.
    fn name(&self) -> &'static str;
    /// Resolves to `Err(reason)` when the server cannot take work.
    fn check<'a>(&'a self, hub: &'a Hub) -> Checked<'a>;
}

/// The storage takes a write: a probe through the writer thread, behind
/// whatever it is writing, made durable as the sync mode promises.
#[derive(Debug)]
struct StorageWritable;

impl ReadyCheck for StorageWritable {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn check<'a>(&'a self, hub: &'a Hub) -> Checked<'a> {
        let probe = hub.probe_storage();
        Box::pin(async move {
            let answer = probe.map_err(|error| error.to_string())?;
            answer.await.unwrap_or_else(|_| Err("the storage writer stopped".into()))
        })
    }
}

/// The checks `/readyz` runs, in order.
pub fn checks() -> Vec<Box<dyn ReadyCheck>> {
    vec![Box::new(StorageWritable)]
}

pub fn endpoints() -> Vec<Endpoint> {
    let text = |description: &str| json!({ "200": { "description": description, "content": { "text/plain": {} } } });
    vec![
        Endpoint {
            method: Method::GET,
            path: "/healthz",
            handler: get(healthz),
            operation: operation("health", "Liveness: the process answers (`ok`). Public.", &[], text("ok")),
        },
        Endpoint {
            method: Method::GET,
            path: "/readyz",
            handler: get(readyz),
            operation: operation(
                "health",
                "Readiness: every check passes (the storage takes a real write within api.ready_timeout). \
                 503 `not_ready` names the failing check. Public.",
                &[],
                json!({
                    "200": { "description": "ready", "content": { "application/json": {
                        "example": { "status": "ready", "checks": { "storage": "ok" } } } } },
                    "503": { "$ref": "#/components/responses/Error" },
                }),
            ),
        },
        Endpoint {
            method: Method::GET,
            path: "/metrics",
            handler: get(metrics),
            operation: operation(
                "health",
                "Prometheus metrics (OpenMetrics text). In token mode it needs an API key unless metrics.public.",
                &[],
                json!({
                    "200": { "description": "metrics", "content": { "application/openmetrics-text": {} } },
                    "401": { "$ref": "#/components/responses/Error" },
                }),
            ),
        },
    ]
}

async fn healthz() -> Response {
    text_response("ok\n")
}

/// Runs every check, each within `api.ready_timeout`.
async fn readyz(State(state): State<ApiState>) -> Response {
    let timeout = state.shared.ready_timeout;
    let mut results = serde_json::Map::new();
    let mut failed = None;
    for check in &state.shared.ready {
        let outcome = match tokio::time::timeout(timeout, check.check(&state.hub)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {timeout:?} (api.ready_timeout)")),
        };
        let shown = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(reason) => {
                tracing::warn!(check = check.name(), %reason, "not ready");
                failed.get_or_insert_with(|| format!("{}: {reason}", check.name()));
                reason
            }
        };
        results.insert(check.name().to_owned(), shown.into());
    }
    match failed {
        None => json_response(StatusCode::OK, &json!({ "status": "ready", "checks": results })),
        Some(reason) => {
            let body = json!({ "code": ErrorCode::NotReady.as_str(), "error": reason, "checks": results });
            json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let public = state.hub.policy().metrics_public;
    api_key(&headers, &state.hub, public).map_err(ApiError::Unauthorized)?;
    let mut response = crate::metrics::render(&state.shared.registry).into_response();
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}
