//! Helpers shared by the runtime's end-to-end tests: the generated model repository, private
//! copies of it with their own configs, and a server driven through its router.

#![allow(dead_code, clippy::unwrap_used)] // each test crate uses a subset; failing set-up should be loud

pub mod panicky;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use weir_runtime::{App, RunningServer, ServeConfig};

/// The repository `scripts/make_models.py` writes (`make setup` does it).
pub fn test_models() -> PathBuf {
    let dir = std::env::var_os("WEIR_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-models"));
    assert!(
        dir.is_dir(),
        "{} is missing: run `make setup` first",
        dir.display()
    );
    dir
}

/// A private model repository, removed when dropped.
pub struct TempRepo {
    pub dir: PathBuf,
}

impl TempRepo {
    /// A fresh folder, unique to this process and call (tests run in parallel threads).
    pub fn new(tag: &str) -> TempRepo {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("weir-test-{tag}-{}-{serial}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempRepo { dir }
    }

    /// Copies `model/version` of the generated repository to `as_model/as_version` here.
    pub fn copy_version(&self, model: &str, version: u64, as_model: &str, as_version: u64) {
        let to = self.dir.join(as_model).join(as_version.to_string());
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(
            test_models()
                .join(model)
                .join(version.to_string())
                .join("model.onnx"),
            to.join("model.onnx"),
        )
        .unwrap();
    }

    pub fn write_config(&self, model: &str, text: &str) {
        std::fs::write(self.dir.join(model).join("config.toml"), text).unwrap();
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn config(repository: &Path) -> ServeConfig {
    ServeConfig::new(repository.to_path_buf(), "127.0.0.1", 0)
}

/// Starts a server and waits until its start-up loading has finished (not until it is ready:
/// tests start servers whose models are refused on purpose).
pub async fn start(config: ServeConfig) -> RunningServer {
    let mut server = RunningServer::start(config).await.unwrap();
    server.wait_loaded().await.unwrap();
    server
}

/// A server on the generated repository (`test_models`) taking bodies up to `max_body_bytes`.
pub async fn start_on_test_models(max_body_bytes: usize) -> RunningServer {
    start(ServeConfig {
        max_body_bytes,
        ..config(&test_models())
    })
    .await
}

/// A V2 request of two iris rows, with an id.
pub fn iris_two_rows() -> Value {
    serde_json::json!({"id": "r1", "inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32",
        "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]})
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON body of an answer that must be 200 (else the test fails showing the body).
    pub fn ok_json(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field"))
            .to_owned()
    }
}

/// One request through the server's router (the whole HTTP stack but the socket).
pub async fn send(app: &Arc<App>, request: Request<Body>) -> Answer {
    let response = weir_runtime::routes::router(app.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn call(app: &Arc<App>, method: Method, uri: &str, body: impl Into<Body>) -> Answer {
    send(
        app,
        Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap(),
    )
    .await
}

pub async fn post(app: &Arc<App>, uri: &str, body: Value) -> Answer {
    call(app, Method::POST, uri, body.to_string()).await
}

pub async fn get(app: &Arc<App>, uri: &str) -> Answer {
    call(app, Method::GET, uri, Body::empty()).await
}

/// Waits (bounded) until `condition` holds: tests wait for states, never for a fixed time.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    for _ in 0..1000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// `POST /v2/repository/index` as (`model/version`, state, reason) rows.
pub async fn index(app: &Arc<App>) -> Vec<(String, String, String)> {
    let rows = post(app, "/v2/repository/index", serde_json::json!({}))
        .await
        .json();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let name = format!(
                "{}/{}",
                row["name"].as_str().unwrap(),
                row["version"].as_str().unwrap_or("")
            );
            (
                name,
                row["state"].as_str().unwrap().to_owned(),
                row["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (bounded) until the server's metrics text contains `needle`.
pub async fn until_metrics(app: &Arc<App>, what: &str, needle: &str) {
    until(what, || {
        let app = app.clone();
        async move {
            String::from_utf8(get(&app, "/metrics").await.body)
                .unwrap()
                .contains(needle)
        }
    })
    .await;
}

/// Clients that keep sending `body` to `uri` until `stop`, each asserting every answer is 200;
/// together they return how many requests ran and which `model_version`s answered.
pub async fn load_loop(
    app: &Arc<App>,
    clients: usize,
    uri: &'static str,
    body: serde_json::Value,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, std::collections::BTreeSet<String>)> {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (app, stop, body) = (app.clone(), stop.clone(), body.clone());
            tokio::spawn(async move {
                let (mut answered, mut versions) = (0, std::collections::BTreeSet::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = post(&app, uri, body.clone()).await;
                    versions.insert(
                        answer.ok_json()["model_version"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    );
                    answered += 1;
                }
                (answered, versions)
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut total = (0, std::collections::BTreeSet::new());
        for handle in handles {
            let (answered, versions) = handle.await.unwrap();
            total.0 += answered;
            total.1.extend(versions);
        }
        total
    })
}
