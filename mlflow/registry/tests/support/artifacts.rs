//! The client side of the artifact and version endpoints, for the immutable-version tests:
//! uploads, registrations, and downloads done the way the runtime does them.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use weir_registry::Registry;

pub const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// A registry driven as the mlflow client and the runtime drive it, as `alice`.
pub struct Harness {
    pub registry: Arc<Registry>,
    pub root: PathBuf,
}

impl Harness {
    pub fn new(tag: &str) -> Harness {
        Harness::on(tag, super::backends::Backend::Folder)
    }

    /// A harness whose artifacts are on `backend`.
    pub fn on(tag: &str, backend: super::backends::Backend) -> Harness {
        let (registry, root) = super::fresh_on("immutable", tag, backend);
        Harness { registry, root }
    }

    /// The artifact folder, on the folder backend.
    pub fn artifact_root(&self) -> Option<PathBuf> {
        self.registry.artifacts.folder_root().map(PathBuf::from)
    }

    pub async fn call(&self, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        super::call(
            &self.registry,
            super::request(Some("alice"), method, uri, body),
        )
        .await
    }

    pub async fn json(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, bytes) = self.call(method, uri, body.to_string().into_bytes()).await;
        let answer = super::json(&bytes);
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {answer}");
        answer
    }

    pub async fn put(&self, path: &str, bytes: &[u8]) {
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

    pub async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        self.call("GET", &format!("{ARTIFACTS}/{path}"), Vec::new())
            .await
    }

    pub async fn register(&self, name: &str, source: &str) -> String {
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

    pub async fn create_model(&self, name: &str) {
        self.json(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({ "name": name }),
        )
        .await;
    }

    pub async fn resolve(&self, name: &str, version: &str) -> Value {
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
    pub async fn download_like_the_runtime(
        &self,
        name: &str,
        version: &str,
    ) -> Vec<(String, Vec<u8>)> {
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

    pub async fn blob_count(&self) -> usize {
        self.registry.artifacts.blobs().await.unwrap().len()
    }
}

pub fn digest(files: &[(String, Vec<u8>)]) -> String {
    weir_models::digest::artifact_digest(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
}

/// Percent-encodes a query value (enough for the names and paths used here).
pub fn query(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('/', "%2F")
}

pub fn owned(files: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
        .collect()
}
