//! `weir up --demo`: registry, router and autoscaled replicas from one command; a 10% canary
//! answers its share; SIGTERM stops every part.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_stack_serves_a_ten_percent_canary_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("weir-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let models = common::test_models();
    let mut up = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "up",
            "--demo",
            "--router-port",
            "0",
            "--router-admin-port",
            "0",
            "--registry-port",
            "0",
            "--dir",
        ])
        .arg(&dir)
        .arg("--demo-models")
        .arg(&models)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(up.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("weir up ready: router http://"),
        "{first}"
    );
    let router = first
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(',')
        .trim_start_matches("http://")
        .to_owned();
    let registry = first
        .split_whitespace()
        .nth(6)
        .unwrap()
        .trim_end_matches(',')
        .trim_start_matches("http://")
        .to_owned();

    let body = br#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;
    let mut canary = 0;
    for _ in 0..400 {
        let (status, head, _) =
            common::http_with_headers(&router, "POST /v2/models/iris/infer", "", body).unwrap();
        assert_eq!(status, 200);
        if head.contains("x-weir-version: canary") {
            canary += 1;
        }
    }
    assert!(
        (36..=44).contains(&canary),
        "{canary} of 400 went to the canary"
    );
    // Both versions are registered, approved and aliased in the registry.
    let (status, aliases) =
        common::get(&registry, "/api/2.0/mlflow/registered-models/get?name=iris");
    assert_eq!(status, 200);
    assert!(
        aliases.contains("\"production\"") && aliases.contains("\"canary\""),
        "{aliases}"
    );

    let _ = Command::new("kill").arg(up.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if up.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "weir up did not stop within 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        common::get(&router, "/v2/health/live").0,
        0,
        "the router is gone"
    );
    assert_eq!(
        common::get(&registry, "/health").0,
        0,
        "the registry is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
