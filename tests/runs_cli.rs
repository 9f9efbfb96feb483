//! weir-mlflow-client's tracking client and `weir runs` against a real `weir registry`.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::process::Command;

use common::{stdout, Registry};
use serde_json::Value;
use weir_mlflow_client::{KeyValue, Metric, TrackingClient};

fn runs(registry: &Registry, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["runs", "--registry", &registry.url])
        .args(args)
        .env_remove("WEIR_REGISTRY")
        .env_remove("WEIR_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_rust_client_logs_and_weir_runs_reads() {
    let registry = Registry::start("runs-cli");
    let client = TrackingClient::new(&registry.url, Some("alice".into()));
    let experiment = client.experiment_id("cli").await.unwrap();
    assert_eq!(client.experiment_id("cli").await.unwrap(), experiment);
    let mut run_ids = Vec::new();
    for (name, accuracy) in [("small", 0.8), ("large", 0.95)] {
        let run = client
            .create_run(&experiment, name, &[KeyValue::new("team", "ml")])
            .await
            .unwrap();
        let run_id = run.info.run_id.clone();
        // More than one batch's worth, so the client has to split.
        let loss: Vec<Metric> = (0..1500)
            .map(|step| Metric {
                key: "loss".into(),
                value: 1.0 / f64::from(step + 1),
                timestamp: 1,
                step: i64::from(step),
            })
            .collect();
        let accuracy = Metric {
            key: "accuracy".into(),
            value: accuracy,
            timestamp: 1,
            step: 0,
        };
        client
            .log_batch(
                &run_id,
                &[loss, vec![accuracy]].concat(),
                &[KeyValue::new("size", name)],
                &[],
            )
            .await
            .unwrap();
        let notes = registry.folder.join(format!("{name}.txt"));
        std::fs::write(&notes, name).unwrap();
        client
            .upload_artifact(&run.info.artifact_uri, &notes, "notes.txt")
            .await
            .unwrap();
        client.end_run(&run_id, "FINISHED").await.unwrap();
        run_ids.push(run_id);
    }

    let listed = runs(
        &registry,
        &[
            "list",
            "--experiment",
            "cli",
            "--filter",
            "metrics.accuracy > 0.9",
            "--output",
            "json",
        ],
    );
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["info"]["run_id"], run_ids[1].as_str());

    let table = stdout(&runs(
        &registry,
        &[
            "list",
            "--experiment",
            "cli",
            "--order-by",
            "metrics.accuracy ASC",
        ],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RUN ID"), "{table}");
    assert!(
        lines[1].starts_with(&run_ids[0]) && lines[2].starts_with(&run_ids[1]),
        "{table}"
    );
    // Metrics print with at most 6 significant digits, not 17 (`--output json` keeps them).
    assert!(
        lines[1].contains("loss=0.000666667 ") || lines[1].ends_with("loss=0.000666667"),
        "{table}"
    );
    assert!(!table.contains("0.00066666666"), "{table}");
    assert!(lines[2].contains("accuracy=0.95"), "{table}");

    let shown = stdout(&runs(&registry, &["show", &run_ids[0]]));
    assert!(
        shown.contains("FINISHED") && shown.contains("size") && shown.contains("small"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["loss", "0.000666667"]),
        "{shown}"
    );
    // `--tracking-uri` is the same option as `--registry`, and MLFLOW_TRACKING_URI reaches it.
    let by_alias = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["runs", "--tracking-uri", &registry.url, "show", &run_ids[0]])
        .env_remove("WEIR_REGISTRY")
        .output()
        .unwrap();
    assert!(stdout(&by_alias).contains("FINISHED"));
    let by_mlflow_env = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["runs", "show", &run_ids[0]])
        .env_remove("WEIR_REGISTRY")
        .env_remove("WEIR_TRACKING_URI")
        .env("MLFLOW_TRACKING_URI", &registry.url)
        .output()
        .unwrap();
    assert!(stdout(&by_mlflow_env).contains("FINISHED"));
    let downloaded = common::get(
        registry.url.trim_start_matches("http://"),
        &format!(
            "/api/2.0/mlflow-artifacts/artifacts/{experiment}/{}/artifacts/notes.txt",
            run_ids[0]
        ),
    );
    assert_eq!(downloaded, (200, "small".to_owned()));

    let missing = runs(&registry, &["show", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("RESOURCE_DOES_NOT_EXIST"));
    let missing = runs(&registry, &["list", "--experiment", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot find experiment 'nope'"));
}
