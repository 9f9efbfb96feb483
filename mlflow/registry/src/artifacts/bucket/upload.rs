//! An upload into the bucket with bounded memory: a file smaller than one part is sent as one
//! PUT at the end; a larger one becomes a multipart upload whose parts are sent as they fill,
//! with at most [`PARTS_IN_FLIGHT`] on their way at once. Nothing is visible before
//! [`BucketUpload::finish`] (S3 shows an object only once its PUT or its multipart completion
//! is done); dropped unfinished, the multipart upload is aborted.

use std::sync::Arc;

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::{failed, Bucket};
use crate::artifacts::stream::UploadError;

/// S3's smallest part (but the last): the size of a part unless the limit needs larger ones.
const MIN_PART: usize = 5 << 20;

/// S3's largest number of parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// Parts being sent while the next one fills: memory is about (this + 1) parts per upload.
const PARTS_IN_FLIGHT: usize = 2;

pub struct BucketUpload {
    store: Arc<dyn Bucket>,
    key: Key,
    relative: String,
    buffer: Vec<u8>,
    multipart: Option<WriteMultipart>,
    part_size: usize,
    written: u64,
    limit: u64,
}

impl BucketUpload {
    pub(super) fn new(
        store: Arc<dyn Bucket>,
        key: Key,
        relative: &str,
        limit: u64,
    ) -> BucketUpload {
        BucketUpload {
            store,
            key,
            relative: relative.to_owned(),
            buffer: Vec::new(),
            multipart: None,
            part_size: part_size(limit),
            written: 0,
            limit,
        }
    }

    /// Appends one chunk; refuses it (nothing more sent) when it would take the file past the
    /// limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let total = self.written.saturating_add(chunk.len() as u64);
        if total > self.limit {
            return Err(UploadError::TooLarge {
                relative: self.relative.clone(),
                limit: self.limit,
            });
        }
        self.written = total;
        if self.multipart.is_none() {
            if self.buffer.len() + chunk.len() <= self.part_size {
                self.buffer.extend_from_slice(chunk);
                return Ok(());
            }
            let upload = self
                .store
                .put_multipart(&self.key)
                .await
                .map_err(|e| self.failed(e))?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            multipart.write(&std::mem::take(&mut self.buffer));
            self.multipart = Some(multipart);
        }
        if let Some(multipart) = &mut self.multipart {
            let waited = multipart.wait_for_capacity(PARTS_IN_FLIGHT).await;
            if let Err(err) = waited {
                return Err(self.failed(err));
            }
            if let Some(multipart) = &mut self.multipart {
                multipart.write(chunk);
            }
        }
        Ok(())
    }

    /// Makes the upload visible; returns the size written.
    pub async fn finish(mut self) -> Result<u64, UploadError> {
        match self.multipart.take() {
            Some(multipart) => {
                multipart.finish().await.map_err(|e| self.failed(e))?;
            }
            None => {
                let payload = PutPayload::from(std::mem::take(&mut self.buffer));
                self.store
                    .put(&self.key, payload)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
        }
        Ok(self.written)
    }

    /// The same upload with parts of `size` bytes (a blob copy, which has no limit to size
    /// its parts by).
    pub(super) fn with_part_size(mut self, size: usize) -> BucketUpload {
        self.part_size = size.max(MIN_PART);
        self
    }

    fn failed(&self, err: object_store::Error) -> UploadError {
        UploadError::Store(failed(
            &format!("cannot store artifact '{}'", self.relative),
            err,
        ))
    }
}

impl Drop for BucketUpload {
    fn drop(&mut self) {
        if let Some(multipart) = self.multipart.take() {
            // A client that went away, or a body over the limit: the parts sent so far are
            // dropped in the background (the bucket's own lifecycle rules catch any left over
            // if the process stops first).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = multipart.abort().await;
                });
            }
        }
    }
}

/// The part size for a file of at most `limit` bytes: S3's 5 MiB, or larger when 10,000 of
/// those could not hold the limit.
fn part_size(limit: u64) -> usize {
    let needed = limit.div_ceil(MAX_PARTS);
    usize::try_from(needed).map_or(usize::MAX, |needed| needed.max(MIN_PART))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_5_mib_unless_the_limit_needs_more() {
        assert_eq!(part_size(1 << 30), MIN_PART);
        assert_eq!(part_size(0), MIN_PART);
        assert_eq!(
            part_size(100 << 30),
            (100u64 << 30).div_ceil(10_000) as usize
        );
    }
}
