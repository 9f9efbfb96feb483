//! A client for MLflow's tracking API (weir's own server or MLflow's), used by the training
//! crate and `weir runs`.
//!
//! Runs found by `get_run` and `search_runs` come back as the JSON the server answered:
//! `weir runs --output json` prints them as they are, and a typed copy would drop whatever
//! fields a newer server adds. What the client itself creates comes back typed.

use std::path::Path;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use weir_http::{percent_encode, HttpClient};

use crate::connection::{basic_user, Connection};
use crate::types::{
    now_ms, KeyValue, LoggedModel, Metric, Run, MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS,
};
use crate::{ClientError, Identity};

pub struct TrackingClient {
    connection: Connection,
    /// Recorded as a run's `user_id` (servers with tokens take the name from the token).
    user: Option<String>,
}

impl TrackingClient {
    /// `user` is sent as HTTP Basic user name, as the mlflow client does.
    pub fn new(base: &str, user: Option<String>) -> TrackingClient {
        let mut connection = Connection::new(base, "tracking server");
        if let Some(user) = &user {
            connection.set_credential("authorization", basic_user(user));
        }
        TrackingClient { connection, user }
    }

    /// Acting as `identity` (a user name, or a token), or as nobody in particular.
    pub fn as_identity(base: &str, identity: Option<Identity>) -> TrackingClient {
        match identity {
            Some(Identity::Token(token)) => TrackingClient::new(base, None).with_token(token),
            Some(Identity::User(user)) => TrackingClient::new(base, Some(user)),
            None => TrackingClient::new(base, None),
        }
    }

    /// Sends `Authorization: Bearer TOKEN` instead of the user name, for servers started with
    /// `--tokens` (the token names the user there).
    pub fn with_token(mut self, token: String) -> TrackingClient {
        self.connection
            .set_credential("authorization", format!("Bearer {token}"));
        self
    }

    /// Uses `http` for the calls: a client trusting a private CA for an https:// server
    /// (`HttpClient::with_ca_file`).
    pub fn with_http(mut self, http: HttpClient) -> TrackingClient {
        self.connection.set_http(http);
        self
    }

    pub fn base(&self) -> &str {
        self.connection.base()
    }

    async fn call(&self, method: &str, path: &str, body: Bytes) -> Result<Value, ClientError> {
        self.connection
            .call(method, path, "application/json", body)
            .await
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

    /// `answer` read as MLflow documents the answer to `call`.
    fn typed<T: DeserializeOwned>(
        &self,
        call: &'static str,
        answer: Value,
    ) -> Result<T, ClientError> {
        serde_json::from_value(answer).map_err(|source| ClientError::UnexpectedAnswer {
            server: self.connection.server(),
            call,
            source,
        })
    }

    /// The id of the experiment named `name`, created when missing (as `mlflow.set_experiment`).
    pub async fn experiment_id(&self, name: &str) -> Result<String, ClientError> {
        match self.find_experiment(name).await {
            Err(err) if err.is_not_found() => {
                let created = self
                    .post("experiments/create", json!({ "name": name }))
                    .await?;
                Ok(string(&created["experiment_id"]))
            }
            found => found,
        }
    }

    /// The id of an existing experiment.
    pub async fn find_experiment(&self, name: &str) -> Result<String, ClientError> {
        let found = self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await?;
        Ok(string(&found["experiment"]["experiment_id"]))
    }

    /// Starts a run.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[KeyValue],
    ) -> Result<Run, ClientError> {
        let mut created = self
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
        self.typed("runs/create", created["run"].take())
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

    /// Ends a run with `status` (FINISHED, FAILED, KILLED).
    pub async fn end_run(&self, run_id: &str, status: &str) -> Result<(), ClientError> {
        self.post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now_ms() }),
        )
        .await?;
        Ok(())
    }

    /// A run (`info`, `data`, …) as the server answered.
    pub async fn get_run(&self, run_id: &str) -> Result<Value, ClientError> {
        Ok(self.get("runs/get", &[("run_id", run_id)]).await?["run"].take())
    }

    /// Runs as the server answered them.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        order_by: &[String],
        max_results: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let mut found = self
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
        Ok(match found["runs"].take() {
            Value::Array(runs) => runs,
            _ => Vec::new(),
        })
    }

    /// Creates an MLflow 3 logged model produced by `run_id` (pending until finalized).
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        run_id: &str,
        model_type: &str,
    ) -> Result<LoggedModel, ClientError> {
        let mut created = self
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
        self.typed("logged-models", created["model"].take())
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
            .ok_or_else(|| ClientError::ArtifactsElsewhere {
                location: artifact_uri.to_owned(),
            })?
            .trim_matches('/');
        let bytes = std::fs::read(file).map_err(|source| ClientError::ReadFile {
            path: file.to_path_buf(),
            source,
        })?;
        self.call(
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/{name}"),
            Bytes::from(bytes),
        )
        .await?;
        Ok(())
    }
}

/// An id as text: MLflow sends ids as strings, some servers as numbers.
fn string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
