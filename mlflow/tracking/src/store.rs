//! Tracking storage: experiments, runs, params, tags, metric history and latest values, logged
//! models, on any `weir-sql` database.
//!
//! Ingestion is the hot path: a `log_batch` of 1,000 metrics is one transaction of a few
//! multi-row statements, and the latest value of each metric is maintained as it is written so
//! that `search_runs` reads one indexed row per run and metric instead of the history.
//!
//! One file per seam: `schema` (tables and what searches may name), `types` (what goes in and
//! out), `limits` (MLflow's size rules), then the operations on experiments, runs, what a run
//! logs (`run_data`) and logged models.

mod experiments;
mod limits;
mod logged_models;
mod run_data;
mod runs;
mod schema;
mod types;

use std::sync::Arc;

use weir_sql::{params, Database, Row, Sql, Value};

pub use limits::{MAX_BATCH_ENTRIES, MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS};
pub use types::{
    now_ms, Experiment, KeyValue, LoggedModel, LoggedModelData, LoggedModelInfo, Metric,
    ModelOutput, NewRun, Page, Run, RunData, RunInfo, RunOutputs, ViewType,
};

use crate::filter::{OrderBy, Schema};
use crate::TrackingError;

pub struct TrackingStore {
    db: Arc<Database>,
}

impl TrackingStore {
    /// The tracking tables on a database the registry may share; creates the schema and the
    /// Default experiment ("0") on first use.
    pub fn new(db: Arc<Database>) -> Result<TrackingStore, TrackingError> {
        db.migrate("tracking_schema_version", schema::SCHEMA)?;
        db.transaction(|tx: &mut dyn Sql| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)
                 VALUES (0, 'Default', 'mlflow-artifacts:/0', ?1, ?1) ON CONFLICT DO NOTHING",
                params![now],
            )
        })?;
        Ok(TrackingStore { db })
    }

    pub fn open(url: &str) -> Result<TrackingStore, TrackingError> {
        TrackingStore::new(Arc::new(Database::open(url)?))
    }

    /// Every operation is one transaction, so a request's writes land together or not at all.
    /// On PostgreSQL `work` may run more than once (a serialization conflict with another
    /// request or replica), so it clones rather than moves what it captured.
    fn with<T>(
        &self,
        work: impl FnMut(&mut dyn Sql) -> Result<T, TrackingError>,
    ) -> Result<T, TrackingError> {
        self.db.transaction(work)
    }
}

fn invalid(message: String) -> TrackingError {
    TrackingError::InvalidParameter(message)
}

/// `count` placeholders for an `IN (…)` list.
fn marks(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// One page of what `sql` selects, each row read by `read`. The statement ends in
/// `LIMIT ? OFFSET ?`, bound here to one row more than the page: that row, if it comes, says
/// another page follows.
/// `values` are borrowed: the transaction calling this may run again.
fn page<T>(
    db: &mut dyn Sql,
    sql: &str,
    values: &[Value],
    max_results: usize,
    offset: usize,
    mut read: impl FnMut(&mut dyn Sql, &Row) -> Result<T, TrackingError>,
) -> Result<Page<T>, TrackingError> {
    let mut values = values.to_vec();
    values.extend([Value::from(max_results + 1), Value::from(offset)]);
    let rows = db.query(sql, &values)?;
    let more = rows.len() > max_results;
    let items = rows
        .iter()
        .take(max_results)
        .map(|row| read(&mut *db, row))
        .collect::<Result<_, _>>()?;
    Ok((items, more.then_some(offset + max_results)))
}

/// The `ORDER BY` of a search: the caller's terms, then `tie_breaker` so pages are stable.
fn order_sql(
    schema: &Schema,
    order_by: &[OrderBy],
    tie_breaker: &str,
) -> Result<(String, Vec<Value>), TrackingError> {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    for term in order_by {
        let (sql, term_values) = schema.sort(term)?;
        terms.push(sql);
        values.extend(term_values);
    }
    terms.push(tie_breaker.to_owned());
    Ok((terms.join(", "), values))
}

fn experiment_number(id: &str) -> Result<i64, TrackingError> {
    id.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
        invalid(format!(
            "invalid experiment id '{id}': experiment ids are numbers"
        ))
    })
}

/// Sets one tag or param of an experiment, run or logged model (`owner_column` says which).
fn upsert(
    db: &mut dyn Sql,
    table: &str,
    owner_column: &str,
    owner: Value,
    entry: &KeyValue,
) -> Result<(), TrackingError> {
    db.execute(
        &format!(
            "INSERT INTO {table} ({owner_column}, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT ({owner_column}, key) DO UPDATE SET value = excluded.value"
        ),
        &[
            owner,
            Value::from(entry.key.as_str()),
            Value::from(entry.value.as_str()),
        ],
    )?;
    Ok(())
}

/// `(key, value)` rows as tags or params.
fn key_values(rows: &[Row]) -> Result<Vec<KeyValue>, TrackingError> {
    rows.iter()
        .map(|r| Ok(KeyValue::new(r.get::<String>(0)?, r.get::<String>(1)?)))
        .collect()
}

#[cfg(test)]
mod tests;
