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

/// `weir route` on free ports: the process, its data address and its admin API's address.
fn start_router(config: &Path, extra: &[&str]) -> (Process, String, String) {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(extra);
    common::start_router(&args, Path::new("."))
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

/// A call to the admin API at `admin_api` (the router's admin listener).
fn admin(admin_api: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, bytes) = common::http(
        admin_api,
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
    let (_router, router, admin_api) = start_router(&config, &[]);

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
        &admin_api,
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
    let (_router, router, admin_api) = start_router(&config, &[]);
    let load = Load::start(&router, 4);
    for percent in [10, 50, 90, 30, 0, 100, 0] {
        let (status, _) = admin(
            &admin_api,
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
    let (_, status) = admin(&admin_api, "GET", "routes/iris", &Value::Null);
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
    let (_router, router, admin_api) = start_router(&config, &[]);
    let load = Load::start(&router, 2);
    let plan = json!({"steps": [20, 60, 100], "interval_ms": 700, "min_requests": 5, "failure_threshold": 2, "max_p99_ms": 5000.0});
    let (status, answer) = admin(&admin_api, "POST", "routes/iris/rollout", &plan);
    assert_eq!(status, 200, "{answer}");
    wait_for("the rollout to promote", 30, || {
        admin(&admin_api, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "promoted"
    });
    let (_, status) = admin(&admin_api, "GET", "routes/iris", &Value::Null);
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
    let (_broken_router, router, admin_api) = start_router(&config, &[]);
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
    let (status, _) = admin(&admin_api, "POST", "routes/iris/rollout", &plan);
    assert_eq!(status, 200);
    wait_for("the rollout to roll back", 30, || {
        admin(&admin_api, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "rolled_back"
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let (_, status) = admin(&admin_api, "GET", "routes/iris", &Value::Null);
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
    let (router_process, _, admin_api) = start_router(&config, &["--admin-token", "s3cret"]);
    let weir = |admin_api: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["canary", "--router", &format!("http://{admin_api}")])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = weir(&admin_api, &["set", "iris", "30"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let set = weir(&admin_api, &["--token", "s3cret", "set", "iris", "30"]);
    let printed = common::stdout(&set);
    assert!(
        printed.contains("canary") && printed.contains("30%"),
        "{printed}"
    );
    drop(router_process);

    let (_router, router, admin_api) = start_router(&config, &["--admin-token", "s3cret"]);
    let status = common::stdout(&weir(
        &admin_api,
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
        let output = weir(&admin_api, &args);
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
    let (_router, router, admin_api) = start_router(&config, &[]);
    let (_prometheus, prometheus) = common::prometheus(&dir, &[&router], "500ms");
    let load = Load::start(&router, 2);
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "canary",
            "--router",
            &format!("http://{admin_api}"),
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
        admin(&admin_api, "GET", "routes/iris", &Value::Null).1["rollout"]["progress"]["phase"]
            == "promoted"
    });
    let (ok, failed) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed", ok + failed);
    let (_, status) = admin(&admin_api, "GET", "routes/iris", &Value::Null);
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

/// A routes file for iris with two versions and no replicas: enough for the admin API.
fn idle_routes(dir: &Path) -> PathBuf {
    routes_file(
        dir,
        &format!(
            "[[route]]\nmodel = \"iris\"\n{}{}",
            backend("1", &[], 100),
            backend("2", &[], 0)
        ),
    )
}

/// One request with `headers`: status and JSON body (`Null` when not JSON).
fn call(address: &str, request: &str, headers: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, bytes) = common::http(
        address,
        request,
        &format!("Content-Type: application/json\r\n{headers}"),
        body.as_bytes(),
    )
    .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `weir canary` with `args`, none of the token variables inherited from the test's caller.
fn canary_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .arg("canary")
        .args(args)
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_TOKEN_FILE")
        .env_remove("WEIR_ROUTER");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn the_admin_api_answers_on_its_own_listener_only_with_the_token_from_the_file() {
    let dir = scratch("router-admin-listener");
    let config = idle_routes(&dir);
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let (_router, router, admin_api) = start_router(
        &config,
        &["--admin-token-file", token_file.to_str().unwrap()],
    );
    assert_ne!(router, admin_api);
    let bearer = "Authorization: Bearer s3cret-token\r\n";

    // The data port answers no admin path, with or without the token.
    for (request, headers) in [
        ("GET /admin/v1/routes", ""),
        ("GET /admin/v1/routes", bearer),
        ("GET /admin/v1/routes/iris", bearer),
        ("POST /admin/v1/routes/iris/canary", bearer),
        ("GET /admin", bearer),
    ] {
        let (status, body) = call(&router, request, headers, &json!({"percent": 50}));
        assert_eq!(status, 404, "{request} on the data port: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("not served on the data port")),
            "{request}: {body}"
        );
    }

    // The admin port: no token, a wrong one, a prefix of it, or not as a bearer token: 401.
    for headers in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer s3cret\r\n",
        "Authorization: Bearer s3cret-token-and-more\r\n",
        "Authorization: s3cret-token\r\n",
        "Authorization: Basic s3cret-token\r\n",
    ] {
        for request in ["GET /admin/v1/routes", "GET /admin/v1/routes/iris"] {
            let (status, body) = call(&admin_api, request, headers, &Value::Null);
            assert_eq!(status, 401, "{request} with {headers:?}: {body}");
        }
        let (status, _) = call(
            &admin_api,
            "POST /admin/v1/routes/iris/canary",
            headers,
            &json!({"percent": 50}),
        );
        assert_eq!(status, 401, "{headers:?}");
    }
    let (status, body) = call(&admin_api, "GET /admin/v1/routes", bearer, &Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["routes"][0]["model"], "iris", "{body}");
    // Nothing the refused calls asked for happened.
    assert_eq!(body["routes"][0]["weights"][1]["weight"], 0, "{body}");
    let (status, body) = call(
        &admin_api,
        "POST /admin/v1/routes/iris/canary",
        bearer,
        &json!({"percent": 30}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backends"][1]["weight"], 30, "{body}");
    // The admin port serves nothing of the data plane.
    let (status, _) = call(
        &admin_api,
        "GET /v2/models/iris/ready",
        bearer,
        &Value::Null,
    );
    assert_eq!(status, 404);
    // Metrics on both ports (Prometheus may scrape either).
    for address in [&router, &admin_api] {
        let (status, metrics) = common::get(address, "/metrics");
        assert_eq!(status, 200, "{address}");
        assert!(
            metrics.contains("weir_route_weight{model=\"iris\",version=\"2\"} 30"),
            "{address}: {metrics}"
        );
    }

    // `weir canary` reads the token from --token-file or WEIR_TOKEN_FILE; without it, 401.
    let url = format!("http://{admin_api}");
    let refused = canary_cli(&["--router", &url, "status", "iris"], &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let token_path = token_file.to_str().unwrap();
    let set = canary_cli(
        &[
            "--router",
            &url,
            "--token-file",
            token_path,
            "set",
            "iris",
            "40",
        ],
        &[],
    );
    assert!(common::stdout(&set).contains("40%"));
    let status = canary_cli(
        &["--output", "json", "status", "iris"],
        &[("WEIR_ROUTER", &url), ("WEIR_TOKEN_FILE", token_path)],
    );
    let status: Value = serde_json::from_str(&common::stdout(&status)).unwrap();
    assert_eq!(status["backends"][1]["weight"], 40, "{status}");
    // Pointed at the data port, the CLI is told where the admin API is not.
    let wrong_port = canary_cli(
        &[
            "--router",
            &format!("http://{router}"),
            "--token-file",
            token_path,
            "status",
            "iris",
        ],
        &[],
    );
    assert!(!wrong_port.status.success());
    assert!(
        String::from_utf8_lossy(&wrong_port.stderr).contains("not served on the data port"),
        "{}",
        String::from_utf8_lossy(&wrong_port.stderr)
    );
}

/// Runs `weir route` expecting it to stop at start; its exit code, stdout and stderr. Fails
/// the test (after killing it) if it is still running after 30 s.
fn route_refused(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Read;
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["route", "--http-port", "0", "--admin-port", "0", "--config"])
        .arg(config)
        .args(extra)
        .env_remove("WEIR_ADMIN_TOKEN")
        .env_remove("WEIR_ADMIN_TOKEN_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir route {extra:?} kept running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn blank_tokens_and_an_anonymous_admin_api_off_loopback_stop_the_router_at_start() {
    let dir = scratch("router-admin-refusals");
    let config = idle_routes(&dir);
    let empty = dir.join("empty-token");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.join("blank-token");
    std::fs::write(&blank, " \n\t \n").unwrap();
    let good = dir.join("good-token");
    std::fs::write(&good, "s3cret-token").unwrap();
    let (empty, blank, good) = (
        empty.to_str().unwrap(),
        blank.to_str().unwrap(),
        good.to_str().unwrap(),
    );
    for (extra, env, expected) in [
        (
            vec!["--admin-token-file", empty],
            vec![],
            format!("the admin token in {empty} is empty"),
        ),
        (
            vec!["--admin-token-file", blank],
            vec![],
            format!("the admin token in {blank} is empty"),
        ),
        (
            vec![],
            vec![("WEIR_ADMIN_TOKEN_FILE", blank)],
            format!("the admin token in {blank} is empty"),
        ),
        (
            vec!["--admin-token", "  "],
            vec![],
            "--admin-token (or WEIR_ADMIN_TOKEN) is empty".to_owned(),
        ),
        (
            vec![],
            vec![("WEIR_ADMIN_TOKEN", " \t ")],
            "--admin-token (or WEIR_ADMIN_TOKEN) is empty".to_owned(),
        ),
        (
            vec![],
            vec![("WEIR_ADMIN_TOKEN", "")],
            "--admin-token (or WEIR_ADMIN_TOKEN) is empty".to_owned(),
        ),
        (
            vec!["--admin-token-file", "/nonexistent/weir-token"],
            vec![],
            "cannot read the token file /nonexistent/weir-token".to_owned(),
        ),
        (
            vec!["--admin-host", "0.0.0.0"],
            vec![],
            "would listen on 0.0.0.0:0 (not loopback) without a token".to_owned(),
        ),
        (
            vec!["--admin-host", "0.0.0.0", "--admin-token-file", blank],
            vec![],
            "is empty".to_owned(),
        ),
    ] {
        let (code, stdout, stderr) = route_refused(&config, &extra, &env);
        assert_eq!(code, 1, "{extra:?} {env:?}: {stderr}");
        assert!(stderr.contains(&expected), "{extra:?} {env:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert!(
            stdout.is_empty(),
            "{extra:?} announced before refusing: {stdout}"
        );
    }
    // Both token sources at once is a usage error (clap's exit code 2).
    let (code, stdout, stderr) = route_refused(
        &config,
        &["--admin-token", "a", "--admin-token-file", good],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    assert!(stdout.is_empty());

    // Off loopback with a token, or without one but with --allow-anonymous: it starts.
    let port_of = |address: &str| address.rsplit(':').next().unwrap().to_owned();
    let (_anonymous, _, admin_api) =
        start_router(&config, &["--admin-host", "0.0.0.0", "--allow-anonymous"]);
    assert!(admin_api.starts_with("0.0.0.0:"), "{admin_api}");
    let local = format!("127.0.0.1:{}", port_of(&admin_api));
    let (status, body) = call(&local, "GET /admin/v1/routes", "", &Value::Null);
    assert_eq!(status, 200, "{body}");
    let (_guarded, _, admin_api) = start_router(
        &config,
        &["--admin-host", "0.0.0.0", "--admin-token-file", good],
    );
    let local = format!("127.0.0.1:{}", port_of(&admin_api));
    assert_eq!(
        call(&local, "GET /admin/v1/routes", "", &Value::Null).0,
        401
    );
    assert_eq!(
        call(
            &local,
            "GET /admin/v1/routes",
            "Authorization: Bearer s3cret-token\r\n",
            &Value::Null
        )
        .0,
        200
    );
}

/// Behind `weir up` the backends are named by role (`stable`, `canary`) and say which
/// registry version their replicas serve: a client pinning the number (header or path) reaches
/// it, a path naming the role reaches the replica as the number, `weir canary status` counts
/// the traffic it routed at once, the rollout flags take durations, and a rollback after a
/// promotion goes back to the previous stable version.
#[test]
fn role_named_backends_answer_registry_versions_and_status_sees_traffic_at_once() {
    let dir = scratch("router-roles");
    let (v1_repo, v2_repo) = (iris_repository(&dir, 1), iris_repository(&dir, 2));
    let (_a, a) = serve(&v1_repo);
    let (_b, b) = serve(&v2_repo);
    let config = routes_file(
        &dir,
        &format!(
            "[settings]\nrequest_timeout = \"30s\"\nhealth_check_interval = \"500ms\"\n\
             [[route]]\nmodel = \"iris\"\n\
             [[route.backend]]\nversion = \"stable\"\nregistry_version = 1\nendpoints = [\"http://{a}\"]\nweight = 90\n\
             [[route.backend]]\nversion = \"canary\"\nregistry_version = 2\nendpoints = [\"http://{b}\"]\nweight = 10\n"
        ),
    );
    let (_router, router, admin_api) = start_router(&config, &[]);
    let admin_url = format!("http://{admin_api}");

    // Pins by registry number and by role, by header and by path: the replica that answers
    // serves version 2 each time.
    for (path, headers) in [
        ("/v2/models/iris/infer", "x-weir-version: 2\r\n"),
        ("/v2/models/iris/versions/2/infer", ""),
        ("/v2/models/iris/versions/canary/infer", ""),
        ("/v2/models/iris/infer", "x-weir-version: canary\r\n"),
    ] {
        let (status, header, answered) = infer(&router, path, headers);
        assert_eq!(
            (status, header.as_str(), answered.as_str()),
            (200, "canary", "2"),
            "{path} {headers}"
        );
    }
    assert_eq!(
        infer(&router, "/v2/models/iris/versions/3/infer", "").0,
        404
    );

    // Status right after the traffic: 4 pinned + 20 by weight, all counted, none at 0 req/s.
    for _ in 0..20 {
        assert_eq!(infer(&router, "/v2/models/iris/infer", "").0, 200);
    }
    let output = canary_cli(
        &["status", "iris", "--router", &admin_url, "--output", "json"],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let backends = status["backends"].as_array().unwrap();
    let total: u64 = backends
        .iter()
        .map(|b| b["last_minute"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 24, "{status}");
    for backend in backends {
        let minute = &backend["last_minute"];
        assert!(
            minute["requests"] == 0 || minute["requests_per_second"].as_f64().unwrap() > 0.0,
            "{backend}"
        );
    }
    assert_eq!(backends[1]["registry_version"], "2");
    let table = canary_cli(&["status", "iris", "--router", &admin_url], &[]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("canary (v2)") && table.contains("REQUESTS (1 MIN)"),
        "{table}"
    );

    // Durations on the rollout flags: the plan the router keeps says what was asked.
    let output = canary_cli(
        &[
            "rollout",
            "iris",
            "--steps",
            "50,100",
            "--interval",
            "2m",
            "--max-p99",
            "0.25",
            "--router",
            &admin_url,
            "--output",
            "json",
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            plan["rollout"]["plan"]["interval"].as_str(),
            plan["rollout"]["plan"]["max_p99"].as_str()
        ),
        (Some("120s"), Some("250ms")),
        "{plan}"
    );
    let output = canary_cli(
        &[
            "rollout",
            "iris",
            "--steps",
            "50,100",
            "--interval",
            "90",
            "--router",
            &admin_url,
            "--output",
            "json",
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["rollout"]["plan"]["interval"], "90s", "{plan}");
    assert!(plan["rollout"]["plan"]["max_p99"].is_null(), "{plan}");
    let refused = canary_cli(
        &[
            "rollout",
            "iris",
            "--interval",
            "soon",
            "--router",
            &admin_url,
        ],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("'soon' is not a duration"),
        "{refused:?}"
    );

    // Promote (stops the rollout), then roll back: the previous stable version returns, and
    // the roles say so at each step.
    let roles = |output: std::process::Output| -> Vec<(String, String, u64)> {
        assert!(output.status.success(), "{output:?}");
        let status: Value = serde_json::from_slice(&output.stdout).unwrap();
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["version"].as_str().unwrap().to_owned(),
                    b["role"].as_str().unwrap().to_owned(),
                    b["weight"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let row = |v: &str, r: &str, w: u64| (v.to_owned(), r.to_owned(), w);
    let json_flags = ["--router", admin_url.as_str(), "--output", "json"];
    let promoted = roles(canary_cli(
        &[&["promote", "iris"][..], &json_flags].concat(),
        &[],
    ));
    assert_eq!(
        promoted,
        [row("canary", "stable", 100), row("stable", "previous", 0)]
    );
    let again = canary_cli(&[&["promote", "iris"][..], &json_flags].concat(), &[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no canary"),
        "{again:?}"
    );
    let rolled_back = roles(canary_cli(
        &[&["rollback", "iris"][..], &json_flags].concat(),
        &[],
    ));
    assert_eq!(
        rolled_back,
        [row("stable", "stable", 100), row("canary", "canary", 0)]
    );
    assert_eq!(infer(&router, "/v2/models/iris/infer", "").2, "1");
}

#[test]
fn shared_state_flags_are_checked_at_start() {
    let dir = scratch("router-shared-refusals");
    let config = idle_routes(&dir);
    let empty = dir.join("empty-registry-token");
    std::fs::write(&empty, " \n").unwrap();
    let empty = empty.to_str().unwrap();
    for (extra, expected) in [
        (
            vec!["--registry", "ftp://registry:5000"],
            "--registry 'ftp://registry:5000' must be an http:// or https:// URL".to_owned(),
        ),
        (
            vec![
                "--registry",
                "http://127.0.0.1:9",
                "--registry-token-file",
                empty,
            ],
            format!("the token file {empty} is empty"),
        ),
        (
            vec![
                "--registry",
                "http://127.0.0.1:9",
                "--registry-token-file",
                "/nonexistent/token",
            ],
            "cannot read the token file /nonexistent/token".to_owned(),
        ),
        (
            vec![
                "--registry",
                "http://127.0.0.1:9",
                "--state-key",
                "has space",
            ],
            "--state-key 'has space' must be 1 to 200 characters".to_owned(),
        ),
        // The shared state's companions mean nothing without a registry.
        (vec!["--state-key", "routes/x"], "--registry".to_owned()),
    ] {
        let (code, _, stderr) = route_refused(&config, &extra, &[("WEIR_REGISTRY", "")]);
        assert_ne!(code, 0, "{extra:?}");
        assert!(stderr.contains(&expected), "{extra:?}: {stderr}");
    }
}
