//! The ONNX backend on ONNX Runtime (crate `ort`, loaded dynamically).

mod library;
mod model;

pub use library::{environment, find_library};
pub use model::{OnnxModel, OnnxOptions};
