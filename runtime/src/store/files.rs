//! What a model folder on disk is: a safe name, and a fingerprint of what a version was
//! loaded from (a reload keeps a version whose fingerprint has not changed).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use weir_models::repository::ModelConfig;

/// A model name is one path segment: no separators, no `..`, so it cannot leave the repository.
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
}

/// Identifies what a version was loaded from: the config and each file's name, size and mtime.
pub(super) fn fingerprint(dir: &Path, config: &ModelConfig) -> u64 {
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
