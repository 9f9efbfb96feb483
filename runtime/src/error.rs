//! The one place where failures become HTTP answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use weir_models::{BackendError, ValidationError};

use crate::scheduler::ScheduleError;

/// A failed request: a status and a message for the `{"error": "…"}` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds after which a retry may succeed; sent as `Retry-After` on overload answers.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::bad_request(err.to_string())
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::InvalidInput(_) => ApiError::bad_request(err.to_string()),
            BackendError::RuntimeUnavailable(_)
            | BackendError::Load { .. }
            | BackendError::Unsupported(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            BackendError::Inference(_) => ApiError::internal(err.to_string()),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(err: ScheduleError) -> Self {
        match err {
            ScheduleError::QueueFull { .. }
            | ScheduleError::TimedOut { .. }
            | ScheduleError::Stopped => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: err.to_string(),
                retry_after: Some(1),
            },
            ScheduleError::TooManyRows { .. } | ScheduleError::BadBatch(_) => {
                ApiError::bad_request(err.to_string())
            }
            ScheduleError::Backend(backend) => backend.into(),
        }
    }
}

/// Writes `{"error": message}` with the right content type.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status, &self.message);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
