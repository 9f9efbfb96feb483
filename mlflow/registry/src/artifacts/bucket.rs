//! The bucket backend: artifacts as objects under a prefix of an S3-compatible bucket
//! (`--artifacts s3://BUCKET/PREFIX`), through object_store. The same path rules as the folder
//! (`paths`); uploads are streamed into multipart uploads with a bounded buffer, downloads are
//! streamed (or ranged) gets, listings use the `/` delimiter, deletes remove a key and every key
//! under it. Nothing is kept in the process: two registries on one bucket agree.

pub mod config;
pub mod connector;
mod credentials_file;
mod mpu;
mod presign;
mod upload;

use std::sync::Arc;

use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::paths::{self, is_reserved, RESERVED_DIR};
use super::range::{served, RangeSpec, Served};
use super::reader::ByteReader;
use super::{Download, FileInfo};
use crate::error::StoreError;

pub use presign::BLOB_URL_LIFETIME;
pub use upload::BucketUpload;

/// What the registry needs of an object store: objects, and multipart uploads by id (for
/// MLflow's multipart endpoints).
pub trait Bucket: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Bucket for T {}

/// The part size of a blob copy (which has no upload limit to size parts by): 10,000 of them
/// hold 78 GiB, and a copy holds about three in memory.
const BLOB_PART: usize = 8 << 20;

#[derive(Clone)]
pub struct BucketStore {
    store: Arc<dyn Bucket>,
    /// Presigns the parts of MLflow's multipart uploads, so weir relays each part's body to
    /// the bucket as it arrives; without one (the in-memory store of tests) a part is buffered.
    signer: Option<(Arc<dyn Signer>, mpu::RelayClient)>,
    prefix: Vec<String>,
    name: String,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl BucketStore {
    /// A store over any object store (tests use object_store's in-memory one), under `prefix`.
    pub fn new(
        store: Arc<dyn Bucket>,
        prefix: &str,
        name: &str,
    ) -> Result<BucketStore, StoreError> {
        Ok(BucketStore {
            store,
            signer: None,
            prefix: paths::segments(prefix)?
                .into_iter()
                .map(str::to_owned)
                .collect(),
            name: name.to_owned(),
        })
    }

    /// Where this store keeps its objects, for messages (`s3://bucket/prefix`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn key(&self, segments: &[&str]) -> Key {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain(segments.iter().copied())
            .collect()
    }

    /// The key prefix to list for a folder (`None` lists the whole bucket).
    fn folder(&self, segments: &[&str]) -> Option<Key> {
        (self.prefix.len() + segments.len() > 0).then(|| self.key(segments))
    }

    /// Fails unless the bucket answers a listing of the prefix (a wrong endpoint, bucket or
    /// credentials are said at start rather than at the first upload).
    pub async fn check_access(&self) -> Result<(), StoreError> {
        self.store
            .list_with_delimiter(self.folder(&[]).as_ref())
            .await
            .map(|_| ())
            .map_err(|e| failed(&format!("cannot list {}", self.name), e))
    }

    pub async fn begin_upload(
        &self,
        relative: &str,
        limit: u64,
    ) -> Result<BucketUpload, StoreError> {
        let segments = paths::check_writable(relative)?;
        let key = self.key(&segments);
        let under = self
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| failed(&format!("cannot store artifact '{relative}'"), e))?;
        if !under.objects.is_empty() || !under.common_prefixes.is_empty() {
            return Err(StoreError::InvalidParameter(format!(
                "artifact path '{relative}' names a directory"
            )));
        }
        Ok(BucketUpload::new(self.store.clone(), key, relative, limit))
    }

    /// An artifact's bytes (all, or the range asked for), streamed from the bucket.
    pub async fn read(
        &self,
        relative: &str,
        range: Option<RangeSpec>,
    ) -> Result<Download, StoreError> {
        let segments = paths::segments(relative)?;
        if is_reserved(relative) || segments.is_empty() {
            return Err(not_found(relative));
        }
        self.read_key(&self.key(&segments), relative, range).await
    }

    pub async fn read_blob(
        &self,
        sha256: &str,
        range: Option<RangeSpec>,
    ) -> Result<Download, StoreError> {
        self.read_key(&self.blob_key(sha256), sha256, range).await
    }

    async fn read_key(
        &self,
        key: &Key,
        relative: &str,
        range: Option<RangeSpec>,
    ) -> Result<Download, StoreError> {
        let missing = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => not_found(relative),
            other => failed(&format!("cannot read artifact '{relative}'"), other),
        };
        let Some(range) = range else {
            let got = self.store.get(key).await.map_err(missing)?;
            return Ok(Download {
                size: got.meta.size,
                served: Served::Whole,
                body: axum::body::Body::from_stream(got.into_stream()),
            });
        };
        let size = self.store.head(key).await.map_err(missing)?.size;
        let served = served(Some(range), size);
        let Served::Part { start, end } = served else {
            return Ok(Download {
                size,
                served,
                body: axum::body::Body::empty(),
            });
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(key, options).await.map_err(missing)?;
        Ok(Download {
            size,
            served,
            body: axum::body::Body::from_stream(got.into_stream()),
        })
    }

    /// The entries directly under a folder (hidden ones never listed).
    pub async fn list(&self, relative: &str) -> Result<Vec<FileInfo>, StoreError> {
        let segments = paths::segments(relative)?;
        if is_reserved(relative) {
            return Ok(Vec::new());
        }
        let listed = self
            .store
            .list_with_delimiter(self.folder(&segments).as_ref())
            .await
            .map_err(|e| failed(&format!("cannot list artifact '{relative}'"), e))?;
        let mut files: Vec<FileInfo> = listed
            .common_prefixes
            .iter()
            .filter_map(|folder| folder.filename().map(decode))
            .filter(|name| !paths::is_hidden(name))
            .map(|path| FileInfo {
                path,
                is_dir: true,
                file_size: None,
            })
            .chain(listed.objects.iter().filter_map(|object| {
                let name = decode(object.location.filename()?);
                (!paths::is_hidden(&name)).then_some(FileInfo {
                    path: name,
                    is_dir: false,
                    file_size: Some(object.size),
                })
            }))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Every file under a folder, recursively, as sorted paths relative to it (hidden files
    /// and folders skipped, as on disk).
    pub async fn files(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let segments = paths::segments(relative)?;
        let mut found = self
            .walk(self.folder(&segments), true)
            .await
            .map_err(|e| failed(&format!("cannot list artifact '{relative}'"), e))?;
        found.sort();
        Ok(found)
    }

    /// Keys under a folder as paths relative to it, a listing per folder (bounded by the
    /// number of folders, not objects: each listing pages through its objects).
    async fn walk(
        &self,
        folder: Option<Key>,
        skip_hidden: bool,
    ) -> object_store::Result<Vec<String>> {
        let mut found = Vec::new();
        let mut pending = vec![(folder, String::new())];
        while let Some((folder, above)) = pending.pop() {
            let listed = self.store.list_with_delimiter(folder.as_ref()).await?;
            let join = |name: String| {
                if above.is_empty() {
                    name
                } else {
                    format!("{above}/{name}")
                }
            };
            for object in &listed.objects {
                let Some(name) = object.location.filename().map(decode) else {
                    continue;
                };
                if !(skip_hidden && paths::is_hidden(&name)) {
                    found.push(join(name));
                }
            }
            for below in listed.common_prefixes {
                let Some(name) = below.filename().map(decode) else {
                    continue;
                };
                if !(skip_hidden && paths::is_hidden(&name)) {
                    pending.push((Some(below.clone()), join(name)));
                }
            }
        }
        Ok(found)
    }

    /// The files a registration source names, as (path in the version, key): one object under
    /// its base name, or every file under a folder. Empty when nothing is there.
    pub async fn source_files(&self, relative: &str) -> Result<Vec<(String, Key)>, StoreError> {
        let segments = paths::segments(relative)?;
        if let Some(last) = segments.last() {
            let key = self.key(&segments);
            match self.store.head(&key).await {
                Ok(_) => return Ok(vec![((*last).to_owned(), key)]),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(failed(&format!("cannot read '{relative}'"), err)),
            }
        }
        Ok(self
            .files(relative)
            .await?
            .into_iter()
            .map(|path| {
                let mut all = segments.clone();
                all.extend(path.split('/'));
                let key = self.key(&all);
                (path, key)
            })
            .collect())
    }

    /// An object's bytes as they stream from the bucket.
    pub async fn open(&self, key: &Key) -> Result<ByteReader, StoreError> {
        let got = self.store.get(key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => not_found(key.as_ref()),
            other => failed(&format!("cannot read '{key}'"), other),
        })?;
        Ok(ByteReader::body(axum::body::Body::from_stream(
            got.into_stream(),
        )))
    }

    /// Deletes an artifact: the object itself and every object under it as a folder.
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        let segments = paths::check_writable(relative)?;
        let key = self.key(&segments);
        let failure = |e| failed(&format!("cannot delete artifact '{relative}'"), e);
        let mut deleted = 0usize;
        match self.store.head(&key).await {
            Ok(_) => {
                self.store.delete(&key).await.map_err(failure)?;
                deleted += 1;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(failure(err)),
        }
        for below in self.walk(Some(key.clone()), false).await.map_err(failure)? {
            let mut all = segments.clone();
            all.extend(below.split('/'));
            self.store.delete(&self.key(&all)).await.map_err(failure)?;
            deleted += 1;
        }
        if deleted == 0 {
            return Err(not_found(relative));
        }
        Ok(())
    }

    /// The sha256 of every blob stored, sorted.
    pub async fn list_blobs(&self) -> Result<Vec<String>, StoreError> {
        let folder = self.key(&[RESERVED_DIR, "blobs", "sha256"]);
        let mut found = self
            .walk(Some(folder), false)
            .await
            .map_err(|e| failed("cannot list the blobs", e))?;
        found.sort();
        Ok(found)
    }

    pub fn blob_key(&self, sha256: &str) -> Key {
        self.key(&[RESERVED_DIR, "blobs", "sha256", sha256])
    }

    /// Copies bytes into the blob store, hashing exactly the bytes it writes. The hash is known
    /// only once the last byte is read, and S3 has no rename: the bytes stream into a staging
    /// object (`.weir/tmp/<random>`, a multipart upload with a bounded buffer), which is then
    /// copied server-side to `.weir/blobs/sha256/<hex>` (unless that blob exists: same hash,
    /// same bytes) and deleted. Reading the source twice (hash, then copy) would let a source
    /// changed in between give a blob whose bytes are not the ones hashed.
    pub async fn store_blob(&self, source: &mut ByteReader) -> Result<(String, u64), StoreError> {
        use sha2::{Digest, Sha256};
        let staging_name = format!("{:032x}", rand::random::<u128>());
        let staging = self.key(&[RESERVED_DIR, "tmp", &staging_name]);
        let mut upload = BucketUpload::new(self.store.clone(), staging.clone(), "a blob", u64::MAX)
            .with_part_size(BLOB_PART);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let copied: Result<(), StoreError> =
            async {
                while let Some(chunk) = source.chunk().await.map_err(|e| {
                    StoreError::Internal(format!("cannot read a version's file: {e}"))
                })? {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    upload
                        .write(&chunk)
                        .await
                        .map_err(super::UploadError::into_store)?;
                }
                upload
                    .finish()
                    .await
                    .map_err(super::UploadError::into_store)?;
                Ok(())
            }
            .await;
        let sha256 = crate::versions::hex(&hasher.finalize());
        let blob = self.blob_key(&sha256);
        let placed = match copied {
            Err(err) => Err(err),
            Ok(()) => match self.store.head(&blob).await {
                Ok(_) => Ok(()),
                Err(_) => self
                    .store
                    .copy(&staging, &blob)
                    .await
                    .map_err(|e| failed("cannot store a blob", e)),
            },
        };
        let _ = self.store.delete(&staging).await;
        placed.map(|()| (sha256, size))
    }
}

fn not_found(relative: &str) -> StoreError {
    StoreError::NotFound(format!("artifact '{relative}' not found"))
}

/// An object-store failure as the registry says it: not found, refused, or failed, with the
/// store's reason cut short (an S3 error body can be long; it never holds the secret key).
pub fn failed(what: &str, err: object_store::Error) -> StoreError {
    match err {
        object_store::Error::NotFound { .. } => StoreError::NotFound(format!("{what}: not found")),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => StoreError::Internal(format!(
            "{what}: the object store refused the registry's credentials"
        )),
        other => {
            let mut reason = other.to_string();
            if reason.len() > 300 {
                let mut cut = 300;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
                reason.push('…');
            }
            StoreError::Internal(format!("{what}: {reason}"))
        }
    }
}

/// A key segment as the artifact path spells it: object_store percent-encodes a few
/// characters (`%`, `#`, `?`, …) in keys.
fn decode(segment: &str) -> String {
    crate::versions::percent_decode(segment).unwrap_or_else(|| segment.to_owned())
}
