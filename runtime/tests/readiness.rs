//! Readiness means serving: `weir serve` answers `/v2/health/ready` 200 only when every model it
//! was told to serve (each repository model, each registry `--model`) serves a version. A
//! refused registry version, an unreachable registry, a 401 or a model its config makes
//! unavailable keeps it unready, with the reason in the repository index.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;
mod registry_fixture;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{get, index, post, start, test_models, until, TempRepo};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_http::HttpClient;
use weir_mlflow_wire::{Authenticator, Identities};
use weir_runtime::registry::RegistrySource;
use weir_runtime::{App, ModelControl, RunningServer, ServeConfig};

/// A registry on SQLite with its artifacts in `scratch`, on a real loopback socket (its URL);
/// the database goes when the returned guard is dropped.
async fn registry_on(
    scratch: &TempRepo,
    authenticator: Authenticator,
) -> (Router, String, weir_sql::testing::TestDatabase) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    registry_listening(scratch, authenticator, listener).await
}

/// As [`registry_on`], on a listener the caller chose (a port a server was told of earlier).
async fn registry_listening(
    scratch: &TempRepo,
    authenticator: Authenticator,
    listener: tokio::net::TcpListener,
) -> (Router, String, weir_sql::testing::TestDatabase) {
    let db = weir_sql::testing::sqlite(&format!(
        "runtime_readiness_{}",
        scratch.dir.file_name().unwrap().to_string_lossy()
    ));
    let (_, router, url) =
        registry_fixture::registry_listening(&db.url, scratch, authenticator, listener).await;
    (router, url, db)
}

/// One registry call as `user` (`X-Weir-User`; the registry here is anonymous).
async fn registry_call(registry: &Router, user: &str, path: &str, body: Value) -> Value {
    registry_send(registry, user, "POST", path, body.to_string().into_bytes()).await
}

async fn registry_send(
    registry: &Router,
    user: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-weir-user", user)
        .body(Body::from(body))
        .unwrap();
    let response = registry.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{method} {path}: {answer}");
    answer
}

/// Registers iris version 1 (unapproved) and points the unprotected alias `candidate` at it.
async fn register_unapproved_iris(registry: &Router) -> String {
    registry_call(
        registry,
        "alice",
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "iris"}),
    )
    .await;
    let model_file = std::fs::read(test_models().join("iris/1/model.onnx")).unwrap();
    registry_send(
        registry,
        "alice",
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/models/iris/1/model.onnx",
        model_file,
    )
    .await;
    let created = registry_call(
        registry,
        "alice",
        "/api/2.0/mlflow/model-versions/create",
        json!({"name": "iris", "source": "mlflow-artifacts:/models/iris/1"}),
    )
    .await;
    let version = created["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    registry_call(
        registry,
        "alice",
        "/api/2.0/mlflow/registered-models/alias",
        json!({"name": "iris", "alias": "candidate", "version": version}),
    )
    .await;
    version
}

fn following(url: &str) -> RegistrySource {
    RegistrySource {
        url: url.to_owned(),
        models: vec!["iris=models:/iris@candidate".parse().unwrap()],
        poll: Duration::from_millis(100),
        token: None,
        http: HttpClient::default(),
        direct_download: false,
    }
}

/// `GET /v2/health/ready`: the status and the reasons given when unready.
async fn readiness(app: &Arc<App>) -> (StatusCode, String) {
    let answer = get(app, "/v2/health/ready").await;
    let reasons = answer.json()["reasons"].to_string();
    (answer.status, reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unapproved_registry_version_keeps_the_server_unready_until_approved() {
    let scratch = TempRepo::new("readiness-registry");
    let (registry, url, _db) = registry_on(&scratch, Authenticator::anonymous()).await;
    let version = register_unapproved_iris(&registry).await;

    let served = TempRepo::new("readiness-served");
    let mut server = start(ServeConfig {
        registry: Some(following(&url)),
        ..common::config(&served.dir)
    })
    .await;
    let app = server.app.clone();
    let (status, reasons) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reasons}");
    assert!(reasons.contains("'iris'"), "{reasons}");
    assert!(
        index(&app)
            .await
            .iter()
            .any(|(name, state, reason)| name == "iris/1"
                && state == "UNAVAILABLE"
                && reason.contains("is not approved: 0 of 1 required approvals")),
        "{:?}",
        index(&app).await
    );
    // Liveness is unaffected: the process is fine, it just has nothing to serve yet.
    assert_eq!(get(&app, "/v2/health/live").await.status, StatusCode::OK);

    registry_call(
        &registry,
        "bob",
        "/api/2.0/weir/approvals/approve",
        json!({"name": "iris", "version": version}),
    )
    .await;
    until("the approved version to make the server ready", || {
        let app = app.clone();
        async move { readiness(&app).await.0 == StatusCode::OK }
    })
    .await;
    assert_eq!(app.store.serving_version("iris"), Some(1));
    // `weir serve ready in N ms` is printed once this returns.
    tokio::time::timeout(Duration::from_secs(30), server.wait_ready())
        .await
        .expect("wait_ready returns once the server is ready")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_or_refusing_registry_keeps_the_server_unready() {
    // Nobody listens on a port just released.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let served = TempRepo::new("readiness-unreachable");
    let server = start(ServeConfig {
        registry: Some(following(&gone)),
        ..common::config(&served.dir)
    })
    .await;
    let (status, reasons) = readiness(&server.app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reasons}");
    let rows = index(&server.app).await;
    assert!(
        rows.iter().any(|(name, state, reason)| name == "iris/"
            && state == "UNAVAILABLE"
            && reason.contains("cannot reach the registry")),
        "{rows:?}"
    );
    // Later polls fail the same way; the server stays up and unready.
    until("a later poll to fail too", || {
        let app = server.app.clone();
        async move { readiness(&app).await.0 == StatusCode::SERVICE_UNAVAILABLE }
    })
    .await;

    // A registry that wants a credential the server lacks: 401, unready, the reason listed.
    let scratch = TempRepo::new("readiness-401");
    let identities = Identities::parse(
        "[[user]]\nname = \"alice\"\ntoken = \"alice-token\"\nroles = [\"reader\"]\n",
    )
    .unwrap();
    let (_, url, _db) = registry_on(&scratch, Authenticator::with_identities(identities)).await;
    let refused = TempRepo::new("readiness-refused");
    let server = start(ServeConfig {
        registry: Some(following(&url)),
        ..common::config(&refused.dir)
    })
    .await;
    assert_eq!(
        readiness(&server.app).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let rows = index(&server.app).await;
    assert!(
        rows.iter()
            .any(|(name, _, reason)| name == "iris/" && reason.contains("401")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_comes_up_later_makes_the_server_ready_once_its_model_loads() {
    // Nobody listens on a port just released; the registry starts there later.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // The repository folder does not exist yet: with a registry it is only the download
    // cache, so the server creates it (with its parents) instead of refusing to start.
    let parent = TempRepo::new("readiness-later");
    let cache = parent.path("not/yet/models");
    let mut server = RunningServer::start(ServeConfig {
        registry: Some(following(&format!("http://127.0.0.1:{port}"))),
        ..common::config(&cache)
    })
    .await
    .unwrap();
    server.wait_loaded().await.unwrap();
    assert!(cache.is_dir(), "the registry cache folder was created");
    let app = server.app.clone();
    let (status, reasons) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reasons}");
    assert!(
        reasons.contains("'iris'") && reasons.contains("cannot reach the registry"),
        "{reasons}"
    );

    let scratch = TempRepo::new("readiness-later-registry");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (registry, _, _db) =
        registry_listening(&scratch, Authenticator::anonymous(), listener).await;
    let version = register_unapproved_iris(&registry).await;
    registry_call(
        &registry,
        "bob",
        "/api/2.0/weir/approvals/approve",
        json!({"name": "iris", "version": version}),
    )
    .await;
    until("the registry's version to make the server ready", || {
        let app = app.clone();
        async move { readiness(&app).await.0 == StatusCode::OK }
    })
    .await;
    assert_eq!(app.store.serving_version("iris"), Some(1));
    assert!(cache.join("iris/1/model.onnx").is_file());
}

#[tokio::test]
async fn a_missing_repository_without_a_registry_is_an_error_naming_it() {
    let parent = TempRepo::new("readiness-missing");
    let missing = parent.path("typo/models");
    let error = RunningServer::start(common::config(&missing))
        .await
        .err()
        .expect("a missing repository without --registry is refused")
        .to_string();
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("no such directory"),
        "{error}"
    );
    assert!(!missing.exists(), "nothing is created without a registry");
    // A file where the folder should be is refused even with a registry.
    std::fs::write(parent.path("file"), b"").unwrap();
    let error = RunningServer::start(ServeConfig {
        registry: Some(following("http://127.0.0.1:9")),
        ..common::config(&parent.path("file"))
    })
    .await
    .err()
    .expect("a file is not a repository")
    .to_string();
    assert!(error.contains("not a directory"), "{error}");
}

#[tokio::test]
async fn a_repository_model_its_config_makes_unavailable_keeps_the_server_unready() {
    let repo = TempRepo::new("readiness-config");
    repo.copy_version("iris", 1, "iris", 1);
    repo.copy_version("iris", 1, "batched", 1);
    // docs/serving.md: dynamic batching needs max_batch_size > 0.
    repo.write_config("batched", "max_batch_size = 0\n\n[dynamic_batching]\n");
    let server = start(common::config(&repo.dir)).await;
    let (status, reasons) = readiness(&server.app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reasons}");
    assert!(
        reasons.contains("'batched'") && reasons.contains("max_batch_size"),
        "{reasons}"
    );
    assert!(!reasons.contains("'iris'"), "iris serves: {reasons}");
    // The index says why and what to write instead.
    let rows = index(&server.app).await;
    assert!(
        rows.iter().any(|(name, state, reason)| name == "batched/"
            && state == "UNAVAILABLE"
            && reason.contains(
                "max_batch_size = 0 (the default) means the model has no batch dimension"
            )),
        "{rows:?}"
    );

    // The same repository without the bad config is ready.
    std::fs::remove_file(repo.path("batched/config.toml")).unwrap();
    let server = start(common::config(&repo.dir)).await;
    assert_eq!(readiness(&server.app).await.0, StatusCode::OK);

    // Without strict readiness (Triton's --strict-readiness=false) loading is enough.
    repo.write_config("batched", "max_batch_size = 0\n\n[dynamic_batching]\n");
    let lenient = start(ServeConfig {
        strict_readiness: false,
        ..common::config(&repo.dir)
    })
    .await;
    assert_eq!(readiness(&lenient.app).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_model_unloaded_on_request_does_not_make_the_server_unready() {
    let repo = TempRepo::new("readiness-unload");
    repo.copy_version("iris", 1, "iris", 1);
    repo.copy_version("iris", 1, "other", 1);
    let server = start(ServeConfig {
        model_control: ModelControl::Explicit,
        ..common::config(&repo.dir)
    })
    .await;
    assert_eq!(readiness(&server.app).await.0, StatusCode::OK);
    let unloaded = post(&server.app, "/v2/repository/models/other/unload", json!({})).await;
    assert_eq!(unloaded.status, StatusCode::OK);
    assert_eq!(
        readiness(&server.app).await.0,
        StatusCode::OK,
        "the operator asked for it to stop"
    );
    // A model folder removed from disk then loaded on request fails: that one counts.
    std::fs::remove_file(repo.path("other/1/model.onnx")).unwrap();
    std::fs::write(repo.path("other/1/model.onnx"), b"not a model").unwrap();
    let reload = post(&server.app, "/v2/repository/models/other/load", json!({})).await;
    assert_eq!(reload.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        readiness(&server.app).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
