//! A registry for the runtime's registry tests: on SQLite or PostgreSQL, on a loopback socket,
//! with helpers to register, approve and alias versions of `iris` as a given caller.

#![allow(dead_code, clippy::unwrap_used)] // each test crate uses a subset; failing set-up should be loud

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_http::HttpClient;
use weir_mlflow_wire::Authenticator;
use weir_registry::artifacts::ArtifactStore;
use weir_registry::{Registry, Store};
use weir_runtime::registry::RegistrySource;

use crate::common::TempRepo;

/// A registry on SQLite or PostgreSQL with its artifacts in `scratch`, answering on a real
/// loopback socket (its URL) with `authenticator` in front.
pub async fn registry_on(
    db_url: &str,
    scratch: &TempRepo,
    authenticator: Authenticator,
) -> (Arc<Registry>, Router, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    registry_listening(db_url, scratch, authenticator, listener).await
}

/// As [`registry_on`], on a listener the caller chose (a port a server was told of earlier).
pub async fn registry_listening(
    db_url: &str,
    scratch: &TempRepo,
    authenticator: Authenticator,
    listener: tokio::net::TcpListener,
) -> (Arc<Registry>, Router, String) {
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
    });
    let router = weir_registry::router(registry.clone(), authenticator);
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = axum::serve(listener, router.clone());
    tokio::spawn(async move { serve.await });
    (registry, router, url)
}

/// How the tests name a caller: `alice` (X-Weir-User, anonymous registries) or a token.
pub fn caller_header(user: &str) -> (&'static str, String) {
    match user.strip_prefix("token:") {
        Some(token) => ("authorization", format!("Bearer {token}")),
        None => ("x-weir-user", user.to_owned()),
    }
}

/// Calls the registry's API as `user` (through its router; the runtime uses a real socket).
pub async fn registry_call(
    registry: &Router,
    user: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let (header, value) = caller_header(user);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header, value)
        .body(Body::from(body))
        .unwrap();
    let response = registry.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Uploads a version's model file and registers it as `alice`.
pub async fn register(registry: &Router, artifact: &str, model_file: &[u8]) -> String {
    register_as(registry, "alice", artifact, model_file).await
}

pub async fn register_as(
    registry: &Router,
    alice: &str,
    artifact: &str,
    model_file: &[u8],
) -> String {
    let put = format!("/api/2.0/mlflow-artifacts/artifacts/{artifact}/model.onnx");
    assert_eq!(
        registry_call(registry, alice, "PUT", &put, model_file.to_vec())
            .await
            .0,
        StatusCode::OK
    );
    let body = json!({"name": "iris", "source": format!("mlflow-artifacts:/{artifact}")})
        .to_string()
        .into_bytes();
    let (status, created) = registry_call(
        registry,
        alice,
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

pub async fn create_iris(registry: &Router, alice: &str) {
    let create = json!({"name": "iris"}).to_string().into_bytes();
    let (status, answer) = registry_call(
        registry,
        alice,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        create,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

pub async fn approve(registry: &Router, version: &str) {
    approve_as(registry, "bob", version).await
}

pub async fn approve_as(registry: &Router, bob: &str, version: &str) {
    let body = json!({"name": "iris", "version": version})
        .to_string()
        .into_bytes();
    let (status, answer) = registry_call(
        registry,
        bob,
        "POST",
        "/api/2.0/weir/approvals/approve",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

pub async fn set_alias(registry: &Router, alias: &str, version: &str) -> StatusCode {
    set_alias_as(registry, "alice", alias, version).await
}

pub async fn set_alias_as(
    registry: &Router,
    alice: &str,
    alias: &str,
    version: &str,
) -> StatusCode {
    let body = json!({"name": "iris", "alias": alias, "version": version})
        .to_string()
        .into_bytes();
    registry_call(
        registry,
        alice,
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        body,
    )
    .await
    .0
}

pub fn iris_request() -> Value {
    json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
}

/// The registry's identities: alice submits, bob approves, the server only reads.
pub const IDENTITIES: &str = r#"
[[user]]
name = "alice"
token = "alice-token"
roles = ["submitter", "admin"]

[[user]]
name = "bob"
token = "bob-token"
roles = ["approver"]

[[user]]
name = "server"
token = "server-token"
roles = ["reader"]
"#;

pub fn follow_production(url: &str, token: Option<&str>, http: HttpClient) -> RegistrySource {
    RegistrySource {
        url: url.to_owned(),
        models: vec!["iris=models:/iris@production".parse().unwrap()],
        poll: Duration::from_millis(100),
        token: token.map(str::to_owned),
        http,
        direct_download: false,
    }
}
