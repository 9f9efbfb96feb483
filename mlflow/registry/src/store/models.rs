//! Registered models: create, read, rename, describe, delete, search and tag.

use weir_sql::{params, Sql};

use super::{now_ms, page_values, tags, versions::read_model_version, Store};
use super::{Alias, RegisteredModel, StoreError, Tag};
use crate::filter::Filter;

impl Store {
    pub fn create_registered_model(
        &self,
        actor: &str,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel, StoreError> {
        check_name(name)?;
        self.write(actor, "create_registered_model", name, "", |db| {
            let inserted = db.execute(
                "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (?1, ?2, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name, now_ms(), description],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "Registered Model (name={name}) already exists."
                )));
            }
            for tag in tags {
                upsert_model_tag(db, name, tag)?;
            }
            Ok((read_registered_model(db, name)?, String::new(), description.to_owned()))
        })
    }

    pub fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, StoreError> {
        self.read(|db| read_registered_model(db, name))
    }

    pub fn rename_registered_model(
        &self,
        actor: &str,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel, StoreError> {
        check_name(new_name)?;
        self.write(actor, "rename_registered_model", new_name, "", |db| {
            require_model(db, name)?;
            if model_exists(db, new_name)? {
                return Err(StoreError::AlreadyExists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            db.execute(
                "UPDATE registered_models SET name = ?2, last_updated_timestamp = ?3 WHERE name = ?1",
                params![name, new_name, now_ms()],
            )?;
            Ok((read_registered_model(db, new_name)?, name.to_owned(), new_name.to_owned()))
        })
    }

    pub fn update_registered_model(
        &self,
        actor: &str,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel, StoreError> {
        self.write(actor, "update_registered_model", name, "", |db| {
            let before = read_registered_model(db, name)?.description;
            db.execute(
                "UPDATE registered_models SET description = ?2, last_updated_timestamp = ?3 WHERE name = ?1",
                params![name, description, now_ms()],
            )?;
            Ok((read_registered_model(db, name)?, before, description.to_owned()))
        })
    }

    pub fn delete_registered_model(&self, actor: &str, name: &str) -> Result<(), StoreError> {
        self.write(actor, "delete_registered_model", name, "", |db| {
            require_model(db, name)?;
            db.execute(
                "DELETE FROM registered_models WHERE name = ?1",
                params![name],
            )?;
            Ok(((), name.to_owned(), String::new()))
        })
    }

    /// Registered models matching a filter, in name order, paged by offset tokens.
    pub fn search_registered_models(
        &self,
        filter: &Filter,
        max_results: usize,
        offset: usize,
    ) -> Result<(Vec<RegisteredModel>, Option<usize>), StoreError> {
        let (condition, values) =
            filter.to_sql("registered_models", "registered_model_tags", &["name"]);
        let sql = format!(
            "SELECT name FROM registered_models WHERE {condition} ORDER BY name LIMIT ? OFFSET ?"
        );
        self.read(|db| {
            let rows = db.query(&sql, &page_values(&values, max_results, offset))?;
            let more = rows.len() > max_results;
            let models = rows
                .iter()
                .take(max_results)
                .map(|r| read_registered_model(db, &r.get::<String>(0)?))
                .collect::<Result<_, _>>()?;
            Ok((models, more.then_some(offset + max_results)))
        })
    }

    pub fn set_registered_model_tag(
        &self,
        actor: &str,
        name: &str,
        tag: &Tag,
    ) -> Result<(), StoreError> {
        self.write(actor, "set_registered_model_tag", name, "", |db| {
            require_model(db, name)?;
            let before = registered_model_tag(db, name, &tag.key)?;
            upsert_model_tag(db, name, tag)?;
            Ok((
                (),
                format!("{}={before}", tag.key),
                format!("{}={}", tag.key, tag.value),
            ))
        })
    }

    pub fn delete_registered_model_tag(
        &self,
        actor: &str,
        name: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        self.write(actor, "delete_registered_model_tag", name, "", |db| {
            require_model(db, name)?;
            let before = registered_model_tag(db, name, key)?;
            db.execute(
                "DELETE FROM registered_model_tags WHERE name = ?1 AND key = ?2",
                params![name, key],
            )?;
            Ok(((), format!("{key}={before}"), String::new()))
        })
    }
}

fn upsert_model_tag(db: &mut dyn Sql, name: &str, tag: &Tag) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO registered_model_tags (name, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
        params![name, &tag.key, &tag.value],
    )?;
    Ok(())
}

fn registered_model_tag(db: &mut dyn Sql, name: &str, key: &str) -> Result<String, StoreError> {
    Ok(db
        .query_value(
            "SELECT value FROM registered_model_tags WHERE name = ?1 AND key = ?2",
            params![name, key],
        )?
        .unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name.len() > 256
        || name.contains(['/', '\\', '\0'])
        || name.contains("..")
    {
        return Err(StoreError::InvalidParameter(format!(
            "Invalid registered model name '{name}': it must be 1-256 characters without '/', '\\\\' or '..'"
        )));
    }
    Ok(())
}

fn model_exists(db: &mut dyn Sql, name: &str) -> Result<bool, StoreError> {
    Ok(db
        .query_row(
            "SELECT 1 FROM registered_models WHERE name = ?1",
            params![name],
        )?
        .is_some())
}

pub(super) fn require_model(db: &mut dyn Sql, name: &str) -> Result<(), StoreError> {
    if model_exists(db, name)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!(
            "Registered Model with name={name} not found"
        )))
    }
}

fn read_registered_model(db: &mut dyn Sql, name: &str) -> Result<RegisteredModel, StoreError> {
    let row = db
        .query_row(
            "SELECT creation_timestamp, last_updated_timestamp, description FROM registered_models WHERE name = ?1",
            params![name],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("Registered Model with name={name} not found")))?;
    let tags = tags(db.query(
        "SELECT key, value FROM registered_model_tags WHERE name = ?1 ORDER BY key",
        params![name],
    )?)?;
    let aliases = db
        .query(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?1 ORDER BY alias",
            params![name],
        )?
        .iter()
        .map(|r| {
            Ok(Alias {
                alias: r.get(0)?,
                version: r.get::<i64>(1)?.to_string(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    // MLflow's latest_versions: the newest version in each stage.
    let latest = db.query(
        "SELECT MAX(version) FROM model_versions WHERE name = ?1 GROUP BY current_stage ORDER BY 1",
        params![name],
    )?;
    let latest_versions = latest
        .iter()
        .map(|r| read_model_version(db, name, r.get(0)?))
        .collect::<Result<_, _>>()?;
    Ok(RegisteredModel {
        name: name.to_owned(),
        creation_timestamp: row.get(0)?,
        last_updated_timestamp: row.get(1)?,
        description: row.get(2)?,
        tags,
        aliases,
        latest_versions,
    })
}
