//! MLflow's artifact endpoints (`/api/2.0/mlflow-artifacts/artifacts/…`): streamed uploads
//! under the store's limit, streamed downloads, deletes and listings, with registered
//! versions' immutable copies read through their virtual `.weir/versions/…` folders.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weir_mlflow_wire::request::{blocking, ok, Answer};

use super::{Actor, Registry};
use crate::artifacts::{Download, RangeSpec, Served, UploadError};
use crate::error::StoreError;

mod multipart;

pub(super) use multipart::{abort_upload, complete_upload, create_upload, upload_part};

/// Stores an artifact, streamed: the body goes to the store chunk by chunk (see
/// `ArtifactStore::begin_upload`), so memory does not grow with the file. The artifact root
/// itself is refused (400) and so is anything under `.weir/`, where registered versions are
/// kept (403). A body over the store's limit is refused with 413 — at once when its
/// Content-Length says so, else when the limit is crossed. Each write is audited as
/// `artifact.put` with the path.
pub(super) async fn upload_artifact(
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
pub(super) async fn receive(
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
pub(super) fn too_large(path: &str, limit: u64) -> Response {
    weir_mlflow_wire::mlflow_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RESOURCE_EXHAUSTED",
        &format!("artifact '{path}' is larger than the {limit} bytes an upload may have"),
    )
}

/// A file's bytes, streamed from the store with its Content-Length; paths under
/// `.weir/versions/<name>/<version>/` read a registered version's immutable copy (the name is
/// the decoded URL segment here). A `Range: bytes=…` header with one range is answered 206
/// with those bytes only (416 outside the file); several ranges get the whole file.
pub(super) async fn download_artifact(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
) -> Answer {
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(RangeSpec::parse);
    registry.artifacts.check_path(&path)?;
    let download = if crate::artifacts::is_reserved(&path) {
        let relative = path.clone();
        let sha256 = blocking(&registry, move |r| {
            crate::versions::blob_of(&r.store, &relative, crate::versions::NameForm::Decoded)
        })
        .await?;
        registry
            .artifacts
            .read_blob(&sha256, range)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    StoreError::NotFound(format!("artifact '{path}' not found"))
                }
                other => other,
            })?
    } else {
        registry.artifacts.read(&path, range).await?
    };
    Ok(answer(download))
}

/// The response for a download: 200 with the file, 206 with a range of it, 416 for a range
/// outside it.
fn answer(download: Download) -> Response {
    let size = download.size;
    let mut response = axum::body::Body::new(download.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match download.served {
        Served::Whole => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        Served::Part { start, end } => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            if let Ok(range) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
                headers.insert(header::CONTENT_RANGE, range);
            }
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        Served::Unsatisfiable => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            if let Ok(range) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers.insert(header::CONTENT_RANGE, range);
            }
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
        }
    }
    response
}

/// Deletes an artifact (a file or a folder). The root and `.weir/` are refused as for
/// [`upload_artifact`]; each delete is audited as `artifact.delete` with the path.
pub(super) async fn delete_artifact(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    Path(path): Path<String>,
) -> Answer {
    registry.artifacts.delete(&path).await?;
    blocking(&registry, move |r| {
        r.store
            .record_event(&actor, "artifact.delete", "", "", "", &path)
    })
    .await?;
    ok(json!({}))
}

/// Lists a folder. The root's listing never shows `.weir` (hidden); a version's virtual folder
/// lists its recorded files (the name comes percent-encoded in the query, as the mlflow client
/// passes the `artifact_uri` it was given).
pub(super) async fn list_artifacts(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let path = query.get("path").cloned().unwrap_or_default();
    registry.artifacts.check_path(&path)?;
    let files = if crate::artifacts::is_reserved(&path) {
        blocking(&registry, move |r| {
            crate::versions::list(&r.store, &path, crate::versions::NameForm::Encoded)
        })
        .await?
    } else {
        registry.artifacts.list(&path).await?
    };
    ok(json!({ "files": files }))
}
