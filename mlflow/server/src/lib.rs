//! weir's MLflow server: the model registry and experiment tracking on one database, served on
//! one router behind one access layer whose endpoint table covers both (docs/security.md).
//!
//! [`open`] opens the stores a [`Config`] names; [`app`] puts their routes together. Listening,
//! signals and logging stay with the program that serves it (`weir registry`).

mod app;
mod stores;

use std::path::PathBuf;

pub use app::app;
pub use stores::{open, Stores};

/// Where the server keeps its data and which rules it applies to it.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`; registry and
    /// tracking share it.
    pub database: String,
    /// Folder holding model and run artifacts (`mlflow-artifacts:/…`).
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
    /// The artifact folder cannot be created or used.
    #[error(transparent)]
    Artifacts(weir_registry::StoreError),
    /// The blocking task opening the database ended without an answer (it panicked).
    #[error("opening the registry database stopped: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}
