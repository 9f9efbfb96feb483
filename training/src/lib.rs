//! Training companion: tabular models trained with candle, tracked and registered the way MLflow
//! users work (train → track → register → approve → serve).
//!
//! [`data`] reads a CSV and decides the task, [`prepare`] holds out validation rows and fits the
//! standardisation, `network` and [`trainer`] train with AdamW one epoch at a time and produce
//! the model version folder (`model.safetensors` + `weir.toml`) that `weir serve` loads as-is,
//! scaler and class labels included. [`session`] puts it together with a tracking run and a
//! registry version.

pub mod data;
mod network;
pub mod prepare;
pub mod session;
pub mod trainer;

pub use data::{read_csv, Columns, Dataset, Target, Task};
pub use session::{Job, Outcome, Remote};
pub use trainer::{train, EpochReport, ModelKind, TrainConfig, TrainedModel, Trainer};

/// Why training could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data file cannot be used as given; the message names file, row and column.
    #[error("{0}")]
    Data(String),
    /// A flag's value cannot work with this data.
    #[error("{0}")]
    Config(String),
    /// The model folder could not be written.
    #[error("{0}")]
    Output(String),
    /// The tracking server or registry refused or could not be reached; `what` says which
    /// step of the job failed ("cannot log metrics").
    #[error("{what}: {cause}")]
    Remote {
        what: String,
        cause: weir_mlflow_client::ClientError,
    },
    #[error("training failed: {0}")]
    Candle(#[from] candle_core::Error),
}
