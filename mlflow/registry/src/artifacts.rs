//! Artifacts, addressed by relative paths that can never leave the store, in one of two
//! backends behind one API: a local folder (`folder`) or a prefix of an S3-compatible bucket
//! (`bucket`). The handlers and the versions' blob storage use only [`ArtifactStore`]; both
//! backends stream (an upload, a download, a copy into a blob), so memory does not grow with a
//! file's size, and both refuse writes to the root and under [`RESERVED_DIR`].

pub mod bucket;
mod folder;
mod location;
mod parts;
mod paths;
mod range;
mod reader;
mod stream;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::StoreError;
use crate::store::VersionFile;
use bucket::{BucketStore, BucketUpload};
use folder::FolderStore;
use stream::FolderUpload;

pub use folder::files_under;
pub use location::ArtifactLocation;
pub use parts::{PartFile, MAX_PARTS};
pub use paths::{is_reserved, RESERVED_DIR};
pub use range::{RangeSpec, Served};
pub use reader::ByteReader;
pub use stream::{FileBody, UploadError};

/// The largest artifact file an upload may write unless the store is opened with another
/// limit ([`ArtifactStore::with_max_file_bytes`]). Uploads are streamed, so memory does not
/// grow with it; it bounds the storage one request can fill.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// One entry of a directory listing, as MLflow's artifact API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// A file being downloaded: its whole size, what is served of it, and those bytes as a
/// streamed body.
pub struct Download {
    pub size: u64,
    pub served: Served,
    pub body: axum::body::Body,
}

pub struct ArtifactStore {
    backend: Backend,
    max_file_bytes: u64,
}

enum Backend {
    Folder(FolderStore),
    // Boxed: the bucket's state is ten times the folder's, and the store is made once.
    Bucket(Box<BucketStore>),
}

impl ArtifactStore {
    /// The folder backend at `root` (created if missing).
    pub fn open(root: &Path) -> Result<ArtifactStore, StoreError> {
        Ok(ArtifactStore::with_backend(Backend::Folder(
            FolderStore::open(root)?,
        )))
    }

    /// The store `--artifacts` names: a folder, or a bucket prefix configured from the
    /// standard `AWS_*` environment, which must answer a listing now (a wrong endpoint, bucket
    /// or credentials fail the start, not the first upload).
    pub async fn connect(location: &ArtifactLocation) -> Result<ArtifactStore, StoreError> {
        match location {
            ArtifactLocation::Folder(root) => ArtifactStore::open(root),
            ArtifactLocation::Bucket { bucket, prefix } => {
                let store = bucket::config::open(bucket, prefix)?;
                store.check_access().await?;
                Ok(ArtifactStore::with_backend(Backend::Bucket(Box::new(
                    store,
                ))))
            }
        }
    }

    /// The bucket backend over any object store, under `prefix` (tests use object_store's
    /// in-memory store, and a real S3 server through [`bucket::config::open`]).
    pub fn on_bucket(store: BucketStore) -> ArtifactStore {
        ArtifactStore::with_backend(Backend::Bucket(Box::new(store)))
    }

    /// The bucket backend on an empty in-memory object store (for tests).
    pub fn in_memory() -> ArtifactStore {
        let memory: Arc<dyn bucket::Bucket> = Arc::new(object_store::memory::InMemory::new());
        // An empty prefix is always valid.
        let store = BucketStore::new(memory, "", "memory://")
            .unwrap_or_else(|_| unreachable!("an empty prefix is valid"));
        ArtifactStore::on_bucket(store)
    }

    fn with_backend(backend: Backend) -> ArtifactStore {
        ArtifactStore {
            backend,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
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

    /// Where the artifacts are, for the start-up line: a folder or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Folder(folder) => folder.root().display().to_string(),
            Backend::Bucket(bucket) => bucket.name().to_owned(),
        }
    }

    /// The folder holding the artifacts, for the folder backend.
    pub fn folder_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Folder(folder) => Some(folder.root()),
            Backend::Bucket(_) => None,
        }
    }

    /// Refuses a path that could leave the store (`..`, backslashes, NUL).
    pub fn check_path(&self, relative: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Folder(folder) => folder.resolve(relative).map(|_| ()),
            Backend::Bucket(_) => paths::segments(relative).map(|_| ()),
        }
    }

    /// Starts a streamed upload to `relative` (not the root, not under `.weir/`, not over a
    /// folder): nothing is visible until [`Upload::finish`], and a body past the store's
    /// limit is refused as it streams.
    pub async fn begin_upload(&self, relative: &str) -> Result<Upload, StoreError> {
        let limit = self.max_file_bytes;
        Ok(Upload(match &self.backend {
            Backend::Folder(folder) => {
                UploadTo::Folder(folder.begin_upload(relative, limit).await?)
            }
            Backend::Bucket(bucket) => {
                UploadTo::Bucket(bucket.begin_upload(relative, limit).await?)
            }
        }))
    }

    /// Stores a small file whole (tests, and callers that have the bytes already).
    pub async fn put(&self, relative: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if let Backend::Folder(folder) = &self.backend {
            let (folder, relative, bytes) = (folder.clone(), relative.to_owned(), bytes.to_vec());
            return blocking(move || folder.put(&relative, &bytes)).await;
        }
        let mut upload = self.begin_upload(relative).await?;
        upload.write(bytes).await.map_err(UploadError::into_store)?;
        upload.finish().await.map_err(UploadError::into_store)?;
        Ok(())
    }

    /// An artifact file (not under `.weir/`), all of it or the range asked for, streamed.
    pub async fn read(
        &self,
        relative: &str,
        range: Option<RangeSpec>,
    ) -> Result<Download, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => {
                let (store, name) = (folder.clone(), relative.to_owned());
                let path = blocking(move || store.file(&name)).await?;
                read_file(&path, relative, range).await
            }
            Backend::Bucket(bucket) => bucket.read(relative, range).await,
        }
    }

    /// A blob of the versions' storage, by its sha256.
    pub async fn read_blob(
        &self,
        sha256: &str,
        range: Option<RangeSpec>,
    ) -> Result<Download, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => read_file(&folder.blob_path(sha256), sha256, range).await,
            Backend::Bucket(bucket) => bucket.read_blob(sha256, range).await,
        }
    }

    /// A short-lived presigned GET of a blob, for a server downloading straight from the
    /// bucket (`weir serve --registry-direct-download`); `None` when the store cannot hand one
    /// out (a folder, or a bucket without a signer), and the server downloads through weir.
    pub async fn presign_blob(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Folder(_) => Ok(None),
            Backend::Bucket(bucket) => bucket.presign_blob(sha256).await,
        }
    }

    /// A file's bytes, whole: for small files only (tests); downloads stream [`Self::read`].
    pub async fn get(&self, relative: &str) -> Result<Vec<u8>, StoreError> {
        collect(self.read(relative, None).await?, relative).await
    }

    /// A blob's bytes, whole (small files only; tests).
    pub async fn get_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        collect(self.read_blob(sha256, None).await?, sha256).await
    }

    /// The entries directly under `relative`, with paths relative to it (as MLflow lists them).
    /// Hidden entries (`.weir`, temporary `.*.partial` files) are never listed.
    pub async fn list(&self, relative: &str) -> Result<Vec<FileInfo>, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => {
                let (folder, relative) = (folder.clone(), relative.to_owned());
                blocking(move || folder.list(&relative)).await
            }
            Backend::Bucket(bucket) => bucket.list(relative).await,
        }
    }

    /// Every file under `relative`, recursively, as paths relative to it, sorted.
    pub async fn files(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => {
                let (folder, relative) = (folder.clone(), relative.to_owned());
                blocking(move || folder.files(&relative)).await
            }
            Backend::Bucket(bucket) => bucket.files(relative).await,
        }
    }

    /// [`Self::files`] for a caller already on a blocking thread (inside a store call): the
    /// bucket's listing runs on the runtime from there.
    pub fn files_blocking(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => folder.files(relative),
            Backend::Bucket(bucket) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    StoreError::Internal("listing a bucket needs the runtime".to_owned())
                })?;
                runtime.block_on(bucket.files(relative))
            }
        }
    }

    /// Deletes an artifact (a file, or a folder and everything in it).
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Folder(folder) => {
                let (folder, relative) = (folder.clone(), relative.to_owned());
                blocking(move || folder.delete(&relative)).await
            }
            Backend::Bucket(bucket) => bucket.delete(relative).await,
        }
    }

    /// Copies the files of a source in this store (a folder, or a single file recorded under
    /// its base name) into the blob store, in path order, hashing exactly the bytes copied.
    /// Empty when nothing is there.
    pub async fn capture(&self, relative: &str) -> Result<Vec<VersionFile>, StoreError> {
        paths::segments(relative)?;
        let mut files = Vec::new();
        match &self.backend {
            Backend::Folder(folder) => {
                let (store, name) = (folder.clone(), relative.to_owned());
                for (path, on_disk) in blocking(move || store.source_files(&name)).await? {
                    let mut reader = ByteReader::file(&on_disk).await.map_err(|e| {
                        StoreError::Internal(format!(
                            "cannot read artifact '{relative}/{path}': {e}"
                        ))
                    })?;
                    files.push(self.blob_of(path, &mut reader, relative).await?);
                }
            }
            Backend::Bucket(bucket) => {
                for (path, key) in bucket.source_files(relative).await? {
                    let mut reader = bucket.open(&key).await?;
                    files.push(self.blob_of(path, &mut reader, relative).await?);
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Copies the files of `key` (an object, or a folder of them) in another bucket — an
    /// `s3://` registration source — into the blob store.
    pub async fn capture_from(
        &self,
        source: &BucketStore,
        key: &str,
    ) -> Result<Vec<VersionFile>, StoreError> {
        let mut files = Vec::new();
        for (path, object) in source.source_files(key).await? {
            let mut reader = source.open(&object).await?;
            files.push(self.blob_of(path, &mut reader, key).await?);
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    async fn blob_of(
        &self,
        path: String,
        reader: &mut ByteReader,
        source: &str,
    ) -> Result<VersionFile, StoreError> {
        let (sha256, size) = self.store_blob(reader).await.map_err(|e| match e {
            StoreError::Internal(reason) => {
                StoreError::Internal(format!("cannot copy '{source}/{path}': {reason}"))
            }
            other => other,
        })?;
        Ok(VersionFile { path, sha256, size })
    }

    /// Streams bytes into the blob store; returns their sha256 and size.
    pub async fn store_blob(&self, reader: &mut ByteReader) -> Result<(String, u64), StoreError> {
        match &self.backend {
            Backend::Folder(folder) => folder
                .store_blob(reader)
                .await
                .map_err(|e| StoreError::Internal(e.to_string())),
            Backend::Bucket(bucket) => bucket.store_blob(reader).await,
        }
    }

    /// The sha256 of every blob stored, sorted (tests count them).
    pub async fn blobs(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => {
                let dir = folder.blob_path("");
                blocking(move || match std::fs::read_dir(&dir) {
                    Err(_) => Ok(Vec::new()),
                    Ok(entries) => {
                        let mut found: Vec<String> = entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        found.sort();
                        Ok(found)
                    }
                })
                .await
            }
            Backend::Bucket(bucket) => {
                let listed = bucket.list_blobs().await?;
                Ok(listed)
            }
        }
    }

    /// Starts one of MLflow's multipart uploads to `relative`; returns its id.
    pub async fn mpu_create(&self, relative: &str) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Folder(folder) => folder.mpu_create(relative).await,
            Backend::Bucket(bucket) => bucket.mpu_create(relative).await,
        }
    }

    /// Streams part `number` of upload `id` (at most the store's limit); returns its ETag.
    pub async fn mpu_part(
        &self,
        relative: &str,
        id: &str,
        number: u32,
        body: axum::body::Body,
        length: Option<u64>,
    ) -> Result<String, UploadError> {
        let limit = self.max_file_bytes;
        if length.is_some_and(|length| length > limit) {
            return Err(UploadError::TooLarge {
                relative: relative.to_owned(),
                limit,
            });
        }
        match &self.backend {
            Backend::Folder(folder) => {
                let mut reader = ByteReader::body(body);
                folder
                    .mpu_part(relative, id, number, &mut reader, limit)
                    .await
            }
            Backend::Bucket(bucket) => {
                bucket
                    .mpu_part(relative, id, number, body, length, limit)
                    .await
            }
        }
    }

    /// Makes upload `id` visible at `relative` from the listed parts (at most the store's
    /// limit in all).
    pub async fn mpu_complete(
        &self,
        relative: &str,
        id: &str,
        parts: &[PartFile],
    ) -> Result<(), UploadError> {
        let limit = self.max_file_bytes;
        match &self.backend {
            Backend::Folder(folder) => folder.mpu_complete(relative, id, parts, limit).await,
            Backend::Bucket(bucket) => bucket.mpu_complete(relative, id, parts, limit).await,
        }
    }

    /// Drops upload `id` and its parts.
    pub async fn mpu_abort(&self, relative: &str, id: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Folder(folder) => folder.mpu_abort(relative, id).await,
            Backend::Bucket(bucket) => bucket.mpu_abort(relative, id).await,
        }
    }
}

/// An upload in progress, to either backend (see [`ArtifactStore::begin_upload`]).
pub struct Upload(UploadTo);

enum UploadTo {
    Folder(FolderUpload),
    Bucket(BucketUpload),
}

impl Upload {
    /// Appends one chunk; refuses it when it would take the file past the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        match &mut self.0 {
            UploadTo::Folder(upload) => upload.write(chunk).await,
            UploadTo::Bucket(upload) => upload.write(chunk).await,
        }
    }

    /// Makes the upload durable and visible; returns the size written.
    pub async fn finish(self) -> Result<u64, UploadError> {
        match self.0 {
            UploadTo::Folder(upload) => upload.finish().await,
            UploadTo::Bucket(upload) => upload.finish().await,
        }
    }
}

/// A file on disk as a download: the size from the open file (artifacts are replaced by
/// rename and blobs never change, so the open file keeps it).
async fn read_file(
    path: &Path,
    relative: &str,
    range: Option<RangeSpec>,
) -> Result<Download, StoreError> {
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => {
            StoreError::NotFound(format!("artifact '{relative}' not found"))
        }
        _ => StoreError::Internal(format!("cannot read artifact '{relative}': {e}")),
    };
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    let size = file.metadata().await.map_err(failed)?.len();
    let served = range::served(range, size);
    let (start, end) = match served {
        Served::Whole => (0, size),
        Served::Part { start, end } => (start, end),
        Served::Unsatisfiable => (0, 0),
    };
    let body = FileBody::range(file, start, end).await.map_err(failed)?;
    Ok(Download {
        size,
        served,
        body: axum::body::Body::new(body),
    })
}

async fn collect(download: Download, relative: &str) -> Result<Vec<u8>, StoreError> {
    use http_body_util::BodyExt;
    download
        .body
        .collect()
        .await
        .map(|bytes| bytes.to_bytes().to_vec())
        .map_err(|e| StoreError::Internal(format!("cannot read artifact '{relative}': {e}")))
}

/// Runs blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Internal(format!("an artifact operation did not finish: {e}")))?
}

#[cfg(test)]
mod tests;
