//! A client for a `weir registry` (used by `weir models`, `weir train`, `weir up`): MLflow's
//! registry calls, weir's approval calls, and artifact uploads, with the caller's identity on
//! every request.
//!
//! Versions and approvals come back as the JSON the registry answered: the commands print them
//! as they are (`--output json`), and a typed copy would drop whatever fields a newer server
//! adds.

use std::path::Path;

use bytes::Bytes;
use serde_json::{json, Value};
use weir_http::{percent_encode, HttpClient};

use crate::connection::Connection;
use crate::files::files_under;
use crate::{ClientError, Identity};

/// What produced a version: the tracking run and the MLflow 3 logged model, when known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link<'a> {
    pub run_id: Option<&'a str>,
    pub model_id: Option<&'a str>,
}

pub struct RegistryClient {
    connection: Connection,
}

impl RegistryClient {
    pub fn new(base: &str, identity: Identity) -> RegistryClient {
        let mut connection = Connection::new(base, "registry");
        match identity {
            Identity::User(user) => connection.set_credential("x-weir-user", user),
            Identity::Token(token) => {
                connection.set_credential("authorization", format!("Bearer {token}"))
            }
        }
        RegistryClient { connection }
    }

    /// Uses `http` for the calls: a client trusting a private CA for an https:// registry
    /// (`HttpClient::with_ca_file`).
    pub fn with_http(mut self, http: HttpClient) -> RegistryClient {
        self.connection.set_http(http);
        self
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        // MLflow's own server refuses a JSON call without its content type.
        let body = Bytes::from(body.to_string());
        self.connection
            .call("POST", path, "application/json", body)
            .await
    }

    /// A GET of `path` (with its query), answered with the registry's JSON; for the listings
    /// the commands print as they come.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.connection
            .call("GET", path, "application/octet-stream", Bytes::new())
            .await
    }

    /// Uploads every file of a version folder and registers it (creating the registered model
    /// when it does not exist yet). Returns the new version.
    pub async fn register(
        &self,
        name: &str,
        folder: &Path,
        description: &str,
    ) -> Result<Value, ClientError> {
        let files = files_under(folder).map_err(|source| ClientError::ReadFile {
            path: folder.to_path_buf(),
            source,
        })?;
        if files.is_empty() {
            return Err(ClientError::NothingToRegister {
                folder: folder.to_path_buf(),
            });
        }
        // A fresh folder per registration: a second upload of the same name never overwrites
        // the files of a version already registered.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let artifact = format!("models/{name}/{stamp}");
        for relative in &files {
            let path = folder.join(relative);
            let bytes =
                std::fs::read(&path).map_err(|source| ClientError::ReadFile { path, source })?;
            self.connection
                .call(
                    "PUT",
                    &format!("/api/2.0/mlflow-artifacts/artifacts/{artifact}/{relative}"),
                    "application/octet-stream",
                    Bytes::from(bytes),
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
            Err(err) if err.is_already_existing() => Ok(()),
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

    /// `request`, `approve` or `reject`; the approval state after it.
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
mod tests;
