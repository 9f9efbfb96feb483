//! The canary router in front of real `weir serve` processes, all on loopback: weighted split,
//! pinning, stickiness, shadowing, weight changes and replica loss under load, rollouts that
//! promote and roll back, persistence across restarts, and bad input.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use common::{scratch, wait_for, Process};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const IRIS_ROW: &str = r#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;

/// A model repository holding only `iris/<version>`.
fn iris_repository(dir: &Path, version: u32) -> PathBuf {
    let repo = dir.join(format!("repo-v{version}"));
    common::add_test_model(&repo, "iris", version);
    repo
}

/// A `weir serve` on a free port, ready; its address.
fn serve(repo: &Path) -> (Process, String) {
    let repo = repo.to_str().unwrap();
    let (process, address) = common::start_weir(
        &["serve", "--http-port", "0", "--model-repository", repo],
        Path::new("."),
    );
    wait_for("weir serve to be ready", 30, || {
        common::get(&address, "/v2/health/ready").0 == 200
    });
    (process, address)
}

fn start_router(config: &Path, extra: &[&str]) -> (Process, String) {
    let mut args = vec![
        "route",
        "--http-port",
        "0",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    common::start_weir(&args, Path::new("."))
}

fn routes_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("routes.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn backend(version: &str, endpoints: &[&str], weight: u32) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| format!("\"http://{e}\""))
        .collect();
    format!(
        "[[route.backend]]\nversion = \"{version}\"\nendpoints = [{}]\nweight = {weight}\n",
        endpoints.join(", ")
    )
}

/// One inference through the router: status, the version header, the version that answered.
fn infer(router: &str, path: &str, headers: &str) -> (u16, String, String) {
    let Some((status, head, body)) = common::http_with_headers(
        router,
        &format!("POST {path}"),
        headers,
        IRIS_ROW.as_bytes(),
    ) else {
        return (0, String::new(), String::new());
    };
    let header = head
        .lines()
        .find_map(|l| l.strip_prefix("x-weir-version: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let answered = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["model_version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, header, answered)
}

fn admin(router: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, bytes) = common::http(
        router,
        &format!("{method} /admin/v1/{path}"),
        "Content-Type: application/json\r\n",
        body.to_string().as_bytes(),
    )
    .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Share of requests answered by version "2", in percent, checking that every answer came from
/// the version the header names.
fn canary_share(router: &str, requests: usize) -> f64 {
    let mut canary = 0;
    for _ in 0..requests {
        let (status, header, answered) = infer(router, "/v2/models/iris/infer", "");
        assert_eq!(status, 200);
        assert_eq!(
            header, answered,
            "x-weir-version must name the version that answered"
        );
        if header == "2" {
            canary += 1;
        }
    }
    canary as f64 * 100.0 / requests as f64
}

/// Sends requests from `threads` loops until stopped; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(router: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let handles = (0..threads)
            .map(|_| {
                let (router, stop, ok, failed) =
                    (router.to_owned(), stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    // Bounded: stops when told, or after two minutes whatever happens.
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let (status, _, _) = infer(&router, "/v2/models/iris/infer", "");
                        if status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads: handles,
        }
    }

    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn shadow_inferences(address: &str) -> u64 {
    let (_, stats) = common::get(address, "/v2/models/iris/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    stats["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["inference_count"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn weights_pins_sticky_keys_and_shadow() {
    let dir = scratch("router-split");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (_b, b) = serve(&v1_repo);
    let (_c, c) = serve(&v2_repo);
    let (shadow, shadow_address) = serve(&v1_repo);
    let config = routes_file(
        &dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\nsticky_header = \"x-user-id\"\n{}{}[route.shadow]\nendpoints = [\"http://{shadow_address}\"]\npercent = 20\n",
            backend("1", &[&a, &b], 90),
            backend("2", &[&c], 10)
        ),
    );
    let (_router, router) = start_router(&config, &[]);

    let share = canary_share(&router, 4000);
    assert!(
        (share - 10.0).abs() <= 1.5,
        "90/10 split gave {share:.2}% canary"
    );
    // The shadow got its share of copies (a fifth, within a wide margin), answered elsewhere.
    wait_for("the shadow copies", 10, || {
        shadow_inferences(&shadow_address) >= 700
    });
    let copies = shadow_inferences(&shadow_address);
    assert!(
        (700..=900).contains(&copies),
        "{copies} shadow copies of 4000"
    );

    let (status, _) = admin(
        &router,
        "POST",
        "routes/iris/canary",
        &json!({"percent": 50}),
    );
    assert_eq!(status, 200);
    let share = canary_share(&router, 4000);
    assert!(
        (share - 50.0).abs() <= 1.5,
        "50/50 split gave {share:.2}% canary"
    );

    // Pinning by header and by path; the path's version wins over the weights.
    for _ in 0..50 {
        assert_eq!(
            infer(&router, "/v2/models/iris/infer", "x-weir-version: 2\r\n").2,
            "2"
        );
        assert_eq!(
            infer(&router, "/v2/models/iris/versions/1/infer", "").2,
            "1"
        );
    }
    // A sticky key keeps its version while the weights hold; keys spread over both.
    let mut seen = HashMap::new();
    for user in 0..40 {
        let header = format!("x-user-id: user-{user}\r\n");
        let first = infer(&router, "/v2/models/iris/infer", &header).1;
        for _ in 0..10 {
            assert_eq!(infer(&router, "/v2/models/iris/infer", &header).1, first);
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A dead shadow is never the client's problem.
    drop(shadow);
    for _ in 0..200 {
        assert_eq!(infer(&router, "/v2/models/iris/infer", "").0, 200);
    }
}

#[test]
fn weight_changes_and_a_lost_replica_fail_no_request() {
    let dir = scratch("router-load");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (b_process, b) = serve(&v1_repo);
    let (_c, c) = serve(&v2_repo);
    let config = routes_file(
        &dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[&a, &b], 100),
            backend("2", &[&c], 0)
        ),
    );
    let (_router, router) = start_router(&config, &[]);
    let load = Load::start(&router, 4);
    for percent in [10, 50, 90, 30, 0, 100, 0] {
        let (status, _) = admin(
            &router,
            "POST",
            "routes/iris/canary",
            &json!({"percent": percent}),
        );
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(150));
    }
    // SIGKILL one of version 1's two replicas in the middle of the load.
    b_process.kill_hard();
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, failed) = load.finish();
    assert!(ok > 100, "only {ok} requests went through");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    let (_, status) = admin(&router, "GET", "routes/iris", &Value::Null);
    let endpoints = &status["backends"][0]["endpoints"];
    assert!(
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["available"] == false),
        "{status}"
    );
}

#[test]
fn rollouts_promote_a_healthy_canary_and_roll_back_a_failing_one() {
    let dir = scratch("router-rollout");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (_b, b) = serve(&v2_repo);
    // A canary replica that is stopped: every request sent to it fails.
    let (dead, dead_address) = serve(&v2_repo);
    drop(dead);
    let config = routes_file(
        &dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[&a], 100),
            backend("2", &[&b], 0)
        ),
    );
    let (_router, router) = start_router(&config, &[]);
    let load = Load::start(&router, 2);
    let plan = json!({"steps": [20, 60, 100], "interval_ms": 700, "min_requests": 5, "failure_threshold": 2, "max_p99_ms": 5000.0});
    let (status, answer) = admin(&router, "POST", "routes/iris/rollout", &plan);
    assert_eq!(status, 200, "{answer}");
    wait_for("the rollout to promote", 30, || {
        admin(&router, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "promoted"
    });
    let (_, status) = admin(&router, "GET", "routes/iris", &Value::Null);
    assert_eq!(
        (
            status["backends"][0]["version"].as_str(),
            status["backends"][0]["weight"].as_u64()
        ),
        (Some("2"), Some(100))
    );
    let messages: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("rollout step 3 of 3")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("passed")),
        "{messages:?}"
    );
    let (ok, failed) = load.finish();
    assert_eq!(
        failed,
        0,
        "a healthy rollout failed {failed} of {} requests",
        ok + failed
    );

    // A second router whose canary only fails: two failed checks roll it back.
    let broken_dir = dir.join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    let config = routes_file(
        &broken_dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[&a], 100),
            backend("2", &[&dead_address], 0)
        ),
    );
    let (_broken_router, router) = start_router(&config, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (router, stop) = (router.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                infer(&router, "/v2/models/iris/infer", "");
            }
        })
    };
    let (status, _) = admin(&router, "POST", "routes/iris/rollout", &plan);
    assert_eq!(status, 200);
    wait_for("the rollout to roll back", 30, || {
        admin(&router, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "rolled_back"
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let (_, status) = admin(&router, "GET", "routes/iris", &Value::Null);
    assert_eq!(status["backends"][0]["weight"], 100);
    assert_eq!(status["backends"][1]["weight"], 0);
    let last = status["events"].as_array().unwrap().last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("rolled back"), "{last}");
    // Fully back on the stable version.
    for _ in 0..20 {
        assert_eq!(infer(&router, "/v2/models/iris/infer", "").0, 200);
    }
}

#[test]
fn changes_survive_restarts_and_bad_requests_get_clear_errors() {
    let dir = scratch("router-admin");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (_b, b) = serve(&v2_repo);
    let config = routes_file(
        &dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[&a], 100),
            backend("2", &[&b], 0)
        ),
    );
    let (router_process, router) = start_router(&config, &["--admin-token", "s3cret"]);
    let weir = |router: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["canary", "--router", &format!("http://{router}")])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = weir(&router, &["set", "iris", "30"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let set = weir(&router, &["--token", "s3cret", "set", "iris", "30"]);
    let printed = common::stdout(&set);
    assert!(
        printed.contains("canary") && printed.contains("30%"),
        "{printed}"
    );
    drop(router_process);

    let (_router, router) = start_router(&config, &["--admin-token", "s3cret"]);
    let status = common::stdout(&weir(
        &router,
        &["--token", "s3cret", "--output", "json", "status", "iris"],
    ));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["backends"][1]["weight"], 30, "{status}");

    for (args, expected) in [
        (vec!["--token", "s3cret", "set", "iris", "150"], "0 to 100"),
        (
            vec!["--token", "s3cret", "set", "wine", "10"],
            "no route for model 'wine'",
        ),
    ] {
        let output = weir(&router, &args);
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}"
        );
    }
    let unknown = common::http(
        &router,
        "POST /v2/models/wine/infer",
        "",
        IRIS_ROW.as_bytes(),
    )
    .unwrap();
    assert_eq!(unknown.0, 404);
    assert!(String::from_utf8_lossy(&unknown.1).contains("unknown model 'wine'"));
    assert_eq!(infer(&router, "/v2/models/iris/infer", "").0, 200);
    // Readiness and metadata answer for the route: the stable version, whatever the weights.
    for path in [
        "/v2/models/iris",
        "/v2/models/iris/ready",
        "/v1/models/iris",
    ] {
        for _ in 0..10 {
            let (status, head, _) =
                common::http_with_headers(&router, &format!("GET {path}"), "", b"").unwrap();
            assert_eq!(status, 200, "{path}");
            assert!(head.contains("x-weir-version: 1\r\n"), "{path}: {head}");
        }
    }
    let pinned = infer(&router, "/v2/models/iris/infer", "x-weir-version: 7\r\n");
    assert_eq!(pinned.0, 404);
    let (status, metrics) = common::get(&router, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("weir_route_weight{model=\"iris\",version=\"2\"} 30"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_router_requests_total"), "{metrics}");
}

#[test]
fn rollouts_can_be_judged_by_a_real_prometheus() {
    let dir = scratch("router-prometheus");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (_b, b) = serve(&v2_repo);
    let config = routes_file(
        &dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[&a], 100),
            backend("2", &[&b], 0)
        ),
    );
    let (_router, router) = start_router(&config, &[]);
    let (_prometheus, prometheus) = common::prometheus(&dir, &[&router], "500ms");
    let load = Load::start(&router, 2);
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "canary",
            "--router",
            &format!("http://{router}"),
            "rollout",
            "iris",
        ])
        .args([
            "--steps",
            "50,100",
            "--interval",
            "3s",
            "--min-requests",
            "20",
            "--max-p99",
            "2s",
        ])
        .args(["--prometheus", &format!("http://{prometheus}")])
        .output()
        .unwrap();
    common::stdout(&output);
    wait_for("the rollout to promote", 40, || {
        admin(&router, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "promoted"
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed", ok + failed);
    let (_, status) = admin(&router, "GET", "routes/iris", &Value::Null);
    let checks: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("(prometheus)"))
        .collect();
    assert!(checks.iter().any(|m| m.ends_with("passed")), "{status}");
    assert_eq!(status["backends"][0]["version"], "2");
}
