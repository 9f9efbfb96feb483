//! How registry versions reach the server: only with the registry's token, over HTTPS only
//! with its CA, streamed to disk file by file, and cut off at a deadline when the registry
//! stalls.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;
mod registry_fixture;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use common::{index, post, start, test_models, TempRepo};
use registry_fixture::{
    approve, approve_as, create_iris, follow_production, iris_request, register, register_as,
    registry_call, registry_on, set_alias, set_alias_as, IDENTITIES,
};
use serde_json::json;
use weir_http::HttpClient;
use weir_mlflow_wire::{Authenticator, Identities};
use weir_runtime::registry::{RegistrySync, SyncError};
use weir_runtime::ServeConfig;

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
        let outcomes = RegistrySync::new(source).sync(&server.app.store).await;
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
    let outcomes = RegistrySync::new(source).sync(&server.app.store).await;
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
        .sync(&server.app.store)
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
