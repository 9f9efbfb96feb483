//! Feed-forward networks from safetensors weights and a `weir.toml` manifest.
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
//! The linear layers' tensors are found by name as PyTorch writes a `state_dict()`:
//! `nn.Sequential` indices (`0.weight`, `2.weight`, … with activations between) or
//! `layers.{i}.weight`; any numbered prefix works, in numeric order, so dropout or activation
//! modules in between do not matter. Weights are `[out, in]`, biases `[out]` (optional).

use std::path::Path;

use candle_core::{DType, Device, Tensor as CandleTensor};
use candle_nn::{Linear, Module};
use serde::{Deserialize, Serialize};

use super::{as_f32, inference_error, load_error, read_weights};
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

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

    fn datatype(&self) -> DataType {
        match self {
            Labels::Integers(_) => DataType::Int64,
            Labels::Names(_) => DataType::Bytes,
        }
    }

    /// Each row's class: the largest output, or for a single sigmoid output, whether it
    /// reaches one half.
    fn classes(&self, scores: &[f32], width: usize) -> TensorData {
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
    fn tensors(&self) -> candle_core::Result<(CandleTensor, CandleTensor)> {
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

    fn output_width(&self) -> usize {
        self.layers.last().copied().unwrap_or(0)
    }

    /// The output function, defaulting by architecture: logistic gives probabilities.
    fn output_function(&self) -> OutputFunction {
        self.output.unwrap_or(match self.architecture {
            Architecture::Logistic if self.layers.last() == Some(&1) => OutputFunction::Sigmoid,
            Architecture::Logistic => OutputFunction::Softmax,
            Architecture::Mlp | Architecture::Linear => OutputFunction::None,
        })
    }
}

/// A loaded feed-forward network.
pub struct NativeNetwork {
    layers: Vec<Linear>,
    activation: Activation,
    output: OutputFunction,
    /// `(mean, scale)` rows, applied before the first layer.
    input_scaler: Option<(CandleTensor, CandleTensor)>,
    /// `(mean, scale)` rows, applied after the output function.
    output_scaler: Option<(CandleTensor, CandleTensor)>,
    labels: Option<Labels>,
    /// The manifest's `features`: the input's columns by name, in order (empty when unnamed).
    features: Vec<String>,
    signature: Signature,
}

/// The numbered layer a tensor name belongs to (`3.weight` → 3, `layers.3.weight` → 3).
fn layer_index(name: &str, suffix: &str) -> Option<usize> {
    let prefix = name.strip_suffix(suffix)?;
    prefix.rsplit('.').next()?.parse().ok()
}

impl NativeNetwork {
    pub fn load(dir: &Path) -> Result<NativeNetwork, BackendError> {
        let manifest = Manifest::read(&dir.join("weir.toml"))?;
        let path = dir.join("model.safetensors");
        let weights = read_weights(&path)?;
        let mut indexed: Vec<(usize, &String)> = weights
            .keys()
            .filter_map(|name| Some((layer_index(name, ".weight")?, name)))
            .collect();
        indexed.sort();
        let expected = manifest.layers.len() - 1;
        if indexed.len() != expected {
            let found: Vec<&str> = indexed.iter().map(|(_, n)| n.as_str()).collect();
            return Err(load_error(
                &path,
                format!("layers {:?} need {expected} linear layers, but the file has {} weight tensors: {found:?}", manifest.layers, found.len()),
            ));
        }
        let mut layers = Vec::with_capacity(expected);
        for (position, (_, weight_name)) in indexed.iter().enumerate() {
            let (fan_in, fan_out) = (manifest.layers[position], manifest.layers[position + 1]);
            let weight = as_f32(weight_name, &weights[*weight_name], &path)?;
            if weight.dims() != [fan_out, fan_in] {
                return Err(load_error(
                    &path,
                    format!("tensor '{weight_name}' has shape {:?}, expected [{fan_out}, {fan_in}] (layers {:?})", weight.dims(), manifest.layers),
                ));
            }
            let bias_name = format!("{}.bias", weight_name.trim_end_matches(".weight"));
            let bias = match weights.get(&bias_name) {
                Some(bias) => {
                    let bias = as_f32(&bias_name, bias, &path)?;
                    if bias.dims() != [fan_out] {
                        return Err(load_error(
                            &path,
                            format!(
                                "tensor '{bias_name}' has shape {:?}, expected [{fan_out}]",
                                bias.dims()
                            ),
                        ));
                    }
                    Some(bias)
                }
                None => None,
            };
            layers.push(Linear::new(weight, bias));
        }
        let datatype: DataType = manifest
            .input
            .datatype
            .parse()
            .map_err(|e| load_error(&path, e))?;
        let width = manifest.output_width();
        let mut outputs = vec![TensorSpec {
            name: manifest.output_name.clone(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Variable, Dim::Fixed(width as u64)],
        }];
        if let Some(labels) = &manifest.labels {
            outputs.push(TensorSpec {
                name: LABEL_OUTPUT.to_owned(),
                datatype: labels.datatype(),
                shape: vec![Dim::Variable],
            });
        }
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: manifest.input.name.clone(),
                datatype,
                shape: vec![Dim::Variable, Dim::Fixed(manifest.layers[0] as u64)],
            }],
            outputs,
        };
        let scaler_rows = |scaler: &Option<Scaler>| {
            scaler
                .as_ref()
                .map(Scaler::tensors)
                .transpose()
                .map_err(|e| load_error(&path, e))
        };
        Ok(NativeNetwork {
            layers,
            activation: manifest.activation.unwrap_or(Activation::Relu),
            output: manifest.output_function(),
            input_scaler: scaler_rows(&manifest.scaler)?,
            output_scaler: scaler_rows(&manifest.output_scaler)?,
            labels: manifest.labels,
            features: manifest.features,
            signature,
        })
    }

    fn forward(&self, input: CandleTensor) -> candle_core::Result<CandleTensor> {
        let last = self.layers.len() - 1;
        let mut x = match &self.input_scaler {
            Some((mean, scale)) => input.broadcast_sub(mean)?.broadcast_div(scale)?,
            None => input,
        };
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if index < last {
                x = match self.activation {
                    Activation::Relu => x.relu()?,
                    Activation::Gelu => x.gelu_erf()?,
                    Activation::Tanh => x.tanh()?,
                    Activation::Sigmoid => candle_nn::ops::sigmoid(&x)?,
                };
            }
        }
        let y = match self.output {
            OutputFunction::None => x,
            OutputFunction::Softmax => candle_nn::ops::softmax_last_dim(&x)?,
            OutputFunction::Sigmoid => candle_nn::ops::sigmoid(&x)?,
        };
        match &self.output_scaler {
            Some((mean, scale)) => y.broadcast_mul(scale)?.broadcast_add(mean),
            None => Ok(y),
        }
    }
}

impl Backend for NativeNetwork {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "candle_safetensors"
    }

    fn infer(&self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Inference("no input given".to_owned()))?;
        let rows = input.shape.first().copied().unwrap_or(0);
        let width = self.signature.inputs[0].shape[1].as_i64() as usize;
        let values: Vec<f32> = match input.data {
            TensorData::Fp32(v) => v,
            TensorData::Fp64(v) => v.into_iter().map(|x| x as f32).collect(),
            TensorData::Fp16(v) => v.into_iter().map(|x| x.to_f32()).collect(),
            other => {
                return Err(BackendError::InvalidInput(format!(
                    "input must be floating point, found {}",
                    other.datatype()
                )))
            }
        };
        let out_width = self.signature.outputs[0].shape[1].as_i64() as usize;
        let scores = if rows == 0 {
            Vec::new()
        } else {
            let x = CandleTensor::from_vec(values, (rows, width), &Device::Cpu)
                .map_err(inference_error)?;
            self.forward(x)
                .and_then(|y| y.to_dtype(DType::F32))
                .and_then(|y| y.flatten_all())
                .and_then(|y| y.to_vec1::<f32>())
                .map_err(inference_error)?
        };
        let main = &self.signature.outputs[0].name;
        let wanted: Vec<&str> = if outputs.is_empty() {
            self.signature
                .outputs
                .iter()
                .map(|o| o.name.as_str())
                .collect()
        } else {
            outputs.iter().map(String::as_str).collect()
        };
        // Labels are read from the scores before the scores move into their own output.
        let mut classes = match &self.labels {
            Some(labels) if wanted.contains(&LABEL_OUTPUT) => {
                Some(labels.classes(&scores, out_width))
            }
            _ => None,
        };
        let mut scores = Some(scores);
        let mut answer = Vec::with_capacity(wanted.len());
        for name in wanted {
            let (shape, data) = if name == main.as_str() {
                (vec![rows, out_width], scores.take().map(TensorData::Fp32))
            } else if name == LABEL_OUTPUT {
                (vec![rows], classes.take())
            } else {
                (Vec::new(), None)
            };
            let data = data.ok_or_else(|| {
                BackendError::InvalidInput(format!("unknown or repeated output '{name}'"))
            })?;
            answer.push(Tensor::new(name.to_owned(), shape, data));
        }
        Ok(answer)
    }

    fn v1_predictions(&self) -> Option<&str> {
        self.labels.as_ref().map(|_| LABEL_OUTPUT)
    }

    fn feature_names(&self) -> &[String] {
        &self.features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers_come_from_state_dict_names() {
        assert_eq!(layer_index("0.weight", ".weight"), Some(0));
        assert_eq!(layer_index("layers.12.weight", ".weight"), Some(12));
        assert_eq!(layer_index("net.4.weight", ".weight"), Some(4));
        assert_eq!(layer_index("0.bias", ".weight"), None);
        assert_eq!(layer_index("embedding.weight", ".weight"), None);
    }
}
