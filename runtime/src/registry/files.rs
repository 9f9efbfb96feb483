//! The files of a registry version on this disk: which paths a registry may name, the digest
//! check, and placing a verified version where the loader reads it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a downloaded version could not be put on this disk: the version is refused with this
/// reason (recorded in the repository index), the one serving stays.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot place {served_as} version {version} in {}: {source}", root.display())]
    Place {
        served_as: String,
        version: u64,
        root: PathBuf,
        source: std::io::Error,
    },
}

/// A file path a registry may name inside a version: relative, plain segments only.
pub(super) fn safe_path(path: &str) -> bool {
    !path.contains('\\')
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `weir_models::digest::artifact_digest` from per-file hashes rather than whole contents (sha256
/// over `path NUL sha256(file) LF`, in the registry's path order), so a downloaded file never
/// needs to be in memory or read twice.
pub(super) fn digest_of_hashes(files: &[(String, String)]) -> String {
    let mut outer = Sha256::new();
    for (path, sha256) in files {
        outer.update(path.as_bytes());
        outer.update([0]);
        outer.update(sha256.as_bytes());
        outer.update(b"\n");
    }
    hex(&outer.finalize())
}

/// Syncs every folder under (and including) `folder`, so the files' names survive a crash as
/// their bytes already do.
pub(super) fn sync_folders(folder: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_folders(&entry.path())?;
        }
    }
    std::fs::File::open(folder)?.sync_all()
}

/// Moves a downloaded, verified version from `incoming` to `root/served_as/version` (synced
/// first, then renamed, so a half-written version is never loaded) and removes the other
/// versions of that model.
pub(super) fn place(
    root: &Path,
    served_as: &str,
    version: u64,
    incoming: &Path,
) -> Result<(), PlaceError> {
    let io = |source: std::io::Error| PlaceError::Place {
        served_as: served_as.to_owned(),
        version,
        root: root.to_path_buf(),
        source,
    };
    if !incoming.is_dir() {
        // A version without files: an empty folder, as before.
        std::fs::create_dir_all(incoming).map_err(io)?;
    }
    sync_folders(incoming).map_err(io)?;
    let model_dir = root.join(served_as);
    std::fs::create_dir_all(&model_dir).map_err(io)?;
    let destination = model_dir.join(version.to_string());
    let _ = std::fs::remove_dir_all(&destination);
    std::fs::rename(incoming, &destination).map_err(io)?;
    std::fs::File::open(&model_dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io)?;
    for entry in std::fs::read_dir(&model_dir).map_err(io)?.flatten() {
        let other = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok());
        if other.is_some_and(|v| v != version) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_hashes_are_the_models_digest() {
        let files: [(&str, &[u8]); 2] = [("config/extra.json", b"{}"), ("model.onnx", b"weights")];
        let hashed: Vec<(String, String)> = files
            .iter()
            .map(|(path, bytes)| (path.to_string(), hex(&Sha256::digest(bytes))))
            .collect();
        assert_eq!(
            digest_of_hashes(&hashed),
            weir_models::digest::artifact_digest(files)
        );
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(safe_path("model.onnx"));
        assert!(safe_path("config/extra.json"));
        for bad in [
            "",
            "/etc/passwd",
            "a/../../b",
            "..",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert!(!safe_path(bad), "{bad:?}");
        }
    }
}
