//! `weir train` as a user meets it: progress and summary, refusals of bad data and flags, and
//! what a failure leaves behind on a real `weir registry`.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{scratch, stdout, Registry};
use serde_json::Value;
use weir_mlflow_client::TrackingClient;

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("train")
        .args(args)
        .env_remove("WEIR_TRACKING_URI")
        .env_remove("WEIR_REGISTRY")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_TOKEN_FILE")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `weir train` expecting exit code 1 and `expected` in its message, never a panic.
fn refused(args: &[&str], expected: &str) {
    let output = train(args);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
    assert!(
        message.contains(expected),
        "{args:?}: want {expected:?} in {message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

/// Two well-separated classes: label "high" when a + b > 0.
fn separable(dir: &Path) -> PathBuf {
    let path = dir.join("two.csv");
    let mut text = String::from("a,b,label\n");
    for i in 0..60 {
        let (a, b) = (f64::from(i % 12) - 5.5, f64::from(i % 7) - 3.0);
        let label = if a + b > 0.0 { "high" } else { "low" };
        text.push_str(&format!("{a},{b},{label}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn progress_goes_to_stderr_and_the_summary_to_stdout() {
    let dir = scratch("train-cli-progress");
    let data = separable(&dir);
    let out = dir.join("model");
    let output = train(&[
        "--data",
        data.to_str().unwrap(),
        "--target",
        "label",
        "--model",
        "logistic",
        "--epochs",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    let summary = stdout(&output);
    assert!(summary.contains("model written to"), "{summary}");
    assert!(summary.contains("val_accuracy"), "{summary}");
    let progress = stderr(&output);
    assert!(
        progress.contains("classification into 2 classes: training on 48 rows, validating on 12"),
        "{progress}"
    );
    assert!(progress.contains("epoch  1/40 ["), "{progress}");
    assert!(
        progress.contains("epoch 40/40 [########################]"),
        "{progress}"
    );
    // Not a terminal: about twenty lines, not forty.
    assert!(progress.lines().count() <= 22, "{progress}");
    assert!(out.join("model.safetensors").is_file() && out.join("weir.toml").is_file());
}

#[test]
fn bad_data_and_flags_are_refused_with_the_reason() {
    let dir = scratch("train-cli-refusals");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = separable(&dir).to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![write("empty.csv", ""), "label".into()],
            "the file is empty",
        ),
        (
            vec![good.clone(), "species".into()],
            "no column 'species'; the columns are a, b, label",
        ),
        (
            vec![
                write("text.csv", "a,b,label\n1,2,x\n3,four,y\n"),
                "label".into(),
            ],
            "row 2 (line 3), column 'b': 'four' is not a number",
        ),
        (
            vec![write("one.csv", "a,label\n1,x\n2,x\n"), "label".into()],
            "the target 'label' has only one class ('x')",
        ),
        (
            vec![
                good.clone(),
                "label".into(),
                "--model".into(),
                "linear".into(),
            ],
            "--model linear is for regression",
        ),
        (
            vec![
                good.clone(),
                "label".into(),
                "--val-split".into(),
                "1.5".into(),
            ],
            "--val-split must be at least 0 and below 1",
        ),
        (
            vec!["/nonexistent/data.csv".into(), "label".into()],
            "/nonexistent/data.csv: cannot read",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["--data", &args[0], "--target", &args[1]];
        full.extend(args[2..].iter().map(String::as_str));
        let out = dir.join("unused");
        full.extend(["--out", out.to_str().unwrap()]);
        refused(&full, expected);
        assert!(
            !out.exists(),
            "{args:?}: nothing is written for a refused job"
        );
    }
    refused(
        &["--data", &good, "--target", "label", "--register", "m"],
        "--register m needs a registry: give --registry URL (or set WEIR_REGISTRY or MLFLOW_TRACKING_URI)",
    );
}

#[tokio::test]
async fn failures_leave_no_run_running_and_nothing_half_registered() {
    let registry = Registry::start("train-cli-failures");
    let dir = scratch("train-cli-failures");
    let data = separable(&dir);
    let data = data.to_str().unwrap();
    let client = TrackingClient::new(&registry.url, None);
    // The registry refuses the name: found before training, so nothing is created.
    let m1 = dir.join("m1");
    refused(
        &[
            "--data",
            data,
            "--target",
            "label",
            "--tracking-uri",
            &registry.url,
            "--experiment",
            "refused-name",
            "--register",
            "bad/name",
            "--out",
            m1.to_str().unwrap(),
        ],
        "cannot register 'bad/name'",
    );
    let experiment = client.find_experiment("refused-name").await;
    assert!(
        experiment.unwrap_err().is_not_found(),
        "nothing was created"
    );

    // The model folder cannot be written (a file is in the way): the run ends FAILED, its
    // per-epoch metrics kept, and no version is registered.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, "a file, not a folder").unwrap();
    refused(
        &[
            "--data",
            data,
            "--target",
            "label",
            "--epochs",
            "3",
            "--tracking-uri",
            &registry.url,
            "--experiment",
            "unwritable",
            "--register",
            "two",
            "--out",
            blocked.to_str().unwrap(),
        ],
        "cannot write",
    );
    let experiment = client.find_experiment("unwritable").await.unwrap();
    let found = client
        .search_runs(&[experiment], "", &[], 100)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["info"]["status"], "FAILED");
    let metrics = found[0]["data"]["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["key"] == "val_accuracy" && m["step"] == 3),
        "{metrics:?}"
    );
    let (status, body) = common::get(
        registry.url.trim_start_matches("http://"),
        "/api/2.0/mlflow/model-versions/search?filter=name%3D%27two%27",
    );
    assert_eq!(status, 200);
    let versions: Value = serde_json::from_str(&body).unwrap();
    assert!(
        versions["model_versions"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{body}"
    );

    // Nobody listening: a clear message, and no training done for nothing.
    let m3 = dir.join("m3");
    refused(
        &[
            "--data",
            data,
            "--target",
            "label",
            "--tracking-uri",
            "http://127.0.0.1:9",
            "--out",
            m3.to_str().unwrap(),
        ],
        "cannot reach the tracking server at http://127.0.0.1:9",
    );
    assert!(!m3.exists());
}

/// A `weir registry --tokens` on a free port: alice submits, bob approves.
struct SecuredRegistry {
    child: std::process::Child,
    url: String,
    folder: PathBuf,
}

impl SecuredRegistry {
    fn start(tag: &str) -> SecuredRegistry {
        let folder = scratch(tag);
        let tokens = folder.join("tokens.toml");
        std::fs::write(
            &tokens,
            "[[user]]\nname = \"alice\"\ntoken = \"alice-secret-token\"\nroles = [\"reader\", \"submitter\"]\n\
             [[user]]\nname = \"bob\"\ntoken = \"bob-secret-token\"\nroles = [\"reader\", \"approver\"]\n",
        )
        .unwrap();
        std::fs::write(folder.join("alice.token"), "alice-secret-token\n").unwrap();
        std::fs::write(folder.join("bob.token"), "bob-secret-token\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["registry", "--http-port", "0", "--tokens"])
            .arg(&tokens)
            .arg("--db")
            .arg(format!("sqlite://{}/r.db", folder.display()))
            .arg("--artifacts")
            .arg(folder.join("artifacts"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = common::announced_url(&mut child);
        SecuredRegistry { child, url, folder }
    }
}

impl Drop for SecuredRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hint `weir train` prints names the registry it used (however it was given) and the
/// token file, never the token; with the approver's own token file it runs as printed.
#[test]
fn the_printed_approval_hint_runs_as_printed() {
    let registry = SecuredRegistry::start("train-cli-hint");
    let data = separable(&registry.folder);
    let out = registry.folder.join("model");
    let alice_token = registry.folder.join("alice.token");
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("train")
        .args(["--data", data.to_str().unwrap(), "--target", "label"])
        .args(["--epochs", "2", "--out", out.to_str().unwrap()])
        .args([
            "--register",
            "iris",
            "--token-file",
            alice_token.to_str().unwrap(),
        ])
        .env_remove("WEIR_TRACKING_URI")
        .env_remove("WEIR_REGISTRY")
        .env("MLFLOW_TRACKING_URI", &registry.url)
        .output()
        .unwrap();
    let summary = stdout(&output);
    assert!(!summary.contains("alice-secret-token"), "{summary}");
    let line = summary
        .lines()
        .find(|l| l.starts_with("registered iris version 1, pending approval"))
        .unwrap_or_else(|| panic!("{summary}"));
    let hint: Vec<&str> = line.split('`').nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        hint.join(" "),
        format!(
            "weir models approve iris 1 --registry {} --token-file {}",
            registry.url,
            alice_token.display()
        )
    );
    // bob runs it with his own token file.
    let bob_token = registry.folder.join("bob.token");
    let args: Vec<&str> = hint[1..]
        .iter()
        .map(|word| {
            if *word == alice_token.to_str().unwrap() {
                bob_token.to_str().unwrap()
            } else {
                word
            }
        })
        .collect();
    let approved = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .env_remove("WEIR_REGISTRY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(
        stdout(&approved).contains("approved (1 of 1 approvals, by bob)"),
        "{args:?}"
    );
}
