//! `weir runs …`: tracked runs from the command line.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use weir_registry::client::Identity;
use weir_tracking::TrackingClient;

use crate::models_cli::ClientArgs;
use crate::output::{json, table, text, Output};

#[derive(clap::Args)]
pub struct RunsArgs {
    /// The tracking server (`weir registry`, or MLflow's).
    #[arg(
        long,
        env = "WEIR_TRACKING_URI",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    tracking_uri: String,
    #[command(flatten)]
    client: ClientArgs,
    /// How to print answers.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Runs of an experiment, newest first (or in --order-by order).
    List {
        /// Experiment name.
        #[arg(long, default_value = "Default")]
        experiment: String,
        /// MLflow search filter, e.g. "metrics.accuracy > 0.9 and params.model = 'mlp'".
        #[arg(long, default_value = "")]
        filter: String,
        /// Order terms, e.g. "metrics.accuracy DESC" (repeatable).
        #[arg(long)]
        order_by: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run: its info, params, latest metrics and tags.
    Show { run_id: String },
}

fn key_values(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|kv| (text(&kv["key"]), text(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(args: RunsArgs) -> anyhow::Result<()> {
    let client = match args.client.given_identity()? {
        Some(Identity::Token(token)) => {
            TrackingClient::new(&args.tracking_uri, None).with_token(token)
        }
        Some(Identity::User(user)) => TrackingClient::new(&args.tracking_uri, Some(user)),
        None => TrackingClient::new(&args.tracking_uri, None),
    }
    .with_http(args.client.http()?);
    match args.command {
        RunsCommand::List {
            experiment,
            filter,
            order_by,
            limit,
        } => {
            let experiment_id = client
                .find_experiment(&experiment)
                .await
                .with_context(|| format!("cannot find experiment '{experiment}'"))?;
            let runs = client
                .search_runs(&[experiment_id], &filter, &order_by, limit)
                .await
                .context("search failed")?;
            if matches!(args.output, Output::Json) {
                json(&Value::from(runs));
                return Ok(());
            }
            let rows = runs
                .iter()
                .map(|run| {
                    let metrics: Vec<String> = key_values(&run["data"]["metrics"])
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    vec![
                        text(&run["info"]["run_id"]),
                        text(&run["info"]["run_name"]),
                        text(&run["info"]["status"]),
                        text(&run["info"]["user_id"]),
                        metrics.join(" "),
                    ]
                })
                .collect();
            table(&["run id", "name", "status", "user", "metrics"], rows);
        }
        RunsCommand::Show { run_id } => {
            let run = client
                .get_run(&run_id)
                .await
                .with_context(|| format!("cannot read run {run_id}"))?;
            if matches!(args.output, Output::Json) {
                json(&run);
                return Ok(());
            }
            let info = &run["info"];
            for field in [
                "run_id",
                "run_name",
                "experiment_id",
                "status",
                "user_id",
                "artifact_uri",
                "lifecycle_stage",
            ] {
                println!("{field:<16}{}", text(&info[field]));
            }
            for (title, list) in [
                ("params", &run["data"]["params"]),
                ("metrics (latest)", &run["data"]["metrics"]),
                ("tags", &run["data"]["tags"]),
            ] {
                let rows: Vec<Vec<String>> = key_values(list)
                    .into_iter()
                    .map(|(k, v)| vec![k, v])
                    .collect();
                if !rows.is_empty() {
                    println!();
                    table(&[title, "value"], rows);
                }
            }
        }
    }
    Ok(())
}
