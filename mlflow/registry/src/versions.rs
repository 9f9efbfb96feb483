//! Immutable registered versions. At registration the registry copies a version's files into
//! content-addressed storage inside the artifact root (`.weir/blobs/sha256/<hex>`) and records
//! which blob holds each file; the version is then read through a virtual artifact path,
//! `.weir/versions/<name, percent-encoded>/<version>/<file>`, served from those blobs. A later
//! write or delete at the source path cannot change what was registered, digested and approved.
//!
//! Versions registered before this existed have no recorded files: they keep being read from
//! their source path (see `mlflow::serving`).

use sha2::{Digest, Sha256};

use crate::artifacts::{is_reserved, ArtifactStore, FileInfo, RESERVED_DIR};
use crate::error::StoreError;
use crate::store::{Store, VersionFile};

/// How a version path names its model: percent-encoded as handed out (in a query string, as the
/// mlflow client lists), or already decoded (in a URL path, which the router decodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameForm {
    Encoded,
    Decoded,
}

/// A path inside a version's virtual folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPath {
    pub name: String,
    pub version: String,
    /// The path inside the version, `/`-separated; empty for the version's folder itself.
    pub rest: String,
}

/// The virtual artifact path of a version's folder (without the `mlflow-artifacts:/` scheme).
pub fn version_root(name: &str, version: &str) -> String {
    format!("{RESERVED_DIR}/versions/{}/{version}", encode_name(name))
}

/// Reads a path under [`RESERVED_DIR`] as a version path; `None` when it names anything else
/// there (the blobs themselves, or a folder above a version). `..` must be refused before.
pub fn parse_version_path(relative: &str, form: NameForm) -> Option<VersionPath> {
    let mut segments = relative
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".");
    let reserved = segments.next()?;
    if !reserved.eq_ignore_ascii_case(RESERVED_DIR) || segments.next()? != "versions" {
        return None;
    }
    let name = match form {
        NameForm::Encoded => decode_name(segments.next()?)?,
        NameForm::Decoded => segments.next()?.to_owned(),
    };
    let version = segments.next()?.to_owned();
    let rest = segments.collect::<Vec<_>>().join("/");
    Some(VersionPath {
        name,
        version,
        rest,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any model name is one
/// safe URL path segment.
pub fn encode_name(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Undoes percent-encoding (`%XX`); `None` for a malformed escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(encoded: &str) -> Option<String> {
    decode_name(encoded)
}

fn decode_name(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The version digest the runtime checks (`weir_models::digest::artifact_digest`: sha256 over
/// `path NUL sha256(file) LF` in path order), from the recorded per-file hashes, so no file is
/// read twice or held in memory.
pub fn digest(files: &[VersionFile]) -> String {
    let mut outer = Sha256::new();
    for file in files {
        outer.update(file.path.as_bytes());
        outer.update([0]);
        outer.update(file.sha256.as_bytes());
        outer.update(b"\n");
    }
    hex(&outer.finalize())
}

/// Copies the files of an artifact source in the store (a folder, or a single file recorded
/// under its base name) into the blob store, in path order. Empty when nothing is there. A
/// source inside [`RESERVED_DIR`] is another version's folder: see [`recorded_copy`].
pub async fn capture(
    artifacts: &ArtifactStore,
    relative: &str,
) -> Result<Vec<VersionFile>, StoreError> {
    artifacts.check_path(relative)?;
    if relative
        .split('/')
        .all(|segment| segment.is_empty() || segment == ".")
    {
        return Err(StoreError::InvalidParameter(format!(
            "source '{relative}' names the whole artifact store; register a model's folder"
        )));
    }
    if is_reserved(relative) {
        return Err(StoreError::InvalidParameter(format!(
            "source '{relative}' is inside {RESERVED_DIR}/ but names no version"
        )));
    }
    artifacts.capture(relative).await
}

/// [`recorded_copy`] or [`capture`], for the registration handler, which runs on a blocking
/// thread beside its store calls (the copy streams on the runtime from there).
pub fn capture_blocking(
    store: &Store,
    artifacts: &ArtifactStore,
    relative: &str,
) -> Result<Vec<VersionFile>, StoreError> {
    if let Some(files) = recorded_copy(store, relative)? {
        return Ok(files);
    }
    runtime()?.block_on(capture(artifacts, relative))
}

/// An `s3://BUCKET/KEY` registration source: the object (or every object under `KEY/`) is read
/// with the registry's own S3 configuration (the standard `AWS_*` environment) and copied into
/// the blob store like a folder source. Refused (400) when the registry cannot read it or there
/// is nothing there, saying why.
pub async fn capture_s3(
    artifacts: &ArtifactStore,
    source: &str,
) -> Result<Vec<VersionFile>, StoreError> {
    let refuse = |why: String| {
        StoreError::InvalidParameter(format!("cannot register source '{source}': {why}"))
    };
    let location = crate::artifacts::ArtifactLocation::parse(std::path::Path::new(source));
    let Ok(crate::artifacts::ArtifactLocation::Bucket { bucket, prefix }) = location else {
        return Err(refuse(
            "use s3://BUCKET/KEY with a bucket name of letters, digits, '-', '.' or '_' and a key without '..'"
                .to_owned(),
        ));
    };
    if prefix.is_empty() {
        return Err(refuse(
            "it names a whole bucket; register a model's folder or file in it".to_owned(),
        ));
    }
    let reader =
        crate::artifacts::bucket::config::open(&bucket, "").map_err(|e| refuse(e.to_string()))?;
    let files = artifacts
        .capture_from(&reader, &prefix)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(why) | StoreError::Internal(why) => refuse(why),
            other => refuse(other.to_string()),
        })?;
    if files.is_empty() {
        return Err(refuse(format!(
            "no object at or under it in bucket '{bucket}'"
        )));
    }
    Ok(files)
}

/// [`capture_s3`] from the registration handler's blocking thread.
pub fn capture_s3_blocking(
    artifacts: &ArtifactStore,
    source: &str,
) -> Result<Vec<VersionFile>, StoreError> {
    runtime()?.block_on(capture_s3(artifacts, source))
}

fn runtime() -> Result<tokio::runtime::Handle, StoreError> {
    tokio::runtime::Handle::try_current()
        .map_err(|_| StoreError::Internal("copying a version needs the runtime".to_owned()))
}

/// Registering from another version's folder (`.weir/versions/<name>/<version>/…`): that
/// version's recorded files, whose blobs already hold the bytes, so nothing is copied. `None`
/// for a source outside [`RESERVED_DIR`].
pub fn recorded_copy(
    store: &Store,
    relative: &str,
) -> Result<Option<Vec<VersionFile>>, StoreError> {
    if !is_reserved(relative) {
        return Ok(None);
    }
    let Some(source) = parse_version_path(relative, NameForm::Encoded) else {
        return Err(StoreError::InvalidParameter(format!(
            "source '{relative}' is inside {RESERVED_DIR}/ but names no version"
        )));
    };
    let recorded = store.version_files(&source.name, &source.version)?;
    let mut files: Vec<VersionFile> = select(&recorded, &source.rest)
        .into_iter()
        .map(|(path, file)| VersionFile {
            path,
            sha256: file.sha256.clone(),
            size: file.size,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(files))
}

/// The recorded files at or under `rest` inside a version, with paths relative to it (a file
/// named exactly by `rest` keeps its base name).
fn select<'a>(recorded: &'a [VersionFile], rest: &str) -> Vec<(String, &'a VersionFile)> {
    if rest.is_empty() {
        return recorded.iter().map(|f| (f.path.clone(), f)).collect();
    }
    if let Some(file) = recorded.iter().find(|f| f.path == rest) {
        let base = rest.rsplit('/').next().unwrap_or(rest);
        return vec![(base.to_owned(), file)];
    }
    let prefix = format!("{rest}/");
    recorded
        .iter()
        .filter_map(|f| f.path.strip_prefix(&prefix).map(|p| (p.to_owned(), f)))
        .collect()
}

/// The sha256 of the blob holding a version file, for streaming it from the artifact store.
/// Anything else under [`RESERVED_DIR`] is not found.
pub fn blob_of(store: &Store, relative: &str, form: NameForm) -> Result<String, StoreError> {
    let not_found = || StoreError::NotFound(format!("artifact '{relative}' not found"));
    let path = parse_version_path(relative, form).ok_or_else(not_found)?;
    let recorded = recorded_files(store, &path)?;
    let file = recorded
        .iter()
        .find(|f| f.path == path.rest)
        .ok_or_else(not_found)?;
    Ok(file.sha256.clone())
}

/// The entries directly under a folder of a version, as the artifact listing writes them
/// (names relative to the folder); empty for anything that is not such a folder.
pub fn list(store: &Store, relative: &str, form: NameForm) -> Result<Vec<FileInfo>, StoreError> {
    let Some(path) = parse_version_path(relative, form) else {
        return Ok(Vec::new());
    };
    let recorded = recorded_files(store, &path)?;
    let prefix = if path.rest.is_empty() {
        String::new()
    } else {
        format!("{}/", path.rest)
    };
    let mut entries: Vec<FileInfo> = Vec::new();
    for file in &recorded {
        let Some(below) = file.path.strip_prefix(&prefix) else {
            continue;
        };
        let entry = match below.split_once('/') {
            Some((folder, _)) => FileInfo {
                path: folder.to_owned(),
                is_dir: true,
                file_size: None,
            },
            None => FileInfo {
                path: below.to_owned(),
                is_dir: false,
                file_size: Some(file.size),
            },
        };
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// A version's recorded files; a version that does not exist (or a bad number) has none, so
/// reads of it answer not found like any missing artifact.
fn recorded_files(store: &Store, path: &VersionPath) -> Result<Vec<VersionFile>, StoreError> {
    match store.version_files(&path.name, &path.version) {
        Ok(files) => Ok(files),
        Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
