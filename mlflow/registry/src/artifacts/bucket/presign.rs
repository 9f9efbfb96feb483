//! Presigned GETs of version blobs, for servers started with `--registry-direct-download`:
//! they download a version's bytes from the bucket itself, with no S3 credentials of their
//! own, and still verify every byte against the digests the registry recorded. A presigned
//! URL is a bearer secret for its lifetime, so it is short-lived and never logged.

use std::time::Duration;

use axum::http::Method;

use super::{failed, BucketStore};
use crate::error::StoreError;

/// How long a presigned blob URL is valid: long enough to start every file of a version
/// (a GET that has started keeps streaming past the expiry), short enough that a leaked URL
/// is soon worthless.
pub const BLOB_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

impl BucketStore {
    /// A presigned GET of the blob `sha256`, valid for [`BLOB_URL_LIFETIME`]; `None` for a
    /// store that cannot presign (object_store's in-memory one of tests).
    pub async fn presign_blob(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        let Some((signer, _)) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(Method::GET, &self.blob_key(sha256), BLOB_URL_LIFETIME)
            .await
            .map_err(|e| failed(&format!("cannot presign the blob {sha256}"), e))?;
        Ok(Some(url.to_string()))
    }
}
