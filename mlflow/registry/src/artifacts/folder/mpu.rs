//! MLflow's multipart uploads on the folder backend: each part is streamed into its own file
//! under `.weir/mpu/<upload id>/` (named by its number and sha256, which is the part's ETag);
//! completing concatenates the parts the client lists into the target the way any upload is
//! written (temporary file, synced, renamed), and removes the folder; aborting removes it.
//! The upload id is 128 random bits, so one client cannot add parts to another's upload.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::FolderStore;
use crate::artifacts::parts::{check_number, sorted, PartFile};
use crate::artifacts::paths::{self, RESERVED_DIR};
use crate::artifacts::reader::ByteReader;
use crate::artifacts::stream::UploadError;
use crate::error::StoreError;

impl FolderStore {
    fn uploads(&self) -> PathBuf {
        self.root.join(RESERVED_DIR).join("mpu")
    }

    /// Starts a multipart upload to `relative` (a writable path); returns its id.
    pub async fn mpu_create(&self, relative: &str) -> Result<String, StoreError> {
        self.check_writable(relative)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let folder = self.uploads().join(&id);
        let io = |e: std::io::Error| {
            StoreError::Internal(format!("cannot start an upload of '{relative}': {e}"))
        };
        tokio::fs::create_dir_all(&folder).await.map_err(io)?;
        tokio::fs::write(folder.join("target"), normalized(relative)?)
            .await
            .map_err(io)?;
        Ok(id)
    }

    /// The folder of upload `id`, which must have been started for `relative`.
    async fn upload_folder(&self, relative: &str, id: &str) -> Result<PathBuf, StoreError> {
        self.check_writable(relative)?;
        let unknown = || {
            StoreError::NotFound(format!(
                "no multipart upload '{id}' of artifact '{relative}'"
            ))
        };
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let folder = self.uploads().join(id);
        let target = tokio::fs::read_to_string(folder.join("target"))
            .await
            .map_err(|_| unknown())?;
        if target != normalized(relative)? {
            return Err(unknown());
        }
        Ok(folder)
    }

    /// Streams part `number` of upload `id` into its own file; returns its ETag (the part's
    /// sha256). A part sent again replaces the earlier one.
    pub async fn mpu_part(
        &self,
        relative: &str,
        id: &str,
        number: u32,
        body: &mut ByteReader,
        limit: u64,
    ) -> Result<String, UploadError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        check_number(number)?;
        let folder = self.upload_folder(relative, id).await?;
        let temporary = folder.join(format!(
            ".{number}.{}.partial",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_part(body, &temporary, relative, limit).await;
        let sha256 = match written {
            Ok(sha256) => sha256,
            Err(err) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(err);
            }
        };
        let io = |e: std::io::Error| {
            UploadError::Store(StoreError::Internal(format!(
                "cannot store part {number} of '{relative}': {e}"
            )))
        };
        for (old, _) in part_files(&folder, number).await.map_err(io)? {
            let _ = tokio::fs::remove_file(old).await;
        }
        tokio::fs::rename(&temporary, folder.join(format!("{number}.{sha256}.part")))
            .await
            .map_err(io)?;
        Ok(sha256)
    }

    /// Makes upload `id` visible at `relative`: the listed parts, in number order, each the one
    /// uploaded with that ETag, written as one file under the store's limit.
    pub async fn mpu_complete(
        &self,
        relative: &str,
        id: &str,
        parts: &[PartFile],
        limit: u64,
    ) -> Result<(), UploadError> {
        let folder = self.upload_folder(relative, id).await?;
        let mut files = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for part in sorted(parts)? {
            let etag = part.etag.trim_matches('"');
            let file = folder.join(format!("{}.{etag}.part", part.number));
            let size = match tokio::fs::metadata(&file).await {
                Ok(metadata) if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    metadata.len()
                }
                _ => {
                    return Err(StoreError::InvalidParameter(format!(
                        "part {} of '{relative}' with ETag {} was not uploaded",
                        part.number, part.etag
                    ))
                    .into())
                }
            };
            total = total.saturating_add(size);
            if total > limit {
                return Err(UploadError::TooLarge {
                    relative: relative.to_owned(),
                    limit,
                });
            }
            files.push(file);
        }
        let mut upload = self.begin_upload(relative, limit).await?;
        for file in files {
            let mut reader = ByteReader::file(&file).await.map_err(|e| {
                StoreError::Internal(format!("cannot read a part of '{relative}': {e}"))
            })?;
            while let Some(chunk) = reader.chunk().await.map_err(|e| {
                StoreError::Internal(format!("cannot read a part of '{relative}': {e}"))
            })? {
                upload.write(&chunk).await?;
            }
        }
        upload.finish().await?;
        let _ = tokio::fs::remove_dir_all(&folder).await;
        Ok(())
    }

    /// Drops upload `id` and every part sent to it.
    pub async fn mpu_abort(&self, relative: &str, id: &str) -> Result<(), StoreError> {
        let folder = self.upload_folder(relative, id).await?;
        tokio::fs::remove_dir_all(&folder).await.map_err(|e| {
            StoreError::Internal(format!("cannot remove the upload of '{relative}': {e}"))
        })
    }
}

/// The path an upload was started for, spelled one way (`a/./b` and `/a/b` are `a/b`).
fn normalized(relative: &str) -> Result<String, StoreError> {
    Ok(paths::segments(relative)?.join("/"))
}

async fn write_part(
    body: &mut ByteReader,
    target: &std::path::Path,
    relative: &str,
    limit: u64,
) -> Result<String, UploadError> {
    let io = |e: std::io::Error| {
        UploadError::Store(StoreError::Internal(format!(
            "cannot store a part of '{relative}': {e}"
        )))
    };
    let mut file = tokio::fs::File::create(target).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.chunk().await.map_err(|e| {
        StoreError::InvalidParameter(format!(
            "the upload of a part of '{relative}' broke off: {e}"
        ))
    })? {
        size = size.saturating_add(chunk.len() as u64);
        if size > limit {
            return Err(UploadError::TooLarge {
                relative: relative.to_owned(),
                limit,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok(crate::versions::hex(&hasher.finalize()))
}

/// The stored files of part `number` (normally one).
async fn part_files(
    folder: &std::path::Path,
    number: u32,
) -> std::io::Result<Vec<(PathBuf, String)>> {
    let prefix = format!("{number}.");
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(folder).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".part") {
            found.push((entry.path(), name));
        }
    }
    Ok(found)
}
