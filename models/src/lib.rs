//! What a model *is* in weir, independent of how it is served.
//!
//! The crate is split where the abstractions end: [`format`](mod@format) holds the vocabulary every other
//! part speaks (datatypes, tensors, signatures), [`backend`] is the one small trait a model
//! implementation must satisfy, [`onnx`] implements it on ONNX Runtime, and [`repository`] reads
//! a Triton-style model repository from disk; `safetensors` implements the trait on candle for
//! native networks described by a manifest and for BERT-family sentence encoders. Nothing here
//! knows about HTTP; the runtime crate turns protocol requests into [`format::Tensor`]s and calls
//! a [`backend::Backend`].
//!
//! The two backends are cargo features, both on by default: `onnx` (ONNX Runtime) and `candle`
//! (the `safetensors` module). A build without one still reads every repository and config; a
//! version that needs the missing backend fails to load with a message naming the feature.

pub mod backend;
pub mod digest;
pub mod format;
pub mod onnx;
pub mod repository;
#[cfg(feature = "candle")]
pub mod safetensors;

pub use backend::{Backend, BackendError};
pub use format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec, ValidationError};
