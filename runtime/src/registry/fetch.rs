//! One registry version into a folder: resolve a reference, refuse what must not be served,
//! download the files and check them against the registry's digest. Shared by the server's
//! sync (which then places and loads the version) and `weir fetch` (which writes a folder for
//! a server that does not speak to the registry, such as KServe's), so both refuse alike.

use std::path::Path;

use serde::Deserialize;

use super::download::FileError;
use super::error::SyncError;
use super::files::{digest_of_hashes, safe_path, sync_folders, PlaceError};
use super::source::{RegistryModel, Selector};
use super::RegistrySync;

/// What the registry says about the version a reference names (`/api/2.0/weir/resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVersion {
    /// The registered model's name.
    pub name: String,
    pub version: u64,
    /// Where the files are under `/api/2.0/mlflow-artifacts/artifacts/`; none for a version
    /// whose source is outside the registry's store.
    pub artifact_path: Option<String>,
    /// The version's file paths, in the order the digest covers them.
    pub files: Vec<String>,
    /// The digest recorded at registration (`weir_models::digest::artifact_digest`); empty
    /// when the registry has none.
    pub sha256: String,
    pub approved: bool,
    pub approval: Approval,
    /// Presigned bucket URLs of the files, one per entry of `files` in its order, when the
    /// server asked for direct downloads and the registry keeps its artifacts in a bucket;
    /// `None` downloads through the registry.
    pub direct: Option<Vec<DirectBlob>>,
}

/// Where one file of a version can be downloaded straight from the registry's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectBlob {
    pub path: String,
    /// The blob's sha256: what logs and errors name instead of the URL.
    pub sha256: String,
    pub url: PresignedUrl,
}

/// A presigned GET: whoever holds it can read the blob until it expires, so it is never
/// printed (`{:?}` shows `<presigned>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct PresignedUrl(String);

impl PresignedUrl {
    pub fn new(url: String) -> PresignedUrl {
        PresignedUrl(url)
    }

    /// The URL itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<presigned>")
    }
}

/// A version's approval state, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Approval {
    pub required_approvals: u32,
    pub approved_by: Vec<String>,
    pub rejected_by: Vec<String>,
}

/// The registry's answer as it is written on the wire (the version is text there).
#[derive(Deserialize)]
struct Answer {
    version: String,
    artifact_path: Option<String>,
    files: Vec<String>,
    sha256: String,
    approved: bool,
    approval: Approval,
    #[serde(default)]
    direct_downloads: Option<Vec<DirectBlob>>,
}

/// The registry's direct downloads if they name exactly the version's files in their order;
/// anything else is not trusted to say which URL holds which file, and the version is
/// downloaded through the registry (the digest check would catch a mix-up either way).
fn matching_direct(files: &[String], direct: Option<Vec<DirectBlob>>) -> Option<Vec<DirectBlob>> {
    direct.filter(|blobs| {
        blobs.len() == files.len()
            && blobs
                .iter()
                .zip(files)
                .all(|(blob, file)| &blob.path == file)
    })
}

/// Why a version could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry (or the network, or the deadline) failed: a later try may succeed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The version itself must not be served: not approved, nothing to verify, an unsafe file
    /// path, or files that do not match the registry's digest.
    #[error("{0}")]
    Refused(String),
    /// A file could not be written here.
    #[error(transparent)]
    Write(#[from] PlaceError),
}

/// One verified file of a fetched version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// `/`-separated, relative to the version's folder.
    pub path: String,
    /// The file's sha256, lowercase hex.
    pub sha256: String,
}

impl ResolvedVersion {
    /// Why this version must not be served, or `None`. Checked before anything is downloaded,
    /// so a refused version writes nothing.
    pub fn refusal(&self) -> Option<String> {
        let (name, version) = (&self.name, self.version);
        if !self.approved {
            let approval = &self.approval;
            return Some(format!(
                "version {version} of '{name}' is not approved: {} of {} required approvals{}",
                approval.approved_by.len(),
                approval.required_approvals,
                if approval.rejected_by.is_empty() {
                    String::new()
                } else {
                    format!(", rejected by {}", approval.rejected_by.join(", "))
                }
            ));
        }
        if self.artifact_path.is_none() || self.sha256.is_empty() {
            return Some(format!(
                "version {version} of '{name}' has no artifact in the registry's store to verify"
            ));
        }
        self.files
            .iter()
            .find(|path| !safe_path(path))
            .map(|unsafe_path| format!("the registry listed an unsafe file path {unsafe_path:?}"))
    }
}

impl RegistrySync {
    /// Asks the registry which version `model` names now, with its files, digest and approval.
    pub async fn resolve(&self, model: &RegistryModel) -> Result<ResolvedVersion, SyncError> {
        let query = match &model.selector {
            Selector::Alias(alias) => format!("alias={}", weir_http::percent_encode(alias)),
            Selector::Version(version) => format!("version={version}"),
        };
        let direct = if self.source.direct_download {
            "&direct=true"
        } else {
            ""
        };
        let body = self
            .get(&format!(
                "/api/2.0/weir/resolve?name={}&{query}{direct}",
                weir_http::percent_encode(&model.name)
            ))
            .await?;
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| SyncError::Unexpected(e.to_string()))?;
        let version = answer
            .version
            .parse()
            .map_err(|_| SyncError::BadVersion(answer.version.clone()))?;
        let direct = matching_direct(&answer.files, answer.direct_downloads);
        Ok(ResolvedVersion {
            name: model.name.clone(),
            version,
            artifact_path: answer.artifact_path,
            direct,
            files: answer.files,
            sha256: answer.sha256,
            approved: answer.approved,
            approval: answer.approval,
        })
    }

    /// Downloads an approved version's files into the new folder `into` and checks them
    /// against the registry's digest; the folder is synced, so the files and their names
    /// survive a crash once this returns. On any failure `into` is removed: a caller never
    /// finds a partial or unverified version there. `into` must not exist yet.
    pub async fn fetch(
        &self,
        resolved: &ResolvedVersion,
        into: &Path,
    ) -> Result<Vec<FetchedFile>, FetchError> {
        if let Some(reason) = resolved.refusal() {
            return Err(FetchError::Refused(reason));
        }
        let outcome = self.fetch_verified(resolved, into).await;
        if outcome.is_err() {
            let leftover = into.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(leftover)).await;
        }
        outcome
    }

    async fn fetch_verified(
        &self,
        resolved: &ResolvedVersion,
        into: &Path,
    ) -> Result<Vec<FetchedFile>, FetchError> {
        if self.source.direct_download && resolved.direct.is_none() && !resolved.files.is_empty() {
            self.note_no_direct_downloads(resolved);
        }
        let hashed =
            self.download_version(resolved, into)
                .await
                .map_err(|failure| match failure {
                    FileError::Sync(err) => FetchError::Sync(err),
                    FileError::Place(err) => FetchError::Write(err),
                })?;
        let digest = digest_of_hashes(&hashed);
        if digest != resolved.sha256 {
            return Err(FetchError::Refused(format!(
                "version {} of '{}' failed its integrity check: the registry recorded sha256 {} at registration but the files hash to {digest}; refusing it",
                resolved.version, resolved.name, resolved.sha256
            )));
        }
        let folder = into.to_path_buf();
        tokio::task::spawn_blocking(move || {
            // A version without files is an empty folder.
            std::fs::create_dir_all(&folder).and_then(|()| sync_folders(&folder))
        })
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
        .map_err(|source| PlaceError::Write {
            path: into.to_path_buf(),
            source,
        })?;
        Ok(hashed
            .into_iter()
            .map(|(path, sha256)| FetchedFile { path, sha256 })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(path: &str) -> DirectBlob {
        DirectBlob {
            path: path.into(),
            sha256: "cd".repeat(32),
            url: PresignedUrl::new(format!("http://127.0.0.1:9/{path}?X-Amz-Signature=secret")),
        }
    }

    #[test]
    fn direct_downloads_are_used_only_when_they_name_the_files_in_order() {
        let files = vec!["MLmodel".to_owned(), "model.onnx".to_owned()];
        let both = vec![blob("MLmodel"), blob("model.onnx")];
        assert_eq!(matching_direct(&files, Some(both.clone())), Some(both));
        assert_eq!(matching_direct(&files, None), None);
        assert_eq!(matching_direct(&files, Some(vec![blob("MLmodel")])), None);
        assert_eq!(
            matching_direct(&files, Some(vec![blob("model.onnx"), blob("MLmodel")])),
            None
        );
    }

    #[test]
    fn a_presigned_url_never_prints() {
        let mut version = resolved();
        version.direct = Some(vec![blob("model.onnx")]);
        let printed = format!("{version:?}");
        assert!(printed.contains("<presigned>"), "{printed}");
        assert!(!printed.contains("X-Amz-Signature"), "{printed}");
    }

    #[test]
    fn the_registry_answer_with_direct_downloads_parses() {
        let answer: Answer = serde_json::from_value(serde_json::json!({
            "name": "iris", "version": "1", "source": "s", "artifact_path": "models/iris/1",
            "files": ["model.onnx"], "sha256": "ab", "approved": true,
            "approval": {"required_approvals": 0, "approved_by": [], "rejected_by": []},
            "direct_downloads": [{"path": "model.onnx", "sha256": "cd", "size": 3,
                                  "url": "http://127.0.0.1:9/b?X-Amz-Signature=s"}],
            "direct_expires_in_secs": 900,
        }))
        .unwrap();
        let direct = answer.direct_downloads.unwrap();
        assert_eq!(
            direct[0].url.expose(),
            "http://127.0.0.1:9/b?X-Amz-Signature=s"
        );
        assert_eq!(direct[0].sha256, "cd");
    }

    fn resolved() -> ResolvedVersion {
        ResolvedVersion {
            name: "iris".into(),
            version: 3,
            artifact_path: Some("models/iris/3".into()),
            files: vec!["model.onnx".into(), "config/extra.json".into()],
            sha256: "ab".repeat(32),
            approved: true,
            approval: Approval {
                required_approvals: 2,
                approved_by: vec!["bob".into(), "carol".into()],
                rejected_by: vec![],
            },
            direct: None,
        }
    }

    #[test]
    fn an_approved_verifiable_version_is_not_refused() {
        assert_eq!(resolved().refusal(), None);
    }

    #[test]
    fn refusals_name_the_version_and_the_reason() {
        let mut unapproved = resolved();
        unapproved.approved = false;
        unapproved.approval.approved_by = vec!["bob".into()];
        unapproved.approval.rejected_by = vec!["dave".into()];
        assert_eq!(
            unapproved.refusal().unwrap(),
            "version 3 of 'iris' is not approved: 1 of 2 required approvals, rejected by dave"
        );
        let mut outside = resolved();
        outside.artifact_path = None;
        assert_eq!(
            outside.refusal().unwrap(),
            "version 3 of 'iris' has no artifact in the registry's store to verify"
        );
        let mut no_digest = resolved();
        no_digest.sha256.clear();
        assert!(no_digest.refusal().unwrap().contains("no artifact"));
        let mut escaping = resolved();
        escaping.files.push("../../etc/passwd".into());
        assert_eq!(
            escaping.refusal().unwrap(),
            "the registry listed an unsafe file path \"../../etc/passwd\""
        );
    }
}
