//! `runs/*` about the run itself: create, get, update, delete/restore, search, its inputs and
//! outputs and the models it logged; and `metrics/get-history`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{
    blocking, body, int, next_page_token, ok, paging, query_param, required, Answer,
};
use weir_mlflow_wire::MlflowError;

use super::fields::{
    key_values, optional_int, order_terms, run_id, search_filter, search_page, view_type,
    KeyValueBody,
};
use super::{answer, done, Tracking};
use crate::store::{KeyValue, ModelOutput, NewRun};

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

pub(super) async fn create(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: CreateRun = body(&bytes)?;
    let new = NewRun {
        experiment_id: request.experiment_id.unwrap_or_else(|| "0".to_owned()),
        user_id: request.user_id,
        run_name: request.run_name,
        start_time: optional_int(&request.start_time, "start_time")?,
        tags: key_values(request.tags, "tags")?,
    };
    answer(&t, "run", move |s| s.create_run(&new)).await
}

pub(super) async fn get(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let id = run_id(query.get("run_id").cloned(), query.get("run_uuid").cloned())?;
    answer(&t, "run", move |s| s.get_run(&id)).await
}

/// What the `runs/*` calls that name one run send (each reads its own fields).
#[derive(Deserialize)]
pub(super) struct RunBody {
    pub(super) run_id: Option<String>,
    pub(super) run_uuid: Option<String>,
    status: Option<String>,
    end_time: Option<Value>,
    run_name: Option<String>,
    pub(super) key: Option<String>,
    pub(super) value: Option<Value>,
    pub(super) timestamp: Option<Value>,
    pub(super) step: Option<Value>,
    model_json: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutputBody>,
}

#[derive(Deserialize)]
struct ModelOutputBody {
    model_id: Option<String>,
    step: Option<Value>,
}

pub(super) async fn update(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let end_time = optional_int(&request.end_time, "end_time")?;
    answer(&t, "run_info", move |s| {
        s.update_run(
            &id,
            request.status.as_deref(),
            end_time,
            request.run_name.as_deref(),
        )
    })
    .await
}

/// `runs/delete` (`deleted`) and `runs/restore`.
pub(super) async fn lifecycle(t: Arc<Tracking>, bytes: Bytes, deleted: bool) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    done(&t, move |s| s.set_run_lifecycle(&id, deleted)).await
}

/// `runs/log-model`: MLflow keeps the model's MLmodel summary in the run's
/// `mlflow.log-model.history` tag, a JSON list.
pub(super) async fn log_model(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let model: Value = serde_json::from_str(&required(request.model_json, "model_json")?)
        .map_err(|e| MlflowError::invalid(format!("model_json is not JSON: {e}")))?;
    done(&t, move |s| {
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
    .await
}

/// `runs/log-inputs`: dataset lineage is accepted for compatibility but not stored (yet).
pub(super) async fn log_inputs(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: RunBody = body(&bytes)?;
    let id = run_id(request.run_id, request.run_uuid)?;
    done(&t, move |s| s.get_run(&id)).await
}

pub(super) async fn log_outputs(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
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
        .collect::<Result<Vec<_>, MlflowError>>()?;
    done(&t, move |s| s.log_outputs(&id, &outputs)).await
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

pub(super) async fn search(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: SearchRuns = body(&bytes)?;
    let (max, offset) = search_page(&request.max_results, request.page_token.as_deref(), 1000)?;
    let filter = search_filter(request.filter.as_deref())?;
    let order = order_terms(&request.order_by)?;
    let view = view_type(&request.run_view_type)?;
    let (runs, next) = blocking(&t, move |s| {
        s.store
            .search_runs(&request.experiment_ids, &filter, view, &order, max, offset)
    })
    .await?;
    ok(json!({ "runs": runs, "next_page_token": next_page_token(next) }))
}

/// `metrics/get-history`: one metric of one run, in step order, up to 25,000 a page.
pub(super) async fn metric_history(
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
    let (metrics, next) =
        blocking(&t, move |s| s.store.metric_history(&id, &key, max, offset)).await?;
    ok(json!({ "metrics": metrics, "next_page_token": next_page_token(next) }))
}
