//! MLflow's multipart uploads through the registry's API, on each artifact store, as the mlflow
//! client drives them (`mlflow/store/artifact/http_artifact_repo.py`): `mpu/create` with the
//! local file's path and a part count, a `PUT` of each part to the URL it was given with the
//! headers it was given (and no other credentials), then `mpu/complete` with each part's ETag;
//! or `mpu/abort`. Also ranged downloads, which large files are fetched with.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_mlflow_wire::Authenticator;

mod support;

use support::artifacts::{Harness, ARTIFACTS};

const MPU: &str = "/api/2.0/mlflow-artifacts/mpu";

/// Deterministic bytes that are not one repeated pattern (a xorshift stream).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A request as the client sends it: `headers` only (no `X-Weir-User` of the harness).
async fn send(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.test:5000")
        .header("content-length", body.len());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let app = weir_registry::router(h.registry.clone(), Authenticator::anonymous());
    let response = app
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

fn caller() -> Vec<(String, String)> {
    vec![("x-weir-user".to_owned(), "alice".to_owned())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_arrives_in_parts_and_is_whole_after_completion() {
    for backend in support::backends::each() {
        let h = Harness::on("mpu", backend);
        // Two parts: S3 wants every part but the last to be at least 5 MiB.
        let first = noise(5 << 20);
        let second = noise(1 << 20);
        let folder = "1/run/artifacts/model";
        let (status, _, created) = send(
            &h,
            "POST",
            &format!("{MPU}/create/{folder}"),
            &caller(),
            json!({"path": "/home/alice/big model.bin", "num_parts": 2})
                .to_string()
                .into_bytes(),
        )
        .await;
        let created: Value = serde_json::from_slice(&created).unwrap();
        assert_eq!(status, StatusCode::OK, "{backend:?}: {created}");
        let upload_id = created["upload_id"].as_str().unwrap().to_owned();
        let credentials = created["credentials"].as_array().unwrap();
        assert_eq!(credentials.len(), 2);
        assert_eq!(credentials[1]["part_number"], 2);
        // The part URLs point back at weir, never at the bucket, and carry the caller.
        let url = credentials[0]["url"].as_str().unwrap();
        assert!(
            url.starts_with(
                "http://registry.test:5000/api/2.0/mlflow-artifacts/mpu/part/1/run/artifacts/model/big%20model.bin?upload_id="
            ),
            "{url}"
        );
        assert_eq!(credentials[0]["headers"], json!({"x-weir-user": "alice"}));

        let mut parts = Vec::new();
        for (credential, bytes) in credentials.iter().zip([&first, &second]).rev() {
            let url = credential["url"].as_str().unwrap();
            let path = url.trim_start_matches("http://registry.test:5000");
            let headers: Vec<(String, String)> = credential["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let (status, answer, body) = send(&h, "PUT", path, &headers, bytes.clone()).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{backend:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let etag = answer["etag"].to_str().unwrap().to_owned();
            parts.push(json!({"part_number": credential["part_number"], "etag": etag, "url": url}));
        }
        let target = format!("{folder}/big model.bin");
        let encoded = target.replace(' ', "%20");
        assert_eq!(
            h.get(&encoded).await.0,
            StatusCode::NOT_FOUND,
            "{backend:?}: visible before completion"
        );
        let (status, _, body) = send(
            &h,
            "POST",
            &format!("{MPU}/complete/{folder}"),
            &caller(),
            json!({"path": "/home/alice/big model.bin", "upload_id": upload_id, "parts": parts})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{backend:?}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, bytes) = h.get(&encoded).await;
        assert_eq!(status, StatusCode::OK);
        let mut whole = first.clone();
        whole.extend_from_slice(&second);
        assert!(
            bytes == whole,
            "{backend:?}: the file is not the parts in order"
        );
        let audit = h
            .registry
            .store
            .audit(None, Some("artifact.put"), None, 10)
            .unwrap();
        assert_eq!(audit[0].after, target);
        assert_eq!(audit[0].user, "alice");

        // A ranged read of the completed file: 206 with exactly those bytes.
        let (status, answer, body) = send(
            &h,
            "GET",
            &format!("{ARTIFACTS}/{encoded}"),
            &[("range".to_owned(), "bytes=5242870-5242889".to_owned())],
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{backend:?}");
        assert_eq!(body, whole[5_242_870..5_242_890]);
        assert_eq!(
            answer["content-range"].to_str().unwrap(),
            format!("bytes 5242870-5242889/{}", whole.len())
        );
        let (status, answer, _) = send(
            &h,
            "GET",
            &format!("{ARTIFACTS}/{encoded}"),
            &[("range".to_owned(), format!("bytes={}-", whole.len()))],
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            answer["content-range"].to_str().unwrap(),
            format!("bytes */{}", whole.len())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_refused_uploads_leave_nothing() {
    for backend in support::backends::each() {
        let h = Harness::on("mpu-refusals", backend);
        let create = |folder: &str| {
            let h = &h;
            let uri = format!("{MPU}/create/{folder}");
            async move {
                let (status, _, body) = send(
                    h,
                    "POST",
                    &uri,
                    &caller(),
                    json!({"path": "f.bin", "num_parts": 1})
                        .to_string()
                        .into_bytes(),
                )
                .await;
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            }
        };
        let (status, created) = create("runs/1").await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let upload_id = created["upload_id"].as_str().unwrap().to_owned();
        let url = created["credentials"][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let part = url.trim_start_matches("http://registry.test:5000");
        let (status, _, _) = send(&h, "PUT", part, &caller(), b"dropped".to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{backend:?}");
        let (status, _, _) = send(
            &h,
            "POST",
            &format!("{MPU}/abort/runs/1"),
            &caller(),
            json!({"path": "f.bin", "upload_id": upload_id})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}");
        assert_eq!(h.get("runs/1/f.bin").await.0, StatusCode::NOT_FOUND);
        let (status, _, _) = send(
            &h,
            "POST",
            &format!("{MPU}/complete/runs/1"),
            &caller(),
            json!({"path": "f.bin", "upload_id": upload_id, "parts": [{"part_number": 1, "etag": "x"}]})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert!(
            status.is_client_error(),
            "{backend:?}: completing an aborted upload: {status}"
        );
        assert_eq!(h.get("runs/1/f.bin").await.0, StatusCode::NOT_FOUND);

        // The versions' storage and paths out of the store are refused as for any upload.
        let (status, body) = create(".weir/versions/iris/1").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend:?}: {body}");
        let (status, _) = create("a/%2e%2e/%2e%2e").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{backend:?}");
        let (status, _, _) = send(
            &h,
            "POST",
            &format!("{MPU}/create/runs/1"),
            &caller(),
            json!({"path": "f.bin", "num_parts": 10_001})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // An id nobody was given reaches no upload.
        let (status, _, _) = send(
            &h,
            "PUT",
            &format!(
                "{MPU}/part/runs/1/f.bin?upload_id=0123456789abcdef0123456789abcdef&part_number=1"
            ),
            &caller(),
            b"x".to_vec(),
        )
        .await;
        assert!(status.is_client_error(), "{backend:?}: {status}");
        assert!(h.registry.artifacts.files("").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn with_identities_the_part_urls_need_the_callers_token() {
    let h = Harness::new("mpu-tokens");
    let identities = weir_mlflow_wire::Identities::parse(
        "[[user]]\nname = \"sub\"\ntoken = \"s3cret-sub\"\nroles = [\"submitter\"]\n[[user]]\nname = \"ro\"\ntoken = \"s3cret-ro\"\nroles = [\"reader\"]\n",
    )
    .unwrap();
    let app = weir_registry::router(
        h.registry.clone(),
        Authenticator::with_identities(identities),
    );
    let call = |method: &str, uri: &str, token: Option<&str>, body: Vec<u8>| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let app = app.clone();
        let request = request.body(Body::from(body)).unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let create = json!({"path": "f.bin", "num_parts": 1})
        .to_string()
        .into_bytes();
    let (status, _) = call(
        "POST",
        &format!("{MPU}/create/runs"),
        Some("s3cret-ro"),
        create.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a reader cannot upload");
    let (status, created) = call(
        "POST",
        &format!("{MPU}/create/runs"),
        Some("s3cret-sub"),
        create,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created["credentials"][0]["headers"],
        json!({"authorization": "Bearer s3cret-sub"})
    );
    let part = created["credentials"][0]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://registry.test")
        .to_owned();
    let (status, _) = call("PUT", &part, None, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a part without the token");
    let (status, _) = call("PUT", &part, Some("s3cret-ro"), b"x".to_vec()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a part with a reader's token"
    );
    let (status, _) = call("PUT", &part, Some("s3cret-sub"), b"x".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
}

/// Parts S3 refuses at completion (an ETag nobody got; on AWS also a part under 5 MiB before
/// the last) are the client's mistake: 400, not a 5xx the mlflow client would retry. Real S3
/// only (the in-memory store checks no ETags).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_the_bucket_refuses_are_a_client_mistake() {
    if support::backends::s3_bucket().is_none() {
        return;
    }
    let h = Harness::on("mpu-small", support::backends::Backend::Bucket);
    let (_, _, created) = send(
        &h,
        "POST",
        &format!("{MPU}/create/runs"),
        &caller(),
        json!({"path": "f.bin", "num_parts": 2})
            .to_string()
            .into_bytes(),
    )
    .await;
    let created: Value = serde_json::from_slice(&created).unwrap();
    let upload_id = created["upload_id"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    for credential in created["credentials"].as_array().unwrap() {
        let url = credential["url"].as_str().unwrap();
        let path = url.trim_start_matches("http://registry.test:5000");
        let (status, answer, _) = send(&h, "PUT", path, &caller(), b"tiny".to_vec()).await;
        assert_eq!(status, StatusCode::OK);
        parts.push(json!({"part_number": credential["part_number"], "etag": answer["etag"].to_str().unwrap()}));
    }
    for (listed, expected) in [
        (
            json!([parts[0], {"part_number": 2, "etag": "\"0000\""}]),
            StatusCode::BAD_REQUEST,
        ),
        (json!(parts), StatusCode::OK),
    ] {
        let (status, _, body) = send(
            &h,
            "POST",
            &format!("{MPU}/complete/runs"),
            &caller(),
            json!({"path": "f.bin", "upload_id": upload_id, "parts": listed})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(h.get("runs/f.bin").await.1, b"tinytiny");
}
