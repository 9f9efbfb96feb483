//! MLflow's tracking REST API over [`TrackingStore`], as the official client 3.x calls it.
//!
//! Numbers the client may send as JSON strings (protobuf's int64 and non-finite doubles) are
//! read either way; ids go back as strings. Errors are `{"error_code", "message"}` with MLflow's
//! codes, and a client mistake is never a 5xx (the client retries those).

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
use weir_mlflow_wire::{Access, Endpoint, Role, Routes};

use crate::filter::{Filter, OrderBy};
use crate::store::{now_ms, KeyValue, Metric, ModelOutput, NewRun, TrackingStore, ViewType};
use crate::TrackingError;

pub struct Tracking {
    pub store: TrackingStore,
}

pub struct ApiError(TrackingError);

impl From<TrackingError> for ApiError {
    fn from(err: TrackingError) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            TrackingError::NotFound(_) => StatusCode::NOT_FOUND,
            TrackingError::AlreadyExists(_) | TrackingError::InvalidParameter(_) => {
                StatusCode::BAD_REQUEST
            }
            TrackingError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "tracking request failed");
        }
        weir_mlflow_wire::mlflow_error(status, self.0.code(), &self.0.to_string())
    }
}

type Answer = Result<Response, ApiError>;

fn ok(value: Value) -> Answer {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(TrackingError::InvalidParameter(message.into()))
}

/// A JSON body, whatever the Content-Type; an empty body reads as `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid request body: {e}")))
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| invalid(format!("Missing value for required parameter '{name}'.")))
}

fn query_param<'a>(query: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    required(query.get(name).map(String::as_str), name)
}

/// Store work runs off the async threads: both engines block on disk or network.
async fn blocking<T: Send + 'static>(
    tracking: &Arc<Tracking>,
    work: impl FnOnce(&TrackingStore) -> Result<T, TrackingError> + Send + 'static,
) -> Result<T, ApiError> {
    let tracking = tracking.clone();
    tokio::task::spawn_blocking(move || work(&tracking.store))
        .await
        .map_err(|e| ApiError(TrackingError::Internal(e.to_string())))?
        .map_err(ApiError)
}

/// An int64 as protobuf's JSON writes it: a number or a string of one.
fn int(value: &Value, name: &str) -> Result<i64, ApiError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("'{name}' must be an integer, got {value}")))
}

/// A double as protobuf's JSON writes it, including "NaN", "Infinity" and "-Infinity".
fn double(value: &Value, name: &str) -> Result<f64, ApiError> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| invalid(format!("'{name}' must be a number, got {value}")))
}

fn optional_int(value: &Option<Value>, name: &str) -> Result<Option<i64>, ApiError> {
    value
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|v| int(v, name))
        .transpose()
}

/// MLflow's paging: `max_results` up to `limit`, and an opaque `page_token` (an offset here).
fn paging(
    max_results: Option<i64>,
    page_token: Option<&str>,
    default: usize,
    limit: usize,
) -> Result<(usize, usize), ApiError> {
    let max = match max_results {
        None => default,
        Some(m) if m >= 1 && (m as u64) <= limit as u64 => m as usize,
        Some(m) => {
            return Err(invalid(format!(
                "Invalid value {m} for parameter 'max_results': it must be between 1 and {limit}"
            )))
        }
    };
    let offset = match page_token.filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| invalid(format!("Invalid page token '{token}'")))?,
        None => 0,
    };
    Ok((max, offset))
}

fn page_token(next: Option<usize>) -> Value {
    next.map_or(Value::Null, |n| Value::String(n.to_string()))
}

fn order_terms(order_by: &[String]) -> Result<Vec<OrderBy>, ApiError> {
    Ok(order_by
        .iter()
        .map(|o| OrderBy::parse(o).map_err(TrackingError::from))
        .collect::<Result<_, _>>()?)
}

#[derive(Deserialize)]
struct KeyValueBody {
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

fn key_values(entries: Vec<KeyValueBody>, what: &str) -> Result<Vec<KeyValue>, ApiError> {
    entries
        .into_iter()
        .map(|e| {
            Ok(KeyValue::new(
                required(e.key, &format!("{what}.key"))?,
                e.value.unwrap_or_default(),
            ))
        })
        .collect()
}

// ---- experiments ----

#[derive(Deserialize)]
struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

async fn create_experiment(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: CreateExperiment = body(&bytes)?;
    let name = required(request.name, "name")?;
    let tags = key_values(request.tags, "tags")?;
    let id = blocking(&t, move |s| {
        s.create_experiment(&name, request.artifact_location.as_deref(), &tags)
    })
    .await?;
    ok(json!({ "experiment_id": id }))
}

async fn get_experiment(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let id = query_param(&query, "experiment_id")?.to_owned();
    let experiment = blocking(&t, move |s| s.get_experiment(&id)).await?;
    ok(json!({ "experiment": experiment }))
}

async fn get_experiment_by_name(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = query_param(&query, "experiment_name")?.to_owned();
    let experiment = blocking(&t, move |s| s.get_experiment_by_name(&name)).await?;
    ok(json!({ "experiment": experiment }))
}

#[derive(Deserialize, Default)]
struct SearchExperiments {
    max_results: Option<Value>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    view_type: Option<Value>,
}

/// A view type as the client sends it: the enum's name, or its number.
fn view_type(value: &Option<Value>) -> Result<ViewType, ApiError> {
    Ok(match value {
        None | Some(Value::Null) => ViewType::ActiveOnly,
        Some(Value::String(s)) => ViewType::parse(s)?,
        Some(other) => ViewType::parse(&other.to_string())?,
    })
}

async fn search_experiments(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Answer {
    // The client POSTs a body; a GET with the same fields in the query works too.
    let request: SearchExperiments = if bytes.is_empty() && !query.is_empty() {
        SearchExperiments {
            max_results: query.get("max_results").map(|m| Value::String(m.clone())),
            page_token: query.get("page_token").cloned(),
            filter: query.get("filter").cloned(),
            order_by: query.get("order_by").cloned().into_iter().collect(),
            view_type: query.get("view_type").map(|v| Value::String(v.clone())),
        }
    } else {
        body(&bytes)?
    };
    let (max, offset) = paging(
        optional_int(&request.max_results, "max_results")?,
        request.page_token.as_deref(),
        1000,
        50_000,
    )?;
    let filter =
        Filter::parse(request.filter.as_deref().unwrap_or("")).map_err(TrackingError::from)?;
    let order = order_terms(&request.order_by)?;
    let view = view_type(&request.view_type)?;
    let (experiments, next) = blocking(&t, move |s| {
        s.search_experiments(view, &filter, &order, max, offset)
    })
    .await?;
    ok(json!({ "experiments": experiments, "next_page_token": page_token(next) }))
}

#[derive(Deserialize)]
struct ExperimentBody {
    experiment_id: Option<String>,
    new_name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn update_experiment(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let new_name = required(request.new_name, "new_name")?;
    blocking(&t, move |s| s.rename_experiment(&id, &new_name)).await?;
    ok(json!({}))
}

async fn experiment_lifecycle(t: Arc<Tracking>, bytes: Bytes, deleted: bool) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    blocking(&t, move |s| s.set_experiment_lifecycle(&id, deleted)).await?;
    ok(json!({}))
}

async fn set_experiment_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let tag = KeyValue::new(
        required(request.key, "key")?,
        request.value.unwrap_or_default(),
    );
    blocking(&t, move |s| s.set_experiment_tag(&id, &tag)).await?;
    ok(json!({}))
}

async fn delete_experiment_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    blocking(&t, move |s| s.delete_experiment_tag(&id, &key)).await?;
    ok(json!({}))
}

// ---- runs ----

#[derive(Deserialize)]
struct CreateRun {
    experiment_id: Option<String>,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    run_name: String,
    start_time: Option<Value>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

async fn create_run(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: CreateRun = body(&bytes)?;
    let new = NewRun {
        experiment_id: request.experiment_id.unwrap_or_else(|| "0".to_owned()),
        user_id: request.user_id,
        run_name: request.run_name,
        start_time: optional_int(&request.start_time, "start_time")?,
        tags: key_values(request.tags, "tags")?,
    };
    let run = blocking(&t, move |s| s.create_run(&new)).await?;
    ok(json!({ "run": run }))
}

/// The run a request names: `run_id`, or `run_uuid` from older clients.
fn run_id(run_id: Option<String>, run_uuid: Option<String>) -> Result<String, ApiError> {
    required(run_id.filter(|r| !r.is_empty()).or(run_uuid), "run_id")
}

async fn get_run(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let id = run_id(query.get("run_id").cloned(), query.get("run_uuid").cloned())?;
    let run = blocking(&t, move |s| s.get_run(&id)).await?;
    ok(json!({ "run": run }))
}

#[derive(Deserialize)]
struct RunBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<String>,
    end_time: Option<Value>,
    run_name: Option<String>,
    key: Option<String>,
    value: Option<Value>,
    timestamp: Option<Value>,
    step: Option<Value>,
    model_json: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutputBody>,
}

#[derive(Deserialize)]
struct ModelOutputBody {
    model_id: Option<String>,
    step: Option<Value>,
}

async fn update_run(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let end_time = optional_int(&request.end_time, "end_time")?;
    let info = blocking(&t, move |s| {
        s.update_run(
            &id,
            request.status.as_deref(),
            end_time,
            request.run_name.as_deref(),
        )
    })
    .await?;
    ok(json!({ "run_info": info }))
}

async fn run_lifecycle(t: Arc<Tracking>, bytes: Bytes, deleted: bool) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    blocking(&t, move |s| s.set_run_lifecycle(&id, deleted)).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct MetricBody {
    key: Option<String>,
    value: Option<Value>,
    timestamp: Option<Value>,
    step: Option<Value>,
}

fn metric(
    key: Option<String>,
    value: Option<Value>,
    timestamp: Option<Value>,
    step: Option<Value>,
) -> Result<Metric, ApiError> {
    let key = required(key, "key")?;
    let value = double(&required(value, "value")?, &key)?;
    Ok(Metric {
        key,
        value,
        timestamp: optional_int(&timestamp, "timestamp")?.unwrap_or_else(now_ms),
        step: optional_int(&step, "step")?.unwrap_or(0),
    })
}

/// A param or tag value: the client sends strings, but a bare number is read as its text.
fn text_value(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

async fn log_metric(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let metric = metric(request.key, request.value, request.timestamp, request.step)?;
    blocking(&t, move |s| s.log_batch(&id, &[metric], &[], &[])).await?;
    ok(json!({}))
}

async fn log_param(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let param = KeyValue::new(required(request.key, "key")?, text_value(request.value));
    blocking(&t, move |s| s.log_batch(&id, &[], &[param], &[])).await?;
    ok(json!({}))
}

async fn set_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let tag = KeyValue::new(required(request.key, "key")?, text_value(request.value));
    blocking(&t, move |s| s.log_batch(&id, &[], &[], &[tag])).await?;
    ok(json!({}))
}

async fn delete_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let key = required(request.key, "key")?;
    blocking(&t, move |s| s.delete_tag(&id, &key)).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricBody>,
    #[serde(default)]
    params: Vec<KeyValueBody>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

async fn log_batch(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: LogBatch = body(&bytes)?;
    let id = required(request.run_id, "run_id")?;
    let metrics = request
        .metrics
        .into_iter()
        .map(|m| metric(m.key, m.value, m.timestamp, m.step))
        .collect::<Result<Vec<_>, _>>()?;
    let params = key_values(request.params, "params")?;
    let tags = key_values(request.tags, "tags")?;
    blocking(&t, move |s| s.log_batch(&id, &metrics, &params, &tags)).await?;
    ok(json!({}))
}

/// `runs/log-model`: MLflow keeps the model's MLmodel summary in the run's
/// `mlflow.log-model.history` tag, a JSON list.
async fn log_model(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let model: Value = serde_json::from_str(&required(request.model_json, "model_json")?)
        .map_err(|e| invalid(format!("model_json is not JSON: {e}")))?;
    blocking(&t, move |s| {
        let run = s.get_run(&id)?;
        let mut history: Vec<Value> = run
            .data
            .tags
            .iter()
            .find(|t| t.key == "mlflow.log-model.history")
            .and_then(|t| serde_json::from_str(&t.value).ok())
            .unwrap_or_default();
        history.push(model);
        let tag = KeyValue::new("mlflow.log-model.history", Value::from(history).to_string());
        s.log_batch(&id, &[], &[], &[tag])
    })
    .await?;
    ok(json!({}))
}

/// `runs/log-inputs`: dataset lineage is accepted for compatibility but not stored (yet).
async fn log_inputs(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    blocking(&t, move |s| s.get_run(&id)).await?;
    ok(json!({}))
}

async fn log_outputs(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let outputs = request
        .models
        .into_iter()
        .map(|m| {
            Ok(ModelOutput {
                model_id: required(m.model_id, "models.model_id")?,
                step: optional_int(&m.step, "models.step")?.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    blocking(&t, move |s| s.log_outputs(&id, &outputs)).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct SearchRuns {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<Value>,
    max_results: Option<Value>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search_runs(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: SearchRuns = body(&bytes)?;
    let (max, offset) = paging(
        optional_int(&request.max_results, "max_results")?,
        request.page_token.as_deref(),
        1000,
        50_000,
    )?;
    let filter =
        Filter::parse(request.filter.as_deref().unwrap_or("")).map_err(TrackingError::from)?;
    let order = order_terms(&request.order_by)?;
    let view = view_type(&request.run_view_type)?;
    let (runs, next) = blocking(&t, move |s| {
        s.search_runs(&request.experiment_ids, &filter, view, &order, max, offset)
    })
    .await?;
    ok(json!({ "runs": runs, "next_page_token": page_token(next) }))
}

async fn metric_history(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let id = run_id(query.get("run_id").cloned(), query.get("run_uuid").cloned())?;
    let key = query_param(&query, "metric_key")?.to_owned();
    let max_results = query
        .get("max_results")
        .map(|m| int(&Value::String(m.clone()), "max_results"))
        .transpose()?;
    let (max, offset) = paging(
        max_results,
        query.get("page_token").map(String::as_str),
        25_000,
        25_000,
    )?;
    let (metrics, next) = blocking(&t, move |s| s.metric_history(&id, &key, max, offset)).await?;
    ok(json!({ "metrics": metrics, "next_page_token": page_token(next) }))
}

// ---- logged models ----

#[derive(Deserialize)]
struct LoggedModelBody {
    experiment_id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    source_run_id: String,
    #[serde(default)]
    model_type: String,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
    #[serde(default)]
    params: Vec<KeyValueBody>,
    status: Option<Value>,
}

async fn create_logged_model(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let tags = key_values(request.tags, "tags")?;
    let params = key_values(request.params, "params")?;
    let model = blocking(&t, move |s| {
        s.create_logged_model(
            &experiment_id,
            &request.name,
            &request.source_run_id,
            &request.model_type,
            &tags,
            &params,
        )
    })
    .await?;
    ok(json!({ "model": model }))
}

async fn get_logged_model(State(t): State<Arc<Tracking>>, Path(id): Path<String>) -> Answer {
    let model = blocking(&t, move |s| s.get_logged_model(&id)).await?;
    ok(json!({ "model": model }))
}

async fn finalize_logged_model(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let status = match required(request.status, "status")? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let model = blocking(&t, move |s| s.finalize_logged_model(&id, &status)).await?;
    ok(json!({ "model": model }))
}

async fn delete_logged_model(State(t): State<Arc<Tracking>>, Path(id): Path<String>) -> Answer {
    blocking(&t, move |s| s.delete_logged_model(&id)).await?;
    ok(json!({}))
}

async fn set_logged_model_tags(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let tags = key_values(request.tags, "tags")?;
    blocking(&t, move |s| s.set_logged_model_tags(&id, &tags)).await?;
    ok(json!({}))
}

async fn delete_logged_model_tag(
    State(t): State<Arc<Tracking>>,
    Path((id, key)): Path<(String, String)>,
) -> Answer {
    blocking(&t, move |s| s.delete_logged_model_tag(&id, &key)).await?;
    ok(json!({}))
}

async fn log_logged_model_params(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let params = key_values(request.params, "params")?;
    blocking(&t, move |s| s.log_logged_model_params(&id, &params)).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct SearchLoggedModels {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    max_results: Option<Value>,
    #[serde(default)]
    order_by: Vec<LoggedModelOrder>,
    page_token: Option<String>,
}

#[derive(Deserialize)]
struct LoggedModelOrder {
    field_name: String,
    ascending: Option<bool>,
}

async fn search_logged_models(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: SearchLoggedModels = body(&bytes)?;
    let (max, offset) = paging(
        optional_int(&request.max_results, "max_results")?,
        request.page_token.as_deref(),
        100,
        50_000,
    )?;
    let filter =
        Filter::parse(request.filter.as_deref().unwrap_or("")).map_err(TrackingError::from)?;
    let order = request
        .order_by
        .iter()
        .map(|o| {
            let direction = if o.ascending.unwrap_or(true) {
                "ASC"
            } else {
                "DESC"
            };
            OrderBy::parse(&format!("{} {direction}", o.field_name)).map_err(TrackingError::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (models, next) = blocking(&t, move |s| {
        s.search_logged_models(&request.experiment_ids, &filter, &order, max, offset)
    })
    .await?;
    ok(json!({ "models": models, "next_page_token": page_token(next) }))
}

/// The tracking routes with what each needs of its caller, state applied; the server puts one
/// [`weir_mlflow_wire::AccessLayer`] in front of these and the registry's together. Reading
/// needs a reader; everything that writes (runs, metrics, logged models, soft deletes that
/// `restore` undoes) a submitter.
pub fn routes(tracking: Arc<Tracking>) -> (Router, Vec<Endpoint>) {
    let read = Access::Needs(Role::Reader);
    let write = Access::Needs(Role::Submitter);
    let at = |path: &str| format!("/api/2.0/mlflow/{path}");
    let (router, endpoints) = Routes::new()
        .post(&at("experiments/create"), write, create_experiment)
        .get(&at("experiments/get"), read, get_experiment)
        .get(&at("experiments/get-by-name"), read, get_experiment_by_name)
        .post(&at("experiments/search"), read, search_experiments)
        .get(&at("experiments/search"), read, search_experiments)
        .post(&at("experiments/update"), write, update_experiment)
        .post(&at("experiments/delete"), write, |State(t), bytes| {
            experiment_lifecycle(t, bytes, true)
        })
        .post(&at("experiments/restore"), write, |State(t), bytes| {
            experiment_lifecycle(t, bytes, false)
        })
        .post(
            &at("experiments/set-experiment-tag"),
            write,
            set_experiment_tag,
        )
        .post(
            &at("experiments/delete-experiment-tag"),
            write,
            delete_experiment_tag,
        )
        .post(&at("runs/create"), write, create_run)
        .get(&at("runs/get"), read, get_run)
        .post(&at("runs/update"), write, update_run)
        .post(&at("runs/delete"), write, |State(t), bytes| {
            run_lifecycle(t, bytes, true)
        })
        .post(&at("runs/restore"), write, |State(t), bytes| {
            run_lifecycle(t, bytes, false)
        })
        .post(&at("runs/log-metric"), write, log_metric)
        .post(&at("runs/log-parameter"), write, log_param)
        .post(&at("runs/set-tag"), write, set_tag)
        .post(&at("runs/delete-tag"), write, delete_tag)
        .post(&at("runs/log-batch"), write, log_batch)
        .post(&at("runs/log-model"), write, log_model)
        .post(&at("runs/log-inputs"), write, log_inputs)
        .post(&at("runs/outputs"), write, log_outputs)
        .post(&at("runs/search"), read, search_runs)
        .get(&at("metrics/get-history"), read, metric_history)
        .post(&at("logged-models"), write, create_logged_model)
        .post(&at("logged-models/search"), read, search_logged_models)
        .get(&at("logged-models/{model_id}"), read, get_logged_model)
        .patch(
            &at("logged-models/{model_id}"),
            write,
            finalize_logged_model,
        )
        .delete(&at("logged-models/{model_id}"), write, delete_logged_model)
        .patch(
            &at("logged-models/{model_id}/tags"),
            write,
            set_logged_model_tags,
        )
        .delete(
            &at("logged-models/{model_id}/tags/{key}"),
            write,
            delete_logged_model_tag,
        )
        .post(
            &at("logged-models/{model_id}/params"),
            write,
            log_logged_model_params,
        )
        .into_parts();
    (router.with_state(tracking), endpoints)
}

/// Tracking alone behind its own access layer: for tests and for embedding without the
/// registry.
pub fn router(tracking: Arc<Tracking>, authenticator: weir_mlflow_wire::Authenticator) -> Router {
    let (router, endpoints) = routes(tracking);
    router.layer(weir_mlflow_wire::AccessLayer::new(
        weir_mlflow_wire::EndpointTable::new(endpoints),
        authenticator,
    ))
}

#[cfg(test)]
mod tests;
