//! weir's MLflow server: the model registry and experiment tracking on one database, served on
//! one router behind one access layer whose endpoint table covers both (docs/security.md).
//!
//! [`open`] opens the stores a [`Config`] names; [`app`] puts their routes together. Listening,
//! signals and logging stay with the program that serves it (`weir registry`).

mod app;
mod stores;

use std::path::PathBuf;

pub use app::{app, app_with_dashboard, app_with_metrics, RegistryMetrics};
pub use stores::{open, Stores};
pub use weir_sql::DEFAULT_POOL_SIZE;

/// Where the server keeps its data and which rules it applies to it.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`; registry and
    /// tracking share it.
    pub database: String,
    /// The most PostgreSQL connections open at once (SQLite keeps its single writer).
    pub pool_size: usize,
    /// Where model and run artifacts (`mlflow-artifacts:/…`) are kept: a folder (a path or
    /// `file://PATH`) or `s3://BUCKET/PREFIX` (configured from the standard `AWS_*`
    /// environment). A path, so that any folder name works; a `scheme://` spelled in it is read
    /// as a location, and a scheme weir does not support is refused at open.
    pub artifacts: PathBuf,
    /// Largest artifact file accepted in one upload, in bytes.
    pub max_artifact_bytes: u64,
    /// Aliases that may point only at approved versions.
    pub protected_aliases: Vec<String>,
}

/// Why the server could not open its stores. The database URL is never shown: it may carry a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the registry database")]
    Database(#[source] weir_sql::SqlError),
    #[error("cannot open the registry database")]
    RegistrySchema(#[source] weir_registry::StoreError),
    #[error("cannot open the registry database")]
    TrackingSchema(#[source] weir_tracking::TrackingError),
    /// The artifact store cannot be created or used (a folder that cannot be made, a bucket
    /// that does not answer, an unsupported scheme).
    #[error(transparent)]
    Artifacts(weir_registry::StoreError),
    /// The blocking task opening the database ended without an answer (it panicked).
    #[error("opening the registry database stopped: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}
