//! Metric histories as charts: one chart per metric key, one line per run, x the step or the
//! time it was logged. Bounded however much a run logged: at most [`MAX_CHARTS`] charts, and
//! per line the first [`MAX_POINTS`] points of the history thinned to [`DRAWN_POINTS`].

use serde::Serialize;
use weir_tracking::store::Metric;
use weir_tracking::{TrackingError, TrackingStore};

use crate::chart::{self, Chart, Series};

/// Charts one page draws; the metrics' latest values are all in the table anyway.
pub(super) const MAX_CHARTS: usize = 30;
/// Points read of one metric of one run.
const MAX_POINTS: usize = 5000;
/// Points drawn of one line: more than a 640-wide chart can show apart.
const DRAWN_POINTS: usize = 1000;

/// A chart as a template shows it.
#[derive(Serialize)]
pub(super) struct ChartView {
    pub key: String,
    /// SVG from [`chart::svg`], which escapes every label; the template inserts it as it is.
    pub svg: String,
    /// Some line had more than [`MAX_POINTS`] points; only the first were read.
    pub truncated: bool,
}

/// One line: a run, under the label its legend shows.
pub(super) struct Line {
    pub run_id: String,
    pub label: String,
}

/// The charts of `keys` (at most [`MAX_CHARTS`] of them), each with one series per line.
/// Runs inside a store call (it reads each history).
pub(super) fn charts(
    store: &TrackingStore,
    keys: &[String],
    lines: &[Line],
    x_is_time: bool,
) -> Result<Vec<ChartView>, TrackingError> {
    let mut charts = Vec::new();
    for key in keys.iter().take(MAX_CHARTS) {
        let mut series = Vec::new();
        let mut truncated = false;
        for line in lines {
            let (history, more) = store.metric_history(&line.run_id, key, MAX_POINTS, 0)?;
            truncated |= more.is_some();
            series.push(Series {
                label: line.label.clone(),
                points: thin(&points(&history, x_is_time), DRAWN_POINTS),
            });
        }
        let svg = chart::svg(&Chart {
            title: key.clone(),
            x_label: if x_is_time { "time (UTC)" } else { "step" }.to_owned(),
            y_label: key.clone(),
            x_is_time,
            series,
        });
        charts.push(ChartView {
            key: key.clone(),
            svg,
            truncated,
        });
    }
    Ok(charts)
}

fn points(history: &[Metric], x_is_time: bool) -> Vec<(f64, f64)> {
    history
        .iter()
        .map(|m| {
            let x = if x_is_time { m.timestamp } else { m.step };
            (x as f64, m.value)
        })
        .collect()
}

/// At most about `max` of `points`: every k-th, and always the last (the latest value).
fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let every = points.len().div_ceil(max);
    let mut kept: Vec<(f64, f64)> = points.iter().step_by(every).copied().collect();
    if let Some(last) = points.last() {
        if kept.last() != Some(last) {
            kept.push(*last);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_bounds_the_count() {
        let many: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64, i as f64)).collect();
        let kept = thin(&many, 1000);
        assert!(kept.len() <= 1001, "{}", kept.len());
        assert_eq!(kept.first(), Some(&(0.0, 0.0)));
        assert_eq!(kept.last(), Some(&(4999.0, 4999.0)));
        let few = vec![(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(thin(&few, 1000), few);
    }

    #[test]
    fn x_is_the_step_or_the_time() {
        let history = vec![Metric {
            key: "loss".to_owned(),
            value: 0.5,
            timestamp: 1_000,
            step: 3,
        }];
        assert_eq!(points(&history, false), [(3.0, 0.5)]);
        assert_eq!(points(&history, true), [(1000.0, 0.5)]);
    }
}
