//! Serving from the registry: approved versions only, verified against the digest recorded at
//! registration, swapped with zero failed requests when the alias moves.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{index, post, start, test_models, until, TempRepo};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_registry::artifacts::ArtifactStore;
use weir_registry::{Registry, Store};
use weir_runtime::registry::RegistrySource;
use weir_runtime::ServeConfig;

/// Calls the registry's API as `user` (through its router; the runtime uses a real socket).
async fn registry_call(
    registry: &Arc<Registry>,
    user: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-weir-user", user)
        .body(Body::from(body))
        .unwrap();
    let response = weir_registry::router(registry.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Uploads a version's model file and registers it as `alice`.
async fn register(registry: &Arc<Registry>, artifact: &str, model_file: &[u8]) -> String {
    let put = format!("/api/2.0/mlflow-artifacts/artifacts/{artifact}/model.onnx");
    assert_eq!(
        registry_call(registry, "alice", "PUT", &put, model_file.to_vec())
            .await
            .0,
        StatusCode::OK
    );
    let body = json!({"name": "iris", "source": format!("mlflow-artifacts:/{artifact}")})
        .to_string()
        .into_bytes();
    let (status, created) = registry_call(
        registry,
        "alice",
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn approve(registry: &Arc<Registry>, version: &str) {
    let body = json!({"name": "iris", "version": version})
        .to_string()
        .into_bytes();
    let (status, answer) = registry_call(
        registry,
        "bob",
        "POST",
        "/api/2.0/weir/approvals/approve",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn set_alias(registry: &Arc<Registry>, alias: &str, version: &str) -> StatusCode {
    let body = json!({"name": "iris", "alias": alias, "version": version})
        .to_string()
        .into_bytes();
    registry_call(
        registry,
        "alice",
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        body,
    )
    .await
    .0
}

fn iris_request() -> Value {
    json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_approved_verified_versions_serve_on_sqlite() {
    let db = weir_sql::testing::sqlite("runtime_registry");
    only_approved_verified_versions_serve_and_alias_moves_swap_without_failures(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_approved_verified_versions_serve_on_postgres() {
    if let Some(db) = weir_sql::testing::postgres("runtime_registry") {
        only_approved_verified_versions_serve_and_alias_moves_swap_without_failures(&db.url).await;
    }
}

async fn only_approved_verified_versions_serve_and_alias_moves_swap_without_failures(db_url: &str) {
    let scratch = TempRepo::new("registry-side");
    let db_url = db_url.to_owned();
    // The PostgreSQL driver blocks; open off the async workers as `weir registry` does.
    let store = tokio::task::spawn_blocking(move || Store::open(&db_url))
        .await
        .unwrap()
        .unwrap();
    let registry = Arc::new(Registry {
        store,
        artifacts: ArtifactStore::open(&scratch.path("artifacts")).unwrap(),
        sources: None,
        tokens: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = axum::serve(listener, weir_registry::router(registry.clone()));
    tokio::spawn(async move { serve.await });

    let v1_bytes = std::fs::read(test_models().join("iris/1/model.onnx")).unwrap();
    let v2_bytes = std::fs::read(test_models().join("iris/2/model.onnx")).unwrap();
    let create = json!({"name": "iris"}).to_string().into_bytes();
    assert_eq!(
        registry_call(
            &registry,
            "alice",
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            create
        )
        .await
        .0,
        StatusCode::OK
    );
    let v1 = register(&registry, "models/iris/1", &v1_bytes).await;
    assert_eq!(
        set_alias(&registry, "production", &v1).await,
        StatusCode::FORBIDDEN,
        "unapproved versions cannot be production"
    );
    approve(&registry, &v1).await;
    assert_eq!(
        set_alias(&registry, "production", &v1).await,
        StatusCode::OK
    );

    let repository = TempRepo::new("registry-served");
    let server = start(ServeConfig {
        registry: Some(RegistrySource {
            url,
            models: vec![
                "iris=models:/iris@production".parse().unwrap(),
                "canary=models:/iris@candidate".parse().unwrap(),
            ],
            poll: Duration::from_millis(100),
        }),
        ..common::config(&repository.dir)
    })
    .await;
    let app = server.app.clone();
    assert_eq!(
        app.store.serving_version("iris"),
        Some(1),
        "the approved production version serves from the start"
    );
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris_request())
            .await
            .json()["model_version"],
        "1"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients = common::load_loop(
        &app,
        4,
        "/v2/models/iris/infer",
        iris_request(),
        stop.clone(),
    )
    .await;
    // Version 2: registered, approved, production moves; the server follows under load.
    let v2 = register(&registry, "models/iris/2", &v2_bytes).await;
    approve(&registry, &v2).await;
    assert_eq!(
        set_alias(&registry, "production", &v2).await,
        StatusCode::OK
    );
    until("the server to follow production to version 2", || {
        let app = app.clone();
        async move { app.store.serving_version("iris") == Some(2) }
    })
    .await;

    // Version 3 is approved, then its artifact is replaced behind the registry's back.
    let v3 = register(&registry, "models/iris/3", &v1_bytes).await;
    approve(&registry, &v3).await;
    std::fs::write(
        scratch.path("artifacts/models/iris/3/model.onnx"),
        &v2_bytes,
    )
    .unwrap();
    assert_eq!(
        set_alias(&registry, "production", &v3).await,
        StatusCode::OK
    );
    until("the tampered version to be refused", || {
        let app = app.clone();
        async move {
            index(&app).await.iter().any(|(name, state, reason)| {
                name == "iris/3"
                    && state == "UNAVAILABLE"
                    && reason.contains("failed its integrity check")
            })
        }
    })
    .await;

    // Version 4 is not approved; an unprotected alias may point at it, but no server serves it.
    let v4 = register(&registry, "models/iris/4", &v1_bytes).await;
    assert_eq!(set_alias(&registry, "candidate", &v4).await, StatusCode::OK);
    until("the unapproved version to be refused", || {
        let app = app.clone();
        async move {
            index(&app).await.iter().any(|(name, _, reason)| {
                name == "canary/4" && reason.contains("is not approved: 0 of 1 required approvals")
            })
        }
    })
    .await;
    assert_eq!(
        post(&app, "/v2/models/canary/infer", iris_request())
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (total, seen) = clients.await.unwrap();
    assert!(total > 20, "only {total} requests ran");
    assert_eq!(
        seen,
        BTreeSet::from(["1".to_owned(), "2".to_owned()]),
        "served versions: {seen:?}"
    );
    assert_eq!(
        app.store.serving_version("iris"),
        Some(2),
        "the tampered version 3 never replaced 2"
    );
}
