//! Feed-forward networks from safetensors weights and a `weir.toml` manifest (`manifest`).
//!
//! The linear layers' tensors are found by name as PyTorch writes a `state_dict()`:
//! `nn.Sequential` indices (`0.weight`, `2.weight`, … with activations between) or
//! `layers.{i}.weight`; any numbered prefix works, in numeric order, so dropout or activation
//! modules in between do not matter. Weights are `[out, in]`, biases `[out]` (optional).

use std::path::Path;

use candle_core::{DType, Device, Tensor as CandleTensor};
use candle_nn::{Linear, Module};

use super::manifest::{Activation, Labels, Manifest, OutputFunction, Scaler, LABEL_OUTPUT};
use super::{as_f32, inference_error, load_error, read_weights};
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

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
