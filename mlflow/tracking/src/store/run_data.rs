//! What a run logs: params (write-once), tags, and metrics with their history and the latest
//! value of each kept beside it for searches.

use std::collections::HashMap;

use weir_sql::{params, Row, Sql, Value};

use super::limits::check_batch;
use super::runs::{active_run, read_run_info, rename_run};
use super::{invalid, page, upsert, KeyValue, Metric, Page, TrackingStore};
use crate::TrackingError;

/// Rows per multi-row INSERT: well under both engines' parameter limits.
const INSERT_CHUNK: usize = 100;

impl TrackingStore {
    /// Logs metrics, params and tags in one transaction: all of it lands or none does.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), TrackingError> {
        check_batch(metrics, params, tags)?;
        self.with(|db| {
            active_run(db, run_id)?;
            log_params(db, run_id, params)?;
            for tag in tags {
                if tag.key == "mlflow.runName" {
                    rename_run(db, run_id, &tag.value)?;
                } else {
                    upsert(db, "tags", "run_id", Value::from(run_id), tag)?;
                }
            }
            log_metrics(db, run_id, metrics)
        })
    }

    pub fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), TrackingError> {
        self.with(|db| {
            active_run(db, run_id)?;
            let removed = db.execute(
                "DELETE FROM tags WHERE run_id = ?1 AND key = ?2",
                params![run_id, key],
            )?;
            if removed == 0 {
                return Err(TrackingError::NotFound(format!(
                    "No tag with name: {key} in run with id {run_id}"
                )));
            }
            Ok(())
        })
    }

    /// A metric's history in step order.
    pub fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: usize,
        offset: usize,
    ) -> Result<Page<Metric>, TrackingError> {
        self.with(|db| {
            read_run_info(db, run_id)?;
            page(
                db,
                "SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_id = ? AND key = ?
                 ORDER BY step, timestamp, value LIMIT ? OFFSET ?",
                &[Value::from(run_id), Value::from(key)],
                max_results,
                offset,
                |_, row| metric_from_row(row),
            )
        })
    }
}

/// Params are write-once: logging the same value again is fine, a different one is refused.
fn log_params(db: &mut dyn Sql, run_id: &str, params: &[KeyValue]) -> Result<(), TrackingError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for param in params {
        if let Some(previous) = seen.insert(&param.key, &param.value) {
            if previous != param.value {
                return Err(invalid(format!(
                    "Duplicate parameter keys with different values in one batch: '{}' is '{previous}' and '{}'",
                    param.key, param.value
                )));
            }
        }
        let existing: Option<String> = db.query_value(
            "SELECT value FROM params WHERE run_id = ?1 AND key = ?2",
            params![run_id, &param.key],
        )?;
        match existing {
            Some(value) if value != param.value => {
                return Err(invalid(format!(
                    "Changing param values is not allowed. Param with key='{}' was already logged with value='{value}' for run ID='{run_id}'. Attempted logging new value '{}'.",
                    param.key, param.value
                )))
            }
            Some(_) => {}
            None => {
                db.execute(
                    "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                    params![run_id, &param.key, &param.value],
                )?;
            }
        }
    }
    Ok(())
}

/// Appends the history in multi-row statements, then moves each key's latest value forward
/// when the batch holds a later (step, timestamp, value) than what is stored.
fn log_metrics(db: &mut dyn Sql, run_id: &str, metrics: &[Metric]) -> Result<(), TrackingError> {
    let stored = |value: f64| if value.is_nan() { 0.0 } else { value };
    for chunk in metrics.chunks(INSERT_CHUNK) {
        let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut values = Vec::with_capacity(chunk.len() * 6);
        for metric in chunk {
            values.extend([
                Value::from(run_id),
                Value::from(metric.key.as_str()),
                Value::Int(metric.step),
                Value::Int(metric.timestamp),
                Value::Real(stored(metric.value)),
                Value::from(metric.value.is_nan()),
            ]);
        }
        db.execute(
            &format!(
                "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES {rows}"
            ),
            &values,
        )?;
    }
    let order = |m: &Metric| (m.step, m.timestamp, stored(m.value));
    let mut latest: HashMap<&str, &Metric> = HashMap::new();
    for metric in metrics {
        let entry = latest.entry(&metric.key).or_insert(metric);
        if order(metric) > order(entry) {
            *entry = metric;
        }
    }
    for metric in latest.values() {
        db.execute(
            "INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp,
                value = excluded.value, is_nan = excluded.is_nan
             WHERE excluded.step > latest_metrics.step
                OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp)
                OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp
                    AND excluded.value >= latest_metrics.value)",
            params![run_id, &metric.key, metric.step, metric.timestamp, stored(metric.value), metric.value.is_nan()],
        )?;
    }
    Ok(())
}

pub(super) fn metric_from_row(row: &Row) -> Result<Metric, TrackingError> {
    Ok(Metric {
        key: row.get(0)?,
        value: if row.get::<bool>(2)? {
            f64::NAN
        } else {
            row.get(1)?
        },
        timestamp: row.get(3)?,
        step: row.get(4)?,
    })
}
