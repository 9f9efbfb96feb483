//! Tracking storage: experiments, runs, params, tags, metric history and latest values, logged
//! models, on any `weir-sql` database.
//!
//! Ingestion is the hot path: a `log_batch` of 1,000 metrics is one transaction of a few
//! multi-row statements, and the latest value of each metric is maintained as it is written so
//! that `search_runs` reads one indexed row per run and metric instead of the history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use weir_sql::{params, Database, Migration, Row, Sql, Value};

use crate::filter::{Filter, Kind, OrderBy, Schema};
use crate::{names, TrackingError};

/// MLflow's limits on one `log-batch` call.
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
pub const MAX_BATCH_ENTRIES: usize = 1000;
const MAX_KEY_LENGTH: usize = 250;
const MAX_PARAM_VALUE_LENGTH: usize = 6000;
const MAX_TAG_VALUE_LENGTH: usize = 8000;
/// Rows per multi-row INSERT: well under both engines' parameter limits.
const INSERT_CHUNK: usize = 100;

const SCHEMA: &[Migration] = &[Migration::same(
    "CREATE TABLE experiments (
        experiment_id BIGINT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        artifact_location TEXT NOT NULL,
        lifecycle_stage TEXT NOT NULL DEFAULT 'active',
        creation_time BIGINT NOT NULL,
        last_update_time BIGINT NOT NULL);
     CREATE TABLE experiment_tags (
        experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (experiment_id, key));
     CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL,
        start_time BIGINT NOT NULL,
        end_time BIGINT,
        artifact_uri TEXT NOT NULL,
        lifecycle_stage TEXT NOT NULL DEFAULT 'active');
     CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time);
     CREATE TABLE params (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
     CREATE TABLE tags (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
     CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        key TEXT NOT NULL, step BIGINT NOT NULL, timestamp BIGINT NOT NULL,
        value DOUBLE PRECISION NOT NULL, is_nan INTEGER NOT NULL);
     CREATE INDEX metrics_history ON metrics (run_id, key, step, timestamp);
     CREATE TABLE latest_metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        key TEXT NOT NULL, step BIGINT NOT NULL, timestamp BIGINT NOT NULL,
        value DOUBLE PRECISION NOT NULL, is_nan INTEGER NOT NULL, PRIMARY KEY (run_id, key));
     CREATE INDEX latest_metrics_by_value ON latest_metrics (key, value);
     CREATE TABLE logged_models (
        model_id TEXT PRIMARY KEY,
        experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        source_run_id TEXT NOT NULL DEFAULT '',
        artifact_uri TEXT NOT NULL,
        status TEXT NOT NULL,
        model_type TEXT NOT NULL DEFAULT '',
        creation_time BIGINT NOT NULL,
        last_update_time BIGINT NOT NULL,
        lifecycle_stage TEXT NOT NULL DEFAULT 'active');
     CREATE TABLE logged_model_tags (
        model_id TEXT NOT NULL REFERENCES logged_models(model_id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (model_id, key));
     CREATE TABLE logged_model_params (
        model_id TEXT NOT NULL REFERENCES logged_models(model_id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (model_id, key));
     CREATE TABLE run_outputs (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        model_id TEXT NOT NULL, step BIGINT NOT NULL, PRIMARY KEY (run_id, model_id));",
)];

const RUNS: Schema = Schema {
    table: "runs",
    key: "run_id",
    attributes: &[
        ("run_id", "run_id", Kind::Text),
        ("run_name", "name", Kind::Text),
        ("status", "status", Kind::Text),
        ("user_id", "user_id", Kind::Text),
        ("artifact_uri", "artifact_uri", Kind::Text),
        ("lifecycle_stage", "lifecycle_stage", Kind::Text),
        ("start_time", "start_time", Kind::Number),
        ("created", "start_time", Kind::Number),
        ("end_time", "end_time", Kind::Number),
    ],
    metrics: Some("latest_metrics"),
    params: Some("params"),
    tags: Some("tags"),
};

const EXPERIMENTS: Schema = Schema {
    table: "experiments",
    key: "experiment_id",
    attributes: &[
        ("name", "name", Kind::Text),
        ("experiment_id", "experiment_id", Kind::Number),
        ("creation_time", "creation_time", Kind::Number),
        ("last_update_time", "last_update_time", Kind::Number),
    ],
    metrics: None,
    params: None,
    tags: Some("experiment_tags"),
};

const LOGGED_MODELS: Schema = Schema {
    table: "logged_models",
    key: "model_id",
    attributes: &[
        ("name", "name", Kind::Text),
        ("model_id", "model_id", Kind::Text),
        ("source_run_id", "source_run_id", Kind::Text),
        ("status", "status", Kind::Text),
        ("model_type", "model_type", Kind::Text),
        ("creation_time", "creation_time", Kind::Number),
        ("creation_timestamp", "creation_time", Kind::Number),
        ("last_updated_timestamp", "last_update_time", Kind::Number),
    ],
    metrics: None,
    params: Some("logged_model_params"),
    tags: Some("logged_model_tags"),
};

/// Milliseconds since the Unix epoch, MLflow's timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Protobuf's JSON for doubles: non-finite values are the strings `NaN`, `Infinity`, `-Infinity`.
fn serialize_double<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() {
        serializer.serialize_str(if *value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        })
    } else {
        serializer.serialize_f64(*value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    #[serde(serialize_with = "serialize_double")]
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    /// The same id under its pre-1.0 name; old clients still read it.
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    pub status: String,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RunData {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOutput {
    pub model_id: String,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RunOutputs {
    pub model_outputs: Vec<ModelOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: serde_json::Value,
    pub outputs: RunOutputs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub source_run_id: String,
    pub artifact_uri: String,
    pub status: String,
    pub model_type: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelData {
    pub params: Vec<KeyValue>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    pub data: LoggedModelData,
}

/// What `runs/create` carries.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub experiment_id: String,
    pub user_id: String,
    pub run_name: String,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

/// Which lifecycle stages a search returns (MLflow's `ViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(text: &str) -> Result<ViewType, TrackingError> {
        match text.to_ascii_uppercase().as_str() {
            "" | "ACTIVE_ONLY" | "1" => Ok(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
            "ALL" | "3" => Ok(ViewType::All),
            _ => Err(TrackingError::InvalidParameter(format!(
                "invalid view type '{text}'; use ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))),
        }
    }

    fn condition(self, table: &str) -> String {
        match self {
            ViewType::ActiveOnly => format!("{table}.lifecycle_stage = 'active'"),
            ViewType::DeletedOnly => format!("{table}.lifecycle_stage = 'deleted'"),
            ViewType::All => "1 = 1".to_owned(),
        }
    }
}

/// A page of results and the offset of the next page, if any.
pub type Page<T> = (Vec<T>, Option<usize>);

const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

fn invalid(message: String) -> TrackingError {
    TrackingError::InvalidParameter(message)
}

pub struct TrackingStore {
    db: Arc<Database>,
}

impl TrackingStore {
    /// The tracking tables on a database the registry may share; creates the schema and the
    /// Default experiment ("0") on first use.
    pub fn new(db: Arc<Database>) -> Result<TrackingStore, TrackingError> {
        db.migrate("tracking_schema_version", SCHEMA)?;
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

    fn with<T>(
        &self,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, TrackingError>,
    ) -> Result<T, TrackingError> {
        self.db.transaction(work)
    }

    // ---- experiments ----

    pub fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
    ) -> Result<String, TrackingError> {
        if name.trim().is_empty() {
            return Err(invalid("experiment name must not be empty".to_owned()));
        }
        for tag in tags {
            check_tag(tag)?;
        }
        self.with(|db| {
            if db
                .query_row("SELECT 1 FROM experiments WHERE name = ?1", params![name])?
                .is_some()
            {
                return Err(TrackingError::AlreadyExists(format!(
                    "Experiment(name={name}) already exists."
                )));
            }
            let id: i64 = db
                .query_value("SELECT COALESCE(MAX(experiment_id), 0) + 1 FROM experiments", &[])?
                .unwrap_or(1);
            let location = artifact_location
                .filter(|l| !l.is_empty())
                .map_or_else(|| format!("mlflow-artifacts:/{id}"), str::to_owned);
            let now = now_ms();
            db.execute(
                "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, name, location, now],
            )?;
            for tag in tags {
                upsert(db, "experiment_tags", "experiment_id", Value::Int(id), tag)?;
            }
            Ok(id.to_string())
        })
    }

    pub fn get_experiment(&self, id: &str) -> Result<Experiment, TrackingError> {
        let id = experiment_number(id)?;
        self.with(|db| read_experiment(db, id))
    }

    pub fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, TrackingError> {
        self.with(|db| {
            let id: i64 = db
                .query_value(
                    "SELECT experiment_id FROM experiments WHERE name = ?1",
                    params![name],
                )?
                .ok_or_else(|| {
                    TrackingError::NotFound(format!("Could not find experiment with name {name}"))
                })?;
            read_experiment(db, id)
        })
    }

    pub fn search_experiments(
        &self,
        view: ViewType,
        filter: &Filter,
        order_by: &[OrderBy],
        max_results: usize,
        offset: usize,
    ) -> Result<Page<Experiment>, TrackingError> {
        let (condition, mut values) = EXPERIMENTS.condition(filter)?;
        let (order, order_values) = order_sql(
            &EXPERIMENTS,
            order_by,
            "experiments.last_update_time DESC, experiments.experiment_id DESC",
        )?;
        values.extend(order_values);
        values.extend([Value::from(max_results + 1), Value::from(offset)]);
        let sql = format!(
            "SELECT experiment_id FROM experiments WHERE {} AND {condition} ORDER BY {order} LIMIT ? OFFSET ?",
            view.condition("experiments")
        );
        self.with(|db| {
            let rows = db.query(&sql, &values)?;
            let more = rows.len() > max_results;
            let experiments = rows
                .iter()
                .take(max_results)
                .map(|r| read_experiment(db, r.get(0)?))
                .collect::<Result<_, _>>()?;
            Ok((experiments, more.then_some(offset + max_results)))
        })
    }

    pub fn rename_experiment(&self, id: &str, new_name: &str) -> Result<(), TrackingError> {
        let id = experiment_number(id)?;
        if new_name.trim().is_empty() {
            return Err(invalid("experiment name must not be empty".to_owned()));
        }
        self.with(|db| {
            read_experiment(db, id)?;
            let taken: Option<i64> = db.query_value(
                "SELECT experiment_id FROM experiments WHERE name = ?1",
                params![new_name],
            )?;
            if taken.is_some_and(|other| other != id) {
                return Err(TrackingError::AlreadyExists(format!(
                    "Experiment(name={new_name}) already exists."
                )));
            }
            db.execute(
                "UPDATE experiments SET name = ?2, last_update_time = ?3 WHERE experiment_id = ?1",
                params![id, new_name, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Deleting (or restoring) an experiment does the same to its runs, as MLflow does.
    pub fn set_experiment_lifecycle(&self, id: &str, deleted: bool) -> Result<(), TrackingError> {
        let id = experiment_number(id)?;
        if id == 0 && deleted {
            return Err(invalid(
                "the Default experiment (id 0) cannot be deleted".to_owned(),
            ));
        }
        let stage = if deleted { "deleted" } else { "active" };
        self.with(|db| {
            read_experiment(db, id)?;
            db.execute(
                "UPDATE experiments SET lifecycle_stage = ?2, last_update_time = ?3 WHERE experiment_id = ?1",
                params![id, stage, now_ms()],
            )?;
            db.execute(
                "UPDATE runs SET lifecycle_stage = ?2 WHERE experiment_id = ?1",
                params![id, stage],
            )?;
            Ok(())
        })
    }

    pub fn set_experiment_tag(&self, id: &str, tag: &KeyValue) -> Result<(), TrackingError> {
        let id = experiment_number(id)?;
        check_tag(tag)?;
        self.with(|db| {
            read_experiment(db, id)?;
            upsert(db, "experiment_tags", "experiment_id", Value::Int(id), tag)
        })
    }

    pub fn delete_experiment_tag(&self, id: &str, key: &str) -> Result<(), TrackingError> {
        let id = experiment_number(id)?;
        self.with(|db| {
            read_experiment(db, id)?;
            db.execute(
                "DELETE FROM experiment_tags WHERE experiment_id = ?1 AND key = ?2",
                params![id, key],
            )?;
            Ok(())
        })
    }

    // ---- runs ----

    pub fn create_run(&self, new: &NewRun) -> Result<Run, TrackingError> {
        let experiment_id = experiment_number(&new.experiment_id)?;
        for tag in &new.tags {
            check_tag(tag)?;
        }
        let tag_value = |key: &str| {
            new.tags
                .iter()
                .find(|t| t.key == key)
                .map(|t| t.value.clone())
        };
        let run_name = Some(new.run_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| tag_value("mlflow.runName"))
            .unwrap_or_else(names::run_name);
        let user_id = Some(new.user_id.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| tag_value("mlflow.user"))
            .unwrap_or_default();
        let run_id = names::hex_id();
        self.with(|db| {
            let experiment = read_experiment(db, experiment_id)?;
            if experiment.lifecycle_stage != "active" {
                return Err(invalid(format!(
                    "experiment {} is deleted; restore it before starting runs in it",
                    experiment.experiment_id
                )));
            }
            let artifact_uri = format!(
                "{}/{run_id}/artifacts",
                experiment.artifact_location.trim_end_matches('/')
            );
            db.execute(
                "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, artifact_uri)
                 VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5, ?6)",
                params![&run_id, experiment_id, &run_name, &user_id, new.start_time.unwrap_or_else(now_ms), artifact_uri],
            )?;
            for tag in &new.tags {
                upsert(db, "tags", "run_id", Value::from(&run_id), tag)?;
            }
            let name_tag = KeyValue::new("mlflow.runName", &run_name);
            upsert(db, "tags", "run_id", Value::from(&run_id), &name_tag)?;
            read_run(db, &run_id)
        })
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run, TrackingError> {
        self.with(|db| read_run(db, run_id))
    }

    pub fn update_run(
        &self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo, TrackingError> {
        if let Some(status) = status {
            if !RUN_STATUSES.contains(&status) {
                return Err(invalid(format!(
                    "invalid run status '{status}'; use one of {}",
                    RUN_STATUSES.join(", ")
                )));
            }
        }
        self.with(|db| {
            active_run(db, run_id)?;
            if let Some(status) = status {
                db.execute(
                    "UPDATE runs SET status = ?2 WHERE run_id = ?1",
                    params![run_id, status],
                )?;
            }
            if let Some(end_time) = end_time {
                db.execute(
                    "UPDATE runs SET end_time = ?2 WHERE run_id = ?1",
                    params![run_id, end_time],
                )?;
            }
            if let Some(name) = run_name.filter(|n| !n.is_empty()) {
                rename_run(db, run_id, name)?;
            }
            Ok(read_run(db, run_id)?.info)
        })
    }

    pub fn set_run_lifecycle(&self, run_id: &str, deleted: bool) -> Result<(), TrackingError> {
        self.with(|db| {
            read_run_info(db, run_id)?;
            db.execute(
                "UPDATE runs SET lifecycle_stage = ?2 WHERE run_id = ?1",
                params![run_id, if deleted { "deleted" } else { "active" }],
            )?;
            Ok(())
        })
    }

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
            let rows = db.query(
                "SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_id = ?1 AND key = ?2
                 ORDER BY step, timestamp, value LIMIT ?3 OFFSET ?4",
                params![run_id, key, max_results + 1, offset],
            )?;
            let more = rows.len() > max_results;
            let metrics = rows
                .iter()
                .take(max_results)
                .map(metric_from_row)
                .collect::<Result<_, _>>()?;
            Ok((metrics, more.then_some(offset + max_results)))
        })
    }

    pub fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &Filter,
        view: ViewType,
        order_by: &[OrderBy],
        max_results: usize,
        offset: usize,
    ) -> Result<Page<Run>, TrackingError> {
        let ids = experiment_ids
            .iter()
            .map(|id| experiment_number(id).map(Value::Int))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(invalid(
                "search_runs needs at least one experiment id".to_owned(),
            ));
        }
        let (condition, filter_values) = RUNS.condition(filter)?;
        let (order, order_values) =
            order_sql(&RUNS, order_by, "runs.start_time DESC, runs.run_id ASC")?;
        let sql = format!(
            "SELECT runs.run_id FROM runs WHERE runs.experiment_id IN ({}) AND {} AND {condition}
             ORDER BY {order} LIMIT ? OFFSET ?",
            marks(ids.len()),
            view.condition("runs"),
        );
        let mut values = ids;
        values.extend(filter_values);
        values.extend(order_values);
        values.extend([Value::from(max_results + 1), Value::from(offset)]);
        self.with(|db| {
            let rows = db.query(&sql, &values)?;
            let more = rows.len() > max_results;
            let run_ids = rows
                .iter()
                .take(max_results)
                .map(|r| r.get(0))
                .collect::<Result<Vec<String>, _>>()?;
            Ok((
                read_runs(db, &run_ids)?,
                more.then_some(offset + max_results),
            ))
        })
    }

    /// Records that a run produced logged models (`runs/outputs`).
    pub fn log_outputs(&self, run_id: &str, outputs: &[ModelOutput]) -> Result<(), TrackingError> {
        self.with(|db| {
            read_run_info(db, run_id)?;
            for output in outputs {
                read_logged_model(db, &output.model_id)?;
                db.execute(
                    "INSERT INTO run_outputs (run_id, model_id, step) VALUES (?1, ?2, ?3)
                     ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
                    params![run_id, &output.model_id, output.step],
                )?;
            }
            Ok(())
        })
    }

    // ---- logged models (MLflow 3) ----

    pub fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: &str,
        model_type: &str,
        tags: &[KeyValue],
        params: &[KeyValue],
    ) -> Result<LoggedModel, TrackingError> {
        let experiment_id = experiment_number(experiment_id)?;
        let model_id = format!("m-{}", names::hex_id());
        let name = if name.is_empty() {
            names::run_name()
        } else {
            name.to_owned()
        };
        self.with(|db| {
            let experiment = read_experiment(db, experiment_id)?;
            if !source_run_id.is_empty() {
                read_run_info(db, source_run_id)?;
            }
            let artifact_uri = format!(
                "{}/models/{model_id}/artifacts",
                experiment.artifact_location.trim_end_matches('/')
            );
            let now = now_ms();
            db.execute(
                "INSERT INTO logged_models (model_id, experiment_id, name, source_run_id, artifact_uri, status, model_type, creation_time, last_update_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'LOGGED_MODEL_PENDING', ?6, ?7, ?7)",
                params![&model_id, experiment_id, &name, source_run_id, artifact_uri, model_type, now],
            )?;
            for tag in tags {
                upsert(db, "logged_model_tags", "model_id", Value::from(&model_id), tag)?;
            }
            for param in params {
                upsert(db, "logged_model_params", "model_id", Value::from(&model_id), param)?;
            }
            read_logged_model(db, &model_id)
        })
    }

    pub fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, TrackingError> {
        self.with(|db| read_logged_model(db, model_id))
    }

    pub fn finalize_logged_model(
        &self,
        model_id: &str,
        status: &str,
    ) -> Result<LoggedModel, TrackingError> {
        let status = match status {
            "LOGGED_MODEL_PENDING" | "1" => "LOGGED_MODEL_PENDING",
            "LOGGED_MODEL_READY" | "2" => "LOGGED_MODEL_READY",
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => "LOGGED_MODEL_UPLOAD_FAILED",
            other => {
                return Err(invalid(format!(
                    "invalid logged model status '{other}'; use LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
                )))
            }
        };
        self.with(|db| {
            read_logged_model(db, model_id)?;
            db.execute(
                "UPDATE logged_models SET status = ?2, last_update_time = ?3 WHERE model_id = ?1",
                params![model_id, status, now_ms()],
            )?;
            read_logged_model(db, model_id)
        })
    }

    pub fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[KeyValue],
    ) -> Result<(), TrackingError> {
        for tag in tags {
            check_tag(tag)?;
        }
        self.with(|db| {
            read_logged_model(db, model_id)?;
            for tag in tags {
                upsert(
                    db,
                    "logged_model_tags",
                    "model_id",
                    Value::from(model_id),
                    tag,
                )?;
            }
            Ok(())
        })
    }

    pub fn log_logged_model_params(
        &self,
        model_id: &str,
        params: &[KeyValue],
    ) -> Result<(), TrackingError> {
        self.with(|db| {
            read_logged_model(db, model_id)?;
            for param in params {
                upsert(
                    db,
                    "logged_model_params",
                    "model_id",
                    Value::from(model_id),
                    param,
                )?;
            }
            Ok(())
        })
    }

    pub fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<(), TrackingError> {
        self.with(|db| {
            read_logged_model(db, model_id)?;
            db.execute(
                "DELETE FROM logged_model_tags WHERE model_id = ?1 AND key = ?2",
                params![model_id, key],
            )?;
            Ok(())
        })
    }

    pub fn delete_logged_model(&self, model_id: &str) -> Result<(), TrackingError> {
        self.with(|db| {
            read_logged_model(db, model_id)?;
            db.execute(
                "UPDATE logged_models SET lifecycle_stage = 'deleted' WHERE model_id = ?1",
                params![model_id],
            )?;
            Ok(())
        })
    }

    pub fn search_logged_models(
        &self,
        experiment_ids: &[String],
        filter: &Filter,
        order_by: &[OrderBy],
        max_results: usize,
        offset: usize,
    ) -> Result<Page<LoggedModel>, TrackingError> {
        let ids = experiment_ids
            .iter()
            .map(|id| experiment_number(id).map(Value::Int))
            .collect::<Result<Vec<_>, _>>()?;
        let (condition, filter_values) = LOGGED_MODELS.condition(filter)?;
        let (order, order_values) = order_sql(
            &LOGGED_MODELS,
            order_by,
            "logged_models.creation_time DESC, logged_models.model_id",
        )?;
        let experiments = if ids.is_empty() {
            "1 = 1".to_owned()
        } else {
            format!("logged_models.experiment_id IN ({})", marks(ids.len()))
        };
        let sql = format!(
            "SELECT model_id FROM logged_models WHERE logged_models.lifecycle_stage = 'active' AND {experiments} AND {condition}
             ORDER BY {order} LIMIT ? OFFSET ?"
        );
        let mut values = ids;
        values.extend(filter_values);
        values.extend(order_values);
        values.extend([Value::from(max_results + 1), Value::from(offset)]);
        self.with(|db| {
            let rows = db.query(&sql, &values)?;
            let more = rows.len() > max_results;
            let models = rows
                .iter()
                .take(max_results)
                .map(|r| read_logged_model(db, &r.get::<String>(0)?))
                .collect::<Result<_, _>>()?;
            Ok((models, more.then_some(offset + max_results)))
        })
    }
}

fn marks(count: usize) -> String {
    vec!["?"; count].join(", ")
}

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

/// MLflow's key rules: not empty, at most 250 characters, no leading `/` and no `..` segment.
fn check_key(kind: &str, key: &str) -> Result<(), TrackingError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && !key.starts_with('/')
        && !key.split('/').any(|part| part == "..")
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-. /:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), be at most {MAX_KEY_LENGTH} characters and not start with '/' or contain '..'"
        )))
    }
}

fn check_tag(tag: &KeyValue) -> Result<(), TrackingError> {
    check_key("tag", &tag.key)?;
    if tag.value.len() > MAX_TAG_VALUE_LENGTH {
        return Err(invalid(format!(
            "tag '{}' has a value of {} characters; the limit is {MAX_TAG_VALUE_LENGTH}",
            tag.key,
            tag.value.len()
        )));
    }
    Ok(())
}

fn check_batch(
    metrics: &[Metric],
    params: &[KeyValue],
    tags: &[KeyValue],
) -> Result<(), TrackingError> {
    let total = metrics.len() + params.len() + tags.len();
    if metrics.len() > MAX_BATCH_METRICS
        || params.len() > MAX_BATCH_PARAMS
        || tags.len() > MAX_BATCH_TAGS
        || total > MAX_BATCH_ENTRIES
    {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_BATCH_METRICS} metrics, {MAX_BATCH_PARAMS} params, {MAX_BATCH_TAGS} tags and {MAX_BATCH_ENTRIES} entries in total; got {} metrics, {} params, {} tags",
            metrics.len(),
            params.len(),
            tags.len()
        )));
    }
    for metric in metrics {
        check_key("metric", &metric.key)?;
    }
    for param in params {
        check_key("param", &param.key)?;
        if param.value.len() > MAX_PARAM_VALUE_LENGTH {
            return Err(invalid(format!(
                "param '{}' has a value of {} characters; the limit is {MAX_PARAM_VALUE_LENGTH}",
                param.key,
                param.value.len()
            )));
        }
    }
    for tag in tags {
        check_tag(tag)?;
    }
    Ok(())
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

fn rename_run(db: &mut dyn Sql, run_id: &str, name: &str) -> Result<(), TrackingError> {
    db.execute(
        "UPDATE runs SET name = ?2 WHERE run_id = ?1",
        params![run_id, name],
    )?;
    upsert(
        db,
        "tags",
        "run_id",
        Value::from(run_id),
        &KeyValue::new("mlflow.runName", name),
    )
}

fn key_values(rows: &[Row]) -> Result<Vec<KeyValue>, TrackingError> {
    rows.iter()
        .map(|r| Ok(KeyValue::new(r.get::<String>(0)?, r.get::<String>(1)?)))
        .collect()
}

fn metric_from_row(row: &Row) -> Result<Metric, TrackingError> {
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

fn read_experiment(db: &mut dyn Sql, id: i64) -> Result<Experiment, TrackingError> {
    let row = db
        .query_row(
            "SELECT name, artifact_location, lifecycle_stage, creation_time, last_update_time
             FROM experiments WHERE experiment_id = ?1",
            params![id],
        )?
        .ok_or_else(|| TrackingError::NotFound(format!("No Experiment with id={id} exists")))?;
    let tags = key_values(&db.query(
        "SELECT key, value FROM experiment_tags WHERE experiment_id = ?1 ORDER BY key",
        params![id],
    )?)?;
    Ok(Experiment {
        experiment_id: id.to_string(),
        name: row.get(0)?,
        artifact_location: row.get(1)?,
        lifecycle_stage: row.get(2)?,
        creation_time: row.get(3)?,
        last_update_time: row.get(4)?,
        tags,
    })
}

const RUN_INFO_COLUMNS: &str =
    "run_id, name, experiment_id, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage";

fn run_info_from_row(row: &Row) -> Result<RunInfo, TrackingError> {
    let run_id: String = row.get(0)?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        run_name: row.get(1)?,
        experiment_id: row.get::<i64>(2)?.to_string(),
        user_id: row.get(3)?,
        status: row.get(4)?,
        start_time: row.get(5)?,
        end_time: row.get(6)?,
        artifact_uri: row.get(7)?,
        lifecycle_stage: row.get(8)?,
    })
}

fn read_run_info(db: &mut dyn Sql, run_id: &str) -> Result<RunInfo, TrackingError> {
    let row = db
        .query_row(
            &format!("SELECT {RUN_INFO_COLUMNS} FROM runs WHERE run_id = ?1"),
            params![run_id],
        )?
        .ok_or_else(|| TrackingError::NotFound(format!("Run with id={run_id} not found")))?;
    run_info_from_row(&row)
}

fn active_run(db: &mut dyn Sql, run_id: &str) -> Result<RunInfo, TrackingError> {
    let info = read_run_info(db, run_id)?;
    if info.lifecycle_stage != "active" {
        return Err(invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {}.",
            info.lifecycle_stage
        )));
    }
    Ok(info)
}

fn read_run(db: &mut dyn Sql, run_id: &str) -> Result<Run, TrackingError> {
    read_runs(db, &[run_id.to_owned()])?
        .pop()
        .ok_or_else(|| TrackingError::NotFound(format!("Run with id={run_id} not found")))
}

/// Runs with their data, in the order given, in five statements however many there are.
fn read_runs(db: &mut dyn Sql, run_ids: &[String]) -> Result<Vec<Run>, TrackingError> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = run_ids.iter().map(Value::from).collect();
    let list = marks(ids.len());
    let mut runs: HashMap<String, Run> = HashMap::new();
    for row in db.query(
        &format!("SELECT {RUN_INFO_COLUMNS} FROM runs WHERE run_id IN ({list})"),
        &ids,
    )? {
        let info = run_info_from_row(&row)?;
        runs.insert(
            info.run_id.clone(),
            Run {
                info,
                data: RunData::default(),
                inputs: serde_json::json!({}),
                outputs: RunOutputs::default(),
            },
        );
    }
    for (table, is_params) in [("params", true), ("tags", false)] {
        for row in db.query(
            &format!(
                "SELECT run_id, key, value FROM {table} WHERE run_id IN ({list}) ORDER BY key"
            ),
            &ids,
        )? {
            if let Some(run) = runs.get_mut(&row.get::<String>(0)?) {
                let entry = KeyValue::new(row.get::<String>(1)?, row.get::<String>(2)?);
                if is_params {
                    run.data.params.push(entry);
                } else {
                    run.data.tags.push(entry);
                }
            }
        }
    }
    for row in db.query(
        &format!("SELECT run_id, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_id IN ({list}) ORDER BY key"),
        &ids,
    )? {
        if let Some(run) = runs.get_mut(&row.get::<String>(0)?) {
            run.data
                .metrics
                .push(metric_from_row(&Row(row.0[1..].to_vec()))?);
        }
    }
    for row in db.query(
        &format!("SELECT run_id, model_id, step FROM run_outputs WHERE run_id IN ({list}) ORDER BY step, model_id"),
        &ids,
    )? {
        if let Some(run) = runs.get_mut(&row.get::<String>(0)?) {
            run.outputs.model_outputs.push(ModelOutput {
                model_id: row.get(1)?,
                step: row.get(2)?,
            });
        }
    }
    Ok(run_ids.iter().filter_map(|id| runs.remove(id)).collect())
}

fn read_logged_model(db: &mut dyn Sql, model_id: &str) -> Result<LoggedModel, TrackingError> {
    let row = db
        .query_row(
            "SELECT experiment_id, name, source_run_id, artifact_uri, status, model_type, creation_time, last_update_time
             FROM logged_models WHERE model_id = ?1",
            params![model_id],
        )?
        .ok_or_else(|| {
            TrackingError::NotFound(format!("Logged model with ID '{model_id}' not found."))
        })?;
    let tags = key_values(&db.query(
        "SELECT key, value FROM logged_model_tags WHERE model_id = ?1 ORDER BY key",
        params![model_id],
    )?)?;
    let params = key_values(&db.query(
        "SELECT key, value FROM logged_model_params WHERE model_id = ?1 ORDER BY key",
        params![model_id],
    )?)?;
    Ok(LoggedModel {
        info: LoggedModelInfo {
            model_id: model_id.to_owned(),
            experiment_id: row.get::<i64>(0)?.to_string(),
            name: row.get(1)?,
            source_run_id: row.get(2)?,
            artifact_uri: row.get(3)?,
            status: row.get(4)?,
            model_type: row.get(5)?,
            creation_timestamp_ms: row.get(6)?,
            last_updated_timestamp_ms: row.get(7)?,
            tags,
        },
        data: LoggedModelData {
            params,
            metrics: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests;
