//! `weir autoscale` with local replicas behind a real router: scale from zero serves the held
//! request, a load step adds replicas, idleness takes them away, and no request fails; and
//! `weir autoscale simulate` on a trace.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use common::{scratch, wait_for};

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn mlp_request() -> Vec<u8> {
    let data = vec!["0.5"; 256].join(",");
    format!(r#"{{"inputs": [{{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [{data}]}}]}}"#)
        .into_bytes()
}

/// The router's admin token in the scale test (the autoscaler reads it from a file).
const ADMIN_TOKEN: &str = "autoscaler-admin-token";

/// Replicas of mlp v1 the router knows, asked on its admin API.
fn replicas(admin_api: &str) -> usize {
    let (_, body) = common::http(
        admin_api,
        "GET /admin/v1/routes/mlp",
        &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"),
        b"",
    )
    .unwrap_or_default();
    let status: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    status["backends"][0]["endpoints"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn replicas_follow_the_load_from_zero_and_back_without_failures() {
    let dir = scratch("autoscale-local");
    let repo = dir.join("repo");
    common::add_test_model(&repo, "mlp", 1);
    std::fs::write(
        dir.join("routes.toml"),
        "[[route]]\nmodel = \"mlp\"\n[[route.backend]]\nversion = \"1\"\nendpoints = []\nweight = 100\n",
    )
    .unwrap();
    // The admin API wants a token: the autoscaler must send the one in its token file.
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let (_router, router, admin_api) = common::start_router(
        &[
            "--config",
            "routes.toml",
            "--admin-token-file",
            "admin-token",
        ],
        &dir,
    );
    assert_eq!(
        common::get(&admin_api, "/admin/v1/routes/mlp").0,
        401,
        "the admin API is closed without the token"
    );
    std::fs::write(
        dir.join("autoscaler.toml"),
        format!(
            r#"[settings]
sample = "250ms"
tick = "500ms"

[[target]]
name = "mlp-v1"
scaler = {{ kind = "local", model = "mlp", version = "1", repository = "{}", router = "http://{admin_api}", router_token_file = "admin-token" }}
signal = {{ kind = "scrape" }}
policy = {{ metric = "concurrency", target = 2, min_replicas = 0, max_replicas = 3, stable_window = "6s", scale_to_zero_grace = "2s" }}
"#,
            repo.display()
        ),
    )
    .unwrap();
    let (_autoscaler, autoscaler) = common::start_weir(
        &[
            "autoscale",
            "--config",
            "autoscaler.toml",
            "--http-port",
            "0",
        ],
        &dir,
    );
    assert_eq!(
        replicas(&admin_api),
        0,
        "min_replicas is 0: nothing runs before traffic"
    );

    // Scale from zero: the first request is held until a replica is up, then answered.
    let started = Instant::now();
    let (status, body) =
        common::http(&router, "POST /v2/models/mlp/infer", "", &mlp_request()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    eprintln!(
        "first response from zero replicas after {:?}",
        started.elapsed()
    );
    assert_eq!(replicas(&admin_api), 1);

    // A load step: six closed loops.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (router, stop, ok, failed) =
                (router.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                let body = mlp_request();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let answer = common::http(&router, "POST /v2/models/mlp/infer", "", &body);
                    if answer.is_some_and(|(status, _)| status == 200) {
                        &ok
                    } else {
                        &failed
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for("replicas to grow under load", 30, || {
        replicas(&admin_api) >= 2
    });
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    // Idle: back to zero after the stable window and the grace period.
    wait_for("replicas to go back to zero", 40, || {
        replicas(&admin_api) == 0
    });
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 50, "only {ok} requests");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed while scaling",
        ok + failed
    );

    let (_, metrics) = common::get(&autoscaler, "/metrics");
    assert!(
        metrics.contains("weir_autoscaler_desired_replicas{target=\"mlp-v1\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_autoscaler_scale_events_total{target=\"mlp-v1\",direction=\"up\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_autoscaler_cold_start_seconds_count{target=\"mlp-v1\"}"),
        "{metrics}"
    );
}

#[test]
fn simulate_replays_a_trace_as_a_table_csv_and_svg() {
    let dir = scratch("autoscale-simulate");
    std::fs::write(
        dir.join("autoscaler.toml"),
        "[[target]]\nname = \"iris\"\nscaler = { kind = \"kubernetes\", namespace = \"ml\", deployment = \"iris\" }\nsignal = { kind = \"prometheus\", url = \"http://127.0.0.1:9090\", query = \"sum(weir_inflight_requests)\" }\npolicy = { target = 10, min_replicas = 1, max_replicas = 20 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("load.csv"),
        "t_seconds,concurrency\n0,10\n120,40\n300,10\n500,10\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["autoscale", "simulate", "--config"])
            .arg(dir.join("autoscaler.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    let csv = common::stdout(&run(&[
        "--trace",
        dir.join("load.csv").to_str().unwrap(),
        "--output",
        "csv",
        "--svg",
        dir.join("chart.svg").to_str().unwrap(),
    ]));
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        csv.lines().next(),
        Some("t,observed,desired_replicas,panic")
    );
    let at = |t: &str| rows.iter().find(|r| r[0] == t).unwrap().clone();
    assert_eq!(at("100")[2], "2");
    assert_eq!(at("122")[3], "true", "the step panics within one tick");
    assert_eq!(at("200")[2], "6");
    assert_eq!(rows.last().unwrap()[2], "2");
    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    // Axes with values: time along the bottom (0..500 s), load and replicas on one scale.
    for tick in [">0<", ">100<", ">500<", ">40<", ">time (s)<"] {
        assert!(svg.contains(tick), "no {tick} in the chart");
    }
    assert!(svg.contains("concurrency and replicas (one scale)"));
    assert!(svg.contains("desired replicas (max 6)"));

    // Durations in weir's one syntax: --tick 4s is 4 s; a bare number is seconds; junk names
    // itself.
    let trace = dir.join("load.csv");
    let every = |tick: &str| {
        let out = common::stdout(&run(&[
            "--trace",
            trace.to_str().unwrap(),
            "--output",
            "csv",
            "--tick",
            tick,
        ]));
        out.lines()
            .skip(1)
            .take(3)
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(every("4s"), ["0", "4", "8"]);
    assert_eq!(every("4"), ["0", "4", "8"]);
    assert_eq!(every("1m"), ["0", "60", "120"]);
    let delayed = run(&["--trace", trace.to_str().unwrap(), "--ready-delay", "30s"]);
    assert!(delayed.status.success());
    for bad in ["2 fortnights", "0s"] {
        let refused = run(&["--trace", trace.to_str().unwrap(), "--tick", bad]);
        assert!(!refused.status.success(), "--tick {bad}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--tick"), "{stderr}");
    }
    let table = common::stdout(&run(&["--trace", dir.join("load.csv").to_str().unwrap()]));
    assert!(
        table.contains("panic: scaling on the panic window"),
        "{table}"
    );

    std::fs::write(dir.join("bad.csv"), "t_seconds,concurrency\n0,10\nten,40\n").unwrap();
    let bad = run(&["--trace", dir.join("bad.csv").to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("trace line 3"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // A file giving a duration under both its names is refused, naming both.
    std::fs::write(
        dir.join("both.toml"),
        std::fs::read_to_string(dir.join("autoscaler.toml"))
            .unwrap()
            .replace(
                "max_replicas = 20",
                "max_replicas = 20, stable_window = \"60s\", stable_window_secs = 60",
            ),
    )
    .unwrap();
    let both = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["autoscale", "--check", "--config"])
        .arg(dir.join("both.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success());
    assert!(
        stderr.contains("policy.stable_window") && stderr.contains("stable_window_secs"),
        "{stderr}"
    );
    std::fs::write(dir.join("rps.csv"), "t_seconds,rps\n0,10\n").unwrap();
    let mismatch = run(&["--trace", dir.join("rps.csv").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&mismatch.stderr).contains("scales on concurrency"));
}

#[test]
fn the_prometheus_signal_reads_real_replicas_through_a_real_prometheus() {
    let dir = scratch("autoscale-prometheus");
    let repo = dir.join("repo");
    common::add_test_model(&repo, "mlp", 1);
    let repo = repo.to_str().unwrap().to_owned();
    let (_a, a) = common::start_weir(
        &["serve", "--http-port", "0", "--model-repository", &repo],
        &dir,
    );
    let (_b, b) = common::start_weir(
        &["serve", "--http-port", "0", "--model-repository", &repo],
        &dir,
    );
    for replica in [&a, &b] {
        wait_for("a replica", 30, || {
            common::get(replica, "/v2/health/ready").0 == 200
        });
    }
    let (_prometheus, prometheus) = common::prometheus(&dir, &[&a, &b], "200ms");
    let prometheus = format!("http://{prometheus}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let query = r#"sum(max_over_time(weir_inflight_requests{model="mlp",version="1"}[2s]))"#;
    let read = || {
        runtime
            .block_on(weir_router::prometheus::query(&prometheus, query))
            .unwrap()
    };
    // Both replicas scraped, nothing in flight yet.
    wait_for("both replicas in Prometheus", 20, || {
        read().is_some_and(|v| v == 0.0)
            && runtime
                .block_on(weir_router::prometheus::query(
                    &prometheus,
                    "count(up == 1)",
                ))
                .unwrap()
                == Some(2.0)
    });
    // Four closed loops on each replica: Prometheus sees them in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|index| {
            let (replica, stop) = (
                if index % 2 == 0 { a.clone() } else { b.clone() },
                stop.clone(),
            );
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    common::http(&replica, "POST /v2/models/mlp/infer", "", &mlp_request());
                }
            })
        })
        .collect();
    wait_for("Prometheus to see the load", 20, || {
        read().is_some_and(|v| v >= 2.0)
    });
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    wait_for("the load to drain from Prometheus", 20, || {
        read().is_some_and(|v| v == 0.0)
    });
    let missing = runtime.block_on(weir_router::prometheus::query(
        &prometheus,
        "sum(nothing_like_this)",
    ));
    assert_eq!(missing, Ok(None), "no data is None, never 0");
    assert!(runtime
        .block_on(weir_router::prometheus::query(&prometheus, "sum("))
        .is_err());
}
