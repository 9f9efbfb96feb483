//! `experiments/*`: create, get (by id or name), search, rename, delete/restore, tags.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{json, Value};
use weir_mlflow_wire::request::{
    blocking, body, next_page_token, ok, query_param, required, Answer,
};

use super::fields::{key_values, order_terms, search_filter, search_page, view_type, KeyValueBody};
use super::{answer, done, Tracking};
use crate::store::KeyValue;

#[derive(Deserialize)]
struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

pub(super) async fn create(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: CreateExperiment = body(&bytes)?;
    let name = required(request.name, "name")?;
    let tags = key_values(request.tags, "tags")?;
    answer(&t, "experiment_id", move |s| {
        s.create_experiment(&name, request.artifact_location.as_deref(), &tags)
    })
    .await
}

pub(super) async fn get(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let id = query_param(&query, "experiment_id")?.to_owned();
    answer(&t, "experiment", move |s| s.get_experiment(&id)).await
}

pub(super) async fn get_by_name(
    State(t): State<Arc<Tracking>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = query_param(&query, "experiment_name")?.to_owned();
    answer(&t, "experiment", move |s| s.get_experiment_by_name(&name)).await
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

pub(super) async fn search(
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
    let (max, offset) = search_page(&request.max_results, request.page_token.as_deref(), 1000)?;
    let filter = search_filter(request.filter.as_deref())?;
    let order = order_terms(&request.order_by)?;
    let view = view_type(&request.view_type)?;
    let (experiments, next) = blocking(&t, move |s| {
        s.store
            .search_experiments(view, &filter, &order, max, offset)
    })
    .await?;
    ok(json!({ "experiments": experiments, "next_page_token": next_page_token(next) }))
}

#[derive(Deserialize)]
struct ExperimentBody {
    experiment_id: Option<String>,
    new_name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub(super) async fn update(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let new_name = required(request.new_name, "new_name")?;
    done(&t, move |s| s.rename_experiment(&id, &new_name)).await
}

/// `experiments/delete` (`deleted`) and `experiments/restore`.
pub(super) async fn lifecycle(t: Arc<Tracking>, bytes: Bytes, deleted: bool) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    done(&t, move |s| s.set_experiment_lifecycle(&id, deleted)).await
}

pub(super) async fn set_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let tag = KeyValue::new(
        required(request.key, "key")?,
        request.value.unwrap_or_default(),
    );
    done(&t, move |s| s.set_experiment_tag(&id, &tag)).await
}

pub(super) async fn delete_tag(State(t): State<Arc<Tracking>>, bytes: Bytes) -> Answer {
    let request: ExperimentBody = body(&bytes)?;
    let id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    done(&t, move |s| s.delete_experiment_tag(&id, &key)).await
}
