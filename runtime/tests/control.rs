//! Model control: loading, unloading, polling, and swapping versions under load.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{get, index, post, start, until, TempRepo};
use serde_json::{json, Value};
use weir_runtime::{ModelControl, ServeConfig};

fn iris_request() -> Value {
    json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
}

fn explicit(repo: &TempRepo) -> ServeConfig {
    ServeConfig {
        model_control: ModelControl::Explicit,
        ..common::config(&repo.dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_swap_under_load_with_zero_failed_requests() {
    let repo = TempRepo::new("swap");
    repo.copy_version("iris", 1, "iris", 1);
    let server = start(explicit(&repo)).await;
    let app = server.app.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let clients = common::load_loop(
        &app,
        4,
        "/v2/models/iris/infer",
        iris_request(),
        stop.clone(),
    )
    .await;
    // Each round adds the next version, loads it, removes the previous one and loads again.
    for version in 2..=6u64 {
        repo.copy_version("iris", 1 + version % 2, "iris", version);
        let loaded = post(&app, "/v2/repository/models/iris/load", json!({})).await;
        assert_eq!(
            loaded.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&loaded.body)
        );
        std::fs::remove_dir_all(repo.path(&format!("iris/{}", version - 1))).unwrap();
        assert_eq!(
            post(&app, "/v2/repository/models/iris/load", json!({}))
                .await
                .status,
            StatusCode::OK
        );
        let metadata = get(&app, "/v2/models/iris").await.json();
        assert_eq!(metadata["versions"], json!([version.to_string()]));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (total, seen) = clients.await.unwrap();
    assert!(total > 20, "only {total} requests ran during the swaps");
    assert!(
        seen.len() >= 3,
        "responses should switch versions; saw {seen:?}"
    );
    assert!(seen.contains("6"), "{seen:?}");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_previous_load_serving_and_says_why() {
    let repo = TempRepo::new("failed-reload");
    repo.copy_version("iris", 1, "iris", 1);
    let server = start(explicit(&repo)).await;
    let app = server.app.clone();

    // A new version that does not load: 400 naming it; version 1 keeps answering.
    std::fs::create_dir_all(repo.path("iris/2")).unwrap();
    std::fs::write(repo.path("iris/2/model.onnx"), b"garbage").unwrap();
    let refused = post(&app, "/v2/repository/models/iris/load", json!({})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.error().contains("version 2"), "{}", refused.error());
    let answer = post(&app, "/v2/models/iris/infer", iris_request()).await;
    assert_eq!(answer.json()["model_version"], "1");
    assert!(index(&app).await.contains(&(
        "iris/2".into(),
        "UNAVAILABLE".into(),
        refused
            .error()
            .split("version 2: ")
            .nth(1)
            .unwrap()
            .to_owned()
    )));

    // The serving version's file is corrupted in place: the reload fails, the old load serves.
    std::fs::remove_dir_all(repo.path("iris/2")).unwrap();
    std::fs::write(repo.path("iris/1/model.onnx"), b"tampered").unwrap();
    assert_eq!(
        post(&app, "/v2/repository/models/iris/load", json!({}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris_request())
            .await
            .status,
        StatusCode::OK
    );
    let rows = index(&app).await;
    let (_, state, reason) = rows.iter().find(|(name, _, _)| name == "iris/1").unwrap();
    assert_eq!(state, "READY");
    assert!(
        reason.starts_with("reload failed, the previous load still serves"),
        "{reason}"
    );
}

#[tokio::test]
async fn unload_then_load_again() {
    let repo = TempRepo::new("unload");
    repo.copy_version("iris", 1, "iris", 1);
    let server = start(explicit(&repo)).await;
    let app = server.app.clone();
    assert_eq!(
        post(&app, "/v2/repository/models/iris/unload", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let unavailable = post(&app, "/v2/models/iris/infer", iris_request()).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        unavailable.error(),
        "model 'iris' is not available: unloaded"
    );
    assert!(index(&app)
        .await
        .contains(&("iris/".into(), "UNAVAILABLE".into(), "unloaded".into())));
    assert_eq!(
        post(&app, "/v2/repository/models/iris/load", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris_request())
            .await
            .status,
        StatusCode::OK
    );

    let unknown = post(&app, "/v2/repository/models/nope/load", json!({})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.error(),
        "no model folder 'nope' in the model repository"
    );
    assert_eq!(
        post(&app, "/v2/repository/models/..%2Fetc/load", json!({}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&app, "/v2/repository/models/nope/unload", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn model_control_is_refused_unless_enabled() {
    let repo = TempRepo::new("control-none");
    repo.copy_version("iris", 1, "iris", 1);
    let server = start(common::config(&repo.dir)).await;
    let refused = post(&server.app, "/v2/repository/models/iris/unload", json!({})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.error().starts_with("model control is disabled"),
        "{}",
        refused.error()
    );
    assert_eq!(
        post(&server.app, "/v2/models/iris/infer", iris_request())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn poll_mode_follows_the_repository() {
    let repo = TempRepo::new("poll");
    repo.copy_version("iris", 1, "iris", 1);
    let server = start(ServeConfig {
        model_control: ModelControl::Poll,
        repository_poll: Duration::from_millis(100),
        ..common::config(&repo.dir)
    })
    .await;
    let app = server.app.clone();
    repo.copy_version("iris", 2, "iris", 2);
    repo.copy_version("simple", 1, "simple", 1);
    until("the poll to load iris/2 and simple", || {
        let app = app.clone();
        async move {
            let rows = index(&app).await;
            rows.iter().any(|(n, s, _)| n == "iris/2" && s == "READY")
                && rows.iter().any(|(n, s, _)| n == "simple/1" && s == "READY")
        }
    })
    .await;
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris_request())
            .await
            .json()["model_version"],
        "2"
    );
    std::fs::remove_dir_all(repo.path("simple")).unwrap();
    until("the poll to drop simple", || {
        let app = app.clone();
        async move { get(&app, "/v2/models/simple").await.status == StatusCode::NOT_FOUND }
    })
    .await;
}

#[tokio::test]
async fn statistics_for_all_one_model_and_one_version() {
    let repo = TempRepo::new("stats");
    repo.copy_version("iris", 1, "iris", 1);
    repo.copy_version("iris", 2, "iris", 2);
    let server = start(common::config(&repo.dir)).await;
    let app = server.app.clone();
    for _ in 0..3 {
        post(&app, "/v2/models/iris/infer", iris_request()).await;
    }
    post(&app, "/v2/models/iris/infer", json!({"inputs": []})).await;
    let all = get(&app, "/v2/models/stats").await.json();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 2);
    let v2 = get(&app, "/v2/models/iris/versions/2/stats").await.json()["model_stats"][0].clone();
    assert_eq!(v2["name"], "iris");
    assert_eq!(v2["version"], "2");
    assert_eq!(v2["inference_count"], 3);
    assert_eq!(v2["execution_count"], 3);
    assert_eq!(v2["inference_stats"]["success"]["count"], 3);
    assert_eq!(v2["inference_stats"]["fail"]["count"], 1);
    assert!(
        v2["inference_stats"]["compute_infer"]["ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(v2["batch_stats"][0]["batch_size"], 1);
    assert_eq!(
        get(&app, "/v2/models/iris/stats").await.json()["model_stats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        get(&app, "/v2/models/nope/stats").await.status,
        StatusCode::NOT_FOUND
    );
    let extensions = get(&app, "/v2").await.json()["extensions"].clone();
    assert!(extensions
        .as_array()
        .unwrap()
        .contains(&json!("statistics")));
}
