//! Runs: create (with MLflow's friendly names), read, update, soft delete, search, and the
//! logged models a run produced.

use std::collections::HashMap;

use weir_sql::{params, Row, Sql, Value};

use super::experiments::read_experiment;
use super::limits::check_tag;
use super::logged_models::read_logged_model;
use super::run_data::metric_from_row;
use super::schema::RUNS;
use super::{
    experiment_number, invalid, marks, now_ms, order_sql, page, upsert, KeyValue, ModelOutput,
    NewRun, Page, Run, RunData, RunInfo, RunOutputs, TrackingStore, ViewType,
};
use crate::filter::{Filter, OrderBy};
use crate::{names, TrackingError};

/// MLflow's `RunStatus` names, the only statuses `runs/update` takes.
const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

impl TrackingStore {
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
        self.with(|db| {
            let (run_ids, next) = page(db, &sql, &values, max_results, offset, |_, row| {
                Ok(row.get::<String>(0)?)
            })?;
            Ok((read_runs(db, &run_ids)?, next))
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
}

pub(super) fn rename_run(db: &mut dyn Sql, run_id: &str, name: &str) -> Result<(), TrackingError> {
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

pub(super) fn read_run_info(db: &mut dyn Sql, run_id: &str) -> Result<RunInfo, TrackingError> {
    let row = db
        .query_row(
            &format!("SELECT {RUN_INFO_COLUMNS} FROM runs WHERE run_id = ?1"),
            params![run_id],
        )?
        .ok_or_else(|| TrackingError::NotFound(format!("Run with id={run_id} not found")))?;
    run_info_from_row(&row)
}

pub(super) fn active_run(db: &mut dyn Sql, run_id: &str) -> Result<RunInfo, TrackingError> {
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
