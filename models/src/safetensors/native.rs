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
//! ```
//! The linear layers' tensors are found by name as PyTorch writes a `state_dict()`:
//! `nn.Sequential` indices (`0.weight`, `2.weight`, … with activations between) or
//! `layers.{i}.weight`; any numbered prefix works, in numeric order, so dropout or activation
//! modules in between do not matter. Weights are `[out, in]`, biases `[out]` (optional).

use std::path::Path;

use candle_core::{DType, Device, Tensor as CandleTensor};
use candle_nn::{Linear, Module};
use serde::Deserialize;

use super::{as_f32, inference_error, load_error, read_weights};
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Mlp,
    Linear,
    Logistic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFunction {
    None,
    Softmax,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub architecture: Architecture,
    pub layers: Vec<usize>,
    pub activation: Option<Activation>,
    pub output: Option<OutputFunction>,
    #[serde(default = "default_input")]
    pub input: InputSpec,
    #[serde(default = "default_output_name")]
    pub output_name: String,
}

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
        let problem = |reason: String| Err(load_error(path, reason));
        if manifest.layers.len() < 2 || manifest.layers.contains(&0) {
            return problem(format!(
                "layers must list at least an input and an output size, none zero; found {:?}",
                manifest.layers
            ));
        }
        if manifest.architecture != Architecture::Mlp && manifest.layers.len() != 2 {
            return problem(
                format!(
                    "a {:?} model has exactly two sizes in layers (input, output); found {:?}",
                    manifest.architecture, manifest.layers
                )
                .to_lowercase(),
            );
        }
        if !matches!(manifest.input.datatype.as_str(), "FP32" | "FP64" | "FP16") {
            return problem(format!(
                "input datatype must be FP32, FP64 or FP16; found \"{}\"",
                manifest.input.datatype
            ));
        }
        Ok(manifest)
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
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: manifest.input.name.clone(),
                datatype,
                shape: vec![Dim::Variable, Dim::Fixed(manifest.layers[0] as u64)],
            }],
            outputs: vec![TensorSpec {
                name: manifest.output_name.clone(),
                datatype: DataType::Fp32,
                shape: vec![
                    Dim::Variable,
                    Dim::Fixed(*manifest.layers.last().unwrap_or(&0) as u64),
                ],
            }],
        };
        Ok(NativeNetwork {
            layers,
            activation: manifest.activation.unwrap_or(Activation::Relu),
            output: manifest.output_function(),
            signature,
        })
    }

    fn forward(&self, input: CandleTensor) -> candle_core::Result<CandleTensor> {
        let last = self.layers.len() - 1;
        let mut x = input;
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
        match self.output {
            OutputFunction::None => Ok(x),
            OutputFunction::Softmax => candle_nn::ops::softmax_last_dim(&x),
            OutputFunction::Sigmoid => candle_nn::ops::sigmoid(&x),
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

    fn infer(&self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
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
        if rows == 0 {
            return Ok(vec![Tensor::new(
                self.signature.outputs[0].name.clone(),
                vec![0, out_width],
                TensorData::Fp32(Vec::new()),
            )]);
        }
        let x =
            CandleTensor::from_vec(values, (rows, width), &Device::Cpu).map_err(inference_error)?;
        let y = self
            .forward(x)
            .and_then(|y| y.to_dtype(DType::F32))
            .map_err(inference_error)?;
        let data = y
            .flatten_all()
            .and_then(|y| y.to_vec1::<f32>())
            .map_err(inference_error)?;
        Ok(vec![Tensor::new(
            self.signature.outputs[0].name.clone(),
            vec![rows, out_width],
            TensorData::Fp32(data),
        )])
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
