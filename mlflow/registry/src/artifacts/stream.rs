//! Artifacts moved in chunks, so the registry's memory does not grow with a file's size: an
//! upload goes to a temporary file as it arrives, a download is read from disk as it is sent.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::error::StoreError;

/// Bytes read from disk at a time for a download: large enough for few system calls, small
/// enough that a thousand concurrent downloads hold 64 MiB.
const READ_CHUNK: usize = 64 * 1024;

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body went past the store's limit (an HTTP 413).
    #[error("artifact '{relative}' is larger than the {limit} bytes an upload may have")]
    TooLarge { relative: String, limit: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UploadError {
    /// The error as the store's, for callers that answer every failure the same way (a body
    /// over the limit is then a client mistake, 400).
    pub fn into_store(self) -> StoreError {
        match self {
            UploadError::TooLarge { .. } => StoreError::InvalidParameter(self.to_string()),
            UploadError::Store(err) => err,
        }
    }
}

/// An upload in progress: chunks are appended to a temporary file beside the target; only
/// [`FolderUpload::finish`] (synced, renamed, folder synced) makes it visible. Dropped unfinished (a
/// client that went away, a body over the limit), the temporary file is removed.
pub struct FolderUpload {
    file: tokio::fs::File,
    temporary: PathBuf,
    target: PathBuf,
    relative: String,
    written: u64,
    limit: u64,
    finished: bool,
}

impl FolderUpload {
    /// Starts writing `target` (already checked writable): a temporary name unique to this
    /// upload, so two concurrent uploads of one path never write into the same file.
    pub async fn begin(
        target: PathBuf,
        relative: &str,
        limit: u64,
    ) -> Result<FolderUpload, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let io = |e: std::io::Error| {
            StoreError::Internal(format!("cannot store artifact '{relative}': {e}"))
        };
        if tokio::fs::metadata(&target)
            .await
            .is_ok_and(|metadata| metadata.is_dir())
        {
            return Err(StoreError::InvalidParameter(format!(
                "artifact path '{relative}' names a directory"
            )));
        }
        let parent = parent_of(&target);
        tokio::fs::create_dir_all(&parent).await.map_err(io)?;
        let temporary = parent.join(format!(
            ".{}.{}-{}.partial",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("artifact"),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::File::create(&temporary).await.map_err(io)?;
        Ok(FolderUpload {
            file,
            temporary,
            target,
            relative: relative.to_owned(),
            written: 0,
            limit,
            finished: false,
        })
    }

    /// Appends one chunk; refuses it (nothing written) when it would take the file past the
    /// limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let total = self.written.saturating_add(chunk.len() as u64);
        if total > self.limit {
            return Err(UploadError::TooLarge {
                relative: self.relative.clone(),
                limit: self.limit,
            });
        }
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| self.failed(e))?;
        self.written = total;
        Ok(())
    }

    /// Makes the upload durable and visible: file synced, renamed over the target, folder
    /// synced, so an acknowledged upload survives a crash and a reader never sees half a file.
    /// Returns the size written.
    pub async fn finish(mut self) -> Result<u64, UploadError> {
        self.file.flush().await.map_err(|e| self.failed(e))?;
        self.file.sync_all().await.map_err(|e| self.failed(e))?;
        tokio::fs::rename(&self.temporary, &self.target)
            .await
            .map_err(|e| self.failed(e))?;
        self.finished = true;
        let parent = parent_of(&self.target);
        // The rename is done; a folder that cannot be synced loses nothing already acknowledged
        // by the file's own sync, so this is best effort as in `ArtifactStore::put`.
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::open(parent).and_then(|folder| folder.sync_all())
        })
        .await;
        Ok(self.written)
    }

    fn failed(&self, err: std::io::Error) -> UploadError {
        UploadError::Store(StoreError::Internal(format!(
            "cannot store artifact '{}': {err}",
            self.relative
        )))
    }
}

impl Drop for FolderUpload {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A file sent as a response body, one [`READ_CHUNK`] at a time; its size (known when opened)
/// is the answer's Content-Length. Artifacts are replaced by rename and blobs never change, so
/// the open file keeps the size it had.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buffer: Vec<u8>,
}

impl FileBody {
    pub async fn open(path: &Path) -> std::io::Result<FileBody> {
        let file = tokio::fs::File::open(path).await?;
        let remaining = file.metadata().await?.len();
        Ok(FileBody {
            file,
            remaining,
            buffer: vec![0; READ_CHUNK],
        })
    }

    /// Bytes `start..end` of an open file (a ranged download): the file is positioned at
    /// `start` and only `end - start` bytes are read.
    pub async fn range(
        mut file: tokio::fs::File,
        start: u64,
        end: u64,
    ) -> std::io::Result<FileBody> {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Ok(FileBody {
            file,
            remaining: end.saturating_sub(start),
            buffer: vec![0; READ_CHUNK],
        })
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let wanted = usize::try_from(this.remaining)
            .unwrap_or(READ_CHUNK)
            .min(READ_CHUNK);
        let mut read = ReadBuf::new(&mut this.buffer[..wanted]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes early", this.remaining),
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn folder(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("weir-stream-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    fn partials(folder: &Path) -> Vec<String> {
        std::fs::read_dir(folder)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    }

    #[tokio::test]
    async fn an_upload_is_invisible_until_finished_and_then_whole() {
        let root = folder("upload");
        let target = root.join("model.bin");
        let mut upload = FolderUpload::begin(target.clone(), "model.bin", 10)
            .await
            .unwrap();
        upload.write(b"0123").await.unwrap();
        upload.write(b"4567").await.unwrap();
        assert!(!target.exists(), "visible before finish");
        assert_eq!(partials(&root).len(), 1);
        assert_eq!(upload.finish().await.unwrap(), 8);
        assert_eq!(std::fs::read(&target).unwrap(), b"01234567");
        assert!(partials(&root).is_empty());
    }

    #[tokio::test]
    async fn an_upload_past_its_limit_is_refused_and_leaves_nothing() {
        let root = folder("limit");
        let target = root.join("big.bin");
        std::fs::write(&target, b"old").unwrap();
        let mut upload = FolderUpload::begin(target.clone(), "big.bin", 5)
            .await
            .unwrap();
        upload.write(b"12345").await.unwrap();
        let refused = upload.write(b"6").await;
        assert!(
            matches!(refused, Err(UploadError::TooLarge { limit: 5, .. })),
            "{refused:?}"
        );
        drop(upload);
        assert!(partials(&root).is_empty(), "the temporary file stays");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"old",
            "the old file changed"
        );
    }

    #[tokio::test]
    async fn a_directory_cannot_be_uploaded_over() {
        let root = folder("dir");
        std::fs::create_dir_all(root.join("d")).unwrap();
        let refused = FolderUpload::begin(root.join("d"), "d", 10).await;
        assert!(matches!(refused, Err(StoreError::InvalidParameter(_))));
    }

    #[tokio::test]
    async fn a_file_body_sends_every_byte_in_bounded_chunks() {
        let root = folder("body");
        let path = root.join("blob");
        let bytes: Vec<u8> = (0..READ_CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut body = FileBody::open(&path).await.unwrap();
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(bytes.len() as u64)
        );
        let mut received = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= READ_CHUNK);
            received.extend_from_slice(&data);
            frames += 1;
        }
        assert_eq!(received, bytes);
        assert_eq!(frames, 4);
        let empty = root.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let body = FileBody::open(&empty).await.unwrap();
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }
}
