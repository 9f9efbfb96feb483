//! Serving registry-approved versions: `--registry URL --model NAME=models:/NAME@ALIAS`.
//!
//! Each poll resolves every configured model through the registry (`/api/2.0/weir/resolve`),
//! and when the resolved version differs from the one serving: refuses it unless it is approved,
//! downloads its files, checks them against the digest the registry recorded at registration,
//! places them in the model repository and reloads — the usual load-then-swap, so requests never
//! fail. A refused or tampered version is recorded in the repository index with its reason and
//! the previous version keeps serving.
//!
//! Files are streamed to disk as they arrive, hashed on the way (memory does not grow with a
//! model's size), under one deadline for the whole version, and synced before the rename that
//! makes the version visible to the loader.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use weir_http::HttpClient;

use crate::server::App;

/// Which registry version a served model follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Alias(String),
    Version(String),
}

/// One `--model NAME=models:/NAME@ALIAS` (or `models:/NAME/VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryModel {
    /// The name requests use.
    pub served_as: String,
    /// The registered model's name.
    pub name: String,
    pub selector: Selector,
}

impl FromStr for RegistryModel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (served_as, uri) = match text.split_once('=') {
            Some((served, uri)) => (Some(served.trim()), uri.trim()),
            None => (None, text.trim()),
        };
        let bad = || {
            format!("invalid model {text:?}: expected NAME=models:/NAME@ALIAS or NAME=models:/NAME/VERSION")
        };
        let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
        let (name, selector) = match (rest.split_once('@'), rest.split_once('/')) {
            (Some((name, alias)), _) if !alias.is_empty() => {
                (name, Selector::Alias(alias.to_owned()))
            }
            (None, Some((name, version))) if version.parse::<u64>().is_ok_and(|v| v > 0) => {
                (name, Selector::Version(version.to_owned()))
            }
            _ => return Err(bad()),
        };
        let served_as = served_as.unwrap_or(name);
        let plain = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
        if !plain(name) || !plain(served_as) {
            return Err(bad());
        }
        Ok(RegistryModel {
            served_as: served_as.to_owned(),
            name: name.to_owned(),
            selector,
        })
    }
}

/// Where served models come from when a registry is configured.
#[derive(Clone)]
pub struct RegistrySource {
    /// `http://host:port` or `https://host:port` of `weir registry`.
    pub url: String,
    pub models: Vec<RegistryModel>,
    pub poll: Duration,
    /// Sent as `Authorization: Bearer TOKEN`, for registries started with `--tokens`.
    pub token: Option<String>,
    /// The client for the registry: which CA HTTPS trusts (`HttpClient::with_ca_file`).
    pub http: HttpClient,
}

/// Written by hand so the token never reaches a log line through `{:?}`.
impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("url", &self.url)
            .field("models", &self.models)
            .field("poll", &self.poll)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

/// Why a registry model is not (or not yet) the version the registry names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A non-2xx answer: `status` as "401 Unauthorized", the registry's own message.
    #[error("the registry answered {status} for {url}: {message}")]
    Answered {
        status: String,
        url: String,
        message: String,
    },
    #[error("unexpected answer from the registry: {0}")]
    Unexpected(String),
    #[error("the registry named version {0:?}")]
    BadVersion(String),
    /// The version was refused (not approved, no digest, tampered with, cannot be placed);
    /// the reason is also in the repository index.
    #[error("{0}")]
    Refused(String),
    /// The version's files are in place but did not load.
    #[error("{0}")]
    Load(String),
    #[error("the registry sync stopped unexpectedly: {0}")]
    Task(String),
}

#[derive(Deserialize)]
struct Resolved {
    version: String,
    artifact_path: Option<String>,
    files: Vec<String>,
    sha256: String,
    approved: bool,
    approval: Approval,
}

#[derive(Deserialize)]
struct Approval {
    required_approvals: u32,
    approved_by: Vec<String>,
    rejected_by: Vec<String>,
}

/// Follows the registry for the configured models.
pub struct RegistrySync {
    source: RegistrySource,
    download_deadline: Duration,
    /// Held for a whole [`RegistrySync::sync`]: the start-up sync and the poll loop share one
    /// `RegistrySync`, and two syncs of one model would download into the same folder.
    running: tokio::sync::Mutex<()>,
}

/// How long downloading one version's files may take in all, unless
/// [`RegistrySync::with_download_deadline`] says otherwise: a registry that stalls or trickles
/// cannot hold the sync (and the next poll) for longer.
pub const DEFAULT_DOWNLOAD_DEADLINE: Duration = Duration::from_secs(600);

/// Chunks queued between the download and the thread writing them to disk: bounds the memory
/// of a download whose disk is slower than its network.
const QUEUED_CHUNKS: usize = 8;

/// Why one file of a version did not arrive whole on disk.
enum FileError {
    /// The registry (or the network, or the deadline) failed: nothing to record.
    Sync(SyncError),
    /// The file could not be written here: the version is refused with this reason.
    Place(String),
}

/// What one model's sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged(u64),
    Loaded(u64),
}

impl RegistrySync {
    pub fn new(source: RegistrySource) -> RegistrySync {
        RegistrySync {
            source,
            download_deadline: DEFAULT_DOWNLOAD_DEADLINE,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The same sync with another deadline for downloading one version's files.
    pub fn with_download_deadline(mut self, deadline: Duration) -> RegistrySync {
        self.download_deadline = deadline;
        self
    }

    fn authorization(&self) -> Option<String> {
        self.source.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn poll_interval(&self) -> Duration {
        self.source.poll
    }

    async fn get(&self, path_and_query: &str) -> Result<Bytes, SyncError> {
        let url = format!("{}{path_and_query}", self.source.url.trim_end_matches('/'));
        let authorization = self.authorization();
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let (status, body) = self
            .source
            .http
            .send("GET", &url, &headers, Bytes::new(), Duration::from_secs(60))
            .await
            .map_err(|reason| SyncError::Unreachable {
                url: url.clone(),
                reason,
            })?;
        if !(200..300).contains(&status) {
            return Err(answered(status, url, &body));
        }
        Ok(body)
    }

    /// Streams one file to `target` by `deadline`, hashing it on the way: chunks go through a
    /// bounded queue to a blocking thread that writes, hashes and finally syncs the file.
    /// Returns its sha256 (lowercase hex).
    async fn download(
        &self,
        path_and_query: &str,
        target: PathBuf,
        deadline: tokio::time::Instant,
    ) -> Result<String, FileError> {
        let url = format!("{}{path_and_query}", self.source.url.trim_end_matches('/'));
        let authorization = self.authorization();
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let unreachable = |reason: String| {
            FileError::Sync(SyncError::Unreachable {
                url: url.clone(),
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
            let body = download.text(64 * 1024).await;
            return Err(FileError::Sync(answered(
                status,
                url.clone(),
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

    /// Brings every configured model in line with the registry once.
    pub async fn sync(&self, app: &Arc<App>) -> Vec<(String, Result<Outcome, SyncError>)> {
        let _one_at_a_time = self.running.lock().await;
        let mut outcomes = Vec::with_capacity(self.source.models.len());
        for model in &self.source.models {
            let outcome = self.sync_model(app, model).await;
            match &outcome {
                Ok(Outcome::Loaded(version)) => {
                    tracing::info!(model = %model.served_as, version, "serving registry version")
                }
                Ok(Outcome::Unchanged(_)) => {}
                Err(reason) => {
                    tracing::error!(model = %model.served_as, error = %reason, "registry version refused")
                }
            }
            outcomes.push((model.served_as.clone(), outcome));
        }
        outcomes
    }

    async fn sync_model(
        &self,
        app: &Arc<App>,
        model: &RegistryModel,
    ) -> Result<Outcome, SyncError> {
        let query = match &model.selector {
            Selector::Alias(alias) => format!("alias={alias}"),
            Selector::Version(version) => format!("version={version}"),
        };
        let body = self
            .get(&format!(
                "/api/2.0/weir/resolve?name={}&{query}",
                model.name
            ))
            .await?;
        let resolved: Resolved =
            serde_json::from_slice(&body).map_err(|e| SyncError::Unexpected(e.to_string()))?;
        let version: u64 = resolved
            .version
            .parse()
            .map_err(|_| SyncError::BadVersion(resolved.version.clone()))?;
        if app.store.serving_version(&model.served_as) == Some(version) {
            return Ok(Outcome::Unchanged(version));
        }
        let refuse = |reason: String| {
            app.store
                .record_failure(&model.served_as, version, reason.clone());
            Err(SyncError::Refused(reason))
        };
        if !resolved.approved {
            let approval = &resolved.approval;
            return refuse(format!(
                "version {version} of '{}' is not approved: {} of {} required approvals{}",
                model.name,
                approval.approved_by.len(),
                approval.required_approvals,
                if approval.rejected_by.is_empty() {
                    String::new()
                } else {
                    format!(", rejected by {}", approval.rejected_by.join(", "))
                }
            ));
        }
        let (Some(artifact_path), false) = (
            resolved.artifact_path.as_deref(),
            resolved.sha256.is_empty(),
        ) else {
            return refuse(format!(
                "version {version} of '{}' has no artifact in the registry's store to verify",
                model.name
            ));
        };
        if let Some(unsafe_path) = resolved.files.iter().find(|path| !safe_path(path)) {
            return refuse(format!(
                "the registry listed an unsafe file path {unsafe_path:?}"
            ));
        }
        let root = app.store.root().to_path_buf();
        let incoming = root.join(format!(".incoming-{}-{version}", model.served_as));
        let fresh = incoming.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&fresh))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
            .ok();
        let downloaded = self
            .download_version(artifact_path, &resolved.files, &incoming)
            .await;
        let hashed = match downloaded {
            Ok(hashed) => hashed,
            Err(failure) => {
                let _ = std::fs::remove_dir_all(&incoming);
                return match failure {
                    FileError::Sync(err) => Err(err),
                    FileError::Place(reason) => refuse(format!(
                        "cannot place {} version {version} in {}: {reason}",
                        model.served_as,
                        root.display()
                    )),
                };
            }
        };
        let digest = digest_of_hashes(&hashed);
        if digest != resolved.sha256 {
            let _ = std::fs::remove_dir_all(&incoming);
            return refuse(format!(
                "version {version} of '{}' failed its integrity check: the registry recorded sha256 {} at registration but the files hash to {digest}; refusing it",
                model.name, resolved.sha256
            ));
        }
        let served_as = model.served_as.clone();
        let placed =
            tokio::task::spawn_blocking(move || place(&root, &served_as, version, &incoming))
                .await
                .map_err(|e| SyncError::Task(e.to_string()))?;
        if let Err(reason) = placed {
            return refuse(reason);
        }
        let store_app = app.clone();
        let served_as = model.served_as.clone();
        tokio::task::spawn_blocking(move || store_app.store.load(&served_as))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
            .map_err(|e| SyncError::Load(e.message))?;
        Ok(Outcome::Loaded(version))
    }
}

impl RegistrySync {
    /// Downloads every file of a version into `incoming` under one deadline; each file's
    /// (path, sha256) in the registry's order.
    async fn download_version(
        &self,
        artifact_path: &str,
        files: &[String],
        incoming: &Path,
    ) -> Result<Vec<(String, String)>, FileError> {
        let deadline = tokio::time::Instant::now() + self.download_deadline;
        let mut hashed = Vec::with_capacity(files.len());
        for file in files {
            let sha256 = self
                .download(
                    &format!("/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/{file}"),
                    incoming.join(file),
                    deadline,
                )
                .await?;
            hashed.push((file.clone(), sha256));
        }
        Ok(hashed)
    }
}

/// A registry's non-2xx answer: its status in words and its own message.
fn answered(status: u16, url: String, body: &[u8]) -> SyncError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    SyncError::Answered {
        status: http::StatusCode::from_u16(status)
            .map_or_else(|_| status.to_string(), |s| s.to_string()),
        url,
        message,
    }
}

/// A file path a registry may name inside a version: relative, plain segments only.
fn safe_path(path: &str) -> bool {
    !path.contains('\\')
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// Writes the chunks from `queue` to a new file at `target` (folders created), hashing them,
/// and syncs it: the file's sha256 (lowercase hex), or why it could not be written.
fn write_hashing(
    target: &Path,
    mut queue: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<String, String> {
    let io = |e: std::io::Error| format!("cannot write {}: {e}", target.display());
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `weir_models::digest::artifact_digest` from per-file hashes rather than whole contents (sha256
/// over `path NUL sha256(file) LF`, in the registry's path order), so a downloaded file never
/// needs to be in memory or read twice.
fn digest_of_hashes(files: &[(String, String)]) -> String {
    let mut outer = Sha256::new();
    for (path, sha256) in files {
        outer.update(path.as_bytes());
        outer.update([0]);
        outer.update(sha256.as_bytes());
        outer.update(b"\n");
    }
    hex(&outer.finalize())
}

/// Syncs every folder under (and including) `folder`, so the files' names survive a crash as
/// their bytes already do.
fn sync_folders(folder: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_folders(&entry.path())?;
        }
    }
    std::fs::File::open(folder)?.sync_all()
}

/// Moves a downloaded, verified version from `incoming` to `root/served_as/version` (synced
/// first, then renamed, so a half-written version is never loaded) and removes the other
/// versions of that model.
fn place(root: &Path, served_as: &str, version: u64, incoming: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| {
        format!(
            "cannot place {served_as} version {version} in {}: {e}",
            root.display()
        )
    };
    if !incoming.is_dir() {
        // A version without files: an empty folder, as before.
        std::fs::create_dir_all(incoming).map_err(io)?;
    }
    sync_folders(incoming).map_err(io)?;
    let model_dir = root.join(served_as);
    std::fs::create_dir_all(&model_dir).map_err(io)?;
    let destination = model_dir.join(version.to_string());
    let _ = std::fs::remove_dir_all(&destination);
    std::fs::rename(incoming, &destination).map_err(io)?;
    std::fs::File::open(&model_dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io)?;
    for entry in std::fs::read_dir(&model_dir).map_err(io)?.flatten() {
        let other = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok());
        if other.is_some_and(|v| v != version) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_hashes_are_the_models_digest() {
        let files: [(&str, &[u8]); 2] = [("config/extra.json", b"{}"), ("model.onnx", b"weights")];
        let hashed: Vec<(String, String)> = files
            .iter()
            .map(|(path, bytes)| (path.to_string(), hex(&Sha256::digest(bytes))))
            .collect();
        assert_eq!(
            digest_of_hashes(&hashed),
            weir_models::digest::artifact_digest(files)
        );
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(safe_path("model.onnx"));
        assert!(safe_path("config/extra.json"));
        for bad in [
            "",
            "/etc/passwd",
            "a/../../b",
            "..",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert!(!safe_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn model_references_parse() {
        let alias: RegistryModel = "iris=models:/iris-prod@production".parse().unwrap();
        assert_eq!(
            alias,
            RegistryModel {
                served_as: "iris".into(),
                name: "iris-prod".into(),
                selector: Selector::Alias("production".into())
            }
        );
        let version: RegistryModel = "models:/fraud/3".parse().unwrap();
        assert_eq!(
            (version.served_as.as_str(), version.selector),
            ("fraud", Selector::Version("3".into()))
        );
        for bad in [
            "iris",
            "iris=runs:/abc",
            "models:/iris",
            "models:/iris/0",
            "models:/iris@",
            "../x=models:/x/1",
            "models:/a/b/1",
        ] {
            assert!(bad.parse::<RegistryModel>().is_err(), "{bad}");
        }
    }
}
