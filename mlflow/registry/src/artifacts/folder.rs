//! The folder backend: artifacts in a local directory, addressed by relative paths that can
//! never leave it; every write is synced before it is acknowledged.

mod mpu;

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::paths::{self, is_reserved, RESERVED_DIR};
use super::reader::ByteReader;
use super::stream::FolderUpload;
use super::FileInfo;
use crate::error::StoreError;

#[derive(Debug, Clone)]
pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    pub fn open(root: &Path) -> Result<FolderStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| {
            StoreError::Internal(format!(
                "cannot create artifact root {}: {e}",
                root.display()
            ))
        })?;
        Ok(FolderStore {
            root: root.to_path_buf(),
        })
    }

    /// The folder holding the artifacts (and, under [`RESERVED_DIR`], the versions' blobs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub async fn begin_upload(
        &self,
        relative: &str,
        limit: u64,
    ) -> Result<FolderUpload, StoreError> {
        let path = self.check_writable(relative)?;
        FolderUpload::begin(path, relative, limit).await
    }

    /// Refuses the root and anything under `.weir/` (see [`paths::check_writable`]).
    fn check_writable(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let path = self.resolve(relative)?;
        paths::check_writable(relative)?;
        Ok(path)
    }

    /// The file a relative artifact path names. Only plain segments are allowed: no `..`, no
    /// absolute paths, no backslashes or NUL, so a path cannot reach outside the root.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, StoreError> {
        if relative.contains(['\\', '\0']) {
            return Err(paths::invalid(relative));
        }
        let mut path = self.root.clone();
        for component in Path::new(relative.trim_start_matches('/')).components() {
            match component {
                Component::Normal(segment) => path.push(segment),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(paths::invalid(relative))
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
            .filter(|e| !paths::is_hidden(&e.file_name().to_string_lossy()))
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

    /// The files a registration source names, as (path in the version, file on disk): a
    /// folder's files, or a single file under its base name. Empty when nothing is there.
    pub fn source_files(&self, relative: &str) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let on_disk = self.resolve(relative)?;
        if on_disk.is_file() {
            let name = on_disk
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(vec![(name, on_disk)]);
        }
        Ok(self
            .files(relative)?
            .into_iter()
            .map(|path| {
                let file = on_disk.join(&path);
                (path, file)
            })
            .collect())
    }

    /// The digest of an artifact folder (or file), read from disk (tests check the streamed
    /// copies against it): sha256 over each file's relative path and
    /// sha256, in path order (`weir_models::digest::artifact_digest`). `None` when there is
    /// nothing there. Each file is hashed as it is read, so no file is held in memory.
    #[cfg(test)]
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
            hashed.push(crate::store::VersionFile { path, sha256, size });
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

    /// Where the blob with this sha256 (lowercase hex) lives.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join(RESERVED_DIR)
            .join("blobs")
            .join("sha256")
            .join(sha256)
    }

    /// Copies bytes into the blob store, hashing exactly the bytes it writes: streamed into a
    /// temporary file (synced, then renamed into place, so a blob is never partial). An
    /// existing blob is kept (same hash, same bytes). Returns the sha256 and the size.
    pub async fn store_blob(&self, source: &mut ByteReader) -> std::io::Result<(String, u64)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temporary_dir = self.root.join(RESERVED_DIR).join("tmp");
        tokio::fs::create_dir_all(&temporary_dir).await?;
        let temporary = temporary_dir.join(format!(
            "{}-{}.partial",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let (sha256, size) = match copy_hashing(source, &temporary).await {
            Ok(done) => done,
            Err(err) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(err);
            }
        };
        let blob = self.blob_path(&sha256);
        if tokio::fs::metadata(&blob).await.is_ok_and(|m| m.is_file()) {
            tokio::fs::remove_file(&temporary).await?;
            return Ok((sha256, size));
        }
        let blob_dir = blob.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&blob_dir).await?;
        if let Err(err) = tokio::fs::rename(&temporary, &blob).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(err);
        }
        tokio::task::spawn_blocking(move || std::fs::File::open(blob_dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
        Ok((sha256, size))
    }
}

async fn copy_hashing(source: &mut ByteReader, target: &Path) -> std::io::Result<(String, u64)> {
    let mut output = tokio::fs::File::create(target).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = source.chunk().await? {
        hasher.update(&chunk);
        output.write_all(&chunk).await?;
        size += chunk.len() as u64;
    }
    output.flush().await?;
    output.sync_all().await?;
    Ok((crate::versions::hex(&hasher.finalize()), size))
}

/// A file's sha256 (lowercase hex) and size, read in chunks.
#[cfg(test)]
fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
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

/// Files under a folder as sorted relative paths with `/` separators (hidden files skipped).
pub fn files_under(folder: &Path) -> std::io::Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if paths::is_hidden(&name) {
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
mod tests;
