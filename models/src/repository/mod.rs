//! Reading a Triton-style model repository from disk.
//!
//! ```text
//! DIR/<model>/config.toml          optional
//! DIR/<model>/<version>/model.onnx
//! ```
//! Versions are positive integers; other entries in a model folder are ignored, as Triton does.
//! A problem with one model (a bad config, no versions) is reported for that model only, so one
//! broken model never keeps the others from serving.

mod config;
mod load;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use config::{DynamicBatching, ModelConfig, QueuePolicy, VersionPolicy};
pub use load::load_version;

/// A model folder as found on disk.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub name: String,
    pub config: ModelConfig,
    /// The versions the policy selects, each with its folder.
    pub versions: Vec<(u64, PathBuf)>,
}

/// Why a model folder (or the repository itself) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    #[error("cannot read model repository {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("invalid {path}: {reason}")]
    InvalidConfig { path: String, reason: String },
    #[error("model '{model}' has no version folders (expected {dir}/1/model.onnx)")]
    NoVersions { model: String, dir: String },
    #[error("model '{model}' has no version folder matching its version_policy")]
    NoSelectedVersions { model: String },
    #[error(
        "no model artifact in {dir} (expected model.onnx, model.safetensors with weir.toml, \
         or a Hugging Face folder with model.safetensors, config.json and tokenizer.json)"
    )]
    NoArtifact { dir: String },
    #[error("unknown platform \"{platform}\" in {path} (weir serves onnxruntime_onnx, candle_safetensors and candle_bert)")]
    UnknownPlatform { platform: String, path: String },
}

/// A model folder's name and what reading it gave.
pub type ScannedModel = (String, Result<ModelSource, RepositoryError>);

/// Lists the model folders of a repository, each read on its own so one failure stays local.
pub fn scan(root: &Path) -> Result<Vec<ScannedModel>, RepositoryError> {
    let unreadable = |reason: std::io::Error| RepositoryError::Unreadable {
        path: root.display().to_string(),
        reason: reason.to_string(),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        // Follows symbolic links: a model folder may be linked in from elsewhere.
        let is_dir = entry.path().is_dir();
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            if !name.starts_with('.') {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let source = read_model(root, &name);
            (name, source)
        })
        .collect())
}

/// Reads one model folder: its config and the versions its policy selects.
pub fn read_model(root: &Path, name: &str) -> Result<ModelSource, RepositoryError> {
    let dir = root.join(name);
    let config = config::read_config(&dir.join("config.toml"))?;
    let mut available = BTreeSet::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| RepositoryError::Unreadable {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let version = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok());
        if let (Some(version @ 1..), true) = (version, entry.path().is_dir()) {
            available.insert(version);
        }
    }
    if available.is_empty() {
        return Err(RepositoryError::NoVersions {
            model: name.to_owned(),
            dir: dir.display().to_string(),
        });
    }
    let selected = config.version_policy.select(&available);
    if selected.is_empty() {
        return Err(RepositoryError::NoSelectedVersions {
            model: name.to_owned(),
        });
    }
    Ok(ModelSource {
        name: name.to_owned(),
        versions: selected
            .into_iter()
            .map(|v| (v, dir.join(v.to_string())))
            .collect(),
        config,
    })
}

#[cfg(test)]
mod tests;
