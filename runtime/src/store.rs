//! The models a server holds: loaded versions, failures and their reasons.
//!
//! The whole set is one immutable map behind an `ArcSwap`: a request takes a snapshot without a
//! lock, and a (re)load builds a new map beside the old one and swaps it in whole.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use serde::Serialize;
use weir_models::repository::{self, ModelConfig};
use weir_models::Backend;

use crate::error::ApiError;
use crate::metrics::{Metrics, VersionMetrics};

/// A model version ready to answer.
pub struct LoadedVersion {
    pub model: String,
    pub version: u64,
    /// The version as the protocol writes it (a string).
    pub label: String,
    pub backend: Arc<dyn Backend>,
    pub config: ModelConfig,
    pub metrics: VersionMetrics,
}

/// A model folder's state: the versions that loaded and those that did not.
#[derive(Default)]
pub struct ModelEntry {
    pub versions: BTreeMap<u64, Arc<LoadedVersion>>,
    pub failed_versions: BTreeMap<u64, String>,
    /// A problem with the folder itself (bad config, no versions).
    pub error: Option<String>,
}

impl ModelEntry {
    /// Why no version serves, for a 503 message.
    fn unavailable_reason(&self) -> String {
        if let Some(error) = &self.error {
            return error.clone();
        }
        self.failed_versions
            .iter()
            .map(|(version, reason)| format!("version {version}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One row of `POST /v2/repository/index`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: &'static str,
    pub reason: String,
}

pub struct ModelStore {
    root: PathBuf,
    metrics: Arc<Metrics>,
    models: ArcSwap<BTreeMap<String, Arc<ModelEntry>>>,
}

impl ModelStore {
    pub fn new(root: PathBuf, metrics: Arc<Metrics>) -> ModelStore {
        ModelStore {
            root,
            metrics,
            models: ArcSwap::from_pointee(BTreeMap::new()),
        }
    }

    /// Reads the repository and loads every model in it. Failures are recorded per model or
    /// version; only an unreadable repository is an error.
    pub fn load_all(&self) -> Result<(), repository::RepositoryError> {
        let scanned = repository::scan(&self.root)?;
        let mut models = BTreeMap::new();
        for (name, source) in scanned {
            let entry = match source {
                Ok(source) => self.load_model(&name, &source),
                Err(err) => {
                    tracing::error!(model = %name, error = %err, "model unavailable");
                    ModelEntry {
                        error: Some(err.to_string()),
                        ..ModelEntry::default()
                    }
                }
            };
            models.insert(name, Arc::new(entry));
        }
        self.models.store(Arc::new(models));
        Ok(())
    }

    fn load_model(&self, name: &str, source: &repository::ModelSource) -> ModelEntry {
        let mut entry = ModelEntry::default();
        for (version, dir) in &source.versions {
            let started = Instant::now();
            match repository::load_version(dir, &source.config) {
                Ok(backend) => {
                    tracing::info!(model = %name, version, elapsed_ms = started.elapsed().as_millis() as u64, "model version ready");
                    let label = version.to_string();
                    entry.versions.insert(
                        *version,
                        Arc::new(LoadedVersion {
                            model: name.to_owned(),
                            version: *version,
                            metrics: self.metrics.for_version(name, &label),
                            label,
                            backend,
                            config: source.config.clone(),
                        }),
                    );
                }
                Err(err) => {
                    tracing::error!(model = %name, version, error = %err, "model version failed to load");
                    entry.failed_versions.insert(*version, err.to_string());
                }
            }
        }
        entry
    }

    /// The names of every model folder, in order.
    pub fn names(&self) -> Vec<String> {
        self.models.load().keys().cloned().collect()
    }

    /// The state of one model, or 404.
    pub fn entry(&self, model: &str) -> Result<Arc<ModelEntry>, ApiError> {
        self.models
            .load()
            .get(model)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("unknown model '{model}'")))
    }

    /// The version that answers a request: the one named, or the highest loaded. 404 for a
    /// model or version that does not exist; 503 for one that exists but failed to load.
    pub fn resolve(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> Result<Arc<LoadedVersion>, ApiError> {
        let entry = self.entry(model)?;
        let unavailable = |reason: String| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("model '{model}' is not available: {reason}"),
            )
        };
        let Some(version) = version else {
            return entry
                .versions
                .values()
                .next_back()
                .cloned()
                .ok_or_else(|| unavailable(entry.unavailable_reason()));
        };
        let number = version.parse::<u64>().ok();
        if let Some(loaded) = number.and_then(|n| entry.versions.get(&n)) {
            return Ok(loaded.clone());
        }
        if let Some(reason) = number.and_then(|n| entry.failed_versions.get(&n)) {
            return Err(unavailable(format!("version {version}: {reason}")));
        }
        let available: Vec<String> = entry.versions.keys().map(u64::to_string).collect();
        Err(ApiError::not_found(format!(
            "unknown version '{version}' of model '{model}'; available versions: {}",
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        )))
    }

    /// Every model version and its state, as the repository extension lists them.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let mut rows = Vec::new();
        for (name, entry) in self.models.load().iter() {
            if let Some(error) = &entry.error {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE",
                    reason: error.clone(),
                });
            }
            for version in entry.versions.keys() {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version.to_string()),
                    state: "READY",
                    reason: String::new(),
                });
            }
            for (version, reason) in &entry.failed_versions {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version.to_string()),
                    state: "UNAVAILABLE",
                    reason: reason.clone(),
                });
            }
        }
        rows.retain(|row| !ready_only || row.state == "READY");
        rows
    }
}
