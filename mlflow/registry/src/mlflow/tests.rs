use super::*;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn with_identities_configured_writes_need_a_token_and_name_its_user() {
    let root = std::env::temp_dir().join(format!("weir-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let registry = Arc::new(Registry {
        store: Store::open(&format!("sqlite://{}", root.join("r.db").display())).unwrap(),
        artifacts: ArtifactStore::open(&root.join("artifacts")).unwrap(),
        sources: None,
    });
    let identities =
        weir_mlflow_wire::Identities::parse("[tokens]\n\"s3cret\" = \"alice\"\n").unwrap();
    let app = router(
        registry.clone(),
        weir_mlflow_wire::Authenticator::with_identities(identities),
    );
    let create = |token: Option<&str>| {
        let mut request = Request::post("/api/2.0/mlflow/registered-models/create");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::from(r#"{"name": "m"}"#)).unwrap()
    };
    let anonymous = app.clone().oneshot(create(None)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.clone().oneshot(create(Some("guess"))).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let alice = app.clone().oneshot(create(Some("s3cret"))).await.unwrap();
    assert_eq!(alice.status(), StatusCode::OK);
    assert_eq!(
        registry.store.audit(Some("m"), None, None, 10).unwrap()[0].user,
        "alice"
    );
}

/// Uploads stream to disk under the store's limit: within it the bytes come back whole with
/// their length; past it (no Content-Length to refuse early) the answer is 413 and neither
/// the file nor a temporary one is left.
#[tokio::test]
async fn artifact_uploads_stream_under_the_store_limit() {
    use http_body_util::BodyExt;
    let root = std::env::temp_dir().join(format!("weir-stream-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let registry = Arc::new(Registry {
        store: Store::open(&format!("sqlite://{}", root.join("r.db").display())).unwrap(),
        artifacts: ArtifactStore::open(&root.join("artifacts"))
            .unwrap()
            .with_max_file_bytes(8),
        sources: None,
    });
    let app = router(registry, weir_mlflow_wire::Authenticator::anonymous());
    let put = |path: &str, body: &'static str| {
        Request::put(format!("/api/2.0/mlflow-artifacts/artifacts/{path}"))
            .header("x-weir-user", "alice")
            .body(Body::from(body))
            .unwrap()
    };
    let small = app
        .clone()
        .oneshot(put("m/a.bin", "12345678"))
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    let get = Request::get("/api/2.0/mlflow-artifacts/artifacts/m/a.bin")
        .header("x-weir-user", "alice")
        .body(Body::empty())
        .unwrap();
    let answer = app.clone().oneshot(get).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_LENGTH], "8");
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"12345678");

    let big = app
        .clone()
        .oneshot(put("m/b.bin", "123456789"))
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = big.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error_code"], "RESOURCE_EXHAUSTED");
    let left: Vec<String> = std::fs::read_dir(root.join("artifacts/m"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["a.bin"], "a refused upload left files behind");

    let declared = Request::put("/api/2.0/mlflow-artifacts/artifacts/m/c.bin")
        .header("x-weir-user", "alice")
        .header(header::CONTENT_LENGTH, "9")
        .body(Body::from("123456789"))
        .unwrap();
    let declared = app.clone().oneshot(declared).await.unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reserved = app
        .clone()
        .oneshot(put(".weir/blobs/sha256/x", "1"))
        .await
        .unwrap();
    assert_eq!(reserved.status(), StatusCode::FORBIDDEN);
}
