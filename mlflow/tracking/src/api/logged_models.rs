//! `logged-models/*` (MLflow 3): create, get, finalize, delete, tags, params, search.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{blocking, body, next_page_token, ok, required, Answer};
use weir_mlflow_wire::MlflowError;

use super::fields::{key_values, search_filter, search_page, KeyValueBody};
use super::{answer, done, Tracking};
use crate::filter::OrderBy;

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

pub(super) async fn create(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let tags = key_values(request.tags, "tags")?;
    let params = key_values(request.params, "params")?;
    answer(&t, "model", move |s| {
        s.create_logged_model(
            &experiment_id,
            &request.name,
            &request.source_run_id,
            &request.model_type,
            &tags,
            &params,
        )
    })
    .await
}

pub(super) async fn get(State(t): State<Arc<Tracking>>, Path(id): Path<String>) -> Answer {
    answer(&t, "model", move |s| s.get_logged_model(&id)).await
}

pub(super) async fn finalize(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let status = match required(request.status, "status")? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    answer(&t, "model", move |s| s.finalize_logged_model(&id, &status)).await
}

pub(super) async fn delete(State(t): State<Arc<Tracking>>, Path(id): Path<String>) -> Answer {
    done(&t, move |s| s.delete_logged_model(&id)).await
}

pub(super) async fn set_tags(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let tags = key_values(request.tags, "tags")?;
    done(&t, move |s| s.set_logged_model_tags(&id, &tags)).await
}

pub(super) async fn delete_tag(
    State(t): State<Arc<Tracking>>,
    Path((id, key)): Path<(String, String)>,
) -> Answer {
    done(&t, move |s| s.delete_logged_model_tag(&id, &key)).await
}

pub(super) async fn log_params(
    State(t): State<Arc<Tracking>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request: LoggedModelBody = body(&bytes)?;
    let params = key_values(request.params, "params")?;
    done(&t, move |s| s.log_logged_model_params(&id, &params)).await
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

/// MLflow 3 orders logged models by `{field_name, ascending}` objects, not text terms.
#[derive(Deserialize)]
struct LoggedModelOrder {
    field_name: String,
    ascending: Option<bool>,
}

pub(super) async fn search(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: SearchLoggedModels = body(&bytes)?;
    let (max, offset) = search_page(&request.max_results, request.page_token.as_deref(), 100)?;
    let filter = search_filter(request.filter.as_deref())?;
    let order = request
        .order_by
        .iter()
        .map(|o| {
            let direction = if o.ascending.unwrap_or(true) {
                "ASC"
            } else {
                "DESC"
            };
            OrderBy::parse(&format!("{} {direction}", o.field_name)).map_err(MlflowError::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (models, next) = blocking(&t, move |s| {
        s.store
            .search_logged_models(&request.experiment_ids, &filter, &order, max, offset)
    })
    .await?;
    ok(json!({ "models": models, "next_page_token": next_page_token(next) }))
}
