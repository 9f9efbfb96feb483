//! A version weir cannot serve (an `mlflow.sklearn.log_model` folder: `MLmodel` + `model.pkl`)
//! registers as MLflow's would, marked `weir.servable=false` with the reason; approving it or
//! pointing a protected alias at it is refused with `INVALID_PARAMETER_VALUE` naming what would
//! make it servable. An ONNX version goes through unmarked. Driven through the router.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use weir_registry::Registry;

mod support;

struct Harness {
    registry: Arc<Registry>,
}

impl Harness {
    fn on(tag: &str, backend: support::backends::Backend) -> Harness {
        let (registry, _) = support::fresh_on("servable", tag, backend);
        Harness { registry }
    }

    async fn call(
        &self,
        user: &str,
        method: &str,
        uri: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = support::request(Some(user), method, uri, body);
        let (status, bytes) = support::call(&self.registry, request).await;
        (status, support::json(&bytes))
    }

    async fn post(&self, user: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(user, "POST", uri, body.to_string().into_bytes())
            .await
    }

    async fn upload(&self, path: &str, bytes: &[u8]) {
        let uri = format!("/api/2.0/mlflow-artifacts/artifacts/{path}");
        let (status, answer) = self.call("alice", "PUT", &uri, bytes.to_vec()).await;
        assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
    }

    async fn register(&self, source: &str) -> Value {
        let (status, created) = self
            .post(
                "alice",
                "/api/2.0/mlflow/model-versions/create",
                json!({"name": "iris", "source": source}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        created["model_version"].clone()
    }

    async fn approve(&self, version: &str) -> (StatusCode, Value) {
        self.post(
            "bob",
            "/api/2.0/weir/approvals/approve",
            json!({"name": "iris", "version": version}),
        )
        .await
    }

    async fn alias(&self, alias: &str, version: &str) -> (StatusCode, Value) {
        self.post(
            "bob",
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": "iris", "alias": alias, "version": version}),
        )
        .await
    }
}

fn tag<'a>(version: &'a Value, key: &str) -> Option<&'a str> {
    version["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)?["value"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sklearn_folder_registers_marked_and_cannot_be_approved_or_protected() {
    for backend in support::backends::each() {
        let h = Harness::on("sklearn", backend);
        let (status, _) = h
            .post(
                "alice",
                "/api/2.0/mlflow/registered-models/create",
                json!({"name": "iris"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        h.upload("runs/1/model/MLmodel", b"flavors:\n  sklearn: {}\n")
            .await;
        h.upload("runs/1/model/model.pkl", b"\x80\x04pickle").await;

        // Registration succeeds, as MLflow's would, and says what is wrong where a client sees it.
        let sklearn = h.register("mlflow-artifacts:/runs/1/model").await;
        assert_eq!(sklearn["version"], "1");
        assert_eq!(tag(&sklearn, "weir.servable"), Some("false"), "{sklearn}");
        let reason = tag(&sklearn, "weir.servable_reason").unwrap();
        assert!(
            reason.contains("model.pkl") && reason.contains("skl2onnx"),
            "{reason}"
        );

        // Approval is refused with what would make it servable; nothing is recorded.
        let (status, refused) = h.approve("1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(refused["error_code"], "INVALID_PARAMETER_VALUE");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot approve version 1 of 'iris'")
                && message.contains("skl2onnx")
                && message.contains("model.onnx"),
            "{message}"
        );
        let (_, status_now) = h
            .call(
                "bob",
                "GET",
                "/api/2.0/weir/approvals/get?name=iris&version=1",
                Vec::new(),
            )
            .await;
        assert_eq!(status_now["approval"]["approved_by"], json!([]));

        // A protected alias is refused for the same reason (not "not approved"); an unprotected
        // alias is the user's business.
        let (status, refused) = h.alias("champion", "1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(refused["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("cannot point the protected alias 'champion' at version 1 of 'iris'"),
            "{refused}"
        );
        assert_eq!(h.alias("candidate", "1").await.0, StatusCode::OK);

        // The tags inform; the files decide. Marking it servable by hand changes nothing.
        let (status, _) = h
            .post(
                "alice",
                "/api/2.0/mlflow/model-versions/set-tag",
                json!({"name": "iris", "version": "1", "key": "weir.servable", "value": "true"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.approve("1").await.0, StatusCode::BAD_REQUEST);

        // The same model exported to ONNX: unmarked, approvable, protected alias accepted.
        h.upload("runs/2/model/MLmodel", b"flavors:\n  onnx: {}\n")
            .await;
        h.upload("runs/2/model/model.onnx", b"\x08\x01onnx").await;
        let onnx = h.register("mlflow-artifacts:/runs/2/model").await;
        assert_eq!(onnx["version"], "2");
        assert_eq!(tag(&onnx, "weir.servable"), None, "{onnx}");
        assert_eq!(tag(&onnx, "weir.servable_reason"), None, "{onnx}");
        let (status, approved) = h.approve("2").await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["approval"]["approved"], true);
        assert_eq!(h.alias("champion", "2").await.0, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_with_nothing_to_fetch_are_marked_and_client_marks_are_not_kept() {
    for backend in support::backends::each() {
        let h = Harness::on("empty", backend);
        h.post(
            "alice",
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "iris"}),
        )
        .await;
        // A source in a store weir does not read (an `s3://` source is copied: `s3_sources.rs`).
        let elsewhere = h.register("hdfs://namenode/iris/1").await;
        assert_eq!(tag(&elsewhere, "weir.servable"), Some("false"));
        assert!(tag(&elsewhere, "weir.servable_reason")
            .unwrap()
            .contains("hdfs://namenode/iris/1"));
        assert_eq!(h.approve("1").await.0, StatusCode::BAD_REQUEST);

        // A client cannot mark a version servable (or unservable) itself.
        h.upload("m/model.onnx", b"\x08\x01onnx").await;
        let (status, created) = h
        .post(
            "alice",
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "iris", "source": "mlflow-artifacts:/m",
                   "tags": [{"key": "weir.servable", "value": "false"}, {"key": "team", "value": "ml"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let version = &created["model_version"];
        assert_eq!(tag(version, "weir.servable"), None, "{version}");
        assert_eq!(tag(version, "team"), Some("ml"));
        assert_eq!(h.approve("2").await.0, StatusCode::OK);
    }
}
