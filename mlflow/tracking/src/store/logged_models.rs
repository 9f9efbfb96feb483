//! MLflow 3's logged models: create, finalize, tags, params, soft delete, search.

use weir_sql::{params, Sql, Value};

use super::experiments::read_experiment;
use super::limits::check_tag;
use super::runs::read_run_info;
use super::schema::LOGGED_MODELS;
use super::{
    experiment_number, invalid, key_values, marks, now_ms, order_sql, page, upsert, KeyValue,
    LoggedModel, LoggedModelData, LoggedModelInfo, Page, TrackingStore,
};
use crate::filter::{Filter, OrderBy};
use crate::{names, TrackingError};

impl TrackingStore {
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
        self.with(|db| {
            page(db, &sql, &values, max_results, offset, |db, row| {
                read_logged_model(db, &row.get::<String>(0)?)
            })
        })
    }
}

pub(super) fn read_logged_model(
    db: &mut dyn Sql,
    model_id: &str,
) -> Result<LoggedModel, TrackingError> {
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
