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
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::artifacts::ArtifactStore;
use crate::filter::Filter;
use crate::store::{NewVersion, Store, StoreError, Tag};

/// The registry behind the API.
pub struct Registry {
    pub store: Store,
    pub artifacts: ArtifactStore,
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
            StoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "registry request failed");
        }
        json_response(
            status,
            &json!({ "error_code": code, "message": self.0.to_string() }),
        )
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

async fn create_registered_model(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: CreateModel = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store.create_registered_model(
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

async fn rename_registered_model(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Rename = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .rename_registered_model(&request.name, &request.new_name)
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

async fn update_registered_model(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Describe = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .update_registered_model(&request.name, &request.description)
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

async fn delete_registered_model(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Named = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store.delete_registered_model(&request.name)
    })
    .await?;
    ok(json!({}))
}

async fn search_registered_models(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let filter = parse_filter(query.get("filter").map(String::as_str))?;
    let (max, offset) = paging(
        query.get("max_results").map(String::as_str),
        query.get("page_token").map(String::as_str),
    )?;
    let (models, next) = blocking(&registry, move |r| {
        r.store.search_registered_models(&filter, max, offset)
    })
    .await?;
    let mut answer = json!({ "registered_models": models });
    if let Some(next) = next {
        answer["next_page_token"] = json!(next.to_string());
    }
    ok(answer)
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

async fn set_registered_model_tag(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: SetTag = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store.set_registered_model_tag(
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
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let key = required(request.key, "key")?;
    blocking(&registry, move |r| {
        r.store.delete_registered_model_tag(&request.name, &key)
    })
    .await?;
    ok(json!({}))
}

async fn set_alias(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Named = body(&bytes)?;
    let (alias, version) = (
        required(request.alias, "alias")?,
        required(request.version, "version")?,
    );
    blocking(&registry, move |r| {
        r.store.set_alias(&request.name, &alias, &version)
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

async fn delete_alias(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Named = body(&bytes)?;
    let alias = required(request.alias, "alias")?;
    blocking(&registry, move |r| {
        r.store.delete_alias(&request.name, &alias)
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
    description: Option<String>,
    #[serde(default)]
    tags: Vec<TagBody>,
}

async fn create_model_version(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: CreateVersion = body(&bytes)?;
    let new = NewVersion {
        source: request.source,
        run_id: request.run_id.unwrap_or_default(),
        description: request.description.unwrap_or_default(),
        user_id: String::new(),
        tags: tags(request.tags),
    };
    let version = blocking(&registry, move |r| {
        r.store.create_model_version(&request.name, &new)
    })
    .await?;
    ok(json!({ "model_version": version }))
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
    let version = blocking(&registry, move |r| {
        r.store.get_model_version(&name, &version)
    })
    .await?;
    ok(json!({ "artifact_uri": version.source }))
}

async fn update_model_version(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Describe = body(&bytes)?;
    let version = required(request.version, "version")?;
    let updated = blocking(&registry, move |r| {
        r.store
            .update_model_version(&request.name, &version, &request.description)
    })
    .await?;
    ok(json!({ "model_version": updated }))
}

async fn delete_model_version(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Named = body(&bytes)?;
    let version = required(request.version, "version")?;
    blocking(&registry, move |r| {
        r.store.delete_model_version(&request.name, &version)
    })
    .await?;
    ok(json!({}))
}

async fn search_model_versions(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let filter = parse_filter(query.get("filter").map(String::as_str))?;
    let (max, offset) = paging(
        query.get("max_results").map(String::as_str),
        query.get("page_token").map(String::as_str),
    )?;
    let (versions, next) = blocking(&registry, move |r| {
        r.store.search_model_versions(&filter, max, offset)
    })
    .await?;
    let mut answer = json!({ "model_versions": versions });
    if let Some(next) = next {
        answer["next_page_token"] = json!(next.to_string());
    }
    ok(answer)
}

async fn set_model_version_tag(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: SetTag = body(&bytes)?;
    let version = required(request.version, "version")?;
    blocking(&registry, move |r| {
        r.store.set_model_version_tag(
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

async fn delete_model_version_tag(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Named = body(&bytes)?;
    let (version, key) = (
        required(request.version, "version")?,
        required(request.key, "key")?,
    );
    blocking(&registry, move |r| {
        r.store
            .delete_model_version_tag(&request.name, &version, &key)
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

async fn transition_stage(State(registry): State<Arc<Registry>>, bytes: Bytes) -> Answer {
    let request: Transition = body(&bytes)?;
    let version = blocking(&registry, move |r| {
        r.store.transition_stage(
            &request.name,
            &request.version,
            &request.stage,
            request.archive_existing_versions,
        )
    })
    .await?;
    ok(json!({ "model_version": version }))
}

async fn upload_artifact(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
    bytes: Bytes,
) -> Answer {
    blocking(&registry, move |r| r.artifacts.put(&path, &bytes)).await?;
    ok(json!({}))
}

async fn download_artifact(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
) -> Answer {
    let bytes = blocking(&registry, move |r| r.artifacts.get(&path)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn delete_artifact(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
) -> Answer {
    blocking(&registry, move |r| r.artifacts.delete(&path)).await?;
    ok(json!({}))
}

async fn list_artifacts(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let path = query.get("path").cloned().unwrap_or_default();
    let files = blocking(&registry, move |r| r.artifacts.list(&path)).await?;
    ok(json!({ "files": files }))
}

/// Largest request body (artifact uploads are held in memory while they are written).
pub const MAX_BODY_BYTES: usize = 1 << 30;

/// The registry's routes, factored out so tests can call them without a socket.
pub fn router(registry: Arc<Registry>) -> Router {
    let api = "/api/2.0/mlflow";
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route(
            &format!("{api}/registered-models/create"),
            post(create_registered_model),
        )
        .route(
            &format!("{api}/registered-models/get"),
            get(get_registered_model),
        )
        .route(
            &format!("{api}/registered-models/rename"),
            post(rename_registered_model),
        )
        .route(
            &format!("{api}/registered-models/update"),
            axum::routing::patch(update_registered_model),
        )
        .route(
            &format!("{api}/registered-models/delete"),
            axum::routing::delete(delete_registered_model),
        )
        .route(
            &format!("{api}/registered-models/search"),
            get(search_registered_models),
        )
        .route(
            &format!("{api}/registered-models/set-tag"),
            post(set_registered_model_tag),
        )
        .route(
            &format!("{api}/registered-models/delete-tag"),
            axum::routing::delete(delete_registered_model_tag),
        )
        .route(
            &format!("{api}/registered-models/alias"),
            post(set_alias).get(get_alias).delete(delete_alias),
        )
        .route(
            &format!("{api}/registered-models/get-latest-versions"),
            post(get_latest_versions),
        )
        .route(
            &format!("{api}/model-versions/create"),
            post(create_model_version),
        )
        .route(&format!("{api}/model-versions/get"), get(get_model_version))
        .route(
            &format!("{api}/model-versions/get-download-uri"),
            get(get_download_uri),
        )
        .route(
            &format!("{api}/model-versions/update"),
            axum::routing::patch(update_model_version),
        )
        .route(
            &format!("{api}/model-versions/delete"),
            axum::routing::delete(delete_model_version),
        )
        .route(
            &format!("{api}/model-versions/search"),
            get(search_model_versions),
        )
        .route(
            &format!("{api}/model-versions/set-tag"),
            post(set_model_version_tag),
        )
        .route(
            &format!("{api}/model-versions/delete-tag"),
            axum::routing::delete(delete_model_version_tag),
        )
        .route(
            &format!("{api}/model-versions/transition-stage"),
            post(transition_stage),
        )
        .route("/api/2.0/mlflow-artifacts/artifacts", get(list_artifacts))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(download_artifact)
                .put(upload_artifact)
                .delete(delete_artifact),
        )
        .fallback(|| async {
            MlflowError(StoreError::NotFound("no such endpoint".to_owned())).into_response()
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_refuses_nonsense() {
        assert_eq!(paging(None, None).ok(), Some((100, 0)));
        assert_eq!(paging(Some("5"), Some("10")).ok(), Some((5, 10)));
        assert!(paging(Some("0"), None).is_err());
        assert!(paging(None, Some("abc")).is_err());
    }
}
