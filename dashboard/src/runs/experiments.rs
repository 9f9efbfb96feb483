//! `/ui/experiments` (searched by name) and `/ui/experiments/{id}`: an experiment's runs,
//! filtered and ordered in MLflow's own language, with checkboxes that open the comparison.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use weir_mlflow_wire::filter::{Clause, Comparator, Entity, Literal};
use weir_mlflow_wire::{Filter, OrderBy};
use weir_tracking::store::{Run, ViewType};

use super::query::{Pairs, PAGE_SIZE};
use super::{bad_request, encode, experiment_href, not_found, tracking, RunLink};
use crate::page::{render, Viewer};

/// Metric and param columns the runs table shows at most (the first by name); a run's page
/// has them all.
const MAX_COLUMNS: usize = 12;

#[derive(Serialize)]
struct ExperimentRow {
    id: String,
    href: String,
    name: String,
    artifact_location: String,
    creation_time: i64,
    last_update_time: i64,
}

pub(super) async fn list(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    raw: RawQuery,
) -> Response {
    let query = match Pairs::read(&raw) {
        Ok(query) => query,
        Err(message) => return bad_request(&viewer, &message),
    };
    let offset = match query.offset() {
        Ok(offset) => offset,
        Err(message) => return bad_request(&viewer, &message),
    };
    let search = query.one("q").unwrap_or_default().to_owned();
    let filter = name_contains(&search);
    let found = tracking(&dashboard, &viewer, move |store| {
        store.search_experiments(ViewType::ActiveOnly, &filter, &[], PAGE_SIZE, offset)
    })
    .await;
    let (experiments, next) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let rows: Vec<ExperimentRow> = experiments
        .into_iter()
        .map(|e| ExperimentRow {
            href: experiment_href(&e.experiment_id),
            id: e.experiment_id,
            name: e.name,
            artifact_location: e.artifact_location,
            creation_time: e.creation_time,
            last_update_time: e.last_update_time,
        })
        .collect();
    let next_link = next.map(|n| format!("/ui/experiments?q={}&offset={n}", encode(&search)));
    render(
        &viewer,
        "runs/experiments.html",
        context! { q => search, experiments => rows, next_link => next_link, offset => offset },
    )
}

/// Experiments whose name holds `text`, ignoring case (every experiment for blank text).
/// Built as a clause rather than filter text, so quotes in the search need no escaping.
fn name_contains(text: &str) -> Filter {
    if text.is_empty() {
        return Filter::default();
    }
    Filter {
        clauses: vec![Clause {
            entity: Entity::Attribute("name".to_owned()),
            comparator: Comparator::ILike,
            value: Literal::Text(format!("%{text}%")),
            position: 1,
        }],
    }
}

#[derive(Serialize)]
struct RunRow {
    id: String,
    href: String,
    name: String,
    status: String,
    user: String,
    start_time: i64,
    end_time: Option<i64>,
    /// Values under `metric_keys` / `param_keys`, in their order (`None`: not logged).
    metrics: Vec<Option<f64>>,
    params: Vec<Option<String>>,
}

pub(super) async fn runs(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Response {
    if id.parse::<u64>().is_err() {
        return not_found(&viewer, &format!("no experiment has the id '{id}'"));
    }
    let query = match Pairs::read(&raw) {
        Ok(query) => query,
        Err(message) => return bad_request(&viewer, &message),
    };
    let offset = match query.offset() {
        Ok(offset) => offset,
        Err(message) => return bad_request(&viewer, &message),
    };
    let filter_text = query.one("filter").unwrap_or_default().to_owned();
    let order_text = query.one("order").unwrap_or_default().to_owned();
    let filter = match Filter::parse(&filter_text) {
        Ok(filter) => filter,
        Err(err) => return bad_request(&viewer, &err.to_string()),
    };
    let order: Vec<OrderBy> = match order_terms(&order_text) {
        Ok(order) => order,
        Err(message) => return bad_request(&viewer, &message),
    };
    let experiment_id = id.clone();
    let found = tracking(&dashboard, &viewer, move |store| {
        let experiment = store.get_experiment(&experiment_id)?;
        let runs = store.search_runs(
            &[experiment_id],
            &filter,
            ViewType::ActiveOnly,
            &order,
            PAGE_SIZE,
            offset,
        )?;
        Ok((experiment, runs))
    })
    .await;
    let (experiment, (runs, next)) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let metric_keys = columns(&runs, |run| run.data.metrics.iter().map(|m| &m.key));
    let param_keys = columns(&runs, |run| run.data.params.iter().map(|p| &p.key));
    let rows: Vec<RunRow> = runs
        .iter()
        .map(|run| RunRow {
            id: run.info.run_id.clone(),
            href: RunLink::of(&run.info).href,
            name: run.info.run_name.clone(),
            status: run.info.status.clone(),
            user: run.info.user_id.clone(),
            start_time: run.info.start_time,
            end_time: run.info.end_time,
            metrics: metric_keys
                .iter()
                .map(|k| {
                    run.data
                        .metrics
                        .iter()
                        .find(|m| &m.key == k)
                        .map(|m| m.value)
                })
                .collect(),
            params: param_keys
                .iter()
                .map(|k| {
                    run.data
                        .params
                        .iter()
                        .find(|p| &p.key == k)
                        .map(|p| p.value.clone())
                })
                .collect(),
        })
        .collect();
    let next_link = next.map(|n| {
        format!(
            "{}?filter={}&order={}&offset={n}",
            experiment_href(&id),
            encode(&filter_text),
            encode(&order_text)
        )
    });
    render(
        &viewer,
        "runs/experiment.html",
        context! {
            experiment => context! {
                href => experiment_href(&experiment.experiment_id),
                id => experiment.experiment_id,
                name => experiment.name,
                artifact_location => experiment.artifact_location,
                creation_time => experiment.creation_time,
            },
            filter => filter_text,
            order => order_text,
            runs => rows,
            metric_keys => metric_keys,
            param_keys => param_keys,
            next_link => next_link,
            offset => offset,
        },
    )
}

/// `order` as MLflow's `order_by` terms, comma-separated (`metrics.rmse DESC, start_time`).
fn order_terms(text: &str) -> Result<Vec<OrderBy>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(|term| OrderBy::parse(term).map_err(|err| err.to_string()))
        .collect()
}

/// The first [`MAX_COLUMNS`] keys, by name, that any of `runs` has.
fn columns<'a, I>(runs: &'a [Run], keys: impl Fn(&'a Run) -> I) -> Vec<String>
where
    I: Iterator<Item = &'a String>,
{
    let all: BTreeSet<&String> = runs.iter().flat_map(keys).collect();
    all.into_iter().take(MAX_COLUMNS).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_search_is_one_case_blind_clause() {
        assert!(name_contains("").clauses.is_empty());
        let filter = name_contains("it's");
        assert_eq!(filter.clauses.len(), 1);
        assert_eq!(filter.clauses[0].comparator, Comparator::ILike);
        assert_eq!(filter.clauses[0].value, Literal::Text("%it's%".to_owned()));
    }

    #[test]
    fn order_terms_split_on_commas_and_name_a_bad_one() {
        let terms = order_terms("metrics.rmse DESC, start_time").unwrap();
        assert_eq!(terms.len(), 2);
        assert!(!terms[0].ascending);
        assert!(order_terms("").unwrap().is_empty());
        let err = order_terms("metrics.rmse SIDEWAYS").unwrap_err();
        assert!(err.contains("order_by"), "{err}");
    }
}
