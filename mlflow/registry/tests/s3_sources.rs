//! `s3://BUCKET/KEY` registration sources, against the real S3 server of `scripts/s3.sh`
//! (skipped without `WEIR_TEST_S3_BUCKET` unless `WEIR_REQUIRE_S3=1`): the object, or the
//! folder of objects, is copied into the registry's blob store (on either backend) and served
//! from there whatever happens to the source; one the registry cannot read is refused with 400
//! saying why.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use axum::http::StatusCode;
use serde_json::{json, Value};
use weir_registry::artifacts::ArtifactStore;

mod support;

use support::artifacts::{digest, owned, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sources_are_copied_into_the_registry_and_unreadable_ones_refused() {
    let Some(bucket) = support::backends::s3_bucket() else {
        return;
    };
    let prefix = support::backends::unique_prefix("s3-sources");
    let source = ArtifactStore::on_bucket(
        weir_registry::artifacts::bucket::config::open(&bucket, &prefix).unwrap(),
    );
    let files: &[(&str, &[u8])] = &[
        ("MLmodel", b"flavors: {onnx: {}}"),
        ("model.onnx", b"\x08\x01onnx weights"),
    ];
    for (path, bytes) in files {
        source.put(&format!("model/{path}"), bytes).await.unwrap();
    }
    for backend in support::backends::each() {
        let h = Harness::on("s3-sources", backend);
        h.create_model("iris").await;
        let version = h
            .register("iris", &format!("s3://{bucket}/{prefix}/model"))
            .await;
        let resolved = h.resolve("iris", &version).await;
        assert_eq!(
            resolved["files"],
            json!(["MLmodel", "model.onnx"]),
            "{backend:?}"
        );
        assert_eq!(resolved["sha256"].as_str().unwrap(), digest(&owned(files)));
        assert_eq!(
            h.download_like_the_runtime("iris", &version).await,
            owned(files)
        );
        // One object registers as one file under its base name.
        let single = h
            .register("iris", &format!("s3://{bucket}/{prefix}/model/model.onnx"))
            .await;
        assert_eq!(
            h.resolve("iris", &single).await["files"],
            json!(["model.onnx"])
        );

        // What the registry cannot read is refused, saying why.
        for (bad, why) in [
            (format!("s3://{bucket}/{prefix}/nothing"), "no object"),
            (format!("s3://{bucket}"), "whole bucket"),
            (
                format!("s3://weir-no-such-bucket-{}/model", std::process::id()),
                "not found",
            ),
        ] {
            let (status, body) = h
                .call(
                    "POST",
                    "/api/2.0/mlflow/model-versions/create",
                    json!({"name": "iris", "source": bad})
                        .to_string()
                        .into_bytes(),
                )
                .await;
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{backend:?} {bad}: {answer}"
            );
            assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
            let message = answer["message"].as_str().unwrap();
            assert!(message.contains(&bad), "{message}");
            assert!(message.to_lowercase().contains(why), "{bad}: {message}");
            assert!(
                !message.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default()),
                "the secret key in an answer"
            );
        }
    }
    // The source changes; the versions do not.
    source
        .put("model/model.onnx", b"replaced weights")
        .await
        .unwrap();
    let h = Harness::on("s3-sources-after", support::backends::Backend::Folder);
    h.create_model("iris").await;
    let version = h
        .register("iris", &format!("s3://{bucket}/{prefix}/model"))
        .await;
    assert_ne!(
        h.resolve("iris", &version).await["sha256"]
            .as_str()
            .unwrap(),
        digest(&owned(files)),
        "a new registration copies the source as it is now"
    );
}
