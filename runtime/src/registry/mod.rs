//! Serving registry-approved versions: `--registry URL --model NAME=models:/NAME@ALIAS`.
//!
//! Each poll resolves every configured model through the registry (`/api/2.0/weir/resolve`),
//! and when the resolved version differs from the one serving: refuses it unless it is approved,
//! downloads its files, checks them against the digest the registry recorded at registration,
//! places them in the model repository and reloads — the usual load-then-swap, so requests never
//! fail. A refused or tampered version is recorded in the repository index with its reason and
//! the previous version keeps serving.
//!
//! Files are streamed to disk as they arrive, hashed on the way (memory does not grow with a
//! model's size), under one deadline for the whole version, and synced before the rename that
//! makes the version visible to the loader.
//!
//! The rooms: [`source`] (what to follow), [`error`] (why a sync failed), `download` (the
//! streamed files), `files` (paths, digest, placing). The sync needs only the [`ModelStore`],
//! not the whole server.

mod download;
pub mod error;
mod files;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::store::ModelStore;
use download::FileError;
pub use download::DEFAULT_DOWNLOAD_DEADLINE;
use error::answered;
pub use error::SyncError;
pub use files::PlaceError;
use files::{digest_of_hashes, place, safe_path};
pub use source::{ModelRefError, RegistryModel, RegistrySource, Selector};

#[derive(Deserialize)]
struct Resolved {
    version: String,
    artifact_path: Option<String>,
    files: Vec<String>,
    sha256: String,
    approved: bool,
    approval: Approval,
}

#[derive(Deserialize)]
struct Approval {
    required_approvals: u32,
    approved_by: Vec<String>,
    rejected_by: Vec<String>,
}

/// Follows the registry for the configured models.
pub struct RegistrySync {
    source: RegistrySource,
    download_deadline: Duration,
    /// Held for a whole [`RegistrySync::sync`]: the start-up sync and the poll loop share one
    /// `RegistrySync`, and two syncs of one model would download into the same folder.
    running: tokio::sync::Mutex<()>,
}

/// What one model's sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged(u64),
    Loaded(u64),
}

impl RegistrySync {
    pub fn new(source: RegistrySource) -> RegistrySync {
        RegistrySync {
            source,
            download_deadline: DEFAULT_DOWNLOAD_DEADLINE,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The same sync with another deadline for downloading one version's files.
    pub fn with_download_deadline(mut self, deadline: Duration) -> RegistrySync {
        self.download_deadline = deadline;
        self
    }

    fn authorization(&self) -> Option<String> {
        self.source.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn poll_interval(&self) -> Duration {
        self.source.poll
    }

    async fn get(&self, path_and_query: &str) -> Result<Bytes, SyncError> {
        let url = format!("{}{path_and_query}", self.source.url.trim_end_matches('/'));
        let authorization = self.authorization();
        let headers = authorization_header(&authorization);
        let (status, body) = self
            .source
            .http
            .send("GET", &url, &headers, Bytes::new(), Duration::from_secs(60))
            .await
            .map_err(|reason| SyncError::Unreachable {
                url: url.clone(),
                reason,
            })?;
        if !(200..300).contains(&status) {
            return Err(answered(status, url, &body));
        }
        Ok(body)
    }

    /// Brings every configured model in line with the registry once.
    pub async fn sync(&self, store: &Arc<ModelStore>) -> Vec<(String, Result<Outcome, SyncError>)> {
        let _one_at_a_time = self.running.lock().await;
        let mut outcomes = Vec::with_capacity(self.source.models.len());
        for model in &self.source.models {
            let outcome = self.sync_model(store, model).await;
            match &outcome {
                Ok(Outcome::Loaded(version)) => {
                    tracing::info!(model = %model.served_as, version, "serving registry version")
                }
                Ok(Outcome::Unchanged(_)) => {}
                Err(reason) => {
                    tracing::error!(model = %model.served_as, error = %reason, "registry version refused")
                }
            }
            outcomes.push((model.served_as.clone(), outcome));
        }
        outcomes
    }

    async fn sync_model(
        &self,
        store: &Arc<ModelStore>,
        model: &RegistryModel,
    ) -> Result<Outcome, SyncError> {
        let query = match &model.selector {
            Selector::Alias(alias) => format!("alias={alias}"),
            Selector::Version(version) => format!("version={version}"),
        };
        let body = self
            .get(&format!(
                "/api/2.0/weir/resolve?name={}&{query}",
                model.name
            ))
            .await?;
        let resolved: Resolved =
            serde_json::from_slice(&body).map_err(|e| SyncError::Unexpected(e.to_string()))?;
        let version: u64 = resolved
            .version
            .parse()
            .map_err(|_| SyncError::BadVersion(resolved.version.clone()))?;
        if store.serving_version(&model.served_as) == Some(version) {
            return Ok(Outcome::Unchanged(version));
        }
        let refuse = |reason: String| {
            store.record_failure(&model.served_as, version, reason.clone());
            Err(SyncError::Refused(reason))
        };
        if !resolved.approved {
            let approval = &resolved.approval;
            return refuse(format!(
                "version {version} of '{}' is not approved: {} of {} required approvals{}",
                model.name,
                approval.approved_by.len(),
                approval.required_approvals,
                if approval.rejected_by.is_empty() {
                    String::new()
                } else {
                    format!(", rejected by {}", approval.rejected_by.join(", "))
                }
            ));
        }
        let (Some(artifact_path), false) = (
            resolved.artifact_path.as_deref(),
            resolved.sha256.is_empty(),
        ) else {
            return refuse(format!(
                "version {version} of '{}' has no artifact in the registry's store to verify",
                model.name
            ));
        };
        if let Some(unsafe_path) = resolved.files.iter().find(|path| !safe_path(path)) {
            return refuse(format!(
                "the registry listed an unsafe file path {unsafe_path:?}"
            ));
        }
        let root = store.root().to_path_buf();
        let incoming = root.join(format!(".incoming-{}-{version}", model.served_as));
        let fresh = incoming.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&fresh))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
            .ok();
        let downloaded = self
            .download_version(artifact_path, &resolved.files, &incoming)
            .await;
        let hashed = match downloaded {
            Ok(hashed) => hashed,
            Err(failure) => {
                let _ = std::fs::remove_dir_all(&incoming);
                return match failure {
                    FileError::Sync(err) => Err(err),
                    FileError::Place(reason) => refuse(format!(
                        "cannot place {} version {version} in {}: {reason}",
                        model.served_as,
                        root.display()
                    )),
                };
            }
        };
        let digest = digest_of_hashes(&hashed);
        if digest != resolved.sha256 {
            let _ = std::fs::remove_dir_all(&incoming);
            return refuse(format!(
                "version {version} of '{}' failed its integrity check: the registry recorded sha256 {} at registration but the files hash to {digest}; refusing it",
                model.name, resolved.sha256
            ));
        }
        let served_as = model.served_as.clone();
        let placed =
            tokio::task::spawn_blocking(move || place(&root, &served_as, version, &incoming))
                .await
                .map_err(|e| SyncError::Task(e.to_string()))?;
        if let Err(reason) = placed {
            return refuse(reason.to_string());
        }
        let loader = store.clone();
        let served_as = model.served_as.clone();
        tokio::task::spawn_blocking(move || loader.load(&served_as))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
            .map_err(|e| SyncError::Load(e.message))?;
        Ok(Outcome::Loaded(version))
    }
}

/// The `Authorization` header for a registry started with `--tokens`, if a token is set.
fn authorization_header(authorization: &Option<String>) -> Vec<(&'static str, &str)> {
    authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect()
}
