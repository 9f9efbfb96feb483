//! `weir runs …`: tracked runs from the command line.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use weir_mlflow_client::TrackingClient;

use crate::models_cli::{ClientArgs, RegistryAddress};
use crate::output::{json, table, text, Output};

#[derive(clap::Args)]
pub struct RunsArgs {
    #[command(flatten)]
    registry: RegistryAddress,
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

/// Metrics as `(key, compact value)`; see [`compact`].
fn metric_values(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|m| {
                    let value = match &m["value"] {
                        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), compact),
                        // "NaN", "Infinity", "-Infinity" arrive as strings (protobuf JSON).
                        other => text(other),
                    };
                    (text(&m["key"]), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A metric for people: at most 6 significant digits, the shortest text that reads back as the
/// rounded value (`0.000666667`, `0.95`, `1500`), with an exponent outside 1e-4..1e15 as C's
/// `%g` does (`1.5e-7`). JSON output keeps every digit.
fn compact(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded: f64 = format!("{value:.5e}").parse().unwrap_or(value);
    let magnitude = rounded.abs();
    if rounded == 0.0 || (1e-4..1e15).contains(&magnitude) {
        format!("{rounded}")
    } else {
        format!("{rounded:e}")
    }
}

pub async fn run(args: RunsArgs) -> anyhow::Result<()> {
    let url = args.registry.url();
    let client = TrackingClient::as_identity(&url, args.client.given_identity()?)
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
                    let metrics: Vec<String> = metric_values(&run["data"]["metrics"])
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
                let values = if title.starts_with("metrics") {
                    metric_values(list)
                } else {
                    key_values(list)
                };
                let rows: Vec<Vec<String>> = values.into_iter().map(|(k, v)| vec![k, v]).collect();
                if !rows.is_empty() {
                    println!();
                    table(&[title, "value"], rows);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn metrics_print_with_six_significant_digits_at_most() {
        assert_eq!(compact(1.0 / 1500.0), "0.000666667");
        assert_eq!(compact(1.0 / 22.0), "0.0454545");
        assert_eq!(compact(0.95), "0.95");
        assert_eq!(compact(1500.0), "1500");
        assert_eq!(compact(123_456_789.0), "123457000");
        assert_eq!(compact(-2.0 / 3.0), "-0.666667");
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(1.5e-7), "1.5e-7");
        assert_eq!(compact(2.0e20), "2e20");
        assert_eq!(compact(f64::NAN), "NaN");
    }
}
