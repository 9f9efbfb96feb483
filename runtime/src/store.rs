//! The models a server holds: loaded versions, failures and their reasons, and reloads.
//!
//! The whole set is one immutable map behind an `ArcSwap`: a request takes a snapshot without a
//! lock, and a (re)load builds the new entry beside the old one — every new version fully loaded
//! — then swaps it in whole. A request that resolved the old version keeps it (and its workers)
//! alive until it is answered, so a swap never fails a request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use weir_models::repository::{self, ModelConfig, ModelSource};
use weir_models::Backend;

use crate::error::ApiError;
use crate::metrics::{Metrics, VersionMetrics};
use crate::scheduler::{Policy, Scheduler};
use crate::stats::VersionStats;
use files::{fingerprint, is_plain_name};
pub use report::IndexEntry;

mod files;
mod report;

/// A model version ready to answer.
pub struct LoadedVersion {
    pub model: String,
    pub version: u64,
    /// The version as the protocol writes it (a string).
    pub label: String,
    pub backend: Arc<dyn Backend>,
    pub scheduler: Scheduler,
    pub metrics: VersionMetrics,
    pub stats: Arc<VersionStats>,
    /// What the version was loaded from (files and config); a reload keeps it when unchanged.
    fingerprint: u64,
}

/// A model folder's state: the versions that serve, and what failed.
#[derive(Default)]
pub struct ModelEntry {
    pub versions: BTreeMap<u64, Arc<LoadedVersion>>,
    /// Versions whose last load failed. A version that is also in `versions` failed to reload
    /// and still serves its previous load.
    pub failures: BTreeMap<u64, String>,
    /// A problem with the folder itself (bad config, no versions, unloaded).
    pub error: Option<String>,
}

impl ModelEntry {
    fn unavailable(error: String) -> ModelEntry {
        ModelEntry {
            error: Some(error),
            ..ModelEntry::default()
        }
    }

    /// Why no version serves, for a 503 message.
    fn unavailable_reason(&self) -> String {
        if let Some(error) = &self.error {
            return error.clone();
        }
        self.failures
            .iter()
            .map(|(version, reason)| format!("version {version}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub struct ModelStore {
    root: PathBuf,
    metrics: Arc<Metrics>,
    models: ArcSwap<BTreeMap<String, Arc<ModelEntry>>>,
    /// Serialises (re)loads so two cannot interleave their swaps.
    loading: Mutex<()>,
}

impl ModelStore {
    pub fn new(root: PathBuf, metrics: Arc<Metrics>) -> ModelStore {
        ModelStore {
            root,
            metrics,
            models: ArcSwap::from_pointee(BTreeMap::new()),
            loading: Mutex::new(()),
        }
    }

    /// Brings every model folder in line with the disk: new folders load, changed versions
    /// reload, removed versions and folders go. Failures stay with their model; only an
    /// unreadable repository is an error.
    pub fn sync_all(&self) -> Result<(), repository::RepositoryError> {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let scanned = repository::scan(&self.root)?;
        let current = self.models.load_full();
        let mut models = BTreeMap::new();
        for (name, source) in scanned {
            let previous = current.get(&name);
            if previous.is_some_and(|entry| entry.error.as_deref() == Some(UNLOADED)) {
                models.insert(name, previous.cloned().unwrap_or_default());
                continue;
            }
            let entry = self.build_entry(&name, source, previous.map(Arc::as_ref));
            models.insert(name, Arc::new(entry));
        }
        self.models.store(Arc::new(models));
        Ok(())
    }

    /// Loads or reloads one model folder from disk (`POST /v2/repository/models/{m}/load`).
    /// Succeeds when every selected version serves its current files.
    pub fn load(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if !is_plain_name(name) || !self.root.join(name).is_dir() {
            return Err(ApiError::bad_request(format!(
                "no model folder '{name}' in the model repository"
            )));
        }
        let source = repository::read_model(&self.root, name);
        let previous = self.models.load().get(name).cloned();
        let entry = self.build_entry(
            name,
            source,
            previous
                .as_deref()
                .filter(|e| e.error.as_deref() != Some(UNLOADED)),
        );
        let problem = (entry.error.is_some() || !entry.failures.is_empty())
            .then(|| entry.unavailable_reason());
        self.replace(name, Some(entry));
        match problem {
            None => Ok(()),
            Some(reason) => Err(ApiError::bad_request(format!(
                "failed to load model '{name}': {reason}"
            ))),
        }
    }

    /// Records that a version could not be brought in (for instance from the registry), without
    /// touching what serves: the repository index shows the reason.
    pub fn record_failure(&self, name: &str, version: u64, reason: String) {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.models.load().get(name).cloned();
        let mut entry = ModelEntry {
            versions: current
                .as_ref()
                .map(|e| e.versions.clone())
                .unwrap_or_default(),
            failures: current
                .as_ref()
                .map(|e| e.failures.clone())
                .unwrap_or_default(),
            error: None,
        };
        entry.failures.insert(version, reason);
        self.replace(name, Some(entry));
    }

    /// Records why a model has no version at all yet (its registry could not be reached, or
    /// refused the server's credentials), so the repository index shows the reason. A model
    /// that serves a version is left as it is: a registry outage must not stop it serving.
    pub fn record_unavailable(&self, name: &str, reason: String) {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.models.load().get(name).cloned();
        if current.as_ref().is_some_and(|e| !e.versions.is_empty()) {
            return;
        }
        self.replace(
            name,
            Some(ModelEntry {
                error: Some(reason),
                failures: current.map(|e| e.failures.clone()).unwrap_or_default(),
                ..ModelEntry::default()
            }),
        );
    }

    /// Serves `backend` as `name`/`version` without a repository folder (for programs that
    /// embed the runtime with models built in code, and for tests with test-double models).
    /// Replaces whatever served under that name.
    pub fn insert_backend(
        &self,
        name: &str,
        version: u64,
        backend: Arc<dyn Backend>,
        config: &ModelConfig,
    ) {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = self.start_version(name, version, backend, config, 0);
        let mut entry = ModelEntry::default();
        entry.versions.insert(version, Arc::new(loaded));
        self.replace(name, Some(entry));
    }

    /// The highest version serving under `name`, if any.
    pub fn serving_version(&self, name: &str) -> Option<u64> {
        self.models
            .load()
            .get(name)?
            .versions
            .keys()
            .next_back()
            .copied()
    }

    /// The repository folder this store loads from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops serving a model (`POST /v2/repository/models/{m}/unload`); it stays listed as
    /// unavailable until loaded again. Requests already running finish.
    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        self.entry(name)?;
        self.replace(name, Some(ModelEntry::unavailable(UNLOADED.to_owned())));
        Ok(())
    }

    fn replace(&self, name: &str, entry: Option<ModelEntry>) {
        let mut models = BTreeMap::clone(&self.models.load());
        match entry {
            Some(entry) => models.insert(name.to_owned(), Arc::new(entry)),
            None => models.remove(name),
        };
        self.models.store(Arc::new(models));
    }

    fn build_entry(
        &self,
        name: &str,
        source: Result<ModelSource, repository::RepositoryError>,
        previous: Option<&ModelEntry>,
    ) -> ModelEntry {
        let source = match source {
            Ok(source) => source,
            Err(err) => {
                tracing::error!(model = %name, error = %err, "model unavailable");
                return ModelEntry::unavailable(err.to_string());
            }
        };
        let mut entry = ModelEntry::default();
        for (version, dir) in &source.versions {
            let fingerprint = fingerprint(dir, &source.config);
            let kept = previous
                .and_then(|p| p.versions.get(version))
                .filter(|v| v.fingerprint == fingerprint);
            if let Some(kept) = kept {
                entry.versions.insert(*version, kept.clone());
                continue;
            }
            let started = Instant::now();
            match repository::load_version(dir, &source.config) {
                Ok(backend) => {
                    tracing::info!(model = %name, version, elapsed_ms = started.elapsed().as_millis() as u64, "model version ready");
                    entry.versions.insert(
                        *version,
                        Arc::new(self.start_version(
                            name,
                            *version,
                            backend,
                            &source.config,
                            fingerprint,
                        )),
                    );
                }
                Err(err) => {
                    tracing::error!(model = %name, version, error = %err, "model version failed to load");
                    if let Some(serving) = previous.and_then(|p| p.versions.get(version)) {
                        entry.versions.insert(*version, serving.clone());
                    }
                    entry.failures.insert(*version, err.to_string());
                }
            }
        }
        entry
    }

    fn start_version(
        &self,
        name: &str,
        version: u64,
        backend: Arc<dyn Backend>,
        config: &ModelConfig,
        fingerprint: u64,
    ) -> LoadedVersion {
        let label = version.to_string();
        let metrics = self.metrics.for_version(name, &label);
        let stats = Arc::new(VersionStats::default());
        let scheduler = Scheduler::start(
            &format!("{name}-{label}"),
            backend.clone(),
            Policy::from(config),
            metrics.clone(),
            stats.clone(),
        );
        LoadedVersion {
            model: name.to_owned(),
            version,
            label,
            backend,
            scheduler,
            metrics,
            stats,
            fingerprint,
        }
    }

    /// The names of every model folder, in order.
    pub fn names(&self) -> Vec<String> {
        self.models.load().keys().cloned().collect()
    }

    /// Every serving version of every model, for statistics.
    pub fn all_versions(&self) -> Vec<Arc<LoadedVersion>> {
        self.models
            .load()
            .values()
            .flat_map(|entry| entry.versions.values().cloned())
            .collect()
    }

    /// The state of one model, or 404.
    pub fn entry(&self, model: &str) -> Result<Arc<ModelEntry>, ApiError> {
        self.models
            .load()
            .get(model)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("unknown model '{model}'")))
    }

    /// The version that answers a request: the one named, or the highest serving. 404 for a
    /// model or version that does not exist; 503 for one that exists but does not serve.
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
        if let Some(reason) = number.and_then(|n| entry.failures.get(&n)) {
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
}

const UNLOADED: &str = "unloaded";

#[cfg(test)]
mod tests;
