//! `/ui/compare?runs=ID&runs=ID…&x=step|time`: 2–10 runs side by side — their params with the
//! rows that differ highlighted, their metrics' latest values, and one chart per metric with a
//! line per run.

use std::collections::BTreeSet;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use weir_tracking::store::Run;

use super::history::{self, Line};
use super::query::Pairs;
use super::{bad_request, encode, tracking, RunLink};
use crate::page::{render, Viewer};

/// How many runs one comparison takes: fewer is not a comparison, more cannot be told apart
/// (the charts have ten series colours).
const MIN_RUNS: usize = 2;
const MAX_RUNS: usize = 10;

#[derive(Serialize)]
struct Column {
    #[serde(flatten)]
    link: RunLink,
    /// The legend's label for the run.
    label: String,
    status: String,
}

/// One row of the params or metrics table: a key and each run's value (`None`: not logged).
#[derive(Serialize)]
struct Row<T> {
    key: String,
    values: Vec<Option<T>>,
    /// Not every run has the same value (a missing one differs from any value).
    differs: bool,
}

pub(super) async fn page(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    raw: RawQuery,
) -> Response {
    let query = match Pairs::read(&raw) {
        Ok(query) => query,
        Err(message) => return bad_request(&viewer, &message),
    };
    let x_is_time = match query.x_is_time() {
        Ok(x) => x,
        Err(message) => return bad_request(&viewer, &message),
    };
    let ids = match chosen(query.all("runs")) {
        Ok(ids) => ids,
        Err(message) => return bad_request(&viewer, &message),
    };
    let found = tracking(&dashboard, &viewer, move |store| {
        let runs = ids
            .iter()
            .map(|id| store.get_run(id))
            .collect::<Result<Vec<Run>, _>>()?;
        let labels = labels(&runs);
        let lines: Vec<Line> = runs
            .iter()
            .zip(labels)
            .map(|(run, label)| Line {
                run_id: run.info.run_id.clone(),
                label,
            })
            .collect();
        let keys = keys(&runs, |run| {
            run.data.metrics.iter().map(|m| m.key.clone()).collect()
        });
        let charts = history::charts(store, &keys, &lines, x_is_time)?;
        Ok((runs, charts))
    })
    .await;
    let (runs, charts) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let param_keys = keys(&runs, |run| {
        run.data.params.iter().map(|p| p.key.clone()).collect()
    });
    let params: Vec<Row<String>> = param_keys
        .into_iter()
        .map(|key| {
            let values = runs
                .iter()
                .map(|run| {
                    run.data
                        .params
                        .iter()
                        .find(|p| p.key == key)
                        .map(|p| p.value.clone())
                })
                .collect();
            row(key, values)
        })
        .collect();
    let metric_keys = keys(&runs, |run| {
        run.data.metrics.iter().map(|m| m.key.clone()).collect()
    });
    let metrics: Vec<Row<f64>> = metric_keys
        .into_iter()
        .map(|key| {
            let values = runs
                .iter()
                .map(|run| {
                    run.data
                        .metrics
                        .iter()
                        .find(|m| m.key == key)
                        .map(|m| m.value)
                })
                .collect();
            row(key, values)
        })
        .collect();
    let columns: Vec<Column> = runs
        .iter()
        .zip(labels(&runs))
        .map(|(run, label)| Column {
            link: RunLink::of(&run.info),
            label,
            status: run.info.status.clone(),
        })
        .collect();
    let ids: Vec<&str> = columns.iter().map(|c| c.link.id.as_str()).collect();
    let other_axis = format!(
        "/ui/compare?{}&x={}",
        ids.iter()
            .map(|id| format!("runs={}", encode(id)))
            .collect::<Vec<_>>()
            .join("&"),
        if x_is_time { "step" } else { "time" }
    );
    render(
        &viewer,
        "runs/compare.html",
        context! {
            runs => columns,
            params => params,
            metrics => metrics,
            charts => charts,
            max_charts => history::MAX_CHARTS,
            x_is_time => x_is_time,
            other_axis => other_axis,
        },
    )
}

/// The run ids asked for, each once, in order; 2–10 of them.
fn chosen(asked: Vec<String>) -> Result<Vec<String>, String> {
    let mut ids: Vec<String> = Vec::new();
    for id in asked {
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() > MAX_RUNS {
            break;
        }
    }
    if ids.len() < MIN_RUNS || ids.len() > MAX_RUNS {
        return Err(format!(
            "compare takes {MIN_RUNS} to {MAX_RUNS} different runs (runs=ID&runs=ID…); {} given",
            if ids.len() > MAX_RUNS {
                format!("more than {MAX_RUNS}")
            } else {
                ids.len().to_string()
            }
        ));
    }
    Ok(ids)
}

/// Legend labels: the run's name, with the start of its id when another run has the same name.
fn labels(runs: &[Run]) -> Vec<String> {
    runs.iter()
        .map(|run| {
            let name = &run.info.run_name;
            let same = runs.iter().filter(|r| &r.info.run_name == name).count();
            if same > 1 || name.is_empty() {
                let short: String = run.info.run_id.chars().take(8).collect();
                format!("{name} ({short})")
            } else {
                name.clone()
            }
        })
        .collect()
}

/// Every key any run has, sorted.
fn keys(runs: &[Run], of: impl Fn(&Run) -> Vec<String>) -> Vec<String> {
    let all: BTreeSet<String> = runs.iter().flat_map(of).collect();
    all.into_iter().collect()
}

fn row<T: Same>(key: String, values: Vec<Option<T>>) -> Row<T> {
    let differs = values.windows(2).any(|pair| match (&pair[0], &pair[1]) {
        (Some(a), Some(b)) => !a.same(b),
        (None, None) => false,
        _ => true,
    });
    Row {
        key,
        values,
        differs,
    }
}

/// Whether two runs logged the same value.
trait Same {
    fn same(&self, other: &Self) -> bool;
}

impl Same for String {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl Same for f64 {
    /// Two NaNs are the same value here: both runs logged NaN.
    fn same(&self, other: &Self) -> bool {
        self == other || (self.is_nan() && other.is_nan())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_to_ten_different_runs() {
        assert_eq!(chosen(ids(&["a", "b", "a"])).unwrap(), ["a", "b"]);
        let err = chosen(ids(&["a", "a"])).unwrap_err();
        assert!(err.contains("1 given"), "{err}");
        assert!(chosen(ids(&[])).unwrap_err().contains("0 given"));
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(chosen(eleven).unwrap_err().contains("more than 10"));
        let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(chosen(ten).unwrap().len(), 10);
    }

    #[test]
    fn a_row_differs_when_any_value_does() {
        assert!(
            !row(
                "lr".into(),
                vec![Some("0.1".to_owned()), Some("0.1".to_owned())]
            )
            .differs
        );
        assert!(
            row(
                "lr".into(),
                vec![Some("0.1".to_owned()), Some("0.2".to_owned())]
            )
            .differs
        );
        assert!(row("lr".into(), vec![Some("0.1".to_owned()), None]).differs);
        assert!(!row("rmse".into(), vec![Some(f64::NAN), Some(f64::NAN)]).differs);
        assert!(row("rmse".into(), vec![Some(f64::NAN), Some(1.0)]).differs);
    }
}
