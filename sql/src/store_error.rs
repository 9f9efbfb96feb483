//! Why a store built on this crate (the registry, tracking) refused or failed an operation, by
//! class: what the caller named is missing, exists already, is invalid, or is not theirs to do;
//! or the storage itself failed. The classes are the stores' shared vocabulary; each server
//! maps them onto its protocol's codes (MLflow's, in weir-mlflow-wire).

use crate::SqlError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("storage failed: {0}")]
    Internal(String),
}

impl From<SqlError> for StoreError {
    fn from(err: SqlError) -> Self {
        StoreError::Internal(err.to_string())
    }
}
