//! MLflow's multipart upload endpoints (`/api/2.0/mlflow-artifacts/mpu/create|complete|abort/…`),
//! which the mlflow client uses for large files when `MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD` is
//! set. MLflow's own server answers `create` with presigned S3 URLs; weir hands out no S3
//! credentials or URLs (clients and servers need none): each part URL points back at weir
//! (`PUT /api/2.0/mlflow-artifacts/mpu/part/<path>?upload_id=…&part_number=N`), which streams the
//! part into the store's multipart upload. The client sends part requests without its tracking
//! credentials, only with the headers `create` gave it, so `create` gives back the caller's own
//! `Authorization` (or `X-Weir-User`) header: the part route needs the same role as an upload.
//!
//! The file lands at `<path>/<base name of the request's "path">`, as MLflow's repositories
//! place it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{blocking, body, ok, query_param, Answer};
use weir_mlflow_wire::MlflowError;

use super::super::{Actor, Registry};
use super::too_large;
use crate::artifacts::{PartFile, UploadError};

/// Where the part route lives; `create` builds each part's URL from it.
pub const PART_ROUTE_BASE: &str = "/api/2.0/mlflow-artifacts/mpu/part";

#[derive(Deserialize)]
struct Create {
    path: String,
    #[serde(default)]
    num_parts: Option<Value>,
}

#[derive(Deserialize)]
struct Complete {
    path: String,
    upload_id: String,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    part_number: Value,
    #[serde(default)]
    etag: String,
}

#[derive(Deserialize)]
struct Abort {
    path: String,
    upload_id: String,
}

/// `POST …/mpu/create/<path>` `{"path": LOCAL_FILE, "num_parts": N}` →
/// `{"upload_id", "credentials": [{"url", "part_number", "headers"}]}`.
pub(in crate::mlflow) async fn create_upload(
    State(registry): State<Arc<Registry>>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let request: Create = body(&bytes)?;
    let parts = match &request.num_parts {
        None => 1,
        Some(value) => number(value, "num_parts")?,
    };
    if parts == 0 || parts > crate::artifacts::MAX_PARTS {
        return Err(MlflowError::invalid(format!(
            "num_parts {parts} is outside 1..={}",
            crate::artifacts::MAX_PARTS
        )));
    }
    let target = target(&folder, &request.path)?;
    let base = base_url(&headers)?;
    let upload_id = registry.artifacts.mpu_create(&target).await?;
    let encoded_target: Vec<String> = target
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::versions::encode_name)
        .collect();
    let encoded_id = crate::versions::encode_name(&upload_id);
    let mut caller = serde_json::Map::new();
    for name in [header::AUTHORIZATION.as_str(), "x-weir-user"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            caller.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    let credentials: Vec<Value> = (1..=parts)
        .map(|part| {
            json!({
                "url": format!(
                    "{base}{PART_ROUTE_BASE}/{}?upload_id={encoded_id}&part_number={part}",
                    encoded_target.join("/")
                ),
                "part_number": part,
                "headers": caller,
            })
        })
        .collect();
    ok(json!({ "upload_id": upload_id, "credentials": credentials }))
}

/// `PUT …/mpu/part/<path>?upload_id=…&part_number=N`: the part's bytes, streamed into the
/// upload; answers 200 with the part's `ETag` header (which the client lists at completion).
pub(in crate::mlflow) async fn upload_part(
    State(registry): State<Arc<Registry>>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer {
    let upload_id = query_param(&query, "upload_id")?.to_owned();
    let part = number(
        &Value::String(query_param(&query, "part_number")?.to_owned()),
        "part_number",
    )?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let etag = match registry
        .artifacts
        .mpu_part(&path, &upload_id, part, body, length)
        .await
    {
        Ok(etag) => etag,
        Err(UploadError::TooLarge { limit, .. }) => return Ok(too_large(&path, limit)),
        Err(UploadError::Store(err)) => return Err(err.into()),
    };
    let etag = HeaderValue::from_str(&etag)
        .map_err(|_| MlflowError::internal("the store answered an unusable ETag".to_owned()))?;
    Ok((StatusCode::OK, [(header::ETAG, etag)], "{}").into_response())
}

/// `POST …/mpu/complete/<path>` `{"path", "upload_id", "parts": [{"part_number", "etag"}]}`:
/// the file becomes visible (audited as `artifact.put`).
pub(in crate::mlflow) async fn complete_upload(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    Path(folder): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: Complete = body(&bytes)?;
    let target = target(&folder, &request.path)?;
    let parts = request
        .parts
        .iter()
        .map(|part| {
            Ok(PartFile {
                number: number(&part.part_number, "part_number")?,
                etag: part.etag.clone(),
            })
        })
        .collect::<Result<Vec<_>, MlflowError>>()?;
    match registry
        .artifacts
        .mpu_complete(&target, &request.upload_id, &parts)
        .await
    {
        Ok(()) => {}
        Err(UploadError::TooLarge { limit, .. }) => return Ok(too_large(&target, limit)),
        Err(UploadError::Store(err)) => return Err(err.into()),
    }
    blocking(&registry, move |r| {
        r.store
            .record_event(&actor, "artifact.put", "", "", "", &target)
    })
    .await?;
    ok(json!({}))
}

/// `POST …/mpu/abort/<path>` `{"path", "upload_id"}`: the parts are dropped.
pub(in crate::mlflow) async fn abort_upload(
    State(registry): State<Arc<Registry>>,
    Path(folder): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: Abort = body(&bytes)?;
    let target = target(&folder, &request.path)?;
    registry
        .artifacts
        .mpu_abort(&target, &request.upload_id)
        .await?;
    ok(json!({}))
}

/// Where the file lands: the URL's folder and the base name of the client's local file.
fn target(folder: &str, local_file: &str) -> Result<String, MlflowError> {
    let name = local_file.rsplit(['/', '\\']).next().unwrap_or_default();
    if name.is_empty() {
        return Err(MlflowError::invalid(format!(
            "invalid path '{local_file}': it names no file"
        )));
    }
    Ok(format!("{}/{name}", folder.trim_end_matches('/')))
}

/// A part number or count, as a JSON number or a string of one (protobuf's JSON allows both).
fn number(value: &Value, name: &str) -> Result<u32, MlflowError> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        MlflowError::invalid(format!("invalid {name} '{value}': use a whole number"))
    })
}

/// The address the caller reached weir at (its `Host`, and `X-Forwarded-Proto` from a TLS
/// front end), for part URLs it can call back.
fn base_url(headers: &HeaderMap) -> Result<String, MlflowError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .ok_or_else(|| {
            MlflowError::invalid("a multipart upload needs the request's Host header".to_owned())
        })?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lands_under_the_folder_by_its_base_name() {
        assert_eq!(
            target("1/run/artifacts", "/tmp/big.bin").unwrap(),
            "1/run/artifacts/big.bin"
        );
        assert_eq!(target("a/", "C:\\data\\m.onnx").unwrap(), "a/m.onnx");
        assert!(target("a", "/tmp/").is_err());
        assert_eq!(number(&json!(3), "n").unwrap(), 3);
        assert_eq!(number(&json!("4"), "n").unwrap(), 4);
        assert!(number(&json!(-1), "n").is_err());
        assert!(number(&json!("x"), "n").is_err());
    }
}
