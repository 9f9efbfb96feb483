//! MLflow's error answer: `{"error_code": "…", "message": "…"}` with the status its code maps
//! to. The official client reads `error_code` (and retries the 5xx ones), so every weir server
//! that speaks MLflow answers through [`MlflowError`], and each store's error type says which
//! [`ErrorCode`] each of its failures is.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The MLflow error codes weir answers with (MLflow's `databricks_pb2.ErrorCode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ResourceDoesNotExist,
    ResourceAlreadyExists,
    InvalidParameterValue,
    PermissionDenied,
    Unauthenticated,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow's server gives each code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ResourceDoesNotExist => StatusCode::NOT_FOUND,
            ErrorCode::ResourceAlreadyExists | ErrorCode::InvalidParameterValue => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One failed MLflow request, as the client will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowError {
    pub code: ErrorCode,
    pub message: String,
}

impl MlflowError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        MlflowError {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_PARAMETER_VALUE`: what a request got wrong, naming the value.
    pub fn invalid(message: impl Into<String>) -> Self {
        MlflowError::new(ErrorCode::InvalidParameterValue, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        MlflowError::new(ErrorCode::InternalError, message)
    }
}

impl std::fmt::Display for MlflowError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for MlflowError {}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(error = %self.message, "MLflow request failed");
        }
        mlflow_error(status, self.code.as_str(), &self.message)
    }
}

impl From<crate::filter::FilterError> for MlflowError {
    fn from(error: crate::filter::FilterError) -> Self {
        MlflowError::invalid(error.to_string())
    }
}

/// A store's refusal or failure answers with its class's code and its whole message.
impl From<weir_sql::StoreError> for MlflowError {
    fn from(error: weir_sql::StoreError) -> Self {
        use weir_sql::StoreError;
        let code = match &error {
            StoreError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            StoreError::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            StoreError::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            StoreError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            StoreError::Internal(_) => ErrorCode::InternalError,
        };
        MlflowError::new(code, error.to_string())
    }
}

/// A filter a store could not take is the caller's mistake.
impl From<crate::filter::FilterError> for weir_sql::StoreError {
    fn from(error: crate::filter::FilterError) -> Self {
        weir_sql::StoreError::InvalidParameter(error.to_string())
    }
}

/// The error body with any status and code (the access layer's refusals use it directly).
pub fn mlflow_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": code, "message": message });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_answers_with_its_status_and_name() {
        for (code, status, name) in [
            (
                ErrorCode::ResourceDoesNotExist,
                404,
                "RESOURCE_DOES_NOT_EXIST",
            ),
            (
                ErrorCode::ResourceAlreadyExists,
                400,
                "RESOURCE_ALREADY_EXISTS",
            ),
            (
                ErrorCode::InvalidParameterValue,
                400,
                "INVALID_PARAMETER_VALUE",
            ),
            (ErrorCode::PermissionDenied, 403, "PERMISSION_DENIED"),
            (ErrorCode::Unauthenticated, 401, "UNAUTHENTICATED"),
            (ErrorCode::InternalError, 500, "INTERNAL_ERROR"),
        ] {
            let response = MlflowError::new(code, "why").into_response();
            assert_eq!(response.status().as_u16(), status, "{name}");
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn each_store_error_class_answers_with_its_code_and_whole_message() {
        use weir_sql::StoreError;
        for (error, code, message) in [
            (
                StoreError::NotFound("gone".into()),
                "RESOURCE_DOES_NOT_EXIST",
                "gone",
            ),
            (
                StoreError::AlreadyExists("twice".into()),
                "RESOURCE_ALREADY_EXISTS",
                "twice",
            ),
            (
                StoreError::InvalidParameter("bad".into()),
                "INVALID_PARAMETER_VALUE",
                "bad",
            ),
            (
                StoreError::PermissionDenied("no".into()),
                "PERMISSION_DENIED",
                "no",
            ),
            (
                StoreError::Internal("disk".into()),
                "INTERNAL_ERROR",
                "storage failed: disk",
            ),
        ] {
            let answer = MlflowError::from(error);
            assert_eq!(
                (answer.code.as_str(), answer.message.as_str()),
                (code, message)
            );
        }
    }
}
