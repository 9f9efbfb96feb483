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
use axum::Router;
use common::{index, post, start, test_models, until, TempRepo};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_http::HttpClient;
use weir_mlflow_wire::{Authenticator, Identities};
use weir_registry::artifacts::ArtifactStore;
use weir_registry::{Registry, Store};
use weir_runtime::registry::{RegistrySource, RegistrySync, SyncError};
use weir_runtime::ServeConfig;

/// A registry on SQLite or PostgreSQL with its artifacts in `scratch`, answering on a real
/// loopback socket (its URL) with `authenticator` in front.
async fn registry_on(
    db_url: &str,
    scratch: &TempRepo,
    authenticator: Authenticator,
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = axum::serve(listener, router.clone());
    tokio::spawn(async move { serve.await });
    (registry, router, url)
}

/// How the tests name a caller: `alice` (X-Weir-User, anonymous registries) or a token.
fn caller_header(user: &str) -> (&'static str, String) {
    match user.strip_prefix("token:") {
        Some(token) => ("authorization", format!("Bearer {token}")),
        None => ("x-weir-user", user.to_owned()),
    }
}

/// Calls the registry's API as `user` (through its router; the runtime uses a real socket).
async fn registry_call(
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
async fn register(registry: &Router, artifact: &str, model_file: &[u8]) -> String {
    register_as(registry, "alice", artifact, model_file).await
}

async fn register_as(registry: &Router, alice: &str, artifact: &str, model_file: &[u8]) -> String {
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

async fn create_iris(registry: &Router, alice: &str) {
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

async fn approve(registry: &Router, version: &str) {
    approve_as(registry, "bob", version).await
}

async fn approve_as(registry: &Router, bob: &str, version: &str) {
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

async fn set_alias(registry: &Router, alias: &str, version: &str) -> StatusCode {
    set_alias_as(registry, "alice", alias, version).await
}

async fn set_alias_as(registry: &Router, alice: &str, alias: &str, version: &str) -> StatusCode {
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

/// The registry's identities: alice submits, bob approves, the server only reads.
const IDENTITIES: &str = r#"
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

fn follow_production(url: &str, token: Option<&str>, http: HttpClient) -> RegistrySource {
    RegistrySource {
        url: url.to_owned(),
        models: vec!["iris=models:/iris@production".parse().unwrap()],
        poll: Duration::from_millis(100),
        token: token.map(str::to_owned),
        http,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_with_tokens_serves_a_server_with_a_token_only() {
    let db = weir_sql::testing::sqlite("runtime_registry_tokens");
    let scratch = TempRepo::new("registry-tokens");
    let authenticator = Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap());
    let (_, registry, url) = registry_on(&db.url, &scratch, authenticator).await;
    let v1_bytes = std::fs::read(test_models().join("iris/1/model.onnx")).unwrap();
    create_iris(&registry, "token:alice-token").await;
    let v1 = register_as(&registry, "token:alice-token", "models/iris/1", &v1_bytes).await;
    approve_as(&registry, "token:bob-token", &v1).await;
    assert_eq!(
        set_alias_as(&registry, "token:alice-token", "production", &v1).await,
        StatusCode::OK
    );

    // With its token the server follows production as usual.
    let served = TempRepo::new("registry-tokens-served");
    let server = start(ServeConfig {
        registry: Some(follow_production(
            &url,
            Some("server-token"),
            HttpClient::default(),
        )),
        ..common::config(&served.dir)
    })
    .await;
    assert_eq!(server.app.store.serving_version("iris"), Some(1));
    assert_eq!(
        post(&server.app, "/v2/models/iris/infer", iris_request())
            .await
            .json()["model_version"],
        "1"
    );

    // Without one (or with a wrong one), nothing is fetched and the reason is the registry's.
    for token in [None, Some("guess")] {
        let refused = TempRepo::new("registry-tokens-refused");
        let source = follow_production(&url, token, HttpClient::default());
        let server = start(ServeConfig {
            registry: Some(source.clone()),
            ..common::config(&refused.dir)
        })
        .await;
        assert_eq!(server.app.store.serving_version("iris"), None);
        assert_ne!(
            post(&server.app, "/v2/models/iris/infer", iris_request())
                .await
                .status,
            StatusCode::OK
        );
        let outcomes = RegistrySync::new(source).sync(&server.app).await;
        let [(
            name,
            Err(SyncError::Answered {
                status, message, ..
            }),
        )] = &outcomes[..]
        else {
            panic!("expected a refusal: {outcomes:?}");
        };
        assert_eq!(
            (name.as_str(), status.as_str()),
            ("iris", "401 Unauthorized")
        );
        assert!(message.contains("credential"), "{message}");
        assert!(
            !std::fs::exists(refused.path("iris")).unwrap(),
            "no file of a refused registry lands in the repository"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_behind_https_is_followed_with_its_ca_only() {
    let db = weir_sql::testing::sqlite("runtime_registry_https");
    let scratch = TempRepo::new("registry-https");
    let (_, registry, url) = registry_on(&db.url, &scratch, Authenticator::anonymous()).await;
    let v1_bytes = std::fs::read(test_models().join("iris/1/model.onnx")).unwrap();
    create_iris(&registry, "alice").await;
    let v1 = register(&registry, "models/iris/1", &v1_bytes).await;
    approve(&registry, &v1).await;
    assert_eq!(
        set_alias(&registry, "production", &v1).await,
        StatusCode::OK
    );

    let certs = weir_http::testing::TestCerts::generate("runtime").unwrap();
    let plain: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let https = format!(
        "https://127.0.0.1:{}",
        weir_http::testing::tls_forwarder(&certs, plain)
            .unwrap()
            .port()
    );

    let served = TempRepo::new("registry-https-served");
    let trusting = HttpClient::with_ca_file(Some(&certs.ca)).unwrap();
    let server = start(ServeConfig {
        registry: Some(follow_production(&https, None, trusting)),
        ..common::config(&served.dir)
    })
    .await;
    assert_eq!(server.app.store.serving_version("iris"), Some(1));

    let untrusting = TempRepo::new("registry-https-untrusted");
    let source = follow_production(&https, None, HttpClient::default());
    let server = start(ServeConfig {
        registry: Some(source.clone()),
        ..common::config(&untrusting.dir)
    })
    .await;
    assert_eq!(server.app.store.serving_version("iris"), None);
    let outcomes = RegistrySync::new(source).sync(&server.app).await;
    let [(_, Err(SyncError::Unreachable { reason, .. }))] = &outcomes[..] else {
        panic!("expected an unverified registry: {outcomes:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
}

/// A version with a model and a 6 MiB file in a subfolder: streamed to disk, every byte where
/// the registry had it, loaded, and no download folder left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_is_streamed_to_disk_and_loaded() {
    let db = weir_sql::testing::sqlite("runtime_registry_streamed");
    let scratch = TempRepo::new("registry-streamed");
    let (_, registry, url) = registry_on(&db.url, &scratch, Authenticator::anonymous()).await;
    let weights: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let put = "/api/2.0/mlflow-artifacts/artifacts/models/iris/1/extra/weights.bin";
    assert_eq!(
        registry_call(&registry, "alice", "PUT", put, weights.clone())
            .await
            .0,
        StatusCode::OK
    );
    let v1_bytes = std::fs::read(test_models().join("iris/1/model.onnx")).unwrap();
    create_iris(&registry, "alice").await;
    let v1 = register(&registry, "models/iris/1", &v1_bytes).await;
    approve(&registry, &v1).await;
    assert_eq!(
        set_alias(&registry, "production", &v1).await,
        StatusCode::OK
    );

    let served = TempRepo::new("registry-streamed-served");
    let server = start(ServeConfig {
        registry: Some(follow_production(&url, None, HttpClient::default())),
        ..common::config(&served.dir)
    })
    .await;
    assert_eq!(
        server.app.store.serving_version("iris"),
        Some(1),
        "{:?}",
        index(&server.app).await
    );
    assert_eq!(
        post(&server.app, "/v2/models/iris/infer", iris_request())
            .await
            .json()["model_version"],
        "1"
    );
    assert!(
        std::fs::read(served.path("iris/1/extra/weights.bin")).unwrap() == weights,
        "the streamed file differs from the uploaded one"
    );
    assert_eq!(
        std::fs::read(served.path("iris/1/model.onnx")).unwrap(),
        v1_bytes
    );
    let leftovers: Vec<String> = std::fs::read_dir(&served.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".incoming"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A registry that resolves a version and then sends a few bytes of its file and nothing more:
/// the download is cut off at its deadline, nothing lands in the repository, nothing serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_download_is_cut_off_at_its_deadline() {
    use tokio_stream::StreamExt;
    let resolved = json!({
        "name": "iris", "version": "1", "source": "s", "artifact_path": "models/iris/1",
        "files": ["model.onnx"], "sha256": "00", "approved": true,
        "approval": {"required_approvals": 1, "approved_by": ["bob"], "rejected_by": []},
    });
    let stalling = Router::new()
        .route(
            "/api/2.0/weir/resolve",
            axum::routing::get(move || {
                let resolved = resolved.to_string();
                async move { resolved }
            }),
        )
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            axum::routing::get(|| async {
                let first = tokio_stream::iter(vec![Ok::<_, std::io::Error>(
                    bytes::Bytes::from_static(b"the first bytes"),
                )]);
                Body::from_stream(first.chain(tokio_stream::pending()))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, stalling).await });

    let served = TempRepo::new("registry-stalled-served");
    let server = start(common::config(&served.dir)).await;
    let source = follow_production(&url, None, HttpClient::default());
    let outcomes = RegistrySync::new(source)
        .with_download_deadline(Duration::from_secs(2))
        .sync(&server.app)
        .await;
    let [(_, Err(SyncError::Unreachable { reason, .. }))] = &outcomes[..] else {
        panic!("expected the download to be cut off: {outcomes:?}");
    };
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(server.app.store.serving_version("iris"), None);
    let entries: Vec<String> = std::fs::read_dir(&served.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries
            .iter()
            .any(|name| name == "iris" || name.starts_with(".incoming")),
        "{entries:?}"
    );
}
