//! Artifacts in a local directory, addressed by relative paths that can never leave it.

mod stream;

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::store::VersionFile;

pub use stream::{FileBody, Upload, UploadError};

/// The largest artifact file an upload may write unless the store is opened with another
/// limit ([`ArtifactStore::with_max_file_bytes`]). Uploads are streamed to disk, so memory does
/// not grow with it; it bounds the disk one request can fill.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// One entry of a directory listing, as MLflow's artifact API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

pub struct ArtifactStore {
    root: PathBuf,
    max_file_bytes: u64,
}

impl ArtifactStore {
    pub fn open(root: &Path) -> Result<ArtifactStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| {
            StoreError::Internal(format!(
                "cannot create artifact root {}: {e}",
                root.display()
            ))
        })?;
        Ok(ArtifactStore {
            root: root.to_path_buf(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        })
    }

    /// The same store with another limit on one uploaded file (`--max-artifact-bytes`).
    pub fn with_max_file_bytes(mut self, limit: u64) -> ArtifactStore {
        self.max_file_bytes = limit;
        self
    }

    /// The largest file an upload may write; a larger one is refused (413) while it streams.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// Starts a streamed upload to `relative` under the same rules as [`ArtifactStore::put`]
    /// (not the root, not under `.weir/`, not over a folder): chunks go to a temporary file and
    /// [`Upload::finish`] makes the file durable and visible at once.
    pub async fn begin_upload(&self, relative: &str) -> Result<Upload, StoreError> {
        let path = self.check_writable(relative)?;
        Upload::begin(path, relative, self.max_file_bytes).await
    }

    /// The folder holding the artifacts (and, under [`RESERVED_DIR`], the versions' blobs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refuses a write or delete that would reach the whole store or the versions' storage:
    /// `DELETE .` once removed every artifact, and a write under `.weir/` could change a
    /// registered version's bytes.
    fn check_writable(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let path = self.resolve(relative)?;
        if path == self.root {
            return Err(StoreError::InvalidParameter(format!(
                "artifact path '{relative}' names the artifact root, which cannot be written or deleted"
            )));
        }
        if is_reserved(relative) {
            return Err(StoreError::PermissionDenied(format!(
                "artifact path '{relative}' is inside {RESERVED_DIR}/, where registered versions are kept; they cannot be changed"
            )));
        }
        Ok(path)
    }

    /// The file a relative artifact path names. Only plain segments are allowed: no `..`, no
    /// absolute paths, no backslashes or NUL, so a path cannot reach outside the root.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let invalid = || {
            StoreError::InvalidParameter(format!(
                "invalid artifact path '{relative}': use plain relative segments, without '..'"
            ))
        };
        if relative.contains(['\\', '\0']) {
            return Err(invalid());
        }
        let mut path = self.root.clone();
        for component in Path::new(relative.trim_start_matches('/')).components() {
            match component {
                Component::Normal(segment) => path.push(segment),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid())
                }
            }
        }
        Ok(path)
    }

    /// Stores bytes durably: written to a temporary file, synced, then renamed into place, so a
    /// reader never sees half a file and an acknowledged upload survives a crash.
    pub fn put(&self, relative: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.check_writable(relative)?;
        if path.is_dir() {
            return Err(StoreError::InvalidParameter(format!(
                "artifact path '{relative}' names a directory"
            )));
        }
        let io = |e: std::io::Error| {
            StoreError::Internal(format!("cannot store artifact '{relative}': {e}"))
        };
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(io)?;
        let temporary = parent.join(format!(
            ".{}.partial",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("artifact")
        ));
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        if let Ok(directory) = std::fs::File::open(parent) {
            let _ = directory.sync_all();
        }
        Ok(())
    }

    /// A file's bytes, whole: for small files only; downloads stream the file at
    /// [`ArtifactStore::file`] instead.
    pub fn get(&self, relative: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.file(relative)?;
        std::fs::read(&path)
            .map_err(|e| StoreError::Internal(format!("cannot read artifact '{relative}': {e}")))
    }

    /// Where an artifact file is on disk, for reading. The versions' storage is not readable
    /// this way: its blobs are served through the virtual version paths (see `versions`).
    pub fn file(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let path = self.resolve(relative)?;
        if is_reserved(relative) || !path.is_file() {
            return Err(StoreError::NotFound(format!(
                "artifact '{relative}' not found"
            )));
        }
        Ok(path)
    }

    /// The entries directly under `relative`, with paths relative to it (as MLflow lists them).
    /// Hidden entries (`.weir`, temporary `.*.partial` files) are never listed.
    pub fn list(&self, relative: &str) -> Result<Vec<FileInfo>, StoreError> {
        let dir = self.resolve(relative)?;
        if is_reserved(relative) {
            return Ok(Vec::new());
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<FileInfo> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                Some(FileInfo {
                    path: entry.file_name().to_string_lossy().into_owned(),
                    is_dir: metadata.is_dir(),
                    file_size: metadata.is_file().then_some(metadata.len()),
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Every file under `relative`, recursively, as paths relative to it, sorted.
    pub fn files(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.resolve(relative)?;
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        files_under(&dir)
            .map_err(|e| StoreError::Internal(format!("cannot list artifact '{relative}': {e}")))
    }

    /// The digest of an artifact folder (or file): sha256 over each file's relative path and
    /// sha256, in path order (`weir_models::digest::artifact_digest`). `None` when there is
    /// nothing there. Each file is hashed as it is read, so no file is held in memory.
    pub fn digest(&self, relative: &str) -> Result<Option<String>, StoreError> {
        let root = self.resolve(relative)?;
        let paths = if root.is_file() {
            vec![String::new()]
        } else {
            self.files(relative)?
        };
        if paths.is_empty() {
            return Ok(None);
        }
        let mut hashed = Vec::with_capacity(paths.len());
        for path in paths {
            let on_disk = if path.is_empty() {
                root.clone()
            } else {
                root.join(&path)
            };
            let (sha256, size) = sha256_of(&on_disk).map_err(|e| {
                StoreError::Internal(format!("cannot read artifact '{relative}/{path}': {e}"))
            })?;
            hashed.push(VersionFile { path, sha256, size });
        }
        Ok(Some(crate::versions::digest(&hashed)))
    }

    pub fn delete(&self, relative: &str) -> Result<(), StoreError> {
        let path = self.check_writable(relative)?;
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|_| StoreError::NotFound(format!("artifact '{relative}' not found")))
    }
}

/// A file's sha256 (lowercase hex) and size, read in chunks.
fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((crate::versions::hex(&hasher.finalize()), size))
}

/// The folder inside the artifact root where registered versions' files are kept
/// (content-addressed blobs); no artifact request may write or delete under it.
pub const RESERVED_DIR: &str = ".weir";

/// Whether a relative artifact path lies in [`RESERVED_DIR`] (or is it), compared on the path's
/// first real segment so `./.weir`, `/.weir/x` and `.WEIR` count too.
pub fn is_reserved(relative: &str) -> bool {
    Path::new(relative.trim_start_matches('/'))
        .components()
        .find_map(|c| match c {
            Component::Normal(segment) => Some(segment),
            _ => None,
        })
        .and_then(|segment| segment.to_str())
        .is_some_and(|segment| segment.eq_ignore_ascii_case(RESERVED_DIR))
}

/// Files under a folder as sorted relative paths with `/` separators (hidden files skipped).
pub fn files_under(folder: &Path) -> std::io::Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.path().is_dir() {
                walk(&entry.path(), &relative, out)?;
            } else {
                out.push(relative);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(folder, "", &mut files)?;
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_cover_names_and_contents() {
        let store = store("digest");
        store.put("m/1/model.onnx", b"weights").unwrap();
        store.put("m/1/config/extra.json", b"{}").unwrap();
        let digest = store.digest("m/1").unwrap().unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(
            store.files("m/1").unwrap(),
            ["config/extra.json", "model.onnx"]
        );
        assert_eq!(
            digest,
            weir_models::digest::artifact_digest([
                ("config/extra.json", &b"{}"[..]),
                ("model.onnx", &b"weights"[..])
            ]),
            "the streamed digest is the runtime's"
        );
        assert_eq!(
            store.digest("m/1/model.onnx").unwrap().unwrap(),
            weir_models::digest::artifact_digest([("", &b"weights"[..])])
        );
        store.put("m/1/model.onnx", b"weightz").unwrap();
        assert_ne!(store.digest("m/1").unwrap().unwrap(), digest);
        assert_eq!(store.digest("m/nothing").unwrap(), None);
    }

    fn store(tag: &str) -> ArtifactStore {
        let root =
            std::env::temp_dir().join(format!("weir-artifacts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        ArtifactStore::open(&root).unwrap()
    }

    #[test]
    fn put_get_list_delete() {
        let store = store("basics");
        store
            .put("1/run/artifacts/model/model.onnx", b"weights")
            .unwrap();
        store
            .put("1/run/artifacts/model/MLmodel", b"flavors: {}")
            .unwrap();
        assert_eq!(
            store.get("1/run/artifacts/model/model.onnx").unwrap(),
            b"weights"
        );
        let listed = store.list("1/run/artifacts/model").unwrap();
        assert_eq!(
            listed.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["MLmodel", "model.onnx"]
        );
        assert_eq!(listed[1].file_size, Some(7));
        assert!(store.list("1/run/artifacts").unwrap()[0].is_dir);
        assert!(store.list("nothing/here").unwrap().is_empty());
        store.delete("1/run/artifacts/model/MLmodel").unwrap();
        assert!(matches!(
            store.get("1/run/artifacts/model/MLmodel"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn paths_cannot_leave_the_root() {
        let store = store("traversal");
        for bad in [
            "../escape",
            "a/../../escape",
            "a\\b",
            "a\0b",
            "/../etc/passwd",
        ] {
            assert!(
                matches!(store.put(bad, b"x"), Err(StoreError::InvalidParameter(_))),
                "{bad:?}"
            );
            assert!(store.get(bad).is_err(), "{bad:?}");
        }
        // A leading slash is relative to the root, not the filesystem's.
        store.put("/inside.txt", b"ok").unwrap();
        assert_eq!(store.get("inside.txt").unwrap(), b"ok");
        assert!(matches!(
            store.put("", b"x"),
            Err(StoreError::InvalidParameter(_))
        ));
    }
}
