//! The ONNX backend on ONNX Runtime (crate `ort`, loaded dynamically), behind the `onnx`
//! feature. The `[onnx]` options of a model's config are always here, so every build reads the
//! same configs.

#[cfg(feature = "onnx")]
mod library;
#[cfg(feature = "onnx")]
mod model;
mod options;

#[cfg(feature = "onnx")]
pub use library::{environment, find_library};
#[cfg(feature = "onnx")]
pub use model::OnnxModel;
pub use options::OnnxOptions;
