//! Model-version handlers: registration (copying the files into immutable storage and marking
//! what weir cannot serve), reads, download URIs, descriptions, deletes, search, tags and the
//! legacy stage transitions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;
use weir_mlflow_wire::request::{blocking, body, ok, required, Answer};

use super::requests::{
    name_and_version, page, search_request, tags, Describe, Named, SetTag, TagBody,
};
use super::ARTIFACT_SCHEME;
use super::{Actor, Registry};

/// Sources in an S3 bucket (`s3://BUCKET/KEY`), read with the registry's S3 configuration.
const S3_SCHEME: &str = "s3://";
use crate::error::StoreError;
use crate::servable;
use crate::store::{NewVersion, Tag};

#[derive(Deserialize)]
struct CreateVersion {
    name: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<TagBody>,
}

pub(super) async fn create_model_version(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: CreateVersion = body(&bytes)?;
    let mut new = NewVersion {
        source: request.source,
        run_id: request.run_id.unwrap_or_default(),
        description: request.description.unwrap_or_default(),
        user_id: String::new(),
        tags: tags(request.tags),
        sha256: String::new(),
        model_id: request.model_id.unwrap_or_default(),
        storage_location: String::new(),
        files: Vec::new(),
    };
    let version = blocking(&registry, move |r| -> Result<_, StoreError> {
        let resolved = match &r.sources {
            Some(resolve) if !new.source.starts_with(ARTIFACT_SCHEME) => resolve(&new.source)?,
            _ => None,
        };
        new.storage_location = resolved.unwrap_or_else(|| new.source.clone());
        // The version's files are copied into content-addressed storage now, and the digest
        // (which the runtime checks what it downloads against) is computed over exactly the
        // bytes copied: later writes to the source path cannot change the version. Blobs are
        // written first; the file list commits with the version row.
        if let Some(path) = new.storage_location.strip_prefix(ARTIFACT_SCHEME) {
            // No copies for a model that is not there (the insert below would refuse it).
            r.store.get_registered_model(&request.name)?;
            new.files = crate::versions::capture_blocking(&r.store, &r.artifacts, path)?;
            if !new.files.is_empty() {
                new.sha256 = crate::versions::digest(&new.files);
            }
        } else if new.storage_location.starts_with(S3_SCHEME) {
            // An object or folder in a bucket the registry can read: copied like one in the
            // store (refused, 400, saying why, when it cannot be read).
            r.store.get_registered_model(&request.name)?;
            new.files = crate::versions::capture_s3_blocking(&r.artifacts, &new.storage_location)?;
            new.sha256 = crate::versions::digest(&new.files);
        }
        // MLflow registers anything; so does weir, but a version it cannot serve is marked so
        // the client sees it now rather than when a server fails to load it. The marks are the
        // registry's own: a client's tags under those keys are not kept.
        let paths: Vec<&str> = new.files.iter().map(|f| f.path.as_str()).collect();
        let unservable = servable::unservable_reason(&paths, &new.source);
        new.tags
            .retain(|t| t.key != servable::TAG && t.key != servable::REASON_TAG);
        if let Some(reason) = &unservable {
            new.tags.extend([
                Tag {
                    key: servable::TAG.to_owned(),
                    value: "false".to_owned(),
                },
                Tag {
                    key: servable::REASON_TAG.to_owned(),
                    value: reason.clone(),
                },
            ]);
        }
        let version = r.store.create_model_version(&actor, &request.name, &new)?;
        if let Some(reason) = unservable {
            tracing::warn!(
                model = %request.name,
                version = %version.version,
                source = %new.source,
                "registered a version weir cannot serve; it cannot be approved or given a protected alias: {reason}"
            );
        }
        Ok(version)
    })
    .await?;
    ok(json!({ "model_version": version }))
}

pub(super) async fn get_model_version(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = name_and_version(&query)?;
    let version = blocking(&registry, move |r| {
        r.store.get_model_version(&name, &version)
    })
    .await?;
    ok(json!({ "model_version": version }))
}

pub(super) async fn get_download_uri(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = name_and_version(&query)?;
    let uri = blocking(&registry, move |r| -> Result<_, StoreError> {
        let version = r.store.get_model_version(&name, &version)?;
        Ok(match immutable_root(r, &name, &version.version)? {
            Some(root) => format!("{ARTIFACT_SCHEME}{root}"),
            None => version.storage_location,
        })
    })
    .await?;
    ok(json!({ "artifact_uri": uri }))
}

/// The virtual artifact path of a version's immutable copy (`.weir/versions/<name>/<version>`),
/// or `None` for a version registered before versions were copied into content-addressed
/// storage (or from a source outside the store): those keep being read from their source path,
/// which artifact writes can still change.
pub(super) fn immutable_root(
    r: &Registry,
    name: &str,
    version: &str,
) -> Result<Option<String>, StoreError> {
    let recorded = r.store.version_files(name, version)?;
    Ok((!recorded.is_empty()).then(|| crate::versions::version_root(name, version)))
}

pub(super) async fn update_model_version(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Describe = body(&bytes)?;
    let version = required(request.version, "version")?;
    let updated = blocking(&registry, move |r| {
        r.store
            .update_model_version(&actor, &request.name, &version, &request.description)
    })
    .await?;
    ok(json!({ "model_version": updated }))
}

pub(super) async fn delete_model_version(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let version = required(request.version, "version")?;
    blocking(&registry, move |r| {
        r.store
            .delete_model_version(&actor, &request.name, &version)
    })
    .await?;
    ok(json!({}))
}

pub(super) async fn search_model_versions(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (filter, max, offset) = search_request(&query)?;
    let (versions, next) = blocking(&registry, move |r| {
        r.store.search_model_versions(&filter, max, offset)
    })
    .await?;
    ok(page("model_versions", json!(versions), next))
}

pub(super) async fn set_model_version_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: SetTag = body(&bytes)?;
    let tag = request.tag();
    let version = required(request.version, "version")?;
    blocking(&registry, move |r| {
        r.store
            .set_model_version_tag(&actor, &request.name, &version, &tag)
    })
    .await?;
    ok(json!({}))
}

pub(super) async fn delete_model_version_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let (version, key) = (
        required(request.version, "version")?,
        required(request.key, "key")?,
    );
    blocking(&registry, move |r| {
        r.store
            .delete_model_version_tag(&actor, &request.name, &version, &key)
    })
    .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct Transition {
    name: String,
    version: String,
    stage: String,
    #[serde(default)]
    archive_existing_versions: bool,
}

pub(super) async fn transition_stage(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Transition = body(&bytes)?;
    let version = blocking(&registry, move |r| {
        r.store.transition_stage(
            &actor,
            &request.name,
            &request.version,
            &request.stage,
            request.archive_existing_versions,
        )
    })
    .await?;
    ok(json!({ "model_version": version }))
}
