//! A Rust client for MLflow's tracking API (weir's own server or MLflow's), used by the
//! training crate and `weir runs`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use weir_http::{percent_encode, HttpClient, JsonCallError};

use crate::store::{now_ms, KeyValue, Metric, MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the tracking server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server refused: its error code and message.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Refused { code, .. } if code == "RESOURCE_DOES_NOT_EXIST")
    }

    /// The server does not have the endpoint at all (an MLflow 2 server asked for MLflow 3's
    /// logged models answers a bare 404).
    pub fn is_missing_endpoint(&self) -> bool {
        matches!(self, ClientError::Refused { code, .. } if code == "ENDPOINT_NOT_FOUND" || code == "404")
    }
}

pub struct TrackingClient {
    base: String,
    user: Option<String>,
    token: Option<String>,
    http: HttpClient,
}

impl TrackingClient {
    /// `user` is sent as HTTP Basic user name, as the mlflow client does.
    pub fn new(base: &str, user: Option<String>) -> TrackingClient {
        TrackingClient {
            base: base.trim_end_matches('/').to_owned(),
            user,
            token: None,
            http: HttpClient::default(),
        }
    }

    /// Sends `Authorization: Bearer TOKEN` instead of the user name, for servers started with
    /// `--tokens` (the token names the user there).
    pub fn with_token(mut self, token: String) -> TrackingClient {
        self.token = Some(token);
        self
    }

    /// Uses `http` for the calls: a client trusting a private CA for an https:// server
    /// (`HttpClient::with_ca_file`).
    pub fn with_http(mut self, http: HttpClient) -> TrackingClient {
        self.http = http;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(&self, method: &str, path: &str, body: Bytes) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let authorization = match (&self.token, &self.user) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(user)) => Some(format!("Basic {}", base64::encode(format!("{user}:")))),
            (None, None) => None,
        };
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        self.http
            .call_json(method, &url, &headers, body, Duration::from_secs(120))
            .await
            .map_err(|err| match err {
                JsonCallError::Unreachable(reason) => ClientError::Unreachable { url, reason },
                JsonCallError::Refused(refusal) => ClientError::Refused {
                    code: refusal.field_or_status("error_code"),
                    message: refusal.field_or_text("message"),
                },
            })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/api/2.0/mlflow/{path}"),
            Bytes::from(body.to_string()),
        )
        .await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ClientError> {
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        self.call(
            "GET",
            &format!("/api/2.0/mlflow/{path}?{}", query.join("&")),
            Bytes::new(),
        )
        .await
    }

    /// The id of the experiment named `name`, created when missing (as `mlflow.set_experiment`).
    pub async fn experiment_id(&self, name: &str) -> Result<String, ClientError> {
        match self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(found) => Ok(string(&found["experiment"]["experiment_id"])),
            Err(err) if err.is_not_found() => {
                let created = self
                    .post("experiments/create", json!({ "name": name }))
                    .await?;
                Ok(string(&created["experiment_id"]))
            }
            Err(err) => Err(err),
        }
    }

    /// The id of an existing experiment.
    pub async fn find_experiment(&self, name: &str) -> Result<String, ClientError> {
        let found = self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await?;
        Ok(string(&found["experiment"]["experiment_id"]))
    }

    /// Starts a run; its JSON (`info`, `data`) as the server answered.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[KeyValue],
    ) -> Result<Value, ClientError> {
        let created = self
            .post(
                "runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "user_id": self.user.clone().unwrap_or_default(),
                    "start_time": now_ms(),
                    "tags": tags,
                }),
            )
            .await?;
        Ok(created["run"].clone())
    }

    /// Logs everything, split into batches within MLflow's limits.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), ClientError> {
        for chunk in params.chunks(MAX_BATCH_PARAMS) {
            self.post(
                "runs/log-batch",
                json!({ "run_id": run_id, "params": chunk }),
            )
            .await?;
        }
        for chunk in tags.chunks(MAX_BATCH_TAGS) {
            self.post("runs/log-batch", json!({ "run_id": run_id, "tags": chunk }))
                .await?;
        }
        for chunk in metrics.chunks(MAX_BATCH_METRICS) {
            self.post(
                "runs/log-batch",
                json!({ "run_id": run_id, "metrics": chunk }),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn end_run(&self, run_id: &str, status: &str) -> Result<(), ClientError> {
        self.post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now_ms() }),
        )
        .await?;
        Ok(())
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Value, ClientError> {
        Ok(self.get("runs/get", &[("run_id", run_id)]).await?["run"].clone())
    }

    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        order_by: &[String],
        max_results: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let found = self
            .post(
                "runs/search",
                json!({
                    "experiment_ids": experiment_ids,
                    "filter": filter,
                    "order_by": order_by,
                    "max_results": max_results,
                }),
            )
            .await?;
        Ok(found["runs"].as_array().cloned().unwrap_or_default())
    }

    /// Creates an MLflow 3 logged model produced by `run_id` (pending until finalized); its
    /// JSON (`info` with `model_id` and `artifact_uri`).
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        run_id: &str,
        model_type: &str,
    ) -> Result<Value, ClientError> {
        let created = self
            .post(
                "logged-models",
                json!({
                    "experiment_id": experiment_id,
                    "name": name,
                    "source_run_id": run_id,
                    "model_type": model_type,
                }),
            )
            .await?;
        Ok(created["model"].clone())
    }

    /// Marks a logged model's files complete (`LOGGED_MODEL_READY`) or failed.
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: &str,
    ) -> Result<(), ClientError> {
        self.call(
            "PATCH",
            &format!("/api/2.0/mlflow/logged-models/{}", percent_encode(model_id)),
            Bytes::from(json!({ "model_id": model_id, "status": status }).to_string()),
        )
        .await
        .map(drop)
    }

    /// Records that the run produced the model (at `step`), as `log_model` does.
    pub async fn log_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> Result<(), ClientError> {
        self.post(
            "runs/outputs",
            json!({ "run_id": run_id, "models": [{ "model_id": model_id, "step": step }] }),
        )
        .await
        .map(drop)
    }

    /// Uploads a file into a run's (or logged model's) `mlflow-artifacts:/` location.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        file: &Path,
        name: &str,
    ) -> Result<(), ClientError> {
        let root = artifact_uri
            .strip_prefix("mlflow-artifacts:/")
            .ok_or_else(|| {
                ClientError::Local(format!(
                    "artifact location {artifact_uri} is not served by the tracking server (mlflow-artifacts:/…)"
                ))
            })?
            .trim_matches('/');
        let bytes = std::fs::read(file)
            .map_err(|e| ClientError::Local(format!("cannot read {}: {e}", file.display())))?;
        self.call(
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/{name}"),
            Bytes::from(bytes),
        )
        .await?;
        Ok(())
    }
}

fn string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
