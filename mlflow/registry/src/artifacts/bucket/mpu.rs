//! MLflow's multipart uploads on the bucket backend, as S3 multipart uploads: the upload id
//! weir hands out is S3's, so any registry replica can take the next part. Clients get no S3
//! credentials and no presigned S3 URL: each part comes to weir, which presigns S3's
//! `UploadPart` for it and relays the body as it arrives (the part is never held in memory),
//! answering with S3's ETag for the client to list at completion.

use std::time::Duration;

use axum::http::{header, Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use object_store::multipart::PartId;
use object_store::signer::SignedUrlOptions;
use object_store::{ObjectStoreExt, PutPayload};

use super::{failed, BucketStore};
use crate::artifacts::parts::{check_number, sorted, PartFile};
use crate::artifacts::paths;
use crate::artifacts::reader::ByteReader;
use crate::artifacts::stream::UploadError;
use crate::error::StoreError;

/// The client relaying parts to the bucket.
pub type RelayClient = Client<HttpsConnector<HttpConnector>, axum::body::Body>;

/// How long a presigned part URL is valid: it is used at once, by weir itself.
const PRESIGNED_FOR: Duration = Duration::from_secs(15 * 60);

impl BucketStore {
    /// Lets parts be relayed (presigned) instead of buffered: the S3 configuration does this.
    pub fn with_signer(
        mut self,
        signer: std::sync::Arc<dyn object_store::signer::Signer>,
        relay: RelayClient,
    ) -> BucketStore {
        self.signer = Some((signer, relay));
        self
    }

    pub async fn mpu_create(&self, relative: &str) -> Result<String, StoreError> {
        let key = self.key(&paths::check_writable(relative)?);
        self.store
            .create_multipart(&key)
            .await
            .map_err(|e| failed(&format!("cannot start an upload of '{relative}'"), e))
    }

    /// Sends part `number` of upload `id`; returns the bucket's ETag for it.
    pub async fn mpu_part(
        &self,
        relative: &str,
        id: &str,
        number: u32,
        body: axum::body::Body,
        length: Option<u64>,
        limit: u64,
    ) -> Result<String, UploadError> {
        check_number(number)?;
        let key = self.key(&paths::check_writable(relative)?);
        let Some((signer, relay)) = &self.signer else {
            return self.buffered_part(relative, id, number, body, limit).await;
        };
        let Some(length) = length else {
            return Err(StoreError::InvalidParameter(format!(
                "part {number} of '{relative}' has no Content-Length; the bucket needs one"
            ))
            .into());
        };
        let options = SignedUrlOptions::default().with_query([
            ("partNumber", number.to_string()),
            ("uploadId", id.to_owned()),
        ]);
        let url = signer
            .signed_url_opts(Method::PUT, &key, PRESIGNED_FOR, &options)
            .await
            .map_err(|e| failed(&format!("cannot send part {number} of '{relative}'"), e))?;
        let limited =
            http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
        let request = Request::builder()
            .method(Method::PUT)
            .uri(url.as_str())
            .header(header::CONTENT_LENGTH, length)
            .body(axum::body::Body::new(limited))
            .map_err(|e| StoreError::Internal(format!("cannot send part {number}: {e}")))?;
        let answer = relay.request(request).await.map_err(|e| {
            // The client's body over the limit, or broken off, surfaces as the relay's error.
            StoreError::Internal(format!(
                "cannot send part {number} of '{relative}' to the bucket: {e}"
            ))
        })?;
        match answer.status() {
            status if status.is_success() => Ok(answer
                .headers()
                .get(header::ETAG)
                .and_then(|etag| etag.to_str().ok())
                .unwrap_or_default()
                .to_owned()),
            StatusCode::NOT_FOUND => Err(StoreError::NotFound(format!(
                "no multipart upload '{id}' of artifact '{relative}'"
            ))
            .into()),
            status => Err(StoreError::Internal(format!(
                "the bucket refused part {number} of '{relative}': {status}"
            ))
            .into()),
        }
    }

    /// A part held in memory (bounded by the limit) and sent with object_store: only for a
    /// store that cannot presign, the in-memory one of tests.
    async fn buffered_part(
        &self,
        relative: &str,
        id: &str,
        number: u32,
        body: axum::body::Body,
        limit: u64,
    ) -> Result<String, UploadError> {
        let key = self.key(&paths::check_writable(relative)?);
        let mut reader = ByteReader::body(body);
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.chunk().await.map_err(|e| {
            StoreError::InvalidParameter(format!("the upload of part {number} broke off: {e}"))
        })? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(UploadError::TooLarge {
                    relative: relative.to_owned(),
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let part = self
            .store
            .put_part(
                &key,
                &id.to_owned(),
                number as usize - 1,
                PutPayload::from(bytes),
            )
            .await
            .map_err(|e| unknown_upload(e, relative, id))?;
        Ok(part.content_id)
    }

    /// Completes upload `id` with the listed parts (numbered 1..=N, as S3 completes them in
    /// order). S3 cannot say a multipart upload's size before it completes, so a result over the
    /// limit is deleted at once and refused.
    pub async fn mpu_complete(
        &self,
        relative: &str,
        id: &str,
        parts: &[PartFile],
        limit: u64,
    ) -> Result<(), UploadError> {
        let key = self.key(&paths::check_writable(relative)?);
        let sorted = sorted(parts)?;
        if let Some((index, part)) = sorted
            .iter()
            .enumerate()
            .find(|(index, part)| part.number as usize != index + 1)
        {
            return Err(StoreError::InvalidParameter(format!(
                "parts must be numbered 1 to {} without gaps; part {} is missing",
                sorted.len(),
                part.number.min(index as u32 + 1)
            ))
            .into());
        }
        let ids = sorted
            .into_iter()
            .map(|part| PartId {
                content_id: part.etag,
            })
            .collect();
        self.store
            .complete_multipart(&key, &id.to_owned(), ids)
            .await
            .map_err(|e| unknown_upload(e, relative, id))?;
        let size = self
            .store
            .head(&key)
            .await
            .map_err(|e| failed(&format!("cannot read artifact '{relative}'"), e))?
            .size;
        if size > limit {
            let _ = self.store.delete(&key).await;
            return Err(UploadError::TooLarge {
                relative: relative.to_owned(),
                limit,
            });
        }
        Ok(())
    }

    pub async fn mpu_abort(&self, relative: &str, id: &str) -> Result<(), StoreError> {
        let key = self.key(&paths::check_writable(relative)?);
        self.store
            .abort_multipart(&key, &id.to_owned())
            .await
            .map_err(|e| unknown_upload(e, relative, id))
    }
}

/// A multipart call's failure: an upload id the store does not know (S3 answers 404; the
/// in-memory store of tests has only that failure) is not found, anything else as any failure.
fn unknown_upload(err: object_store::Error, relative: &str, id: &str) -> StoreError {
    match err {
        object_store::Error::NotFound { .. }
        | object_store::Error::Generic {
            store: "InMemory", ..
        } => StoreError::NotFound(format!(
            "no multipart upload '{id}' of artifact '{relative}'"
        )),
        // Parts the client sent wrong (too small but the last, an ETag it did not get): its
        // mistake, a 400, not a 5xx the mlflow client would retry seven times.
        other
            if ["EntityTooSmall", "InvalidPart"]
                .iter()
                .any(|code| other.to_string().contains(code)) =>
        {
            StoreError::InvalidParameter(format!(
                "the bucket refused the parts of '{relative}' (every part but the last needs 5 MiB, each with the ETag its upload answered)"
            ))
        }
        other => failed(&format!("the upload of '{relative}' failed"), other),
    }
}
