//! safetensors models on candle: native networks described by a `weir.toml` manifest, and
//! BERT-family sentence encoders in the Hugging Face layout.
//!
//! Weights are read into memory (`candle_core::safetensors::load`) rather than memory-mapped:
//! mapping needs `unsafe`, and a model file truncated in place under a live mapping would kill
//! the server with SIGBUS. Reading the 90 MB MiniLM takes tens of milliseconds (measured in
//! benches/README.md), well inside the start-up budget.

mod bert;
mod manifest;
mod native;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor as CandleTensor};

pub use bert::SentenceEncoder;
pub use manifest::{
    Activation, Architecture, InputSpec, Labels, Manifest, OutputFunction, Scaler, LABEL_OUTPUT,
};
pub use native::NativeNetwork;

use crate::backend::BackendError;

/// All tensors of a safetensors file, on the CPU.
fn read_weights(path: &Path) -> Result<HashMap<String, CandleTensor>, BackendError> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| BackendError::Load {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Weights are computed in f32 whatever they are stored in; FP32, FP16 and BF16 are accepted.
fn as_f32(name: &str, tensor: &CandleTensor, path: &Path) -> Result<CandleTensor, BackendError> {
    match tensor.dtype() {
        DType::F32 => Ok(tensor.clone()),
        DType::F16 | DType::BF16 => tensor.to_dtype(DType::F32).map_err(|e| load_error(path, e)),
        other => Err(BackendError::Load {
            path: path.display().to_string(),
            reason: format!("tensor '{name}' is {other:?}; weir reads FP32, FP16 and BF16 weights"),
        }),
    }
}

fn load_error(path: &Path, err: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

fn inference_error(err: candle_core::Error) -> BackendError {
    BackendError::Inference(err.to_string())
}
