//! Experiment tracking that speaks MLflow's REST API, so the official `mlflow` client logs to it
//! unchanged: experiments, runs, params, metrics (with their history), tags, logged models.
//!
//! Stored through `weir-sql` (SQLite by default, PostgreSQL in production) beside the model
//! registry. Searches never scan metric history: each run's latest value per metric is kept in
//! its own indexed table as it is logged.

pub mod api;
mod error;
pub mod filter;
mod names;
pub mod store;

pub use api::{routes, Tracking};
pub use error::TrackingError;
pub use store::TrackingStore;
