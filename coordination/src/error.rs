//! Why a coordination call was refused or failed, and how the API answers each: MLflow's error
//! body, like every other registry endpoint, with a 409 for a lost compare-and-set (the caller
//! re-reads and retries; it is not a mistake in the request).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weir_mlflow_wire::{mlflow_error, MlflowError};
use weir_sql::SqlError;

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// The request named a bad key, value or duration; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The document is not at the revision the write was made against.
    #[error("{}", conflict_message(key, *expected, *current))]
    Conflict {
        key: String,
        expected: Option<i64>,
        current: Option<i64>,
    },
    #[error("coordination storage failed: {0}")]
    Storage(#[from] SqlError),
}

fn conflict_message(key: &str, expected: Option<i64>, current: Option<i64>) -> String {
    match (expected, current) {
        (None, Some(current)) => format!(
            "document '{key}' exists already at revision {current}; give expected_revision to change it"
        ),
        (Some(expected), None) => {
            format!("document '{key}' does not exist, not at revision {expected}")
        }
        (Some(expected), Some(current)) => format!(
            "document '{key}' is at revision {current}, not {expected}: re-read it and try again"
        ),
        (None, None) => format!("document '{key}' was created by another writer meanwhile"),
    }
}

impl IntoResponse for CoordinationError {
    fn into_response(self) -> Response {
        match self {
            CoordinationError::Invalid(message) => MlflowError::invalid(message).into_response(),
            conflict @ CoordinationError::Conflict { .. } => mlflow_error(
                StatusCode::CONFLICT,
                "RESOURCE_CONFLICT",
                &conflict.to_string(),
            ),
            storage @ CoordinationError::Storage(_) => {
                MlflowError::internal(storage.to_string()).into_response()
            }
        }
    }
}
