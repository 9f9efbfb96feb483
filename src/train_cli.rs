//! `weir train`: flags in, a trained version folder out, progress on stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{json, Value};
use weir_training::session::{self, Event};
use weir_training::{Columns, EpochReport, Job, ModelKind, Remote, Task, TrainConfig};

use crate::output::Output;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A CSV file: a header row, then one example per row; features must be numbers.
    #[arg(long)]
    data: PathBuf,
    /// The column to predict: text or integers are classes, other numbers a regression.
    #[arg(long)]
    target: String,
    /// Feature columns, in the order the model takes them (default: every other column).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Overrides the task decided from the target's values.
    #[arg(long, value_enum)]
    task: Option<TaskArg>,
    /// logistic (classification), linear (regression) or mlp (either).
    #[arg(long, value_enum, default_value_t = ModelArg::Mlp)]
    model: ModelArg,
    /// Hidden layer sizes of an mlp.
    #[arg(long, value_delimiter = ',', default_value = "32,32")]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// The fraction of rows held out for validation (stratified by class).
    #[arg(long, default_value_t = TrainConfig::default().val_split)]
    val_split: f64,
    /// Fixes the split, the initial weights and the batch order: same seed, same weights.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// The version folder to write (model.safetensors + weir.toml).
    #[arg(long, default_value = "model")]
    out: PathBuf,
    /// The registry to record the run on and register with (`--tracking-uri` is the same
    /// flag); without one (flag or environment) nothing is tracked.
    #[command(flatten)]
    registry: crate::models_cli::RegistryAddress,
    #[arg(long, env = "WEIR_EXPERIMENT", default_value = "Default")]
    experiment: String,
    #[arg(long)]
    run_name: Option<String>,
    /// Registers the model under this name (pending approval), linked to the run; needs a
    /// registry (--registry, WEIR_REGISTRY or MLFLOW_TRACKING_URI).
    #[arg(long)]
    register: Option<String>,
    #[command(flatten)]
    client: crate::models_cli::ClientArgs,
    /// How to print the result (progress always goes to stderr).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum TaskArg {
    Classification,
    Regression,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Logistic,
    Linear,
    Mlp,
}

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let registry = args.registry.given();
    if let (Some(name), None) = (&args.register, &registry) {
        anyhow::bail!(
            "--register {name} needs a registry: give --registry URL (or set WEIR_REGISTRY or MLFLOW_TRACKING_URI)"
        );
    }
    let remote = match registry.clone() {
        // Credentials and the CA file are checked before any training starts.
        Some(tracking_uri) => Some(Remote {
            tracking_uri,
            experiment: args.experiment.clone(),
            run_name: args.run_name.clone(),
            identity: args.client.identity()?,
            register: args.register.clone(),
            http: args.client.http()?,
        }),
        None => None,
    };
    let job = Job {
        data: args.data.clone(),
        columns: Columns {
            target: args.target.clone(),
            features: args.features.clone(),
            task: args.task.map(|task| match task {
                TaskArg::Classification => Task::Classification,
                TaskArg::Regression => Task::Regression,
            }),
        },
        config: TrainConfig {
            model: match args.model {
                ModelArg::Logistic => ModelKind::Logistic,
                ModelArg::Linear => ModelKind::Linear,
                ModelArg::Mlp => ModelKind::Mlp,
            },
            hidden: args.hidden.clone(),
            epochs: args.epochs,
            learning_rate: args.lr,
            batch_size: args.batch_size,
            val_split: args.val_split,
            seed: args.seed,
        },
        out: args.out.clone(),
        remote,
    };
    let mut progress = Progress::new(args.epochs);
    let outcome = session::run(job, &mut |event| progress.show(event))
        .await
        .context("training failed")?;
    let last = outcome.history.last();
    let metrics: serde_json::Map<String, Value> = last
        .map(|report| {
            report
                .metrics
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    let run_id = outcome.run.as_ref().map(|r| r.run_id.clone());
    if let Some(warning) = outcome
        .version
        .as_ref()
        .and_then(crate::models_cli::unservable_warning)
    {
        eprintln!("{warning}");
    }
    match args.output {
        Output::Json => {
            let mut summary = json!({
                "task": outcome.task.as_str(),
                "out": args.out,
                "files": outcome.files,
                "metrics": metrics,
                "epochs": outcome.history.len(),
                "run_id": run_id,
                "experiment_id": outcome.run.as_ref().map(|r| r.experiment_id.clone()),
                "model_version": outcome.version,
            });
            if let Some(approval) = &outcome.approval {
                summary["approval"] = approval.clone();
            }
            crate::output::json(&summary)
        }
        Output::Table => {
            println!(
                "model written to {} ({})",
                args.out.display(),
                outcome
                    .files
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(|f| f.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(report) = last {
                println!("final: {}", metric_line(report));
            }
            if let Some(run) = &outcome.run {
                println!(
                    "run {} in experiment {} ({})",
                    run.run_id, run.experiment_id, run.artifact_uri
                );
            }
            if let Some(version) = &outcome.version {
                let (name, number) = (
                    version["name"].as_str().unwrap_or_default(),
                    version["version"].as_str().unwrap_or_default(),
                );
                match &outcome.approval {
                    Some(approval) if approval["approved"] != Value::Bool(true) => println!(
                        "registered {name} version {number}, pending approval: another person runs `{}`",
                        crate::models_cli::models_command(
                            registry.as_deref().unwrap_or_default(),
                            &args.client,
                            &["approve", name, number]
                        )
                    ),
                    _ => println!("registered {name} version {number}"),
                }
            }
        }
    }
    Ok(())
}

fn metric_line(report: &EpochReport) -> String {
    report
        .metrics
        .iter()
        .map(|(key, value)| format!("{key} {value:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// A progress bar redrawn in place on a terminal; on a pipe or log file, about twenty lines.
struct Progress {
    epochs: usize,
    terminal: bool,
}

impl Progress {
    fn new(epochs: usize) -> Progress {
        Progress {
            epochs,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, event: Event) {
        let mut err = std::io::stderr().lock();
        match event {
            Event::Started {
                task,
                classes,
                train_rows,
                validation_rows,
                run_id,
            } => {
                let what = match task {
                    Task::Classification => format!("classification into {classes} classes"),
                    Task::Regression => "regression".to_owned(),
                };
                let run = run_id.map_or(String::new(), |id| format!("; tracking run {id}"));
                let _ = writeln!(
                    err,
                    "{what}: training on {train_rows} rows, validating on {validation_rows}{run}"
                );
            }
            Event::Epoch(report) => {
                const WIDTH: usize = 24;
                let done = report.epoch * WIDTH / self.epochs.max(1);
                let line = format!(
                    "epoch {:>w$}/{} [{}{}] {}",
                    report.epoch,
                    self.epochs,
                    "#".repeat(done),
                    ".".repeat(WIDTH - done.min(WIDTH)),
                    metric_line(report),
                    w = self.epochs.to_string().len(),
                );
                let last = report.epoch == self.epochs;
                if self.terminal {
                    let _ = write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" });
                } else if last
                    || report.epoch == 1
                    || report.epoch % self.epochs.div_ceil(20).max(1) == 0
                {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
            }
        }
    }
}
