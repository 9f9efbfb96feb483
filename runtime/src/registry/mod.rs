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
//! The rooms: [`source`] (what to follow), [`error`] (why a sync failed), `fetch` (resolve,
//! refuse, download and verify one version into a folder — also what `weir fetch` runs),
//! `download` (the streamed files), `files` (paths, digest, placing). The sync needs only the
//! [`ModelStore`], not the whole server.

mod download;
pub mod error;
mod fetch;
mod files;
pub mod source;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::store::ModelStore;
pub use download::DEFAULT_DOWNLOAD_DEADLINE;
use error::answered;
pub use error::SyncError;
pub use fetch::{Approval, DirectBlob, FetchError, FetchedFile, PresignedUrl, ResolvedVersion};
use files::place;
pub use files::PlaceError;
pub use source::{ModelRefError, RegistryModel, RegistrySource, Selector};

/// Follows the registry for the configured models.
pub struct RegistrySync {
    source: RegistrySource,
    download_deadline: Duration,
    /// Held for a whole [`RegistrySync::sync`]: the start-up sync and the poll loop share one
    /// `RegistrySync`, and two syncs of one model would download into the same folder.
    running: tokio::sync::Mutex<()>,
    /// Whether the fall-back from `--registry-direct-download` to the registry was logged:
    /// once is enough, every poll would repeat it.
    said_no_direct: AtomicBool,
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
            said_no_direct: AtomicBool::new(false),
        }
    }

    /// The same sync with another deadline for downloading one version's files.
    pub fn with_download_deadline(mut self, deadline: Duration) -> RegistrySync {
        self.download_deadline = deadline;
        self
    }

    /// Logs, once, that direct downloads were asked for but the registry offers none (its
    /// artifacts are in a folder, or the version predates recorded files): the files come
    /// through the registry, which is as safe, only not as direct.
    fn note_no_direct_downloads(&self, resolved: &ResolvedVersion) {
        if !self.said_no_direct.swap(true, Ordering::Relaxed) {
            tracing::info!(
                model = %resolved.name,
                version = resolved.version,
                "--registry-direct-download: the registry offers no direct downloads (its artifacts are not in a bucket); downloading through the registry"
            );
        }
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
        let resolved = self.resolve(model).await?;
        let version = resolved.version;
        if store.serving_version(&model.served_as) == Some(version) {
            return Ok(Outcome::Unchanged(version));
        }
        let refuse = |reason: String| {
            store.record_failure(&model.served_as, version, reason.clone());
            Err(SyncError::Refused(reason))
        };
        let root = store.root().to_path_buf();
        let incoming = root.join(format!(".incoming-{}-{version}", model.served_as));
        let fresh = incoming.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&fresh))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
            .ok();
        match self.fetch(&resolved, &incoming).await {
            Ok(_) => {}
            Err(FetchError::Sync(err)) => return Err(err),
            Err(FetchError::Refused(reason)) => return refuse(reason),
            Err(FetchError::Write(reason)) => {
                return refuse(format!(
                    "cannot place {} version {version} in {}: {reason}",
                    model.served_as,
                    root.display()
                ))
            }
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
