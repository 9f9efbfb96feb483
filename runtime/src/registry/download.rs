//! Downloading a version's files: streamed to disk as they arrive, hashed on the way (memory
//! does not grow with a model's size), under one deadline for the whole version, and synced
//! before the version is placed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::{answered, SyncError};
use super::fetch::ResolvedVersion;
use super::files::{hex, PlaceError};
use super::{authorization_header, RegistrySync};

/// How long downloading one version's files may take in all, unless
/// [`RegistrySync::with_download_deadline`] says otherwise: a registry that stalls or trickles
/// cannot hold the sync (and the next poll) for longer.
pub const DEFAULT_DOWNLOAD_DEADLINE: Duration = Duration::from_secs(600);

/// Chunks queued between the download and the thread writing them to disk: bounds the memory
/// of a download whose disk is slower than its network.
const QUEUED_CHUNKS: usize = 8;

/// Why one file of a version did not arrive whole on disk.
pub(super) enum FileError {
    /// The registry (or the network, or the deadline) failed: nothing to record.
    Sync(SyncError),
    /// The file could not be written here: the version is refused with this reason.
    Place(PlaceError),
}

/// Where one file comes from: the registry's artifact endpoint (with the registry's token), or
/// a presigned bucket URL (`--registry-direct-download`) — which is a bearer secret for its
/// lifetime, so errors and logs name the blob's sha256 instead, and the registry's token is
/// never sent to the bucket.
pub(super) enum Origin<'a> {
    Registry(&'a str),
    Bucket { url: &'a str, sha256: &'a str },
}

impl RegistrySync {
    /// Streams one file to `target` by `deadline`, hashing it on the way: chunks go through a
    /// bounded queue to a blocking thread that writes, hashes and finally syncs the file.
    /// Returns its sha256 (lowercase hex).
    pub(super) async fn download(
        &self,
        origin: Origin<'_>,
        target: PathBuf,
        deadline: tokio::time::Instant,
    ) -> Result<String, FileError> {
        let authorization = self.authorization();
        let (url, shown, headers, direct) = match origin {
            Origin::Registry(path_and_query) => {
                let url = format!("{}{path_and_query}", self.source.url.trim_end_matches('/'));
                (
                    url.clone(),
                    url,
                    authorization_header(&authorization),
                    false,
                )
            }
            Origin::Bucket { url, sha256 } => (
                url.to_owned(),
                format!("the bucket (presigned download of blob sha256 {sha256})"),
                Vec::new(),
                true,
            ),
        };
        let unreachable = |reason: String| {
            FileError::Sync(SyncError::Unreachable {
                url: shown.clone(),
                reason,
            })
        };
        let mut download = self
            .source
            .http
            .download(&url, &headers, deadline)
            .await
            .map_err(unreachable)?;
        let status = download.status();
        if !(200..300).contains(&status) {
            // A bucket's error document may echo the signed request: only its status is kept.
            let body = if direct {
                String::new()
            } else {
                download.text(64 * 1024).await
            };
            return Err(FileError::Sync(answered(
                status,
                shown.clone(),
                body.as_bytes(),
            )));
        }
        let (chunks, queue) = tokio::sync::mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || write_hashing(&target, queue));
        let mut broke_off = None;
        loop {
            match download.chunk().await {
                Ok(Some(chunk)) => {
                    // A disk slower than the network holds the download here, under the same
                    // deadline.
                    match tokio::time::timeout_at(deadline, chunks.send(chunk)).await {
                        Ok(Ok(())) => {}
                        // The writer stopped (its error comes out of `writer` below).
                        Ok(Err(_)) => break,
                        Err(_) => {
                            broke_off =
                                Some("the download did not finish before its deadline".to_owned());
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(reason) => {
                    broke_off = Some(reason);
                    break;
                }
            }
        }
        drop(chunks);
        let written = writer
            .await
            .map_err(|e| FileError::Sync(SyncError::Task(e.to_string())))?;
        if let Some(reason) = broke_off {
            return Err(unreachable(reason));
        }
        written.map_err(FileError::Place)
    }
}

impl RegistrySync {
    /// Downloads every file of a version into `incoming` under one deadline, from the bucket
    /// when the registry handed out presigned URLs, else through the registry; each file's
    /// (path, sha256) in the registry's order. The hashes are of the bytes that arrived, checked
    /// against the registry's digest by the caller either way.
    pub(super) async fn download_version(
        &self,
        resolved: &ResolvedVersion,
        incoming: &Path,
    ) -> Result<Vec<(String, String)>, FileError> {
        let deadline = tokio::time::Instant::now() + self.download_deadline;
        let artifact_path = resolved.artifact_path.as_deref().unwrap_or_default();
        let mut hashed = Vec::with_capacity(resolved.files.len());
        for (index, file) in resolved.files.iter().enumerate() {
            let through_registry =
                format!("/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/{file}");
            let origin = match resolved
                .direct
                .as_ref()
                .and_then(|direct| direct.get(index))
            {
                Some(blob) => Origin::Bucket {
                    url: blob.url.expose(),
                    sha256: &blob.sha256,
                },
                None => Origin::Registry(&through_registry),
            };
            let sha256 = self.download(origin, incoming.join(file), deadline).await?;
            hashed.push((file.clone(), sha256));
        }
        Ok(hashed)
    }
}

/// Writes the chunks from `queue` to a new file at `target` (folders created), hashing them,
/// and syncs it: the file's sha256 (lowercase hex), or why it could not be written.
fn write_hashing(
    target: &Path,
    mut queue: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<String, PlaceError> {
    let io = |source: std::io::Error| PlaceError::Write {
        path: target.to_path_buf(),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = std::fs::File::create(target).map_err(io)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = queue.blocking_recv() {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    Ok(hex(&hasher.finalize()))
}
