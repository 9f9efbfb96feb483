//! The one trait a model implementation satisfies.

use crate::format::{Signature, Tensor};

/// A loaded model version that can answer inference calls.
///
/// Deliberately synchronous and small: inference is CPU-bound, so the runtime decides where it
/// runs (which thread, how batched), and a backend only turns tensors into tensors.
pub trait Backend: Send + Sync {
    /// The inputs the model takes and the outputs it gives.
    fn signature(&self) -> &Signature;

    /// The platform name shown in model metadata (`onnxruntime_onnx`, as Triton names it).
    fn platform(&self) -> &'static str;

    /// Runs the model. `inputs` have been validated against [`Backend::signature`]; `outputs`
    /// names the outputs to return, in that order.
    fn infer(&self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError>;

    /// For sequence models: the longest sequence (in tokens) among a request's rows, so the
    /// batcher can bound padded work. `None` for models without sequences.
    fn sequence_length(&self, _inputs: &[Tensor]) -> Option<usize> {
        None
    }

    /// The output whose rows a KServe V1 `:predict` answers with, when not all of them: a
    /// classifier with labels answers its labels, as KServe's sklearn server answers `predict`.
    fn v1_predictions(&self) -> Option<&str> {
        None
    }

    /// The names of a single-input model's columns, in order, when its manifest names them
    /// (`features` in `weir.toml`), so KServe V1 clients may send each row as an object keyed
    /// by feature name, as they do for KServe's sklearn and xgboost servers. Empty otherwise.
    fn feature_names(&self) -> &[String] {
        &[]
    }
}

/// Why a model could not be loaded or could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The model's runtime library is missing; the message says how to install it.
    #[error("{0}")]
    RuntimeUnavailable(String),
    /// The model file could not be loaded.
    #[error("cannot load {path}: {reason}")]
    Load { path: String, reason: String },
    /// The model uses something weir cannot serve (a non-tensor output, an unsupported type).
    #[error("{0}")]
    Unsupported(String),
    /// The request was well-formed but the model's runtime refused its data (a client fault).
    #[error("{0}")]
    InvalidInput(String),
    /// The runtime failed while running the model (a server fault).
    #[error("inference failed: {0}")]
    Inference(String),
}
