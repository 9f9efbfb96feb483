//! What the store reports about its models: the repository index and why the server is not
//! ready.

use serde::Serialize;

use super::{ModelStore, UNLOADED};

/// One row of `POST /v2/repository/index`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: &'static str,
    pub reason: String,
}

impl ModelStore {
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
