//! `/ui/experiments/{id}/runs/{run_id}` — the page the mlflow client's "View run at …" link
//! lands on: a run's details, params, tags, metrics with a history chart each, the root of its
//! artifacts and the models it logged.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Serialize;
use weir_mlflow_wire::filter::{Clause, Comparator, Entity, Literal};
use weir_mlflow_wire::Filter;
use weir_tracking::store::{KeyValue, LoggedModel, Run};

use super::artifacts::{listing, Entry};
use super::history::{self, ChartView, Line};
use super::query::Pairs;
use super::{artifact_root, bad_request, tracking, RunLink};
use crate::page::{render, Viewer};

/// Logged models a run's page lists at most.
const MAX_MODELS: usize = 50;

#[derive(Serialize)]
struct MetricRow {
    key: String,
    value: f64,
    step: i64,
    timestamp: i64,
}

#[derive(Serialize)]
struct ModelRow {
    id: String,
    name: String,
    status: String,
    model_type: String,
    creation_time: i64,
    artifact_uri: String,
}

pub(super) async fn page(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    Path((experiment_id, run_id)): Path<(String, String)>,
    raw: RawQuery,
) -> Response {
    let x_is_time = match Pairs::read(&raw).and_then(|q| q.x_is_time()) {
        Ok(x) => x,
        Err(message) => return bad_request(&viewer, &message),
    };
    let found = tracking(&dashboard, &viewer, move |store| {
        let run = store.get_run(&run_id)?;
        let keys: Vec<String> = run.data.metrics.iter().map(|m| m.key.clone()).collect();
        let line = Line {
            run_id,
            label: run.info.run_name.clone(),
        };
        let charts = history::charts(store, &keys, &[line], x_is_time)?;
        let models = logged_models(store, &run)?;
        Ok((run, charts, models))
    })
    .await;
    let (run, charts, models) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    if run.info.experiment_id != experiment_id {
        // An old link, or one typed by hand: the run lives in one experiment only.
        return Redirect::to(&RunLink::of(&run.info).href).into_response();
    }
    let root = artifact_root(&run.info.artifact_uri);
    let artifacts: Option<Vec<Entry>> = match &root {
        Some(root) => match listing(&dashboard, &viewer, &run.info.run_id, root, "").await {
            Ok(entries) => Some(entries),
            Err(page) => return page,
        },
        None => None,
    };
    render(
        &viewer,
        "runs/run.html",
        context_of(run, charts, models, artifacts, x_is_time),
    )
}

fn context_of(
    run: Run,
    charts: Vec<ChartView>,
    models: Vec<LoggedModel>,
    artifacts: Option<Vec<Entry>>,
    x_is_time: bool,
) -> minijinja::Value {
    let (system_tags, tags): (Vec<KeyValue>, Vec<KeyValue>) = run
        .data
        .tags
        .into_iter()
        .partition(|t| t.key.starts_with("mlflow."));
    let metrics: Vec<MetricRow> = run
        .data
        .metrics
        .into_iter()
        .map(|m| MetricRow {
            key: m.key,
            value: m.value,
            step: m.step,
            timestamp: m.timestamp,
        })
        .collect();
    let models: Vec<ModelRow> = models
        .into_iter()
        .map(|m| ModelRow {
            id: m.info.model_id,
            name: m.info.name,
            status: m.info.status,
            model_type: m.info.model_type,
            creation_time: m.info.creation_timestamp_ms,
            artifact_uri: m.info.artifact_uri,
        })
        .collect();
    let info = run.info;
    let link = RunLink::of(&info);
    context! {
        run => context! {
            user => info.user_id,
            status => info.status,
            start_time => info.start_time,
            end_time => info.end_time,
            artifact_uri => info.artifact_uri,
            deleted => info.lifecycle_stage == "deleted",
            ..minijinja::Value::from_serialize(&link)
        },
        other_axis => format!("{}?x={}", link.href, if x_is_time { "step" } else { "time" }),
        params => run.data.params,
        tags => tags,
        system_tags => system_tags,
        metrics => metrics,
        charts => charts,
        max_charts => history::MAX_CHARTS,
        artifacts => artifacts,
        models => models,
        x_is_time => x_is_time,
    }
}

/// The models a run logged: those it recorded as outputs and those naming it as their source
/// run (MLflow 3's `log_model` does both, older clients one or the other), once each.
fn logged_models(
    store: &weir_tracking::TrackingStore,
    run: &Run,
) -> Result<Vec<LoggedModel>, weir_tracking::TrackingError> {
    let mut found: BTreeMap<String, LoggedModel> = BTreeMap::new();
    for output in run.outputs.model_outputs.iter().take(MAX_MODELS) {
        match store.get_logged_model(&output.model_id) {
            Ok(model) => {
                found.insert(model.info.model_id.clone(), model);
            }
            // A deleted model stays in the run's outputs; the page shows what is left.
            Err(weir_tracking::TrackingError::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    let source = Filter {
        clauses: vec![Clause {
            entity: Entity::Attribute("source_run_id".to_owned()),
            comparator: Comparator::Eq,
            value: Literal::Text(run.info.run_id.clone()),
            position: 1,
        }],
    };
    let (models, _) = store.search_logged_models(
        std::slice::from_ref(&run.info.experiment_id),
        &source,
        &[],
        MAX_MODELS,
        0,
    )?;
    for model in models {
        found.entry(model.info.model_id.clone()).or_insert(model);
    }
    Ok(found.into_values().take(MAX_MODELS).collect())
}
