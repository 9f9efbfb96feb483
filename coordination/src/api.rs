//! The HTTP API the registry serves the coordination primitives on, declared with the role each
//! needs as the registry's own endpoints are (weir-mlflow-wire [`Routes`]): reading a document
//! needs `reader`; writing one and taking or giving up a lease change what every router replica
//! serves, so they need `admin`.
//!
//! `GET  …/documents/get?key=K` → `{"document": {key, revision, value, updated_at_ms}}`, or `{}`
//!   when K was never written (replicas poll before the first write; that is not an error).
//! `POST …/documents/put` `{key, value, expected_revision?}` → `{"revision": N}`; 409
//!   `RESOURCE_CONFLICT` when the document is not at `expected_revision` (absent: must not exist).
//! `POST …/leases/acquire` `{name, holder, ttl}` (`ttl` in weir's duration syntax, `"10s"`, or
//!   seconds) → `{"lease": {name, holder, expires_at_ms, granted, remaining_ms}}`.
//! `POST …/leases/release` `{name, holder}` → `{"released": bool}`.
//!
//! Mistakes are 400 `INVALID_PARAMETER_VALUE` naming the field.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{body, int, json_response, required};
use weir_mlflow_wire::{Access, Endpoint, MlflowError, Role, Routes};

use crate::documents::MAX_DOCUMENT_BYTES;
use crate::{Coordination, CoordinationError};

/// Where the API lives on the registry.
pub const API_PREFIX: &str = "/api/2.0/weir/coordination";

/// A request body holds at most one document and its envelope.
const MAX_BODY_BYTES: usize = MAX_DOCUMENT_BYTES + (64 << 10);

/// The coordination routes with their roles, state applied and no fallback, for the registry to
/// merge beside its own and put behind its access layer.
pub fn routes(coordination: Arc<Coordination>) -> (Router, Vec<Endpoint>) {
    let path = |tail: &str| format!("{API_PREFIX}/{tail}");
    let (router, endpoints) = Routes::new()
        .get(
            &path("documents/get"),
            Access::Needs(Role::Reader),
            get_document,
        )
        .post(
            &path("documents/put"),
            Access::Needs(Role::Admin),
            put_document,
        )
        .post(
            &path("leases/acquire"),
            Access::Needs(Role::Admin),
            acquire_lease,
        )
        .post(
            &path("leases/release"),
            Access::Needs(Role::Admin),
            release_lease,
        )
        .into_parts();
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(coordination);
    (router, endpoints)
}

type Answer = Result<Response, ApiError>;

/// A refusal of the request itself (MLflow's words) or of the operation.
enum ApiError {
    Request(MlflowError),
    Coordination(CoordinationError),
}

impl From<MlflowError> for ApiError {
    fn from(error: MlflowError) -> Self {
        ApiError::Request(error)
    }
}

impl From<CoordinationError> for ApiError {
    fn from(error: CoordinationError) -> Self {
        ApiError::Coordination(error)
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Request(error) => error.into_response(),
            ApiError::Coordination(error) => error.into_response(),
        }
    }
}

fn ok(value: Value) -> Answer {
    Ok(json_response(axum::http::StatusCode::OK, &value))
}

/// Runs a database call off the async threads (SQLite syncs to disk; PostgreSQL waits on the
/// network).
async fn blocking<T: Send + 'static>(
    coordination: Arc<Coordination>,
    work: impl FnOnce(&Coordination) -> Result<T, CoordinationError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || work(&coordination))
        .await
        .map_err(|e| MlflowError::internal(format!("a coordination call did not finish: {e}")))?
        .map_err(ApiError::Coordination)
}

async fn get_document(
    State(coordination): State<Arc<Coordination>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let key = weir_mlflow_wire::request::query_param(&query, "key")?.to_owned();
    match blocking(coordination, move |c| c.get(&key)).await? {
        Some(document) => ok(json!({ "document": document })),
        None => ok(json!({})),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    key: Option<String>,
    value: Option<Value>,
    #[serde(default)]
    expected_revision: Option<Value>,
}

async fn put_document(State(coordination): State<Arc<Coordination>>, bytes: Bytes) -> Answer {
    let request: PutBody = body(&bytes)?;
    let key = required(request.key, "key")?;
    let value = required(request.value, "value")?;
    let expected = match request.expected_revision {
        None | Some(Value::Null) => None,
        Some(given) => Some(int(&given, "expected_revision")?),
    };
    let revision = blocking(coordination, move |c| c.put(&key, &value, expected)).await?;
    ok(json!({ "revision": revision }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireBody {
    name: Option<String>,
    holder: Option<String>,
    ttl: Option<Value>,
}

/// `ttl` as weir writes durations: `"10s"`, `"500ms"`, or a number of seconds.
fn ttl(value: &Value) -> Result<Duration, MlflowError> {
    let refuse = || {
        MlflowError::invalid(format!(
            "'ttl' must be a duration such as \"10s\" or \"500ms\" (or a number of seconds), got {value}"
        ))
    };
    match value {
        Value::String(text) => weir_http::duration::parse_duration(text).map_err(|_| refuse()),
        Value::Number(n) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(refuse),
        _ => Err(refuse()),
    }
}

async fn acquire_lease(State(coordination): State<Arc<Coordination>>, bytes: Bytes) -> Answer {
    let request: AcquireBody = body(&bytes)?;
    let name = required(request.name, "name")?;
    let holder = required(request.holder, "holder")?;
    let ttl = ttl(&required(request.ttl, "ttl")?)?;
    let lease = blocking(coordination, move |c| c.acquire(&name, &holder, ttl)).await?;
    ok(json!({ "lease": lease }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    name: Option<String>,
    holder: Option<String>,
}

async fn release_lease(State(coordination): State<Arc<Coordination>>, bytes: Bytes) -> Answer {
    let request: ReleaseBody = body(&bytes)?;
    let name = required(request.name, "name")?;
    let holder = required(request.holder, "holder")?;
    let released = blocking(coordination, move |c| c.release(&name, &holder)).await?;
    ok(json!({ "released": released }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_weirs_duration_syntax_and_name_the_field() {
        assert_eq!(ttl(&json!("10s")).unwrap(), Duration::from_secs(10));
        assert_eq!(ttl(&json!("250ms")).unwrap(), Duration::from_millis(250));
        assert_eq!(ttl(&json!(1.5)).unwrap(), Duration::from_millis(1500));
        for bad in [json!("soon"), json!(-1), json!(true), json!(null)] {
            let refused = ttl(&bad).unwrap_err();
            assert!(refused.message.contains("'ttl'"), "{refused}");
        }
    }

    #[test]
    fn every_route_declares_its_role() {
        let coordination = Coordination::open("sqlite::memory:").unwrap();
        let (_, endpoints) = routes(Arc::new(coordination));
        let roles: Vec<(String, String, Access)> = endpoints
            .into_iter()
            .map(|e| (e.method.to_string(), e.path, e.access))
            .collect();
        let needs = |role| Access::Needs(role);
        assert_eq!(
            roles,
            vec![
                (
                    "GET".into(),
                    format!("{API_PREFIX}/documents/get"),
                    needs(Role::Reader)
                ),
                (
                    "POST".into(),
                    format!("{API_PREFIX}/documents/put"),
                    needs(Role::Admin)
                ),
                (
                    "POST".into(),
                    format!("{API_PREFIX}/leases/acquire"),
                    needs(Role::Admin)
                ),
                (
                    "POST".into(),
                    format!("{API_PREFIX}/leases/release"),
                    needs(Role::Admin)
                ),
            ]
        );
    }
}
