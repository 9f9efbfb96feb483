//! What a server needs to serve a version (`/api/2.0/weir/resolve`): where its files are, their
//! digest and its approval; and the refusal, shared by approvals and protected aliases, of a
//! version weir cannot serve.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use serde_json::{json, Value};
use weir_mlflow_wire::request::{blocking, ok, query_param, Answer};

use super::Registry;
use super::ARTIFACT_SCHEME;
use crate::error::StoreError;
use crate::servable;
use crate::store::VersionFile;

/// Refuses `what` ("approve", "point the protected alias 'x' at") for a version weir cannot
/// serve, naming what would make it servable. `INVALID_PARAMETER_VALUE` (400): MLflow has no
/// failed-precondition code, and its `INVALID_STATE` is a 500, which the client retries.
pub fn refuse_unservable(
    r: &Registry,
    name: &str,
    version: &str,
    what: &str,
) -> Result<(), StoreError> {
    let model_version = r.store.get_model_version(name, version)?;
    let (_, files) = served_files(r, name, &model_version)?;
    match servable::unservable_reason(&files, &model_version.source) {
        None => Ok(()),
        Some(reason) => Err(StoreError::InvalidParameter(format!(
            "cannot {what} version {version} of '{name}': {reason}"
        ))),
    }
}

/// Where a server downloads a version's files from, and which files they are. A version with
/// recorded files is served from its immutable copy; one registered before those existed (no
/// recorded files) is read from its source path as it is now (the runtime's digest check
/// still catches changed bytes); a source outside the store has no files weir can fetch.
pub(super) fn served_files(
    r: &Registry,
    name: &str,
    model_version: &crate::store::ModelVersion,
) -> Result<(Option<String>, Vec<String>), StoreError> {
    let recorded = r.store.version_files(name, &model_version.version)?;
    if !recorded.is_empty() {
        return Ok((
            Some(crate::versions::version_root(name, &model_version.version)),
            recorded.into_iter().map(|f| f.path).collect(),
        ));
    }
    let path = model_version
        .storage_location
        .strip_prefix(ARTIFACT_SCHEME)
        .map(str::to_owned);
    let files = match &path {
        Some(path) => r.artifacts.files_blocking(path)?,
        None => Vec::new(),
    };
    Ok((path, files))
}

/// `GET /api/2.0/weir/resolve?name=&alias=` (or `&version=`): what a server needs to serve a
/// version — its source files, their digest, and whether it is approved. With `&direct=true`
/// (`weir serve --registry-direct-download`) a registry on a bucket adds `direct_downloads`:
/// a short-lived presigned GET of each file's blob, so the server takes the bytes from the
/// bucket without S3 credentials of its own; a registry on a folder leaves it out and the
/// server downloads through the registry. The reader role is unchanged: a presigned URL gives
/// no more than the artifact endpoint already would.
pub(super) async fn resolve(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = query_param(&query, "name")?.to_owned();
    let direct = match query.get("direct").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(StoreError::InvalidParameter(format!(
                "direct must be true or false, not {other:?}"
            ))
            .into())
        }
    };
    let (alias, version) = (query.get("alias").cloned(), query.get("version").cloned());
    let (mut answer, recorded) = blocking(&registry, move |r| {
        let model_version = match (alias, version) {
            (Some(alias), None) => r.store.get_version_by_alias(&name, &alias)?,
            (None, Some(version)) => r.store.get_model_version(&name, &version)?,
            _ => {
                return Err(StoreError::InvalidParameter(
                    "give exactly one of alias or version".to_owned(),
                ))
            }
        };
        let approval = r.store.approval_status(&name, &model_version.version)?;
        let sha256 = r.store.artifact_sha256(&name, &model_version.version)?;
        let (path, files) = served_files(r, &name, &model_version)?;
        // Only a version's immutable blobs can be presigned: a version without recorded files
        // is read from its source path, through the registry.
        let recorded = if direct {
            r.store.version_files(&name, &model_version.version)?
        } else {
            Vec::new()
        };
        let answer = json!({
            "name": name,
            "version": model_version.version,
            "source": model_version.source,
            "artifact_path": path,
            "files": files,
            "sha256": sha256,
            "approved": approval.approved,
            "approval": approval,
        });
        Ok((answer, recorded))
    })
    .await?;
    if direct && !recorded.is_empty() {
        if let Some(downloads) = presigned(&registry.artifacts, &recorded).await {
            answer["direct_downloads"] = downloads;
            answer["direct_expires_in_secs"] =
                json!(crate::artifacts::bucket::BLOB_URL_LIFETIME.as_secs());
        }
    }
    ok(answer)
}

/// A presigned GET of every file's blob, in the version's file order, or `None` when the store
/// cannot presign them all (a folder; a bucket without a signer; a signing failure, which is
/// logged): the server then downloads through the registry, which is always correct.
async fn presigned(
    artifacts: &crate::artifacts::ArtifactStore,
    files: &[VersionFile],
) -> Option<Value> {
    let mut urls = Vec::with_capacity(files.len());
    for file in files {
        match artifacts.presign_blob(&file.sha256).await {
            Ok(Some(url)) => urls.push(url),
            Ok(None) => return None,
            Err(err) => {
                // The error names the blob's sha256, never a URL.
                tracing::warn!(error = %err, "cannot presign a blob; the server downloads through the registry");
                return None;
            }
        }
    }
    Some(direct_downloads(files, urls))
}

/// The `direct_downloads` answer: each file's path, sha256 (what the server checks the bytes
/// against) and presigned URL, in the order of `files`.
fn direct_downloads(files: &[VersionFile], urls: Vec<String>) -> Value {
    Value::Array(
        files
            .iter()
            .zip(urls)
            .map(|(file, url)| {
                json!({
                    "path": file.path,
                    "sha256": file.sha256,
                    "size": file.size,
                    "url": url,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_downloads_pair_each_file_with_its_url_in_order() {
        let file = |path: &str, sha256: &str, size| VersionFile {
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            size,
        };
        let files = [file("MLmodel", "aa", 3), file("model.onnx", "bb", 7)];
        let answer = direct_downloads(
            &files,
            vec![
                "https://s3/aa?X-Amz-Signature=1".into(),
                "https://s3/bb?X-Amz-Signature=2".into(),
            ],
        );
        assert_eq!(
            answer,
            json!([
                {"path": "MLmodel", "sha256": "aa", "size": 3, "url": "https://s3/aa?X-Amz-Signature=1"},
                {"path": "model.onnx", "sha256": "bb", "size": 7, "url": "https://s3/bb?X-Amz-Signature=2"},
            ])
        );
    }

    #[tokio::test]
    async fn a_folder_offers_no_direct_downloads() {
        let folder = std::env::temp_dir().join(format!("weir-presign-{}", std::process::id()));
        let store = crate::artifacts::ArtifactStore::open(&folder).unwrap();
        let files = [VersionFile {
            path: "model.onnx".into(),
            sha256: "ab".repeat(32),
            size: 1,
        }];
        assert_eq!(presigned(&store, &files).await, None);
        // Nor does a bucket that cannot presign (object_store's in-memory one).
        assert_eq!(
            presigned(&crate::artifacts::ArtifactStore::in_memory(), &files).await,
            None
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
