//! Registered versions are immutable: their files are copied into content-addressed storage at
//! registration and served from there, and the artifact API cannot write or delete the store's
//! root or the versions' storage. Driven through the registry's router, as clients call it.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use weir_mlflow_wire::Authenticator;
use weir_registry::artifacts::ArtifactStore;
use weir_registry::{router, Registry, Store};

const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

struct Harness {
    registry: Arc<Registry>,
    root: PathBuf,
}

impl Harness {
    fn new(tag: &str) -> Harness {
        let root =
            std::env::temp_dir().join(format!("weir-immutable-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let registry = Arc::new(Registry {
            store: Store::open(&format!("sqlite://{}", root.join("registry.db").display()))
                .unwrap(),
            artifacts: ArtifactStore::open(&root.join("artifacts")).unwrap(),
            sources: None,
        });
        Harness { registry, root }
    }

    fn artifact_root(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    async fn call(&self, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-weir-user", "alice")
            .body(Body::from(body))
            .unwrap();
        // No identities: the caller is who X-Weir-User says (the local default); who may call
        // what is the access layer's business, tested with it.
        let app = router(self.registry.clone(), Authenticator::anonymous());
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, bytes) = self.call(method, uri, body.to_string().into_bytes()).await;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {answer}");
        answer
    }

    async fn put(&self, path: &str, bytes: &[u8]) {
        let (status, answer) = self
            .call("PUT", &format!("{ARTIFACTS}/{path}"), bytes.to_vec())
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "PUT {path}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        self.call("GET", &format!("{ARTIFACTS}/{path}"), Vec::new())
            .await
    }

    async fn register(&self, name: &str, source: &str) -> String {
        let created = self
            .json(
                "POST",
                "/api/2.0/mlflow/model-versions/create",
                json!({ "name": name, "source": source }),
            )
            .await;
        created["model_version"]["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn create_model(&self, name: &str) {
        self.json(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({ "name": name }),
        )
        .await;
    }

    async fn resolve(&self, name: &str, version: &str) -> Value {
        self.json(
            "GET",
            &format!(
                "/api/2.0/weir/resolve?name={}&version={version}",
                query(name)
            ),
            Value::Null,
        )
        .await
    }

    /// Downloads a version as the runtime does: the files `resolve` lists, under its
    /// `artifact_path`, checked against its digest.
    async fn download_like_the_runtime(&self, name: &str, version: &str) -> Vec<(String, Vec<u8>)> {
        let resolved = self.resolve(name, version).await;
        let artifact_path = resolved["artifact_path"].as_str().unwrap().to_owned();
        let mut files = Vec::new();
        for file in resolved["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            let (status, bytes) = self.get(&format!("{artifact_path}/{file}")).await;
            assert_eq!(status, StatusCode::OK, "{artifact_path}/{file}");
            files.push((file.to_owned(), bytes));
        }
        assert_eq!(
            resolved["sha256"].as_str().unwrap(),
            digest(&files),
            "the downloaded files hash to the recorded digest"
        );
        files
    }

    fn blob_count(&self) -> usize {
        std::fs::read_dir(self.artifact_root().join(".weir/blobs/sha256"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

fn digest(files: &[(String, Vec<u8>)]) -> String {
    weir_models::digest::artifact_digest(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
}

/// Percent-encodes a query value (enough for the names and paths used here).
fn query(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('/', "%2F")
}

fn owned(files: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
        .collect()
}

#[tokio::test]
async fn a_version_keeps_the_bytes_it_was_registered_with() {
    let h = Harness::new("keeps");
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

#[tokio::test]
async fn names_that_need_encoding_and_single_file_sources_download() {
    let h = Harness::new("names");
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

#[tokio::test]
async fn the_root_and_the_version_storage_cannot_be_written_or_deleted() {
    let h = Harness::new("refusals");
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
    assert!(h
        .artifact_root()
        .join(".weir/blobs/sha256")
        .join(&blob)
        .is_file());
    assert!(!h.artifact_root().join(".weir/new").exists());
    assert!(!h.artifact_root().join(".WEIR").exists());
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

#[tokio::test]
async fn identical_versions_share_one_blob_and_outlive_each_other() {
    let h = Harness::new("dedup");
    let files: &[(&str, &[u8])] = &[("MLmodel", b"flavors: {}"), ("model.onnx", b"same weights")];
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
        h.blob_count(),
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

#[tokio::test]
async fn versions_registered_before_immutable_storage_keep_their_source_path() {
    let h = Harness::new("legacy");
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

#[tokio::test]
async fn bytes_changed_on_disk_under_the_registry_still_fail_the_digest() {
    let h = Harness::new("tampered");
    h.put("m/model.onnx", b"registered").await;
    h.create_model("m").await;
    h.register("m", "mlflow-artifacts:/m").await;
    let blob = &h.registry.store.version_files("m", "1").unwrap()[0].sha256;
    std::fs::write(
        h.artifact_root().join(".weir/blobs/sha256").join(blob),
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
