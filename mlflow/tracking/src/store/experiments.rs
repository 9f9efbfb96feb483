//! Experiments: the Default one, create, rename, soft delete (with their runs), tags, search.

use weir_sql::{params, Sql, Value};

use super::limits::check_tag;
use super::schema::EXPERIMENTS;
use super::{
    experiment_number, invalid, key_values, now_ms, order_sql, page, upsert, Experiment, KeyValue,
    Page, TrackingStore, ViewType,
};
use crate::filter::{Filter, OrderBy};
use crate::TrackingError;

impl TrackingStore {
    pub fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
    ) -> Result<String, TrackingError> {
        check_name(name)?;
        for tag in tags {
            check_tag(tag)?;
        }
        self.with(|db| {
            if experiment_named(db, name)?.is_some() {
                return Err(name_taken(name));
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
            let id = experiment_named(db, name)?.ok_or_else(|| {
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
        let sql = format!(
            "SELECT experiment_id FROM experiments WHERE {} AND {condition} ORDER BY {order} LIMIT ? OFFSET ?",
            view.condition("experiments")
        );
        self.with(|db| {
            page(db, &sql, &values, max_results, offset, |db, row| {
                read_experiment(db, row.get(0)?)
            })
        })
    }

    pub fn rename_experiment(&self, id: &str, new_name: &str) -> Result<(), TrackingError> {
        let id = experiment_number(id)?;
        check_name(new_name)?;
        self.with(|db| {
            read_experiment(db, id)?;
            if experiment_named(db, new_name)?.is_some_and(|other| other != id) {
                return Err(name_taken(new_name));
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
}

fn check_name(name: &str) -> Result<(), TrackingError> {
    if name.trim().is_empty() {
        return Err(invalid("experiment name must not be empty".to_owned()));
    }
    Ok(())
}

/// The id of the experiment called `name`, deleted ones included (names stay taken until the
/// experiment is gone for good, as in MLflow).
fn experiment_named(db: &mut dyn Sql, name: &str) -> Result<Option<i64>, TrackingError> {
    Ok(db.query_value(
        "SELECT experiment_id FROM experiments WHERE name = ?1",
        params![name],
    )?)
}

fn name_taken(name: &str) -> TrackingError {
    TrackingError::AlreadyExists(format!("Experiment(name={name}) already exists."))
}

pub(super) fn read_experiment(db: &mut dyn Sql, id: i64) -> Result<Experiment, TrackingError> {
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
