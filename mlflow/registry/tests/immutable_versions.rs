//! Registered versions are immutable: their files are copied into content-addressed storage at
//! registration and served from there, whatever is written to their source later (the artifact
//! API's refusals to touch the versions' storage are in `artifact_refusals.rs`). Driven through
//! the registry's router, as clients call it.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::http::StatusCode;
use serde_json::{json, Value};

mod support;

use support::artifacts::{digest, owned, query, Harness, ARTIFACTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_keeps_the_bytes_it_was_registered_with() {
    for backend in support::backends::each() {
        let h = Harness::on("keeps", backend);
        let files_a: &[(&str, &[u8])] = &[
            ("MLmodel", b"flavors: {onnx: {}}"),
            ("data/model.onnx", b"weights A"),
        ];
        for (path, bytes) in files_a {
            h.put(&format!("1/run/artifacts/model/{path}"), bytes).await;
        }
        h.create_model("iris").await;
        let version = h
            .register("iris", "mlflow-artifacts:/1/run/artifacts/model")
            .await;
        assert_eq!(version, "1");

        // Overwrite the source with B: an existing file changes, a new one appears.
        h.put("1/run/artifacts/model/data/model.onnx", b"weights B")
            .await;
        h.put("1/run/artifacts/model/extra.txt", b"planted").await;

        let resolved = h.resolve("iris", "1").await;
        assert_eq!(resolved["artifact_path"], ".weir/versions/iris/1");
        assert_eq!(resolved["files"], json!(["MLmodel", "data/model.onnx"]));
        assert_eq!(
            resolved["sha256"].as_str().unwrap(),
            digest(&owned(files_a))
        );
        assert_eq!(
            h.download_like_the_runtime("iris", "1").await,
            owned(files_a)
        );
        // The model version's own record carries the same digest the runtime checks.
        assert_eq!(
            h.registry.store.artifact_sha256("iris", "1").unwrap(),
            digest(&owned(files_a))
        );

        // The mlflow client's path: get-download-uri, then list, then download each file.
        let uri = h
            .json(
                "GET",
                "/api/2.0/mlflow/model-versions/get-download-uri?name=iris&version=1",
                Value::Null,
            )
            .await;
        assert_eq!(
            uri["artifact_uri"],
            "mlflow-artifacts:/.weir/versions/iris/1"
        );
        let listed = h
            .json(
                "GET",
                &format!("{ARTIFACTS}?path={}", query(".weir/versions/iris/1")),
                Value::Null,
            )
            .await;
        assert_eq!(
            listed["files"],
            json!([
                {"path": "MLmodel", "is_dir": false, "file_size": 19},
                {"path": "data", "is_dir": true},
            ])
        );
        let listed = h
            .json(
                "GET",
                &format!("{ARTIFACTS}?path={}", query(".weir/versions/iris/1/data")),
                Value::Null,
            )
            .await;
        assert_eq!(
            listed["files"],
            json!([{"path": "model.onnx", "is_dir": false, "file_size": 9}])
        );
        assert_eq!(
            h.get(".weir/versions/iris/1/data/model.onnx").await,
            (StatusCode::OK, b"weights A".to_vec())
        );
        assert_eq!(
            h.get(".weir/versions/iris/1/extra.txt").await.0,
            StatusCode::NOT_FOUND
        );

        // Deleting the source folder leaves the version whole.
        let (status, _) = h
            .call(
                "DELETE",
                &format!("{ARTIFACTS}/1/run/artifacts/model"),
                Vec::new(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            h.get("1/run/artifacts/model/MLmodel").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            h.download_like_the_runtime("iris", "1").await,
            owned(files_a)
        );

        // Every artifact write and delete is in the audit log, with who and which path.
        let audit = h.registry.store.audit(None, None, None, 100).unwrap();
        let artifact_events: Vec<(&str, &str, &str)> = audit
            .iter()
            .filter(|e| e.action.starts_with("artifact."))
            .map(|e| (e.user.as_str(), e.action.as_str(), e.after.as_str()))
            .collect();
        assert_eq!(
            artifact_events,
            [
                ("alice", "artifact.delete", "1/run/artifacts/model"),
                ("alice", "artifact.put", "1/run/artifacts/model/extra.txt"),
                (
                    "alice",
                    "artifact.put",
                    "1/run/artifacts/model/data/model.onnx"
                ),
                (
                    "alice",
                    "artifact.put",
                    "1/run/artifacts/model/data/model.onnx"
                ),
                ("alice", "artifact.put", "1/run/artifacts/model/MLmodel"),
            ]
        );
        assert!(audit
            .iter()
            .filter(|e| e.action.starts_with("artifact."))
            .all(|e| e.model.is_empty() && e.version.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_need_encoding_and_single_file_sources_download() {
    for backend in support::backends::each() {
        let h = Harness::on("names", backend);
        h.put("runs/model.onnx", b"single").await;
        h.create_model("my model").await;
        let version = h
            .register("my model", "mlflow-artifacts:/runs/model.onnx")
            .await;
        let resolved = h.resolve("my model", &version).await;
        assert_eq!(resolved["artifact_path"], ".weir/versions/my%20model/1");
        assert_eq!(resolved["files"], json!(["model.onnx"]));
        assert_eq!(
            h.download_like_the_runtime("my model", &version).await,
            owned(&[("model.onnx", b"single")])
        );
        // The mlflow client passes the download URI's path through the query string as it got it.
        let listed = h
            .json(
                "GET",
                &format!("{ARTIFACTS}?path={}", query(".weir/versions/my%20model/1")),
                Value::Null,
            )
            .await;
        assert_eq!(listed["files"][0]["path"], "model.onnx");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_versions_share_one_blob_and_outlive_each_other() {
    for backend in support::backends::each() {
        let h = Harness::on("dedup", backend);
        let files: &[(&str, &[u8])] =
            &[("MLmodel", b"flavors: {}"), ("model.onnx", b"same weights")];
        for (path, bytes) in files {
            h.put(&format!("first/{path}"), bytes).await;
            h.put(&format!("second/{path}"), bytes).await;
        }
        h.create_model("a").await;
        h.create_model("b").await;
        h.register("a", "mlflow-artifacts:/first").await;
        h.register("a", "mlflow-artifacts:/second").await;
        h.register("b", "mlflow-artifacts:/first").await;
        assert_eq!(
            h.blob_count().await,
            2,
            "three versions of the same two files keep two blobs"
        );
        assert_eq!(
            h.registry.store.version_files("a", "1").unwrap(),
            h.registry.store.version_files("b", "1").unwrap()
        );

        h.json(
            "DELETE",
            "/api/2.0/mlflow/model-versions/delete",
            json!({ "name": "a", "version": "1" }),
        )
        .await;
        assert_eq!(h.download_like_the_runtime("a", "2").await, owned(files));
        h.json(
            "DELETE",
            "/api/2.0/mlflow/registered-models/delete",
            json!({ "name": "a" }),
        )
        .await;
        assert_eq!(h.download_like_the_runtime("b", "1").await, owned(files));
        assert_eq!(
            h.get(".weir/versions/a/2/model.onnx").await.0,
            StatusCode::NOT_FOUND,
            "a deleted version is gone from the virtual view"
        );

        // A rename carries the recorded files along.
        h.json(
            "POST",
            "/api/2.0/mlflow/registered-models/rename",
            json!({ "name": "b", "new_name": "c" }),
        )
        .await;
        assert_eq!(h.download_like_the_runtime("c", "1").await, owned(files));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_registered_before_immutable_storage_keep_their_source_path() {
    for backend in support::backends::each() {
        let h = Harness::on("legacy", backend);
        h.put("old/model.onnx", b"old bytes").await;
        h.create_model("old").await;
        // A version as an older registry recorded it: a digest, but no file list.
        let legacy = weir_registry::store::NewVersion {
            source: "mlflow-artifacts:/old".to_owned(),
            sha256: digest(&owned(&[("model.onnx", b"old bytes")])),
            ..Default::default()
        };
        h.registry
            .store
            .create_model_version("alice", "old", &legacy)
            .unwrap();
        let resolved = h.resolve("old", "1").await;
        assert_eq!(resolved["artifact_path"], "old");
        assert_eq!(
            h.download_like_the_runtime("old", "1").await,
            owned(&[("model.onnx", b"old bytes")])
        );
        let uri = h
            .json(
                "GET",
                "/api/2.0/mlflow/model-versions/get-download-uri?name=old&version=1",
                Value::Null,
            )
            .await;
        assert_eq!(uri["artifact_uri"], "mlflow-artifacts:/old");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_changed_on_disk_under_the_registry_still_fail_the_digest() {
    let h = Harness::new("tampered");
    h.put("m/model.onnx", b"registered").await;
    h.create_model("m").await;
    h.register("m", "mlflow-artifacts:/m").await;
    let blob = &h.registry.store.version_files("m", "1").unwrap()[0].sha256;
    std::fs::write(
        h.artifact_root()
            .unwrap()
            .join(".weir/blobs/sha256")
            .join(blob),
        b"swapped",
    )
    .unwrap();
    // The registry serves what is on disk; the digest recorded at registration (what the
    // runtime checks) no longer matches it.
    let resolved = h.resolve("m", "1").await;
    let (status, bytes) = h.get(".weir/versions/m/1/model.onnx").await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"swapped"[..])
    );
    assert_ne!(
        resolved["sha256"].as_str().unwrap(),
        digest(&owned(&[("model.onnx", b"swapped")]))
    );
    assert_eq!(
        resolved["sha256"].as_str().unwrap(),
        digest(&owned(&[("model.onnx", b"registered")]))
    );
}
