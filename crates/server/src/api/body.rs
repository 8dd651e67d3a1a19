//! Request bodies of the HTTP API: JSON only (415 otherwise), read under
//! `limits.http_max_body` whether the length is declared or the body is
//! chunked (413 past it, counted), and parsed with an error that says where
//! it went wrong (400 `bad_json`, with serde_json's line and column).

use super::error::ApiError;
use super::ApiState;
use crate::guard::reason;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

/// A JSON request body parsed as `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<JsonBody<T>, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let essence = content_type.and_then(|value| value.split(';').next()).map(str::trim);
        if !essence.is_some_and(|essence| essence.eq_ignore_ascii_case("application/json")) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.hub.policy().guard.http_max_body;
        let bytes = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                state.hub.metrics.limit_hit(reason::HTTP_BODY);
                tracing::info!(limit, "http request body over the limit: answered 413");
                return Err(ApiError::TooLarge { what: "the request body", limit });
            }
            Err(error) => {
                let message = format!("the request body could not be read: {error}");
                return Err(ApiError::bad(switchboard_protocol::ErrorCode::BadRequest, message));
            }
        };
        // serde would also read a struct from an array of its fields in order.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            let message = "the body must be one JSON object";
            return Err(ApiError::bad(switchboard_protocol::ErrorCode::BadJson, message));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|error| {
            ApiError::bad(switchboard_protocol::ErrorCode::BadJson, format!("the body is not a JSON object: {error}"))
        })
    }
}
