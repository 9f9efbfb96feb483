//! Experiment tracking that speaks MLflow's REST API, so the official `mlflow` client logs to it
//! unchanged: experiments, runs, params, metrics (with their history), tags, logged models.
//!
//! Stored through `weir-sql` (SQLite by default, PostgreSQL in production) beside the model
//! registry. Searches never scan metric history: each run's latest value per metric is kept in
//! its own indexed table as it is logged.

pub mod api;
pub mod client;
pub mod filter;
mod names;
pub mod store;

pub use api::{router, routes, Tracking};
pub use client::TrackingClient;
pub use store::TrackingStore;

/// Why a tracking operation failed, by MLflow's error classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("tracking storage failed: {0}")]
    Internal(String),
}

impl From<weir_sql::SqlError> for TrackingError {
    fn from(err: weir_sql::SqlError) -> Self {
        TrackingError::Internal(err.to_string())
    }
}

impl TrackingError {
    /// MLflow's error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            TrackingError::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            TrackingError::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            TrackingError::InvalidParameter(_) => "INVALID_PARAMETER_VALUE",
            TrackingError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}
