//! The artifact API cannot write or delete the store's root or the registered versions' storage,
//! however the path is spelled, nor reach outside the root; refused requests change nothing.
//! Driven through the registry's router, as clients call it.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::http::StatusCode;
use serde_json::{json, Value};

mod support;

use support::artifacts::{owned, query, Harness, ARTIFACTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_and_the_version_storage_cannot_be_written_or_deleted() {
    for backend in support::backends::each() {
        let h = Harness::on("refusals", backend);
        h.put("keep/model.onnx", b"precious").await;
        h.create_model("iris").await;
        h.register("iris", "mlflow-artifacts:/keep").await;
        let blob = h.registry.store.version_files("iris", "1").unwrap()[0]
            .sha256
            .clone();

        // The whole store: each spelling of the root is refused with INVALID_PARAMETER_VALUE.
        for root in [".", "./.", "/", "%2e", "a/..", "a/%2e%2e", "./", "%2F"] {
            for method in ["DELETE", "PUT"] {
                let (status, body) = h
                    .call(method, &format!("{ARTIFACTS}/{root}"), b"x".to_vec())
                    .await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {root:?}");
                let error: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    error["error_code"], "INVALID_PARAMETER_VALUE",
                    "{method} {root:?}"
                );
            }
        }
        // An empty path matches no artifact route at all.
        let (status, _) = h.call("DELETE", &format!("{ARTIFACTS}/"), Vec::new()).await;
        assert!(!status.is_success(), "DELETE with an empty path: {status}");
        let (status, _) = h.call("DELETE", ARTIFACTS, Vec::new()).await;
        assert!(
            !status.is_success(),
            "DELETE on the listing endpoint: {status}"
        );

        // The versions' storage: refused with PERMISSION_DENIED, whatever the spelling.
        let version_file = ".weir/versions/iris/1/model.onnx".to_owned();
        let blob_file = format!(".weir/blobs/sha256/{blob}");
        for reserved in [
            version_file.as_str(),
            blob_file.as_str(),
            ".weir",
            ".weir/",
            "./.weir/blobs",
            "/.weir/new",
            "%2eweir/new",
            ".WEIR/new",
        ] {
            for method in ["DELETE", "PUT"] {
                let (status, body) = h
                    .call(method, &format!("{ARTIFACTS}/{reserved}"), b"evil".to_vec())
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {reserved:?}");
                let error: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    error["error_code"], "PERMISSION_DENIED",
                    "{method} {reserved:?}"
                );
            }
        }

        // Escapes from the root, plain or encoded, are refused and write nothing outside.
        for escape in [
            "../outside",
            "a/../../outside",
            "%2e%2e/outside",
            "a/%2e%2e/%2e%2e/outside",
            "a%2F..%2F..%2Foutside",
            "%2E%2E%2Foutside",
        ] {
            for method in ["PUT", "DELETE", "GET"] {
                let (status, _) = h
                    .call(method, &format!("{ARTIFACTS}/{escape}"), b"x".to_vec())
                    .await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {escape:?}");
            }
        }
        let (status, _) = h
            .call(
                "GET",
                &format!("{ARTIFACTS}?path={}", query("../..")),
                Vec::new(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!h.root.join("outside").exists());

        // Everything is still there, and no refused request was audited as a change.
        assert_eq!(
            h.get("keep/model.onnx").await,
            (StatusCode::OK, b"precious".to_vec())
        );
        assert_eq!(
            h.download_like_the_runtime("iris", "1").await,
            owned(&[("model.onnx", b"precious")])
        );
        assert_eq!(
            h.registry.artifacts.blobs().await.unwrap(),
            std::slice::from_ref(&blob),
            "{backend:?}"
        );
        if let Some(root) = h.artifact_root() {
            assert!(!root.join(".weir/new").exists());
            assert!(!root.join(".WEIR").exists());
        }
        let changes = h
            .registry
            .store
            .audit(None, Some("artifact.delete"), None, 10)
            .unwrap();
        assert!(changes.is_empty(), "{changes:?}");

        // The root's listing hides the versions' storage; the blobs are not readable as artifacts.
        let listed = h.json("GET", ARTIFACTS, Value::Null).await;
        assert_eq!(listed["files"], json!([{"path": "keep", "is_dir": true}]));
        let listed = h
            .json("GET", &format!("{ARTIFACTS}?path=.weir"), Value::Null)
            .await;
        assert_eq!(listed["files"], json!([]));
        let listed = h
            .json(
                "GET",
                &format!("{ARTIFACTS}?path={}", query(".weir/blobs/sha256")),
                Value::Null,
            )
            .await;
        assert_eq!(listed["files"], json!([]));
        assert_eq!(h.get(&blob_file).await.0, StatusCode::NOT_FOUND);
    }
}
