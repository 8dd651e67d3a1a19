//! Every way an HTTP API request can fail, and the answer each gets:
//! `{"code": C, "error": TEXT}` with the status that fits, `code` being a
//! wire code from `switchboard_protocol::ErrorCode` (what a client branches
//! on) and `error` a sentence for people. Internal errors never reach the
//! wire as text: they are logged where they happen and mapped here.

use crate::hub::HubError;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_protocol::ErrorCode;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a field or parameter is wrong
    /// (`bad_json`, `bad_request`, `bad_room`, `bad_user`); the text says where.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// 401: no API key, or one that is not configured.
    #[error("{}", unauthorized_text(*.0))]
    Unauthorized(ErrorCode),
    /// 403: a browser page from an origin `auth.allowed_origins` does not allow.
    #[error("this page's origin may not use the HTTP API (auth.allowed_origins)")]
    OriginNotAllowed,
    /// 404: no route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// 405: the path exists with other methods (`allow` lists them).
    #[error("{method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// 413: a body over `limits.http_max_body`, or a message over `limits.max_message_size`.
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// 415: a body that is not `application/json`.
    #[error("send the body as Content-Type: application/json")]
    UnsupportedMediaType,
    /// 429: over `api.requests_per_second` for this key or address.
    #[error("too many requests: slow down (api.requests_per_second)")]
    RateLimited,
    /// 503: the server cannot take the request now (`overloaded`,
    /// `shutting_down`, `storage_failed`, `not_ready`); retry later.
    #[error("{message}")]
    Unavailable { code: ErrorCode, message: String },
}

fn unauthorized_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ApiKeyInvalid => "this API key is not one of auth.api_keys",
        _ => "send Authorization: Bearer <API key> (auth.api_keys)",
    }
}

impl ApiError {
    /// A 400 with `code` and `message`.
    pub fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// A 503 with `code` and `message`.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Unavailable { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Unavailable { code, .. } => *code,
            ApiError::Unauthorized(code) => *code,
            ApiError::OriginNotAllowed => ErrorCode::OriginNotAllowed,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::TooLarge { .. } => ErrorCode::TooLarge,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::RateLimited => ErrorCode::RateLimited,
        }
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> ApiError {
        let code = match error {
            HubError::StorageBusy | HubError::TooManyPending => ErrorCode::Overloaded,
            HubError::ShuttingDown => ErrorCode::ShuttingDown,
            HubError::Unavailable => ErrorCode::Unavailable,
            // Not reachable from the API (it needs no membership or token),
            // kept total all the same.
            HubError::NotMember(_) => ErrorCode::NotMember,
            HubError::Forbidden(..) => ErrorCode::Forbidden,
        };
        ApiError::unavailable(code, error.to_string())
    }
}

/// `{"code", "error"}` as bytes.
pub fn error_body(code: ErrorCode, message: &str) -> String {
    serde_json::json!({ "code": code.as_str(), "error": message }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), error_body(self.code(), &self.to_string())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            ApiError::RateLimited | ApiError::Unavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
