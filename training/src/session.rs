//! One `weir train` job: read, train, write the version folder, and — with a tracking server —
//! record the run and register the version, the way `mlflow.start_run()` + `log_model` +
//! `register_model` would.
//!
//! The order is chosen so a failure costs as little as possible: the data and flags are checked
//! before anything remote is touched, and once a run exists every later failure marks it FAILED
//! rather than leaving it RUNNING forever.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use weir_http::HttpClient;
use weir_mlflow_client::{
    now_ms, Identity, KeyValue, Link, Metric, RegistryClient, TrackingClient,
};

use crate::data::{read_csv, Columns, Target, Task};
use crate::trainer::{EpochReport, TrainConfig, Trainer};
use crate::TrainError;

/// The tracking server (which, for `weir registry`, is also the model registry).
#[derive(Debug, Clone)]
pub struct Remote {
    pub tracking_uri: String,
    pub experiment: String,
    /// `None` lets the server pick a name.
    pub run_name: Option<String>,
    pub identity: Identity,
    /// Registers the trained model under this name, linked to the run.
    pub register: Option<String>,
    /// The client for the server: which CA HTTPS trusts (`HttpClient::with_ca_file`).
    pub http: HttpClient,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub data: PathBuf,
    pub columns: Columns,
    pub config: TrainConfig,
    pub out: PathBuf,
    pub remote: Option<Remote>,
}

/// What happened, for the caller to show.
pub enum Event<'a> {
    Started {
        task: Task,
        /// Classes for classification, 0 for regression.
        classes: usize,
        train_rows: usize,
        validation_rows: usize,
        run_id: Option<&'a str>,
    },
    Epoch(&'a EpochReport),
}

/// The tracking run a job recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Debug)]
pub struct Outcome {
    pub task: Task,
    pub history: Vec<EpochReport>,
    /// The files written into the version folder.
    pub files: Vec<PathBuf>,
    pub run: Option<RunInfo>,
    /// The registry's `model_version`, when one was registered.
    pub version: Option<Value>,
    /// The version's approval state, when the registry is weir's (MLflow's has none).
    pub approval: Option<Value>,
}

/// The logged model's name, and the folder of the run's artifacts on servers without logged
/// models (MLflow's customary `model`).
const ARTIFACT_PATH: &str = "model";

/// The logged model's `model_type`: the files are a weir native network, not an MLflow flavor.
const MODEL_TYPE: &str = "weir-native";

/// Runs the job. Training is CPU work done between awaits on the caller's runtime: a CLI job
/// has nothing else to schedule, and each epoch's metrics are sent as soon as it ends.
pub async fn run(job: Job, on_event: &mut dyn FnMut(Event)) -> Result<Outcome, TrainError> {
    let dataset = read_csv(&job.data, &job.columns)?;
    let mut trainer = Trainer::new(&dataset, job.config.clone())?;
    let remote = match &job.remote {
        Some(remote) => Some(Tracked::start(remote, &job, &dataset.target, &trainer).await?),
        None => None,
    };
    let (train_rows, validation_rows) = trainer.sizes();
    on_event(Event::Started {
        task: trainer.task(),
        classes: match &dataset.target {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(_) => 0,
        },
        train_rows,
        validation_rows,
        run_id: remote.as_ref().map(|r| r.run.run_id.as_str()),
    });
    let task = trainer.task();
    let outcome = async {
        let mut history = Vec::with_capacity(job.config.epochs);
        while !trainer.finished() {
            let report = trainer.epoch()?;
            on_event(Event::Epoch(&report));
            if let Some(tracked) = &remote {
                tracked.log_epoch(&report).await?;
            }
            history.push(report);
        }
        let files = trainer.into_model()?.write(&job.out)?;
        let (version, approval) = match &remote {
            Some(tracked) => tracked.publish(&files, history.len()).await?,
            None => (None, None),
        };
        Ok(Outcome {
            task,
            history,
            files,
            run: None,
            version,
            approval,
        })
    }
    .await;
    let Some(tracked) = remote else {
        return outcome;
    };
    match outcome {
        Ok(mut outcome) => {
            tracked.end("FINISHED").await?;
            outcome.run = Some(tracked.run);
            Ok(outcome)
        }
        Err(err) => {
            // The original failure is what the user needs; a failure to mark the run is not.
            let _ = tracked.end("FAILED").await;
            Err(err)
        }
    }
}

/// A run being recorded.
struct Tracked {
    tracking: TrackingClient,
    registry: RegistryClient,
    register: Option<String>,
    run: RunInfo,
}

fn remote_error(what: &str, cause: weir_mlflow_client::ClientError) -> TrainError {
    TrainError::Remote {
        what: what.to_owned(),
        cause,
    }
}

impl Tracked {
    /// Creates the run with the job's parameters and tags.
    async fn start(
        remote: &Remote,
        job: &Job,
        target: &Target,
        trainer: &Trainer,
    ) -> Result<Tracked, TrainError> {
        let uri = remote.tracking_uri.as_str();
        let tracking = TrackingClient::as_identity(uri, Some(remote.identity.clone()))
            .with_http(remote.http.clone());
        let registry =
            RegistryClient::new(uri, remote.identity.clone()).with_http(remote.http.clone());
        // Before any work: a name the registry refuses, or a caller it does not accept, should
        // not cost a whole training.
        if let Some(name) = &remote.register {
            registry
                .ensure_model(name)
                .await
                .map_err(|e| remote_error(&format!("cannot register '{name}'"), e))?;
        }
        let experiment_id = tracking
            .experiment_id(&remote.experiment)
            .await
            .map_err(|e| remote_error("cannot open the experiment", e))?;
        let digest = file_sha256(&job.data)?;
        let mut tags = vec![
            KeyValue::new("mlflow.source.name", "weir train"),
            KeyValue::new("mlflow.source.type", "LOCAL"),
            KeyValue::new("weir.task", trainer.task().as_str()),
            KeyValue::new("weir.data.sha256", &digest),
        ];
        if let Identity::User(user) = &remote.identity {
            tags.push(KeyValue::new("mlflow.user", user));
        }
        let run = tracking
            .create_run(
                &experiment_id,
                remote.run_name.as_deref().unwrap_or(""),
                &tags,
            )
            .await
            .map_err(|e| remote_error("cannot create the run", e))?;
        let run = RunInfo {
            run_id: run.info.run_id,
            experiment_id,
            artifact_uri: run.info.artifact_uri,
        };
        let tracked = Tracked {
            tracking,
            registry,
            register: remote.register.clone(),
            run,
        };
        let params = parameters(job, target, trainer, &digest);
        if let Err(err) = tracked
            .tracking
            .log_batch(&tracked.run.run_id, &[], &params, &[])
            .await
        {
            let _ = tracked.end("FAILED").await;
            return Err(remote_error("cannot log the parameters", err));
        }
        Ok(tracked)
    }

    async fn log_epoch(&self, report: &EpochReport) -> Result<(), TrainError> {
        let timestamp = now_ms();
        let metrics: Vec<Metric> = report
            .metrics
            .iter()
            .map(|(key, value)| Metric {
                key: (*key).to_owned(),
                value: *value,
                timestamp,
                step: report.epoch as i64,
            })
            .collect();
        self.tracking
            .log_batch(&self.run.run_id, &metrics, &[], &[])
            .await
            .map_err(|e| remote_error("cannot log metrics", e))
    }

    /// Logs the version folder as the run's MLflow 3 logged model (as `log_model` does: a model
    /// record, its files, READY, the run's output) and registers it from there; returns the
    /// version and, from weir's registry, its approval state. An MLflow 2 server has no logged
    /// models: the files then become the run's `model/` artifacts, registered from there.
    async fn publish(
        &self,
        files: &[PathBuf],
        epochs: usize,
    ) -> Result<(Option<Value>, Option<Value>), TrainError> {
        let run = &self.run;
        let logged = match self
            .tracking
            .create_logged_model(&run.experiment_id, ARTIFACT_PATH, &run.run_id, MODEL_TYPE)
            .await
        {
            Ok(model) => Some((model.info.model_id, model.info.artifact_uri)),
            Err(err) if err.is_missing_endpoint() => None,
            Err(err) => return Err(remote_error("cannot log the model", err)),
        };
        let location = match &logged {
            Some((_, artifact_uri)) => artifact_uri.clone(),
            None => format!("{}/{ARTIFACT_PATH}", run.artifact_uri.trim_end_matches('/')),
        };
        let model_id = logged.as_ref().map(|(id, _)| id.as_str());
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Err(err) = self.tracking.upload_artifact(&location, file, &name).await {
                // As log_model does: a model whose files did not all arrive is marked so.
                if let Some(model_id) = model_id {
                    let failed = "LOGGED_MODEL_UPLOAD_FAILED";
                    let _ = self.tracking.finalize_logged_model(model_id, failed).await;
                }
                return Err(remote_error("cannot upload the model files", err));
            }
        }
        if let Some(model_id) = model_id {
            self.tracking
                .finalize_logged_model(model_id, "LOGGED_MODEL_READY")
                .await
                .map_err(|e| remote_error("cannot finalize the logged model", e))?;
            self.tracking
                .log_output(&run.run_id, model_id, epochs as i64)
                .await
                .map_err(|e| remote_error("cannot record the run's model", e))?;
        }
        let Some(name) = &self.register else {
            return Ok((None, None));
        };
        let source = model_id.map_or(location.clone(), |id| format!("models:/{id}"));
        let link = Link {
            run_id: Some(&run.run_id),
            model_id,
        };
        let description = format!("trained by weir train (run {})", run.run_id);
        let version = self
            .registry
            .create_version(name, &source, link, &description)
            .await
            .map_err(|e| remote_error(&format!("cannot register '{name}'"), e))?;
        let number = version["version"].as_str().unwrap_or_default();
        // Approvals are weir's: MLflow's server answers 404, and then there is nothing pending.
        let approval = self.registry.approval(name, number).await.ok();
        Ok((Some(version), approval))
    }

    async fn end(&self, status: &str) -> Result<(), TrainError> {
        self.tracking
            .end_run(&self.run.run_id, status)
            .await
            .map_err(|e| remote_error("cannot end the run", e))
    }
}

/// Everything needed to reproduce the run, as MLflow params (strings).
fn parameters(job: &Job, target: &Target, trainer: &Trainer, digest: &str) -> Vec<KeyValue> {
    let config = &job.config;
    let (train_rows, validation_rows) = trainer.sizes();
    let mut params = vec![
        KeyValue::new("data", job.data.display().to_string()),
        KeyValue::new("data_sha256", digest),
        KeyValue::new("target", &job.columns.target),
        KeyValue::new("task", trainer.task().as_str()),
        KeyValue::new("model", config.model.as_str()),
        KeyValue::new("epochs", config.epochs.to_string()),
        KeyValue::new("lr", config.learning_rate.to_string()),
        KeyValue::new("batch_size", config.batch_size.to_string()),
        KeyValue::new("val_split", config.val_split.to_string()),
        KeyValue::new("seed", config.seed.to_string()),
        KeyValue::new("optimizer", "AdamW"),
        KeyValue::new("train_rows", train_rows.to_string()),
        KeyValue::new("val_rows", validation_rows.to_string()),
        KeyValue::new("features", trainer.features().join(",")),
    ];
    if config.model == crate::ModelKind::Mlp {
        let hidden: Vec<String> = config.hidden.iter().map(usize::to_string).collect();
        params.push(KeyValue::new("hidden", hidden.join(",")));
    }
    if let Target::Classes { labels, .. } = target {
        params.push(KeyValue::new("classes", labels.len().to_string()));
    }
    // MLflow caps a param value at 6,000 characters; a very wide table keeps only the count.
    for param in &mut params {
        if param.value.chars().count() > 6000 {
            param.value = format!("({} characters, not logged)", param.value.len());
        }
    }
    params
}

fn file_sha256(path: &Path) -> Result<String, TrainError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TrainError::Data(format!("{}: cannot read: {e}", path.display())))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}
