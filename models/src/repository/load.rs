//! Turning a version folder into a running backend, by the files it holds.

use std::path::Path;
use std::sync::Arc;

use super::{ModelConfig, RepositoryError};
use crate::backend::{Backend, BackendError};

/// Loads one version folder with the backend its files call for: `model.onnx` (ONNX Runtime),
/// `model.safetensors` + `weir.toml` (a native network), or `model.safetensors` +
/// `config.json` + `tokenizer.json` (a BERT-family sentence encoder). A build without the
/// backend a folder needs (the `onnx` or `candle` feature) refuses it with a message naming
/// the feature, rather than as if the folder held nothing.
pub fn load_version(dir: &Path, config: &ModelConfig) -> Result<Arc<dyn Backend>, BackendError> {
    let onnx = dir.join("model.onnx");
    if onnx.is_file() {
        return load_onnx(&onnx, config);
    }
    let safetensors = dir.join("model.safetensors").is_file();
    if safetensors && dir.join("weir.toml").is_file() {
        return load_native(dir);
    }
    if safetensors && dir.join("config.json").is_file() && dir.join("tokenizer.json").is_file() {
        return load_encoder(dir);
    }
    Err(BackendError::Load {
        path: dir.display().to_string(),
        reason: RepositoryError::NoArtifact {
            dir: dir.display().to_string(),
        }
        .to_string(),
    })
}

#[cfg(feature = "onnx")]
fn load_onnx(path: &Path, config: &ModelConfig) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(crate::onnx::OnnxModel::load(
        path,
        &config.onnx,
        config.instance_count,
    )?))
}

#[cfg(not(feature = "onnx"))]
fn load_onnx(path: &Path, _config: &ModelConfig) -> Result<Arc<dyn Backend>, BackendError> {
    Err(left_out(path, "onnx", "ONNX Runtime"))
}

#[cfg(feature = "candle")]
fn load_native(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(crate::safetensors::NativeNetwork::load(dir)?))
}

#[cfg(feature = "candle")]
fn load_encoder(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(crate::safetensors::SentenceEncoder::load(dir)?))
}

#[cfg(not(feature = "candle"))]
fn load_native(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Err(left_out(dir, "candle", "candle (safetensors networks)"))
}

#[cfg(not(feature = "candle"))]
fn load_encoder(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Err(left_out(dir, "candle", "candle (sentence encoders)"))
}

/// The refusal of a version whose backend this build leaves out.
#[cfg(not(all(feature = "onnx", feature = "candle")))]
fn left_out(path: &Path, feature: &str, backend: &str) -> BackendError {
    BackendError::RuntimeUnavailable(format!(
        "{} needs {backend}, which this build of weir-models leaves out (cargo feature `{feature}`)",
        path.display()
    ))
}
