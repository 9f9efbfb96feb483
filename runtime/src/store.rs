//! The models a server holds: loaded versions, failures and their reasons, and reloads.
//!
//! The whole set is one immutable map behind an `ArcSwap`: a request takes a snapshot without a
//! lock, and a (re)load builds the new entry beside the old one — every new version fully loaded
//! — then swaps it in whole. A request that resolved the old version keeps it (and its workers)
//! alive until it is answered, so a swap never fails a request.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use serde::Serialize;
use weir_models::repository::{self, ModelConfig, ModelSource};
use weir_models::Backend;

use crate::error::ApiError;
use crate::metrics::{Metrics, VersionMetrics};
use crate::scheduler::{Policy, Scheduler};
use crate::stats::VersionStats;

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

    /// Why the server is not ready: one line per model it was told to serve that serves no
    /// version — every model in the store (the repository's folders and the registry models
    /// brought in so far) and every name in `required` (the registry's `--model`s, which have
    /// no folder until their first version is placed). Models unloaded on request are not
    /// counted: the operator asked for them to stop. Empty when everything serves.
    ///
    /// A model with one serving version and a failed other version counts as serving: it
    /// answers requests, and a refused new registry version must not take every replica out of
    /// rotation at once.
    pub fn not_serving<'a>(&self, required: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let models = self.models.load();
        let mut missing: Vec<String> = models
            .iter()
            .filter(|(_, entry)| {
                entry.versions.is_empty() && entry.error.as_deref() != Some(UNLOADED)
            })
            .map(|(name, entry)| {
                let reason = entry.unavailable_reason();
                if reason.is_empty() {
                    format!("model '{name}' has no version to serve")
                } else {
                    format!("model '{name}' is not available: {reason}")
                }
            })
            .collect();
        for name in required {
            if !models.contains_key(name) {
                missing.push(format!("model '{name}' has not been loaded yet"));
            }
        }
        missing
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
            let mut versions: Vec<u64> = entry
                .versions
                .keys()
                .chain(entry.failures.keys())
                .copied()
                .collect();
            versions.sort_unstable();
            versions.dedup();
            for version in versions {
                let failure = entry.failures.get(&version);
                let (state, reason) = match (entry.versions.contains_key(&version), failure) {
                    (true, None) => ("READY", String::new()),
                    (true, Some(reason)) => (
                        "READY",
                        format!("reload failed, the previous load still serves: {reason}"),
                    ),
                    (false, reason) => ("UNAVAILABLE", reason.cloned().unwrap_or_default()),
                };
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version.to_string()),
                    state,
                    reason,
                });
            }
        }
        rows.retain(|row| !ready_only || row.state == "READY");
        rows
    }
}

const UNLOADED: &str = "unloaded";

/// A model name is one path segment: no separators, no `..`, so it cannot leave the repository.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
}

/// Identifies what a version was loaded from: the config and each file's name, size and mtime.
fn fingerprint(dir: &Path, config: &ModelConfig) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{config:?}").hash(&mut hasher);
    let mut files: Vec<(String, u64, Option<std::time::SystemTime>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let metadata = entry.metadata().ok()?;
                    Some((
                        entry.file_name().to_string_lossy().into_owned(),
                        metadata.len(),
                        metadata.modified().ok(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_cannot_leave_the_repository() {
        for bad in ["", ".", "..", "../etc", "a/b", ".hidden", "a\\b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(is_plain_name("iris-v2_final"));
    }

    #[test]
    fn the_fingerprint_changes_with_files_and_config() {
        let dir = std::env::temp_dir().join(format!("weir-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), b"one").unwrap();
        let config = ModelConfig::default();
        let first = fingerprint(&dir, &config);
        assert_eq!(first, fingerprint(&dir, &config));
        std::fs::write(dir.join("model.onnx"), b"three").unwrap();
        let changed = fingerprint(&dir, &config);
        assert_ne!(first, changed);
        let other = ModelConfig {
            instance_count: 2,
            ..ModelConfig::default()
        };
        assert_ne!(changed, fingerprint(&dir, &other));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
