//! The training loop: mini-batch AdamW over a standardised table, one epoch at a time so the
//! caller can show progress and log metrics between epochs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use weir_models::safetensors::{
    Activation, Architecture, InputSpec, Manifest, OutputFunction, Scaler,
};

use crate::data::{Dataset, Target, Task};
use crate::network::Network;
use crate::prepare::{fit_scaler, fit_target_scaler, split};
use crate::TrainError;

/// The model families `weir train` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// One linear layer and a softmax: multinomial logistic regression (classification).
    Logistic,
    /// One linear layer: linear regression.
    Linear,
    /// Hidden ReLU layers, then a softmax (classification) or nothing (regression).
    Mlp,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Linear => "linear",
            ModelKind::Mlp => "mlp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: ModelKind,
    /// Hidden layer sizes (MLP only).
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// The fraction of rows held out for validation, in `[0, 1)`.
    pub val_split: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::Mlp,
            hidden: vec![32, 32],
            epochs: 100,
            learning_rate: 0.01,
            batch_size: 32,
            val_split: 0.2,
            seed: 42,
        }
    }
}

impl TrainConfig {
    fn check(&self, task: Task) -> Result<(), TrainError> {
        let refuse = |message: String| Err(TrainError::Config(message));
        match (self.model, task) {
            (ModelKind::Logistic, Task::Regression) => {
                return refuse("--model logistic is for classification; a regression target needs --model linear or mlp".to_owned())
            }
            (ModelKind::Linear, Task::Classification) => {
                return refuse("--model linear is for regression; a classification target needs --model logistic or mlp".to_owned())
            }
            _ => {}
        }
        if self.model == ModelKind::Mlp && (self.hidden.is_empty() || self.hidden.contains(&0)) {
            return refuse(format!(
                "--hidden must list at least one layer size, none zero; found {:?}",
                self.hidden
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return refuse("--epochs and --batch-size must be at least 1".to_owned());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return refuse(format!(
                "--lr must be a positive number; found {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return refuse(format!(
                "--val-split must be at least 0 and below 1; found {}",
                self.val_split
            ));
        }
        Ok(())
    }
}

/// What one epoch measured. Metric names are MLflow keys: `loss` (training), `val_loss`, and
/// `val_accuracy` or `val_rmse` when rows are held out.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub metrics: Vec<(&'static str, f64)>,
}

impl EpochReport {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, v)| *v)
    }
}

/// The rows of one side of the split as tensors: standardised features and the target as the
/// loss wants it (class indices, or standardised values `[n, 1]`).
struct Rows {
    x: Tensor,
    y: Tensor,
    /// Regression only: the raw target, for the RMSE in the target's own units.
    raw: Vec<f64>,
}

impl Rows {
    fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }
}

/// What the network learns, with the target it learns from.
enum Objective {
    Classification {
        classes: Vec<u32>,
    },
    /// Regression on a standardised target; `scaler` turns outputs back into its units.
    Regression {
        values: Vec<f64>,
        scaler: Scaler,
    },
}

impl Objective {
    fn new(target: &Target, train_rows: &[usize]) -> Objective {
        match target {
            Target::Classes { indices, .. } => Objective::Classification {
                classes: indices.clone(),
            },
            Target::Values(values) => Objective::Regression {
                values: values.clone(),
                scaler: fit_target_scaler(values, train_rows),
            },
        }
    }

    /// The target of `rows` as the loss wants it (class indices, or standardised values
    /// `[n, 1]`), and for regression the raw values for the RMSE.
    fn encode(&self, rows: &[usize]) -> candle_core::Result<(Tensor, Vec<f64>)> {
        let n = rows.len();
        match self {
            Objective::Classification { classes } => {
                let y: Vec<u32> = rows.iter().map(|&r| classes[r]).collect();
                Ok((Tensor::from_vec(y, n, &Device::Cpu)?, Vec::new()))
            }
            Objective::Regression { values, scaler } => {
                let raw: Vec<f64> = rows.iter().map(|&r| values[r]).collect();
                let y: Vec<f32> = raw
                    .iter()
                    .map(|v| ((v - scaler.mean[0]) / scaler.scale[0]) as f32)
                    .collect();
                Ok((Tensor::from_vec(y, (n, 1), &Device::Cpu)?, raw))
            }
        }
    }
}

/// Trains one model; call [`Trainer::epoch`] until [`Trainer::finished`], then
/// [`Trainer::into_model`].
pub struct Trainer {
    config: TrainConfig,
    objective: Objective,
    network: Network,
    optimizer: AdamW,
    train: Rows,
    validation: Option<Rows>,
    manifest: Manifest,
    rng: StdRng,
    order: Vec<u32>,
    epoch: usize,
}

impl Trainer {
    pub fn new(dataset: &Dataset, config: TrainConfig) -> Result<Trainer, TrainError> {
        config.check(dataset.target.task())?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let split = split(dataset, config.val_split, &mut rng)?;
        let scaler = fit_scaler(dataset, &split.train);
        let objective = Objective::new(&dataset.target, &split.train);
        let mut sizes = vec![dataset.width()];
        if config.model == ModelKind::Mlp {
            sizes.extend_from_slice(&config.hidden);
        }
        sizes.push(match &dataset.target {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(_) => 1,
        });
        let network = Network::new(&sizes, &mut rng)?;
        let optimizer = AdamW::new(
            network.vars(),
            ParamsAdamW {
                lr: config.learning_rate,
                ..ParamsAdamW::default()
            },
        )?;
        let rows = |indices: &[usize]| -> Result<Rows, TrainError> {
            let x: Vec<f32> = indices
                .iter()
                .flat_map(|&r| {
                    dataset
                        .row(r)
                        .iter()
                        .zip(scaler.mean.iter().zip(&scaler.scale))
                        .map(|(v, (m, s))| ((v - m) / s) as f32)
                })
                .collect();
            let x = Tensor::from_vec(x, (indices.len(), dataset.width()), &Device::Cpu)?;
            let (y, raw) = objective.encode(indices)?;
            Ok(Rows { x, y, raw })
        };
        let train = rows(&split.train)?;
        let validation = if split.validation.is_empty() {
            None
        } else {
            Some(rows(&split.validation)?)
        };
        let manifest = manifest(&config, dataset, sizes, scaler, &objective);
        let order = (0..split.train.len() as u32).collect();
        Ok(Trainer {
            config,
            objective,
            network,
            optimizer,
            train,
            validation,
            manifest,
            rng,
            order,
            epoch: 0,
        })
    }

    pub fn task(&self) -> Task {
        match self.objective {
            Objective::Classification { .. } => Task::Classification,
            Objective::Regression { .. } => Task::Regression,
        }
    }

    /// Rows used for training and for validation.
    pub fn sizes(&self) -> (usize, usize) {
        (
            self.train.len(),
            self.validation.as_ref().map_or(0, Rows::len),
        )
    }

    /// Feature columns in input order.
    pub fn features(&self) -> &[String] {
        &self.manifest.features
    }

    pub fn finished(&self) -> bool {
        self.epoch >= self.config.epochs
    }

    /// One pass over the training rows in a fresh random order, then the validation metrics.
    pub fn epoch(&mut self) -> Result<EpochReport, TrainError> {
        self.order.shuffle(&mut self.rng);
        let mut loss_sum = 0.0;
        for batch in self.order.chunks(self.config.batch_size) {
            let index = Tensor::from_slice(batch, batch.len(), &Device::Cpu)?;
            let x = self.train.x.index_select(&index, 0)?;
            let y = self.train.y.index_select(&index, 0)?;
            let loss = self.loss(&self.network.forward(&x)?, &y)?;
            self.optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
        }
        self.epoch += 1;
        let mut metrics = vec![("loss", loss_sum / self.order.len().max(1) as f64)];
        if let Some(validation) = &self.validation {
            metrics.extend(self.evaluate(validation)?);
        }
        Ok(EpochReport {
            epoch: self.epoch,
            metrics,
        })
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        match self.objective {
            Objective::Classification { .. } => candle_nn::loss::cross_entropy(output, target),
            Objective::Regression { .. } => candle_nn::loss::mse(output, target),
        }
    }

    fn evaluate(&self, rows: &Rows) -> Result<Vec<(&'static str, f64)>, TrainError> {
        let output = self.network.forward(&rows.x)?;
        let loss = f64::from(self.loss(&output, &rows.y)?.to_scalar::<f32>()?);
        let quality = match &self.objective {
            Objective::Classification { .. } => {
                let predicted = output.argmax(1)?.to_vec1::<u32>()?;
                let truth = rows.y.to_vec1::<u32>()?;
                let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
                ("val_accuracy", right as f64 / truth.len().max(1) as f64)
            }
            Objective::Regression { scaler: t, .. } => {
                let predicted = output.flatten_all()?.to_vec1::<f32>()?;
                let squared: f64 = predicted
                    .iter()
                    .zip(&rows.raw)
                    .map(|(p, truth)| {
                        let value = f64::from(*p) * t.scale[0] + t.mean[0];
                        (value - truth).powi(2)
                    })
                    .sum();
                ("val_rmse", (squared / rows.raw.len().max(1) as f64).sqrt())
            }
        };
        Ok(vec![("val_loss", loss), quality])
    }

    /// The trained weights and the manifest that serves them.
    pub fn into_model(self) -> Result<TrainedModel, TrainError> {
        Ok(TrainedModel {
            manifest: self.manifest,
            tensors: self.network.tensors()?,
        })
    }
}

/// The `weir.toml` that serves the trained weights: same layers, same activation, the training
/// rows' scaler, the class labels or the target's scaler.
fn manifest(
    config: &TrainConfig,
    dataset: &Dataset,
    layers: Vec<usize>,
    scaler: Scaler,
    objective: &Objective,
) -> Manifest {
    let (output, output_name, output_scaler) = match objective {
        Objective::Classification { .. } => (OutputFunction::Softmax, "probabilities", None),
        Objective::Regression { scaler, .. } => {
            (OutputFunction::None, "prediction", Some(scaler.clone()))
        }
    };
    Manifest {
        architecture: match config.model {
            ModelKind::Logistic => Architecture::Logistic,
            ModelKind::Linear => Architecture::Linear,
            ModelKind::Mlp => Architecture::Mlp,
        },
        layers,
        activation: (config.model == ModelKind::Mlp).then_some(Activation::Relu),
        output: Some(output),
        input: InputSpec {
            name: "features".to_owned(),
            datatype: "FP32".to_owned(),
        },
        output_name: output_name.to_owned(),
        features: dataset.features.clone(),
        labels: match &dataset.target {
            Target::Classes { labels, .. } => Some(labels.clone()),
            Target::Values(_) => None,
        },
        scaler: Some(scaler),
        output_scaler,
    }
}

/// A model version folder's contents, before it is written.
pub struct TrainedModel {
    pub manifest: Manifest,
    pub tensors: HashMap<String, Tensor>,
}

impl TrainedModel {
    /// Writes `model.safetensors` and `weir.toml` into `dir` (created if missing); returns
    /// the two paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
        let io = |path: &Path, e: &dyn std::fmt::Display| {
            TrainError::Output(format!("cannot write {}: {e}", path.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let weights = dir.join("model.safetensors");
        candle_core::safetensors::save(&self.tensors, &weights).map_err(|e| io(&weights, &e))?;
        let manifest = dir.join("weir.toml");
        let text = format!(
            "# Written by `weir train`; `weir serve` loads this folder as it is.\n{}",
            self.manifest.to_toml().map_err(|e| io(&manifest, &e))?
        );
        std::fs::write(&manifest, text).map_err(|e| io(&manifest, &e))?;
        Ok(vec![weights, manifest])
    }

    /// All weights as raw f32 values by name, for comparing two trainings.
    pub fn weights(&self) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let values = self.tensors[name]
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Ok((name.clone(), values))
            })
            .collect()
    }
}

/// Trains to the end, calling `on_epoch` after each epoch.
pub fn train(
    dataset: &Dataset,
    config: TrainConfig,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<(TrainedModel, Vec<EpochReport>), TrainError> {
    let mut trainer = Trainer::new(dataset, config)?;
    let mut history = Vec::new();
    while !trainer.finished() {
        let report = trainer.epoch()?;
        on_epoch(&report);
        history.push(report);
    }
    Ok((trainer.into_model()?, history))
}
