//! The weir inference server: the Open Inference Protocol V2 (with Triton's binary tensor and
//! model repository extensions) and KServe V1 over axum (hyper + tower).
//!
//! A V2 request's way, one file a step: [`routes`] finds the model version (in the [`store`])
//! and hands the request to [`protocol::v2`], which reads and decodes the body against the
//! model's signature (every check happens before a model runs) and calls the version's
//! [`scheduler`]; its worker (`scheduler/worker.rs`) runs the backend off the async threads,
//! and `protocol::v2` encodes the answer in the request's own form. Beside the way: [`observe`]
//! is the one place a request is counted (over HTTP or over [`grpc`], which serves the same
//! models through the same scheduler), [`metrics`] holds the series docs/serving.md lists,
//! [`error`] is the one place where failures become status codes, [`app`] the shared state,
//! [`server`] start-up and shutdown, and [`registry`] the sync that follows a model registry.

pub mod app;
pub mod budget;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod observe;
pub mod protocol;
pub mod registry;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod shed;
pub mod stats;
pub mod store;

pub use app::{App, ModelControl, ServeConfig};
pub use error::ApiError;
pub use server::{RunningServer, ServeError};
