//! HTTP handlers for the V2 and V1 data planes, health, metadata and metrics.
//!
//! An inference handler only finds the model version and hands the request to its protocol
//! (`protocol::v2::infer`, `protocol::v1::predict`) inside [`observe`], which accounts for it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::app::{App, ModelControl};
use crate::error::{json_error, ApiError};
use crate::observe::observe;
use crate::protocol::{json_response, v1, v2};

/// The extensions of the Open Inference Protocol this server implements.
pub(crate) const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "model_repository", "statistics"];

/// Builds the router. Factored out of start-up so tests can drive it without a socket.
pub fn router(app: Arc<App>) -> Router {
    // The data plane, behind the server-wide concurrency limit, which admits a request once
    // its whole body has arrived (a stalled body never holds a slot).
    let inference = Router::new()
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/v1/models/{model}", post(v1_predict))
        .route_layer(app.admission.clone());
    // Probes, metadata and control stay answerable however busy the models are.
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/stats", get(statistics))
        .route("/v2/models/{model}/stats", get(statistics))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(statistics),
        )
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(load_model))
        .route("/v2/repository/models/{model}/unload", post(unload_model))
        .route("/v1/models", get(v1_models))
        .route("/v1/models/{model}", get(v1_model))
        .route("/metrics", get(metrics))
        .merge(inference)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        // Outermost: a panic anywhere below is a counted JSON 500, never a reset connection.
        .layer(weir_http::panic::PanicLayer::new(app.metrics.panics.clone()).layer())
        .with_state(app)
}

/// `{model}` and optional `{version}` from the path; a malformed path is a JSON 400.
struct ModelPath {
    model: String,
    version: Option<String>,
}

/// Like [`ModelPath`], for routes where the model is optional too.
struct MaybeModelPath(Option<ModelPath>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeModelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.path() == "/v2/models/stats" {
            return Ok(MaybeModelPath(None));
        }
        Ok(MaybeModelPath(Some(
            ModelPath::from_request_parts(parts, state).await?,
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ModelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Params {
            model: String,
            version: Option<String>,
        }
        let Path(params) = Path::<Params>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(ModelPath {
            model: params.model,
            version: params.version,
        })
    }
}

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "name": "weir", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }),
    )
}

async fn live() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "live": true }))
}

/// Ready only when every model the server was told to serve serves (see
/// [`App::unready_reasons`]); an unready answer says why, for whoever reads the probe by hand.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let reasons = app.unready_reasons();
    if reasons.is_empty() {
        return json_response(StatusCode::OK, &serde_json::json!({ "ready": true }));
    }
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "ready": false, "reasons": reasons }),
    )
}

async fn model_metadata(
    State(app): State<Arc<App>>,
    path: ModelPath,
) -> Result<Response, ApiError> {
    let loaded = app.store.resolve(&path.model, path.version.as_deref())?;
    let versions = match path.version {
        Some(_) => vec![loaded.label.clone()],
        None => app
            .store
            .entry(&path.model)?
            .versions
            .keys()
            .map(u64::to_string)
            .collect(),
    };
    let signature = loaded.backend.signature();
    Ok(json_response(
        StatusCode::OK,
        &v2::ModelMetadata {
            name: &loaded.model,
            versions,
            platform: loaded.backend.platform(),
            inputs: signature.inputs.iter().map(Into::into).collect(),
            outputs: signature.outputs.iter().map(Into::into).collect(),
        },
    ))
}

async fn model_ready(State(app): State<Arc<App>>, path: ModelPath) -> Result<Response, ApiError> {
    let loaded = app.store.resolve(&path.model, path.version.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "name": loaded.model, "version": loaded.label, "ready": true }),
    ))
}

/// Reads a whole body, refusing one over the limit with 413 before reading it when the
/// declared length already says so, and one that arrives too slowly with 408.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    Ok(crate::budget::read_body(headers, body, limit, None)
        .await?
        .0)
}

/// Parses an optional small JSON body (an empty one gives the default).
fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

async fn infer(
    State(app): State<Arc<App>>,
    path: ModelPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let loaded = app.store.resolve(&path.model, path.version.as_deref())?;
    let work = v2::infer(&loaded, &headers, body, app.config.max_body_bytes);
    Ok(observe(&loaded, arrived, work).await)
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, 64 * 1024).await?;
    let request: IndexRequest = optional_json(&body)?;
    Ok(json_response(
        StatusCode::OK,
        &app.store.index(request.ready),
    ))
}

async fn statistics(
    State(app): State<Arc<App>>,
    path: MaybeModelPath,
) -> Result<Response, ApiError> {
    let versions = match path.0 {
        None => app.store.all_versions(),
        Some(ModelPath {
            model,
            version: None,
        }) => {
            let entry = app.store.entry(&model)?;
            entry.versions.values().cloned().collect()
        }
        Some(ModelPath {
            model,
            version: Some(version),
        }) => vec![app.store.resolve(&model, Some(&version))?],
    };
    let model_stats: Vec<_> = versions
        .iter()
        .map(|v| v.stats.report(&v.model, &v.label))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "model_stats": model_stats }),
    ))
}

/// Model control is refused unless the server was started to allow it.
pub(crate) fn check_model_control(app: &App) -> Result<(), ApiError> {
    match app.config.model_control {
        ModelControl::None => Err(ApiError::bad_request(
            "model control is disabled; start weir serve with --model-control-mode explicit (or poll) to load and unload models",
        )),
        ModelControl::Explicit | ModelControl::Poll => Ok(()),
    }
}

async fn load_model(State(app): State<Arc<App>>, path: ModelPath) -> Result<Response, ApiError> {
    check_model_control(&app)?;
    let store = app.clone();
    tokio::task::spawn_blocking(move || store.store.load(&path.model))
        .await
        .map_err(|_| ApiError::internal("the model loader stopped unexpectedly"))??;
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

async fn unload_model(State(app): State<Arc<App>>, path: ModelPath) -> Result<Response, ApiError> {
    check_model_control(&app)?;
    app.store.unload(&path.model)?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

async fn v1_models(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "models": app.store.names() }),
    )
}

async fn v1_model(State(app): State<Arc<App>>, path: ModelPath) -> Result<Response, ApiError> {
    let entry = app.store.entry(&path.model)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "name": path.model, "ready": !entry.versions.is_empty() }),
    ))
}

/// `POST /v1/models/{model}:predict`: the verb shares the last path segment with the name.
async fn v1_predict(
    State(app): State<Arc<App>>,
    path: ModelPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (model, verb) = path.model.rsplit_once(':').ok_or_else(|| {
        ApiError::not_found(format!(
            "POST /v1/models/{} needs a verb: /v1/models/{}:predict",
            path.model, path.model
        ))
    })?;
    if verb != "predict" {
        return Err(ApiError::not_found(format!(
            "unknown verb ':{verb}'; weir answers :predict"
        )));
    }
    let arrived = Instant::now();
    let loaded = app.store.resolve(model, None)?;
    let work = v1::predict(&loaded, &headers, body, app.config.max_body_bytes);
    Ok(observe(&loaded, arrived, work).await)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        app.metrics.encode(),
    )
        .into_response()
}
