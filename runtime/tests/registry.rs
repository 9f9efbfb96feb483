//! Serving from the registry: approved versions only, verified against the digest recorded at
//! registration, swapped with zero failed requests when the alias moves. How the versions reach
//! the server (tokens, HTTPS, streaming, deadlines) is in `registry_transport.rs`.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;
mod registry_fixture;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{index, post, start, test_models, until, TempRepo};
use registry_fixture::{approve, iris_request, register, registry_call, registry_on, set_alias};
use serde_json::json;
use weir_http::HttpClient;
use weir_mlflow_wire::Authenticator;
use weir_runtime::registry::RegistrySource;
use weir_runtime::ServeConfig;

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
    let (_, registry, url) = registry_on(db_url, &scratch, Authenticator::anonymous()).await;

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
            token: None,
            http: HttpClient::default(),
            direct_download: false,
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

    // Version 3 is approved, then its stored bytes are replaced behind the registry's back
    // (the blob the registry copied them into at registration, shared with version 1, which no
    // longer serves).
    let v3 = register(&registry, "models/iris/3", &v1_bytes).await;
    approve(&registry, &v3).await;
    tamper_blob(
        &scratch.path("artifacts/.weir/blobs/sha256"),
        &v1_bytes,
        &v2_bytes,
    );
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

/// Overwrites the stored blob holding `original` with `replacement`, as a disk fault or an
/// attacker with access to the artifact store would.
fn tamper_blob(blobs: &std::path::Path, original: &[u8], replacement: &[u8]) {
    let blob = std::fs::read_dir(blobs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| std::fs::read(path).unwrap() == original)
        .expect("the registry keeps the version's bytes in a blob");
    let mut permissions = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)] // a test tampering on purpose
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).unwrap();
    std::fs::write(&blob, replacement).unwrap();
}
