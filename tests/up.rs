//! `weir up --demo`: registry, router and autoscaled replicas from one command, from any
//! folder; a 10% canary answers its share and the registry's version numbers pin versions; each
//! run starts afresh unless `--resume`; refusals and failures leave no half-made folder; SIGTERM
//! stops every part.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `weir up` and the addresses it announced on its first line.
struct Up {
    child: Child,
    router: String,
    registry: String,
    admin: String,
}

/// `weir up ARGS` in `cwd`, once it announced that it is ready.
fn up(cwd: &Path, args: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["up", "--demo"])
        .args(PORTS)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    output.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("weir up ready: router http://"),
        "{first}"
    );
    // The welcome names the dashboard, served by the registry, a few lines on.
    let mut dashboard = None;
    for _ in 0..10 {
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        if let Some(url) = line.trim().strip_prefix("dashboard: ") {
            dashboard = Some(url.to_owned());
            break;
        }
    }
    // weir up ready: router URL, registry URL, autoscaler metrics URL, router admin API URL
    let word = |n: usize| {
        first
            .split_whitespace()
            .nth(n)
            .unwrap()
            .trim_end_matches(',')
            .trim_start_matches("http://")
            .to_owned()
    };
    let registry = word(6);
    assert_eq!(
        dashboard.as_deref(),
        Some(format!("http://{registry}/").as_str()),
        "the welcome prints the dashboard's URL"
    );
    Up {
        router: word(4),
        registry,
        admin: word(13),
        child,
    }
}

impl Up {
    /// SIGTERM, then wait until every part is gone.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "weir up did not stop within 90 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            common::get(&self.router, "/v2/health/live").0,
            0,
            "the router is gone"
        );
        assert_eq!(
            common::get(&self.registry, "/health").0,
            0,
            "the registry is gone"
        );
    }

    /// The router's weights for iris, stable first.
    fn weights(&self) -> Vec<u64> {
        let (status, body) = common::get(&self.admin, "/admin/v1/routes/iris");
        assert_eq!(status, 200, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["weight"].as_u64().unwrap())
            .collect()
    }

    /// The registered versions of iris, in order.
    fn versions(&self) -> Vec<String> {
        let (status, body) = common::get(
            &self.registry,
            "/api/2.0/mlflow/model-versions/search?filter=name%3D%27iris%27",
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let mut versions: Vec<String> = answer["model_versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect();
        versions.sort_by_key(|v| v.parse::<u32>().unwrap());
        versions
    }

    fn set_canary(&self, percent: &str) {
        let set = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["canary", "set", "iris", percent, "--router"])
            .arg(format!("http://{}", self.admin))
            .output()
            .unwrap();
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
    }
}

const PORTS: [&str; 6] = [
    "--router-port",
    "0",
    "--router-admin-port",
    "0",
    "--registry-port",
    "0",
];

const REQUEST: &[u8] = br#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;

/// A folder outside the checkout, so nothing of the checkout (models, venv) is found by being
/// in it.
fn outside(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-up-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(!dir.starts_with(env!("CARGO_MANIFEST_DIR")));
    dir
}

#[test]
fn the_demo_runs_from_any_folder_and_starts_afresh_unless_resumed() {
    let cwd = outside("fresh");
    let stack = up(&cwd, &[]);
    assert!(
        cwd.join("weir-up/registry.db").is_file(),
        "state in ./weir-up by default"
    );

    let mut canary = 0;
    for _ in 0..400 {
        let (status, head, _) =
            common::http_with_headers(&stack.router, "POST /v2/models/iris/infer", "", REQUEST)
                .unwrap();
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
    let (status, aliases) = common::get(
        &stack.registry,
        "/api/2.0/mlflow/registered-models/get?name=iris",
    );
    assert_eq!(status, 200);
    assert!(
        aliases.contains("\"production\"") && aliases.contains("\"canary\""),
        "{aliases}"
    );

    // The registry's numbers pin a version, by header and by path (issue 17, point 6).
    for (number, role) in [("1", "stable"), ("2", "canary")] {
        for (path, header) in [
            (
                "POST /v2/models/iris/infer".to_owned(),
                format!("x-weir-version: {number}\r\n"),
            ),
            (
                format!("POST /v2/models/iris/versions/{number}/infer"),
                String::new(),
            ),
        ] {
            for _ in 0..5 {
                let (status, head, body) =
                    common::http_with_headers(&stack.router, &path, &header, REQUEST).unwrap();
                let body = String::from_utf8_lossy(&body);
                assert_eq!(status, 200, "{path} {header}: {body}");
                assert!(
                    head.contains(&format!("x-weir-version: {role}")),
                    "{path} {header}: {head}"
                );
                assert!(
                    body.contains(&format!("\"model_version\":\"{number}\"")),
                    "{body}"
                );
            }
        }
    }

    // The registry's dashboard watches the stack's router: iris shows on its serving page
    // (within a few of its two-second polls).
    let mut page = String::new();
    for _ in 0..50 {
        let (status, body) = common::get(&stack.registry, "/ui/serving/iris");
        page = body;
        if status == 200 && page.contains("iris-canary") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        page.contains("serving-weight\">90%") && page.contains("iris-canary"),
        "{page}"
    );

    // Someone moves the canary to 50%; the next run starts afresh all the same.
    stack.set_canary("50");
    assert_eq!(stack.weights(), [50, 50]);
    assert_eq!(stack.versions(), ["1", "2"]);
    stack.stop();
    assert!(
        cwd.join("weir-up/registry.db").is_file(),
        "a clean stop keeps the state"
    );

    let second = up(&cwd, &[]);
    assert_eq!(
        second.weights(),
        [90, 10],
        "a new run is not the last run's 50/50"
    );
    assert_eq!(
        second.versions(),
        ["1", "2"],
        "registered afresh, not as 3 and 4"
    );
    second.set_canary("50");
    second.stop();

    let resumed = up(&cwd, &["--resume"]);
    assert_eq!(resumed.weights(), [50, 50], "--resume keeps the weights");
    assert_eq!(
        resumed.versions(),
        ["1", "2"],
        "--resume registers nothing again"
    );
    resumed.stop();
    let _ = std::fs::remove_dir_all(&cwd);
}

/// `weir up ARGS` that must fail; its stderr.
fn refused(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("up")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

#[test]
fn refusals_come_before_anything_is_created() {
    let cwd = outside("refusals");
    let no_folder = |what: &str| {
        assert!(
            !cwd.join("weir-up").exists(),
            "{what} left a weir-up folder behind"
        );
    };

    let err = refused(
        &cwd,
        &["--demo"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(
        err.contains("needs ONNX Runtime") && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    no_folder("a missing ONNX Runtime");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = refused(&cwd, &["--demo", "--registry-port", &port], &[]);
    assert!(
        err.contains(&format!("port {port} (--registry-port) is not free")),
        "{err}"
    );
    no_folder("a port in use");

    let err = refused(
        &cwd,
        &[
            "--demo",
            "--router-port",
            "18123",
            "--router-admin-port",
            "18123",
        ],
        &[],
    );
    assert!(
        err.contains("--router-admin-port and --router-port are both 18123"),
        "{err}"
    );
    no_folder("one port twice");

    std::fs::create_dir_all(cwd.join("empty")).unwrap();
    let err = refused(&cwd, &["--demo", "--demo-models", "empty"], &[]);
    assert!(err.contains("iris/1/model.onnx is missing"), "{err}");
    no_folder("missing demo models");

    let err = refused(&cwd, &[], &[]);
    assert!(
        err.contains("cannot read weir.toml") && err.contains("weir up --demo"),
        "{err}"
    );
    no_folder("a missing weir.toml");

    let err = refused(&cwd, &["--resume"], &[]);
    assert!(err.contains("--demo"), "--resume belongs to --demo: {err}");
    no_folder("--resume alone");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn a_failure_after_start_stops_the_parts_and_removes_what_the_run_made() {
    let cwd = outside("failure");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry_port = free.local_addr().unwrap().port().to_string();
    drop(free);
    // The router (started after the registry registered the demo) refuses this setting, so
    // the run fails half-way.
    let err = refused(
        &cwd,
        &[
            "--demo",
            "--registry-port",
            &registry_port,
            "--router-port",
            "0",
            "--router-admin-port",
            "0",
        ],
        &[("WEIR_WORKERS", "many")],
    );
    assert!(err.contains("the router exited at start"), "{err}");
    assert!(
        !cwd.join("weir-up").exists(),
        "the folder this run created is gone"
    );
    assert_eq!(
        common::get(&format!("127.0.0.1:{registry_port}"), "/health").0,
        0,
        "the registry was stopped"
    );

    // In a folder that was there before, only weir up's own entries go.
    std::fs::create_dir_all(cwd.join("weir-up")).unwrap();
    std::fs::write(cwd.join("weir-up/notes.txt"), "mine").unwrap();
    refused(
        &cwd,
        &[
            "--demo",
            "--registry-port",
            "0",
            "--router-port",
            "0",
            "--router-admin-port",
            "0",
        ],
        &[("WEIR_WORKERS", "many")],
    );
    let left: Vec<String> = std::fs::read_dir(cwd.join("weir-up"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    let _ = std::fs::remove_dir_all(&cwd);
}
