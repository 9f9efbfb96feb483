//! What the registry's end-to-end tests share: a fresh registry in a folder of its own, and one
//! request through its router as a client sends it. `artifacts` is the client side of the
//! artifact and version endpoints the immutable-version tests drive.

#![allow(dead_code)] // each test file uses what it needs

pub mod artifacts;
pub mod backends;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use weir_mlflow_wire::Authenticator;
use weir_registry::{router, Registry, Store};

/// A fresh registry on SQLite with its artifact store, in an emptied folder under the system's
/// temporary folder named by the suite and the test, so parallel tests never share one.
pub fn fresh(suite: &str, tag: &str) -> (Arc<Registry>, PathBuf) {
    fresh_on(suite, tag, backends::Backend::Folder)
}

/// [`fresh`] with its artifacts on `backend` (a bucket gets a prefix of its own).
pub fn fresh_on(suite: &str, tag: &str, backend: backends::Backend) -> (Arc<Registry>, PathBuf) {
    let root = std::env::temp_dir().join(format!(
        "weir-{suite}-{tag}-{backend:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let registry = Arc::new(Registry {
        store: Store::open(&format!("sqlite://{}", root.join("registry.db").display())).unwrap(),
        artifacts: backends::store(backend, &root, &format!("{suite}-{tag}")),
        sources: None,
    });
    (registry, root)
}

/// A request with a body, as `user` (the `X-Weir-User` header) or as nobody in particular.
pub fn request(user: Option<&str>, method: &str, uri: &str, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(user) = user {
        request = request.header("x-weir-user", user);
    }
    request.body(Body::from(body)).unwrap()
}

/// One request through the registry's router: the status and the body's bytes. No identities
/// are configured, so the caller is who `X-Weir-User` says (the local default); who may call
/// what is the access layer's business, tested with it.
pub async fn call(registry: &Arc<Registry>, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let app = router(registry.clone(), Authenticator::anonymous());
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// A body read as JSON; null when it is not JSON.
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
