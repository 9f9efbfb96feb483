//! The trainable feed-forward network: the same computation `weir serve` runs for a native
//! network (linear layers with ReLU between), with weights named as the serving side finds them.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::Rng;

/// Linear layers `sizes[i] → sizes[i + 1]`.
pub struct Network {
    layers: Vec<(Var, Var)>,
}

impl Network {
    /// Weights and biases drawn from U(-1/√fan_in, 1/√fan_in), PyTorch's default for
    /// `nn.Linear`, from the caller's seeded generator: candle's own initialisers draw from a
    /// generator a seed cannot reach, and a seed must fix every weight.
    pub fn new(sizes: &[usize], rng: &mut StdRng) -> candle_core::Result<Network> {
        let mut layers = Vec::with_capacity(sizes.len().saturating_sub(1));
        for pair in sizes.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut draw = |count: usize| -> Vec<f32> {
                (0..count)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect()
            };
            let weight = Tensor::from_vec(draw(fan_in * fan_out), (fan_out, fan_in), &Device::Cpu)?;
            let bias = Tensor::from_vec(draw(fan_out), fan_out, &Device::Cpu)?;
            layers.push((Var::from_tensor(&weight)?, Var::from_tensor(&bias)?));
        }
        Ok(Network { layers })
    }

    /// Raw outputs (logits for classification, standardised values for regression).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let last = self.layers.len().saturating_sub(1);
        let mut x = x.clone();
        for (index, (weight, bias)) in self.layers.iter().enumerate() {
            x = x
                .matmul(&weight.as_tensor().t()?)?
                .broadcast_add(bias.as_tensor())?;
            if index < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }

    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// The weights as `layers.{i}.weight` / `layers.{i}.bias`, copied out of the variables.
    pub fn tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut tensors = HashMap::new();
        for (index, (weight, bias)) in self.layers.iter().enumerate() {
            let copy = |var: &Var| var.as_tensor().to_dtype(DType::F32)?.copy();
            tensors.insert(format!("layers.{index}.weight"), copy(weight)?);
            tensors.insert(format!("layers.{index}.bias"), copy(bias)?);
        }
        Ok(tensors)
    }
}
