//! Immutable registered versions. At registration the registry copies a version's files into
//! content-addressed storage inside the artifact root (`.weir/blobs/sha256/<hex>`) and records
//! which blob holds each file; the version is then read through a virtual artifact path,
//! `.weir/versions/<name, percent-encoded>/<version>/<file>`, served from those blobs. A later
//! write or delete at the source path cannot change what was registered, digested and approved.
//!
//! Versions registered before this existed have no recorded files: they keep being read from
//! their source path (see `mlflow::serving`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::artifacts::{files_under, is_reserved, ArtifactStore, FileInfo, RESERVED_DIR};
use crate::error::StoreError;
use crate::store::{Store, VersionFile};

/// Bytes read at a time while copying a file into a blob, so a large model never sits in memory.
const CHUNK: usize = 256 * 1024;

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

/// Where the blob with this sha256 (lowercase hex) lives.
pub fn blob_path(root: &Path, sha256: &str) -> PathBuf {
    root.join(RESERVED_DIR)
        .join("blobs")
        .join("sha256")
        .join(sha256)
}

/// Copies one file into the blob store, hashing exactly the bytes it copies: streamed through a
/// temporary file (synced, then renamed into place, so a blob is never partial). An existing
/// blob is kept (same hash, same bytes). Returns the sha256 and the size.
pub fn store_blob(root: &Path, source: &Path) -> std::io::Result<(String, u64)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary_dir = root.join(RESERVED_DIR).join("tmp");
    std::fs::create_dir_all(&temporary_dir)?;
    let temporary = temporary_dir.join(format!(
        "{}-{}.partial",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let copied = copy_hashing(source, &temporary);
    let (sha256, size) = match copied {
        Ok(done) => done,
        Err(err) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(err);
        }
    };
    let blob = blob_path(root, &sha256);
    if blob.is_file() {
        std::fs::remove_file(&temporary)?;
        return Ok((sha256, size));
    }
    let blob_dir = blob.parent().unwrap_or(root);
    std::fs::create_dir_all(blob_dir)?;
    if let Err(err) = std::fs::rename(&temporary, &blob) {
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    std::fs::File::open(blob_dir)?.sync_all()?;
    Ok((sha256, size))
}

fn copy_hashing(source: &Path, target: &Path) -> std::io::Result<(String, u64)> {
    let mut input = std::fs::File::open(source)?;
    let mut output = std::fs::File::create(target)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read])?;
        size += read as u64;
    }
    output.sync_all()?;
    Ok((hex(&hasher.finalize()), size))
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

/// Copies the files of an artifact source (a folder, a single file — recorded under its base
/// name — or another version's virtual folder) into the blob store, in path order. Empty when
/// nothing is there.
pub fn capture(
    store: &Store,
    artifacts: &ArtifactStore,
    relative: &str,
) -> Result<Vec<VersionFile>, StoreError> {
    let sources = source_files(store, artifacts, relative)?;
    let mut files = Vec::with_capacity(sources.len());
    for (path, on_disk) in sources {
        let (sha256, size) = store_blob(artifacts.root(), &on_disk).map_err(|e| {
            StoreError::Internal(format!("cannot copy artifact '{relative}/{path}': {e}"))
        })?;
        files.push(VersionFile { path, sha256, size });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The files a source names, as (path in the version, file on disk).
fn source_files(
    store: &Store,
    artifacts: &ArtifactStore,
    relative: &str,
) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let on_disk = artifacts.resolve(relative)?;
    if on_disk == artifacts.root() {
        return Err(StoreError::InvalidParameter(format!(
            "source '{relative}' names the whole artifact store; register a model's folder"
        )));
    }
    if is_reserved(relative) {
        // Registering from another version's folder copies that version's recorded bytes.
        let Some(source) = parse_version_path(relative, NameForm::Encoded) else {
            return Err(StoreError::InvalidParameter(format!(
                "source '{relative}' is inside {RESERVED_DIR}/ but names no version"
            )));
        };
        let recorded = store.version_files(&source.name, &source.version)?;
        return Ok(select(&recorded, &source.rest)
            .into_iter()
            .map(|(path, file)| (path, blob_path(artifacts.root(), &file.sha256)))
            .collect());
    }
    if on_disk.is_file() {
        let name = on_disk
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, on_disk)]);
    }
    if !on_disk.is_dir() {
        return Ok(Vec::new());
    }
    let files = files_under(&on_disk)
        .map_err(|e| StoreError::Internal(format!("cannot list artifact '{relative}': {e}")))?;
    Ok(files
        .into_iter()
        .map(|path| {
            let file = on_disk.join(&path);
            (path, file)
        })
        .collect())
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

/// A version file's bytes, whole (small files; downloads stream [`blob_file`]).
pub fn get(
    store: &Store,
    artifacts: &ArtifactStore,
    relative: &str,
    form: NameForm,
) -> Result<Vec<u8>, StoreError> {
    let blob = blob_file(store, artifacts, relative, form)?;
    std::fs::read(&blob).map_err(|e| {
        StoreError::Internal(format!(
            "cannot read blob {} of artifact '{relative}': {e}",
            blob.display()
        ))
    })
}

/// The blob holding a version file, for streaming it. Anything else under [`RESERVED_DIR`]
/// is not found.
pub fn blob_file(
    store: &Store,
    artifacts: &ArtifactStore,
    relative: &str,
    form: NameForm,
) -> Result<PathBuf, StoreError> {
    let not_found = || StoreError::NotFound(format!("artifact '{relative}' not found"));
    let path = parse_version_path(relative, form).ok_or_else(not_found)?;
    let recorded = recorded_files(store, &path)?;
    let file = recorded
        .iter()
        .find(|f| f.path == path.rest)
        .ok_or_else(not_found)?;
    Ok(blob_path(artifacts.root(), &file.sha256))
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
