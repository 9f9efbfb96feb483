//! weir's model registry: registered models, versions, tags, aliases and their artifacts,
//! served through MLflow's REST API so the official `mlflow` client works against it.

pub mod artifacts;
pub mod error;
pub mod filter;
pub mod mlflow;
pub mod servable;
pub mod store;
pub mod versions;

pub use error::StoreError;
pub use mlflow::{router, Registry, SourceResolver};
pub use store::Store;
