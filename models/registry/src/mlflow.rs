//! MLflow's REST API for the model registry and artifacts (`/api/2.0/mlflow/…`,
//! `/api/2.0/mlflow-artifacts/…`); the official `mlflow` client is the judge of compatibility.
//!
//! Wire rules the client relies on (PROTOCOLS.md): versions are JSON strings, success bodies are
//! objects, errors are `{"error_code", "message"}` with MLflow's statuses, and a client mistake is
//! never a 5xx (the client retries those seven times, which looks like a hang).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::{Access, Identity, Role};

use crate::artifacts::{ArtifactStore, UploadError};
use crate::filter::Filter;
use crate::servable;
use crate::store::{Decision, NewVersion, Store, StoreError, Tag};

/// The registry behind the API.
pub struct Registry {
    pub store: Store,
    pub artifacts: ArtifactStore,
    /// Finds where a source that is not a plain artifact location keeps its files: the tracking
    /// server beside the registry maps `models:/<model_id>` to the logged model's
    /// `mlflow-artifacts:/…` location. `None` when the registry runs alone.
    pub sources: Option<SourceResolver>,
}

/// Maps a version's source to the `mlflow-artifacts:/` location of its files, if it knows it.
pub type SourceResolver = Arc<dyn Fn(&str) -> Result<Option<String>, StoreError> + Send + Sync>;

/// Who is making a request: the identity the access layer (weir-mlflow-wire) established
/// for it, by its name, for the audit log and the approval rules.
pub struct Actor(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Actor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        let identity = Identity::from_request_parts(parts, state).await?;
        Ok(Actor(identity.name))
    }
}

/// An MLflow error answer.
pub struct MlflowError(StoreError);

impl From<StoreError> for MlflowError {
    fn from(err: StoreError) -> Self {
        MlflowError(err)
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            StoreError::AlreadyExists(_) => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            StoreError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
            StoreError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            StoreError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            StoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "registry request failed");
        }
        weir_mlflow_wire::mlflow_error(status, code, &self.0.to_string())
    }
}

type Answer = Result<Response, MlflowError>;

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn ok(value: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &value))
}

fn invalid(message: impl Into<String>) -> MlflowError {
    MlflowError(StoreError::InvalidParameter(message.into()))
}

/// A JSON body (any or no Content-Type, as the client sends); a missing field names itself.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, MlflowError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid request body: {e}")))
}

fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Result<&'a str, MlflowError> {
    query
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| invalid(format!("Missing value for required parameter '{name}'.")))
}

/// Runs a storage call off the async threads (SQLite syncs to disk on every write).
async fn blocking<T: Send + 'static>(
    registry: &Arc<Registry>,
    work: impl FnOnce(&Registry) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, MlflowError> {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || work(&registry))
        .await
        .map_err(|e| MlflowError(StoreError::Internal(e.to_string())))?
        .map_err(MlflowError)
}

/// MLflow's paging: `max_results` and an opaque `page_token` (here an offset).
fn paging(
    max_results: Option<&str>,
    page_token: Option<&str>,
) -> Result<(usize, usize), MlflowError> {
    let max = match max_results.filter(|m| !m.is_empty()) {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=100_000).contains(m))
            .ok_or_else(|| invalid(format!("Invalid value {m} for max_results")))?,
        None => 100,
    };
    let offset = match page_token.filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| invalid(format!("Invalid page token '{t}'")))?,
        None => 0,
    };
    Ok((max, offset))
}

fn parse_filter(filter: Option<&str>) -> Result<Filter, MlflowError> {
    Ok(Filter::parse(filter.unwrap_or(""))?)
}

#[derive(Deserialize)]
struct CreateModel {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<TagBody>,
}

#[derive(Deserialize)]
struct TagBody {
    key: String,
    #[serde(default)]
    value: String,
}

fn tags(tags: Vec<TagBody>) -> Vec<Tag> {
    tags.into_iter()
        .map(|t| Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

async fn create_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: CreateModel = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store.create_registered_model(
            &actor,
            &request.name,
            request.description.as_deref().unwrap_or(""),
            &tags(request.tags),
        )
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

async fn get_registered_model(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = param(&query, "name")?.to_owned();
    let model = blocking(&registry, move |r| r.store.get_registered_model(&name)).await?;
    ok(json!({ "registered_model": model }))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
    new_name: String,
}

async fn rename_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Rename = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .rename_registered_model(&actor, &request.name, &request.new_name)
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

#[derive(Deserialize)]
struct Describe {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: String,
}

async fn update_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Describe = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .update_registered_model(&actor, &request.name, &request.description)
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

#[derive(Deserialize)]
struct Named {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    alias: Option<String>,
}

fn required(value: Option<String>, name: &str) -> Result<String, MlflowError> {
    value.ok_or_else(|| invalid(format!("Missing value for required parameter '{name}'.")))
}

async fn delete_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store.delete_registered_model(&actor, &request.name)
    })
    .await?;
    ok(json!({}))
}

async fn search_registered_models(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (filter, max, offset) = search_request(&query)?;
    let (models, next) = blocking(&registry, move |r| {
        r.store.search_registered_models(&filter, max, offset)
    })
    .await?;
    ok(page("registered_models", json!(models), next))
}

/// A search's filter and paging from its query string.
fn search_request(query: &HashMap<String, String>) -> Result<(Filter, usize, usize), MlflowError> {
    let filter = parse_filter(query.get("filter").map(String::as_str))?;
    let (max, offset) = paging(
        query.get("max_results").map(String::as_str),
        query.get("page_token").map(String::as_str),
    )?;
    Ok((filter, max, offset))
}

/// `{key: items, next_page_token?}`.
fn page(key: &str, items: Value, next: Option<usize>) -> Value {
    let mut answer = json!({ key: items });
    if let Some(next) = next {
        answer["next_page_token"] = json!(next.to_string());
    }
    answer
}

#[derive(Deserialize)]
struct SetTag {
    name: String,
    #[serde(default)]
    version: Option<String>,
    key: String,
    #[serde(default)]
    value: String,
}

async fn set_registered_model_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: SetTag = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store.set_registered_model_tag(
            &actor,
            &request.name,
            &Tag {
                key: request.key,
                value: request.value,
            },
        )
    })
    .await?;
    ok(json!({}))
}

async fn delete_registered_model_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let key = required(request.key, "key")?;
    blocking(&registry, move |r| {
        r.store
            .delete_registered_model_tag(&actor, &request.name, &key)
    })
    .await?;
    ok(json!({}))
}

async fn set_alias(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let (alias, version) = (
        required(request.alias, "alias")?,
        required(request.version, "version")?,
    );
    blocking(&registry, move |r| {
        if r.store.is_protected(&alias) {
            let what = format!("point the protected alias '{alias}' at");
            refuse_unservable(r, &request.name, &version, &what)?;
        }
        r.store.set_alias(&actor, &request.name, &alias, &version)
    })
    .await?;
    ok(json!({}))
}

async fn get_alias(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, alias) = (
        param(&query, "name")?.to_owned(),
        param(&query, "alias")?.to_owned(),
    );
    let version = blocking(&registry, move |r| {
        r.store.get_version_by_alias(&name, &alias)
    })
    .await?;
    ok(json!({ "model_version": version }))
}

async fn delete_alias(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let alias = required(request.alias, "alias")?;
    blocking(&registry, move |r| {
        r.store.delete_alias(&actor, &request.name, &alias)
    })
    .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct LatestVersions {
    name: String,
    #[serde(default)]
    stages: Vec<String>,
}

async fn get_latest_versions(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: LatestVersions = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store.get_registered_model(&request.name)
    })
    .await?;
    let versions: Vec<_> = model
        .latest_versions
        .into_iter()
        .filter(|v| {
            request.stages.is_empty()
                || request
                    .stages
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&v.current_stage))
        })
        .collect();
    ok(json!({ "model_versions": versions }))
}

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

async fn create_model_version(
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
    let version = blocking(&registry, move |r| {
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
            new.files = crate::versions::capture(&r.store, &r.artifacts, path)?;
            if !new.files.is_empty() {
                new.sha256 = crate::versions::digest(&new.files);
            }
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

/// Refuses `what` ("approve", "point the protected alias 'x' at") for a version weir cannot
/// serve, naming what would make it servable. `INVALID_PARAMETER_VALUE` (400): MLflow has no
/// failed-precondition code, and its `INVALID_STATE` is a 500, which the client retries.
fn refuse_unservable(
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
fn served_files(
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

async fn get_model_version(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = (
        param(&query, "name")?.to_owned(),
        param(&query, "version")?.to_owned(),
    );
    let version = blocking(&registry, move |r| {
        r.store.get_model_version(&name, &version)
    })
    .await?;
    ok(json!({ "model_version": version }))
}

async fn get_download_uri(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = (
        param(&query, "name")?.to_owned(),
        param(&query, "version")?.to_owned(),
    );
    let uri = blocking(&registry, move |r| {
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
fn immutable_root(r: &Registry, name: &str, version: &str) -> Result<Option<String>, StoreError> {
    let recorded = r.store.version_files(name, version)?;
    Ok((!recorded.is_empty()).then(|| crate::versions::version_root(name, version)))
}

async fn update_model_version(
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

async fn delete_model_version(
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

async fn search_model_versions(
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

async fn set_model_version_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: SetTag = body(&bytes)?;
    let version = required(request.version, "version")?;
    blocking(&registry, move |r| {
        r.store.set_model_version_tag(
            &actor,
            &request.name,
            &version,
            &Tag {
                key: request.key,
                value: request.value,
            },
        )
    })
    .await?;
    ok(json!({}))
}

async fn delete_model_version_tag(
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

async fn transition_stage(
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

/// Stores an artifact, streamed: the body goes to disk chunk by chunk (see
/// `ArtifactStore::begin_upload`), so memory does not grow with the file. The artifact root
/// itself is refused (400) and so is anything under `.weir/`, where registered versions are
/// kept (403). A body over the store's limit is refused with 413 — at once when its
/// Content-Length says so, else when the limit is crossed. Each write is audited as
/// `artifact.put` with the path.
async fn upload_artifact(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let limit = registry.artifacts.max_file_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Ok(too_large(&path, limit));
    }
    match receive(&registry, &path, body).await {
        Ok(()) => {}
        Err(UploadError::TooLarge { limit, .. }) => return Ok(too_large(&path, limit)),
        Err(UploadError::Store(err)) => return Err(err.into()),
    }
    blocking(&registry, move |r| {
        r.store
            .record_event(&actor, "artifact.put", "", "", "", &path)
    })
    .await?;
    ok(json!({}))
}

/// Streams a request body into the artifact at `path` (see [`crate::artifacts::Upload`]).
async fn receive(
    registry: &Registry,
    path: &str,
    mut body: axum::body::Body,
) -> Result<(), UploadError> {
    use http_body_util::BodyExt;
    let mut upload = registry.artifacts.begin_upload(path).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            StoreError::InvalidParameter(format!("the upload of '{path}' broke off: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            upload.write(&data).await?;
        }
    }
    upload.finish().await?;
    Ok(())
}

/// 413 with MLflow's error body for an upload over the limit.
fn too_large(path: &str, limit: u64) -> Response {
    weir_mlflow_wire::mlflow_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RESOURCE_EXHAUSTED",
        &format!("artifact '{path}' is larger than the {limit} bytes an upload may have"),
    )
}

/// A file's bytes, streamed from disk with its Content-Length; paths under
/// `.weir/versions/<name>/<version>/` read a registered version's immutable copy (the name is
/// the decoded URL segment here).
async fn download_artifact(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
) -> Answer {
    let relative = path.clone();
    let on_disk = blocking(&registry, move |r| {
        r.artifacts.resolve(&path)?;
        if crate::artifacts::is_reserved(&path) {
            crate::versions::blob_file(
                &r.store,
                &r.artifacts,
                &path,
                crate::versions::NameForm::Decoded,
            )
        } else {
            r.artifacts.file(&path)
        }
    })
    .await?;
    let body = crate::artifacts::FileBody::open(&on_disk)
        .await
        .map_err(|e| {
            MlflowError(StoreError::Internal(format!(
                "cannot read artifact '{relative}': {e}"
            )))
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::new(body),
    )
        .into_response())
}

/// Deletes an artifact (a file or a folder). The root and `.weir/` are refused as for
/// [`upload_artifact`]; each delete is audited as `artifact.delete` with the path.
async fn delete_artifact(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    Path(path): Path<String>,
) -> Answer {
    blocking(&registry, move |r| {
        r.artifacts.delete(&path)?;
        r.store
            .record_event(&actor, "artifact.delete", "", "", "", &path)
    })
    .await?;
    ok(json!({}))
}

/// Lists a folder. The root's listing never shows `.weir` (hidden); a version's virtual folder
/// lists its recorded files (the name comes percent-encoded in the query, as the mlflow client
/// passes the `artifact_uri` it was given).
async fn list_artifacts(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let path = query.get("path").cloned().unwrap_or_default();
    let files = blocking(&registry, move |r| {
        r.artifacts.resolve(&path)?;
        if crate::artifacts::is_reserved(&path) {
            crate::versions::list(&r.store, &path, crate::versions::NameForm::Encoded)
        } else {
            r.artifacts.list(&path)
        }
    })
    .await?;
    ok(json!({ "files": files }))
}

#[derive(Deserialize)]
struct DecisionBody {
    name: String,
    version: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/2.0/weir/approvals/{request|approve|reject}` → the version's approval status.
async fn decide(
    registry: Arc<Registry>,
    decision: Decision,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: DecisionBody = body(&bytes)?;
    let status = blocking(&registry, move |r| {
        if decision == Decision::Approve {
            refuse_unservable(r, &request.name, &request.version, "approve")?;
        }
        r.store.decide(
            &actor,
            &request.name,
            &request.version,
            decision,
            &request.comment,
        )
    })
    .await?;
    ok(json!({ "approval": status }))
}

async fn approval_status(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = (
        param(&query, "name")?.to_owned(),
        param(&query, "version")?.to_owned(),
    );
    let status = blocking(&registry, move |r| r.store.approval_status(&name, &version)).await?;
    ok(json!({ "approval": status }))
}

#[derive(Deserialize)]
struct Policy {
    name: String,
    required_approvals: u32,
}

async fn set_policy(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Policy = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store
            .set_required_approvals(&actor, &request.name, request.required_approvals)
    })
    .await?;
    ok(json!({}))
}

/// Artifact sources in this registry's store.
const ARTIFACT_SCHEME: &str = "mlflow-artifacts:/";

/// `GET /api/2.0/weir/resolve?name=&alias=` (or `&version=`): what a server needs to serve a
/// version — its source files, their digest, and whether it is approved.
async fn resolve(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = param(&query, "name")?.to_owned();
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

/// `GET /api/2.0/weir/audit/list?name=&action=&user=&max_results=`, newest first.
async fn audit(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (max, _) = paging(query.get("max_results").map(String::as_str), None)?;
    let events = blocking(&registry, move |r| {
        r.store.audit(
            query.get("name").map(String::as_str),
            query.get("action").map(String::as_str),
            query.get("user").map(String::as_str),
            max,
        )
    })
    .await?;
    ok(json!({ "events": events }))
}

/// Largest request body held in memory: the JSON requests. Artifact uploads are streamed to
/// disk and bounded by `ArtifactStore::max_file_bytes` instead.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The registry's routes with what each needs of its caller (docs/security.md has the table),
/// state applied; the server puts one [`weir_mlflow_wire::AccessLayer`] in front of these and
/// tracking's routes together.
pub fn routes(registry: Arc<Registry>) -> (Router, Vec<weir_mlflow_wire::Endpoint>) {
    use Role::{Admin, Approver, Reader, Submitter};
    let needs = Access::Needs;
    let api = "/api/2.0/mlflow";
    let models = |path: &str| format!("{api}/registered-models/{path}");
    let versions = |path: &str| format!("{api}/model-versions/{path}");
    let decision = |decision: Decision| {
        move |State(r): State<Arc<Registry>>, actor: Actor, bytes: Bytes| {
            decide(r, decision, actor, bytes)
        }
    };
    let (router, endpoints) = weir_mlflow_wire::Routes::new()
        .get("/health", Access::Public, || async { "OK" })
        .get("/version", Access::Public, || async {
            env!("CARGO_PKG_VERSION")
        })
        .post(&models("create"), needs(Submitter), create_registered_model)
        .get(&models("get"), needs(Reader), get_registered_model)
        // A rename changes what every `models:/NAME@…` reference resolves to.
        .post(&models("rename"), needs(Admin), rename_registered_model)
        .patch(&models("update"), needs(Submitter), update_registered_model)
        .delete(&models("delete"), needs(Admin), delete_registered_model)
        .get(&models("search"), needs(Reader), search_registered_models)
        .post(
            &models("set-tag"),
            needs(Submitter),
            set_registered_model_tag,
        )
        .delete(
            &models("delete-tag"),
            needs(Submitter),
            delete_registered_model_tag,
        )
        // Moving an alias is a deployment decision: what `models:/NAME@ALIAS` serves.
        .post(&models("alias"), needs(Approver), set_alias)
        .get(&models("alias"), needs(Reader), get_alias)
        .delete(&models("alias"), needs(Approver), delete_alias)
        .post(
            &models("get-latest-versions"),
            needs(Reader),
            get_latest_versions,
        )
        .post(&versions("create"), needs(Submitter), create_model_version)
        .get(&versions("get"), needs(Reader), get_model_version)
        .get(
            &versions("get-download-uri"),
            needs(Reader),
            get_download_uri,
        )
        .patch(&versions("update"), needs(Submitter), update_model_version)
        .delete(&versions("delete"), needs(Admin), delete_model_version)
        .get(&versions("search"), needs(Reader), search_model_versions)
        .post(
            &versions("set-tag"),
            needs(Submitter),
            set_model_version_tag,
        )
        .delete(
            &versions("delete-tag"),
            needs(Submitter),
            delete_model_version_tag,
        )
        .post(
            &versions("transition-stage"),
            needs(Approver),
            transition_stage,
        )
        .get(
            "/api/2.0/weir/approvals/get",
            needs(Reader),
            approval_status,
        )
        .post("/api/2.0/weir/approvals/policy", needs(Admin), set_policy)
        .post(
            "/api/2.0/weir/approvals/request",
            needs(Submitter),
            decision(Decision::Request),
        )
        .post(
            "/api/2.0/weir/approvals/approve",
            needs(Approver),
            decision(Decision::Approve),
        )
        .post(
            "/api/2.0/weir/approvals/reject",
            needs(Approver),
            decision(Decision::Reject),
        )
        .get("/api/2.0/weir/audit/list", needs(Reader), audit)
        .get("/api/2.0/weir/resolve", needs(Reader), resolve)
        .get(
            "/api/2.0/mlflow-artifacts/artifacts",
            needs(Reader),
            list_artifacts,
        )
        .get(ARTIFACT_ROUTE, needs(Reader), download_artifact)
        .put(ARTIFACT_ROUTE, needs(Submitter), upload_artifact)
        .delete(ARTIFACT_ROUTE, needs(Admin), delete_artifact)
        .into_parts();
    let router = router
        .fallback(|| async {
            MlflowError(StoreError::NotFound("no such endpoint".to_owned())).into_response()
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry);
    (router, endpoints)
}

const ARTIFACT_ROUTE: &str = "/api/2.0/mlflow-artifacts/artifacts/{*path}";

/// The registry alone behind its own access layer: for tests and for embedding without
/// tracking.
pub fn router(registry: Arc<Registry>, authenticator: weir_mlflow_wire::Authenticator) -> Router {
    let (router, endpoints) = routes(registry);
    router.layer(weir_mlflow_wire::AccessLayer::new(
        weir_mlflow_wire::EndpointTable::new(endpoints),
        authenticator,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn with_identities_configured_writes_need_a_token_and_name_its_user() {
        let root = std::env::temp_dir().join(format!("weir-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let registry = Arc::new(Registry {
            store: Store::open(&format!("sqlite://{}", root.join("r.db").display())).unwrap(),
            artifacts: ArtifactStore::open(&root.join("artifacts")).unwrap(),
            sources: None,
        });
        let identities =
            weir_mlflow_wire::Identities::parse("[tokens]\n\"s3cret\" = \"alice\"\n").unwrap();
        let app = router(
            registry.clone(),
            weir_mlflow_wire::Authenticator::with_identities(identities),
        );
        let create = |token: Option<&str>| {
            let mut request = Request::post("/api/2.0/mlflow/registered-models/create");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.body(Body::from(r#"{"name": "m"}"#)).unwrap()
        };
        let anonymous = app.clone().oneshot(create(None)).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let wrong = app.clone().oneshot(create(Some("guess"))).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let alice = app.clone().oneshot(create(Some("s3cret"))).await.unwrap();
        assert_eq!(alice.status(), StatusCode::OK);
        assert_eq!(
            registry.store.audit(Some("m"), None, None, 10).unwrap()[0].user,
            "alice"
        );
    }

    /// Uploads stream to disk under the store's limit: within it the bytes come back whole with
    /// their length; past it (no Content-Length to refuse early) the answer is 413 and neither
    /// the file nor a temporary one is left.
    #[tokio::test]
    async fn artifact_uploads_stream_under_the_store_limit() {
        use http_body_util::BodyExt;
        let root = std::env::temp_dir().join(format!("weir-stream-limit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let registry = Arc::new(Registry {
            store: Store::open(&format!("sqlite://{}", root.join("r.db").display())).unwrap(),
            artifacts: ArtifactStore::open(&root.join("artifacts"))
                .unwrap()
                .with_max_file_bytes(8),
            sources: None,
        });
        let app = router(registry, weir_mlflow_wire::Authenticator::anonymous());
        let put = |path: &str, body: &'static str| {
            Request::put(format!("/api/2.0/mlflow-artifacts/artifacts/{path}"))
                .header("x-weir-user", "alice")
                .body(Body::from(body))
                .unwrap()
        };
        let small = app
            .clone()
            .oneshot(put("m/a.bin", "12345678"))
            .await
            .unwrap();
        assert_eq!(small.status(), StatusCode::OK);
        let get = Request::get("/api/2.0/mlflow-artifacts/artifacts/m/a.bin")
            .header("x-weir-user", "alice")
            .body(Body::empty())
            .unwrap();
        let answer = app.clone().oneshot(get).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_LENGTH], "8");
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"12345678");

        let big = app
            .clone()
            .oneshot(put("m/b.bin", "123456789"))
            .await
            .unwrap();
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = big.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error_code"], "RESOURCE_EXHAUSTED");
        let left: Vec<String> = std::fs::read_dir(root.join("artifacts/m"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["a.bin"], "a refused upload left files behind");

        let declared = Request::put("/api/2.0/mlflow-artifacts/artifacts/m/c.bin")
            .header("x-weir-user", "alice")
            .header(header::CONTENT_LENGTH, "9")
            .body(Body::from("123456789"))
            .unwrap();
        let declared = app.clone().oneshot(declared).await.unwrap();
        assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let reserved = app
            .clone()
            .oneshot(put(".weir/blobs/sha256/x", "1"))
            .await
            .unwrap();
        assert_eq!(reserved.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn paging_refuses_nonsense() {
        assert_eq!(paging(None, None).ok(), Some((100, 0)));
        assert_eq!(paging(Some("5"), Some("10")).ok(), Some((5, 10)));
        assert!(paging(Some("0"), None).is_err());
        assert!(paging(None, Some("abc")).is_err());
    }
}
