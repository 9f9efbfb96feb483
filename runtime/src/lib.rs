//! The weir inference server: the Open Inference Protocol V2 (with Triton's binary tensor and
//! model repository extensions) and KServe V1 over axum (hyper + tower).
//!
//! A request's way: [`routes`] reads and bounds the body, [`protocol`] decodes it against the
//! model's signature (every check happens before a model runs), the [`store`] names the model
//! version, the backend runs off the async threads, and the answer is encoded in the request's
//! own form. [`metrics`] records every hop under the names `DESIGN.md` fixes; [`error`] is the
//! one place where failures become status codes.

pub mod budget;
pub mod error;
pub mod metrics;
pub mod protocol;
pub mod registry;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod shed;
pub mod stats;
pub mod store;

pub use error::ApiError;
pub use server::{App, ModelControl, RunningServer, ServeConfig, ServeError};
