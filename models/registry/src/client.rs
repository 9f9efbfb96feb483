//! A client for a `weir registry` (used by `weir models`): MLflow's registry calls, weir's
//! approval calls, and artifact uploads, with the caller's identity on every request.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use weir_http::{percent_encode, HttpClient, JsonCallError};

use crate::artifacts::files_under;

/// Who the client acts as.
#[derive(Clone)]
pub enum Identity {
    /// A user name, sent as `X-Weir-User` (registries without tokens).
    User(String),
    /// A bearer token (registries with `--tokens`).
    Token(String),
}

/// Written by hand so a token never reaches a log line through `{:?}`.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::User(user) => f.debug_tuple("User").field(user).finish(),
            Identity::Token(_) => f.write_str("Token(<hidden>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry refused: its error code and message.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Local(String),
}

/// What produced a version: the tracking run and the MLflow 3 logged model, when known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link<'a> {
    pub run_id: Option<&'a str>,
    pub model_id: Option<&'a str>,
}

pub struct RegistryClient {
    base: String,
    identity: Identity,
    http: HttpClient,
}

impl RegistryClient {
    pub fn new(base: &str, identity: Identity) -> RegistryClient {
        RegistryClient {
            base: base.trim_end_matches('/').to_owned(),
            identity,
            http: HttpClient::default(),
        }
    }

    /// Uses `http` for the calls: a client trusting a private CA for an https:// registry
    /// (`HttpClient::with_ca_file`).
    pub fn with_http(mut self, http: HttpClient) -> RegistryClient {
        self.http = http;
        self
    }

    async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let authorization;
        let identity = match &self.identity {
            Identity::User(user) => ("x-weir-user", user.as_str()),
            Identity::Token(token) => {
                authorization = format!("Bearer {token}");
                ("authorization", authorization.as_str())
            }
        };
        // MLflow's own server refuses a JSON call without its content type.
        let content_type = if method == "POST" {
            ("content-type", "application/json")
        } else {
            ("content-type", "application/octet-stream")
        };
        self.http
            .call_json(
                method,
                &url,
                &[identity, content_type],
                Bytes::from(body),
                Duration::from_secs(120),
            )
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
        self.call("POST", path, body.to_string().into_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, Vec::new()).await
    }

    /// Uploads every file of a version folder and registers it (creating the registered model
    /// when it does not exist yet). Returns the new version.
    pub async fn register(
        &self,
        name: &str,
        folder: &Path,
        description: &str,
    ) -> Result<Value, ClientError> {
        let files = files_under(folder)
            .map_err(|e| ClientError::Local(format!("cannot read {}: {e}", folder.display())))?;
        if files.is_empty() {
            return Err(ClientError::Local(format!(
                "{} holds no files to register",
                folder.display()
            )));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let artifact = format!("models/{name}/{stamp}");
        for relative in &files {
            let bytes = std::fs::read(folder.join(relative))
                .map_err(|e| ClientError::Local(format!("cannot read {relative}: {e}")))?;
            self.call(
                "PUT",
                &format!("/api/2.0/mlflow-artifacts/artifacts/{artifact}/{relative}"),
                bytes,
            )
            .await?;
        }
        self.create_version(
            name,
            &format!("mlflow-artifacts:/{artifact}"),
            Link::default(),
            description,
        )
        .await
    }

    /// Registers files already on the server (`mlflow-artifacts:/…`, or `models:/<model_id>`
    /// for an MLflow 3 logged model), creating the registered model when it does not exist
    /// yet; `link` ties the version to the run and logged model that produced it. Returns the
    /// new version.
    pub async fn create_version(
        &self,
        name: &str,
        source: &str,
        link: Link<'_>,
        description: &str,
    ) -> Result<Value, ClientError> {
        self.ensure_model(name).await?;
        let created = self
            .post(
                "/api/2.0/mlflow/model-versions/create",
                json!({
                    "name": name,
                    "source": source,
                    "run_id": link.run_id,
                    "model_id": link.model_id,
                    "description": description,
                }),
            )
            .await?;
        Ok(created["model_version"].clone())
    }

    /// Creates the registered model unless it exists; a name the registry refuses fails here.
    pub async fn ensure_model(&self, name: &str) -> Result<(), ClientError> {
        match self
            .post(
                "/api/2.0/mlflow/registered-models/create",
                json!({ "name": name }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Refused { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A version's approval state (weir's registry only; MLflow's answers 404).
    pub async fn approval(&self, name: &str, version: &str) -> Result<Value, ClientError> {
        let answer = self
            .get(&format!(
                "/api/2.0/weir/approvals/get?name={}&version={}",
                percent_encode(name),
                percent_encode(version)
            ))
            .await?;
        Ok(answer["approval"].clone())
    }

    /// `request`, `approve` or `reject`.
    pub async fn decide(
        &self,
        kind: &str,
        name: &str,
        version: &str,
        comment: &str,
    ) -> Result<Value, ClientError> {
        let answer = self
            .post(
                &format!("/api/2.0/weir/approvals/{kind}"),
                json!({ "name": name, "version": version, "comment": comment }),
            )
            .await?;
        Ok(answer["approval"].clone())
    }

    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), ClientError> {
        self.post(
            "/api/2.0/mlflow/registered-models/alias",
            json!({ "name": name, "alias": alias, "version": version }),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_stay_out_of_debug_output() {
        let shown = format!("{:?}", super::Identity::Token("s3cret".to_owned()));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            format!("{:?}", super::Identity::User("alice".to_owned())),
            "User(\"alice\")"
        );
    }
}
