//! What a server needs to serve a version (`/api/2.0/weir/resolve`): where its files are, their
//! digest and its approval; and the refusal, shared by approvals and protected aliases, of a
//! version weir cannot serve.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use serde_json::json;
use weir_mlflow_wire::request::{blocking, ok, query_param, Answer};

use super::Registry;
use super::ARTIFACT_SCHEME;
use crate::error::StoreError;
use crate::servable;

/// Refuses `what` ("approve", "point the protected alias 'x' at") for a version weir cannot
/// serve, naming what would make it servable. `INVALID_PARAMETER_VALUE` (400): MLflow has no
/// failed-precondition code, and its `INVALID_STATE` is a 500, which the client retries.
pub(super) fn refuse_unservable(
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
        Some(path) => r.artifacts.files(path)?,
        None => Vec::new(),
    };
    Ok((path, files))
}

/// `GET /api/2.0/weir/resolve?name=&alias=` (or `&version=`): what a server needs to serve a
/// version — its source files, their digest, and whether it is approved.
pub(super) async fn resolve(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = query_param(&query, "name")?.to_owned();
    let (alias, version) = (query.get("alias").cloned(), query.get("version").cloned());
    let answer = blocking(&registry, move |r| {
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
        Ok(json!({
            "name": name,
            "version": model_version.version,
            "source": model_version.source,
            "artifact_path": path,
            "files": files,
            "sha256": sha256,
            "approved": approval.approved,
            "approval": approval,
        }))
    })
    .await?;
    ok(answer)
}
