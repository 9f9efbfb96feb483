//! The `weir` binary as a user meets it: flags, environment variables, and clear failures.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use common::test_models;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

#[test]
fn help_names_every_flag_and_its_environment_variable() {
    let output = weir().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--model-repository",
        "--host",
        "--http-port",
        "--max-body-bytes",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for variable in [
        "WEIR_MODEL_REPOSITORY",
        "WEIR_HOST",
        "WEIR_HTTP_PORT",
        "WEIR_MAX_BODY_BYTES",
    ] {
        assert!(help.contains(variable), "{variable} missing from:\n{help}");
    }
}

#[test]
fn a_missing_repository_is_a_clear_error_and_exit_code() {
    let output = weir()
        .args([
            "serve",
            "--model-repository",
            "/nonexistent/models",
            "--http-port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/models"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn flags_can_come_from_the_environment_and_a_busy_port_is_reported() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let output = weir()
        .arg("serve")
        .env("WEIR_MODEL_REPOSITORY", test_models())
        .env("WEIR_HTTP_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// Without ONNX Runtime the server still starts, says how to install it, reports every ONNX
/// model as unavailable with that reason instead of panicking, and serves the others.
#[test]
fn missing_onnx_runtime_is_explained_not_a_panic() {
    let mut child = weir()
        .args(["serve", "--http-port", "0", "--model-repository"])
        .arg(test_models())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.32.0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let index = loop {
        let answer = common::http(&address, "POST /v2/repository/index", "", b"")
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        if answer.contains("ORT_DYLIB_PATH") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        index.contains("ORT_DYLIB_PATH points at /nonexistent/libonnxruntime.so.1.32.0"),
        "{index}"
    );
    // Every ONNX model is unavailable with that reason; the candle models still serve.
    let rows: Vec<serde_json::Value> = serde_json::from_str(&index).unwrap();
    for row in &rows {
        let candle = row["name"].as_str().unwrap().starts_with("tabular");
        assert_eq!(
            row["state"],
            if candle { "READY" } else { "UNAVAILABLE" },
            "{row}"
        );
    }
    assert!(stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
