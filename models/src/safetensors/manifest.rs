//! The `weir.toml` manifest of a feed-forward network: safetensors holds weights only.
//!
//! safetensors holds weights only, so the manifest names the architecture:
//! ```toml
//! architecture = "mlp"            # also "linear" and "logistic"
//! layers = [4, 16, 16, 3]         # sizes, input first
//! activation = "relu"             # relu | gelu | tanh | sigmoid (between layers)
//! output = "softmax"              # none | softmax | sigmoid
//! input = { name = "features", datatype = "FP32" }
//! output_name = "probabilities"
//! features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]   # optional
//! labels = ["setosa", "versicolor", "virginica"]  # optional: adds a `label` output
//! [scaler]                        # optional: inputs become (x - mean) / scale
//! mean = [5.8, 3.0, 3.7, 1.2]
//! scale = [0.8, 0.4, 1.8, 0.8]
//! [output_scaler]                 # optional: outputs become y * scale + mean
//! mean = [0.0]
//! scale = [1.0]
//! ```
//! The scalers live in the manifest rather than in the caller because a model trained on
//! standardised data is only right when served with the same statistics: keeping them beside
//! the weights means a version cannot be deployed with the wrong ones.

use std::path::Path;

use candle_core::{Device, Tensor as CandleTensor};
use serde::{Deserialize, Serialize};

use super::load_error;
use crate::backend::BackendError;
use crate::format::{DataType, TensorData};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Mlp,
    Linear,
    Logistic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFunction {
    None,
    Softmax,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default = "default_input_name")]
    pub name: String,
    #[serde(default = "default_input_datatype")]
    pub datatype: String,
}

fn default_input_name() -> String {
    "input".to_owned()
}

fn default_input_datatype() -> String {
    "FP32".to_owned()
}

fn default_output_name() -> String {
    "output".to_owned()
}

/// A `weir.toml` manifest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub architecture: Architecture,
    pub layers: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputFunction>,
    #[serde(default = "default_input")]
    pub input: InputSpec,
    #[serde(default = "default_output_name")]
    pub output_name: String,
    /// The input columns in order: what a client must send, written down with the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Class names by output index; a model with labels also answers a `label` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<Scaler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_scaler: Option<Scaler>,
}

/// Class labels: integers stay integers (`INT64`) so a client gets back what it trained on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Labels {
    Integers(Vec<i64>),
    Names(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Integers(v) => v.len(),
            Labels::Names(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn has_duplicates(&self) -> bool {
        fn repeats<T: Ord>(values: &[T]) -> bool {
            let mut sorted: Vec<&T> = values.iter().collect();
            sorted.sort();
            sorted.windows(2).any(|pair| pair[0] == pair[1])
        }
        match self {
            Labels::Integers(v) => repeats(v),
            Labels::Names(v) => repeats(v),
        }
    }

    pub(super) fn datatype(&self) -> DataType {
        match self {
            Labels::Integers(_) => DataType::Int64,
            Labels::Names(_) => DataType::Bytes,
        }
    }

    /// Each row's class: the largest output, or for a single sigmoid output, whether it
    /// reaches one half.
    pub(super) fn classes(&self, scores: &[f32], width: usize) -> TensorData {
        let rows = scores.chunks(width.max(1));
        if width == 1 {
            return self.pick(rows.map(|row| usize::from(row[0] >= 0.5)));
        }
        self.pick(rows.map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        }))
    }

    /// The labels at `indices`, as one tensor's data.
    fn pick(&self, indices: impl Iterator<Item = usize>) -> TensorData {
        match self {
            Labels::Integers(v) => TensorData::Int64(indices.map(|i| v[i]).collect()),
            Labels::Names(v) => {
                TensorData::Bytes(indices.map(|i| v[i].clone().into_bytes()).collect())
            }
        }
    }
}

/// Per-column standardisation: `(x - mean) / scale` on the way in, `y * scale + mean` on the
/// way out.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    fn check(&self, what: &str, width: usize) -> Result<(), String> {
        if self.mean.len() != width || self.scale.len() != width {
            return Err(format!(
                "{what} needs {width} means and scales (one per column); found {} and {}",
                self.mean.len(),
                self.scale.len()
            ));
        }
        if let Some(bad) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("{what}.mean holds {bad}; means must be finite"));
        }
        if let Some(bad) = self.scale.iter().find(|s| !s.is_finite() || **s <= 0.0) {
            return Err(format!(
                "{what}.scale holds {bad}; scales must be positive and finite"
            ));
        }
        Ok(())
    }

    /// `mean` and `scale` as `[1, width]` rows that broadcast over a batch.
    pub(super) fn tensors(&self) -> candle_core::Result<(CandleTensor, CandleTensor)> {
        let row = |values: &[f64]| {
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            CandleTensor::from_vec(values, (1, self.mean.len()), &Device::Cpu)
        };
        Ok((row(&self.mean)?, row(&self.scale)?))
    }
}

/// The name of the extra output of models with labels.
pub const LABEL_OUTPUT: &str = "label";

fn default_input() -> InputSpec {
    InputSpec {
        name: default_input_name(),
        datatype: default_input_datatype(),
    }
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest, BackendError> {
        let text = std::fs::read_to_string(path).map_err(|e| load_error(path, e))?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| load_error(path, e.message()))?;
        manifest
            .check()
            .map_err(|reason| load_error(path, reason))?;
        Ok(manifest)
    }

    /// The manifest as `weir.toml` text.
    pub fn to_toml(&self) -> Result<String, BackendError> {
        toml::to_string(self).map_err(|e| BackendError::Unsupported(e.to_string()))
    }

    /// Why the manifest cannot describe a servable network, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.layers.len() < 2 || self.layers.contains(&0) {
            return Err(format!(
                "layers must list at least an input and an output size, none zero; found {:?}",
                self.layers
            ));
        }
        if self.architecture != Architecture::Mlp && self.layers.len() != 2 {
            return Err(format!(
                "a {:?} model has exactly two sizes in layers (input, output); found {:?}",
                self.architecture, self.layers
            )
            .to_lowercase());
        }
        if !matches!(self.input.datatype.as_str(), "FP32" | "FP64" | "FP16") {
            return Err(format!(
                "input datatype must be FP32, FP64 or FP16; found \"{}\"",
                self.input.datatype
            ));
        }
        let (inputs, outputs) = (self.layers[0], self.output_width());
        if !self.features.is_empty() && self.features.len() != inputs {
            return Err(format!(
                "features names {} columns but the first layer takes {inputs}",
                self.features.len()
            ));
        }
        if let Some(scaler) = &self.scaler {
            scaler.check("scaler", inputs)?;
        }
        if let Some(scaler) = &self.output_scaler {
            scaler.check("output_scaler", outputs)?;
        }
        if let Some(labels) = &self.labels {
            let binary = outputs == 1 && self.output_function() == OutputFunction::Sigmoid;
            let expected = if binary { 2 } else { outputs };
            if labels.len() != expected {
                return Err(format!(
                    "labels holds {} classes but the model has {expected} (one per output, or two for one sigmoid output)",
                    labels.len()
                ));
            }
            if labels.has_duplicates() {
                return Err("labels holds the same class twice".to_owned());
            }
            if self.output_name == LABEL_OUTPUT {
                return Err(format!(
                    "output_name cannot be \"{LABEL_OUTPUT}\" when labels are given: that is the label output's name"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn output_width(&self) -> usize {
        self.layers.last().copied().unwrap_or(0)
    }

    /// The output function, defaulting by architecture: logistic gives probabilities.
    pub(super) fn output_function(&self) -> OutputFunction {
        self.output.unwrap_or(match self.architecture {
            Architecture::Logistic if self.layers.last() == Some(&1) => OutputFunction::Sigmoid,
            Architecture::Logistic => OutputFunction::Softmax,
            Architecture::Mlp | Architecture::Linear => OutputFunction::None,
        })
    }
}
