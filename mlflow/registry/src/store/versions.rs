//! Model versions: numbering, descriptions, tags, legacy stages, search, and the files and
//! digest recorded at registration.

use weir_sql::{params, Sql};

use super::{audit::append_audit, now_ms, page_values, tags, Store};
use super::{ModelVersion, NewVersion, StoreError, Tag, VersionFile};
use crate::filter::Filter;

/// The stages MLflow's (legacy) stage transitions know.
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

impl Store {
    /// The recorded artifact digest of a version.
    pub fn artifact_sha256(&self, name: &str, version: &str) -> Result<String, StoreError> {
        let number = parse_version(version)?;
        self.read(|db| {
            read_model_version(db, name, number)?;
            Ok(db
                .query_value(
                    "SELECT sha256 FROM model_versions WHERE name = ?1 AND version = ?2",
                    params![name, number],
                )?
                .unwrap_or_default())
        })
    }

    /// The files recorded for a version at registration, in path order; empty for versions
    /// registered before versions were copied into content-addressed storage (or whose source
    /// is outside the store).
    pub fn version_files(&self, name: &str, version: &str) -> Result<Vec<VersionFile>, StoreError> {
        let number = parse_version(version)?;
        self.read(|db| {
            read_model_version(db, name, number)?;
            let rows = db.query(
                "SELECT path, sha256, size FROM version_files WHERE name = ?1 AND version = ?2",
                params![name, number],
            )?;
            let mut files = rows
                .iter()
                .map(|r| {
                    Ok(VersionFile {
                        path: r.get(0)?,
                        sha256: r.get(1)?,
                        size: u64::try_from(r.get::<i64>(2)?).unwrap_or(0),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // Byte order, as the digest takes them: a PostgreSQL collation may sort otherwise.
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
    }

    /// Adds the next version number; numbering and the audit entry commit together, so two
    /// registrations at once get distinct numbers.
    ///
    /// Registrations of one model queue behind each other, across replicas (`Store::change`),
    /// so each reads the MAX its predecessor left. Should two still meet (a change of the
    /// model outside that queue), the model's row, updated first, makes the later one wait and
    /// then fail as a serialization conflict, which weir-sql runs again on a snapshot holding
    /// the winner's version — rather than both inserting the same number.
    pub fn create_model_version(
        &self,
        actor: &str,
        name: &str,
        new: &NewVersion,
    ) -> Result<ModelVersion, StoreError> {
        self.change(name, |db: &mut dyn Sql| {
            let now = now_ms();
            let touched = db.execute(
                "UPDATE registered_models SET last_updated_timestamp = ?2 WHERE name = ?1",
                params![name, now],
            )?;
            if touched == 0 {
                return Err(StoreError::NotFound(format!(
                    "Registered Model with name={name} not found"
                )));
            }
            let version: i64 = db
                .query_value(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                    params![name],
                )?
                .unwrap_or(1);
            db.execute(
                "INSERT INTO model_versions (name, version, creation_timestamp, last_updated_timestamp, user_id, description, source, run_id, sha256, model_id, storage_location)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![name, version, now, actor, &new.description, &new.source, &new.run_id, &new.sha256, &new.model_id, &new.storage_location],
            )?;
            for tag in &new.tags {
                upsert_version_tag(db, name, version, tag)?;
            }
            for file in &new.files {
                let size = i64::try_from(file.size).map_err(|_| {
                    StoreError::InvalidParameter(format!("file '{}' is too large", file.path))
                })?;
                db.execute(
                    "INSERT INTO version_files (name, version, path, sha256, size) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, version, &file.path, &file.sha256, size],
                )?;
            }
            let version_text = version.to_string();
            append_audit(db, actor, "create_model_version", name, &version_text, "", &new.source)?;
            read_model_version(db, name, version)
        })
    }

    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion, StoreError> {
        let number = parse_version(version)?;
        self.read(|db| read_model_version(db, name, number))
    }

    pub fn update_model_version(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<ModelVersion, StoreError> {
        let number = parse_version(version)?;
        self.write(actor, "update_model_version", name, version, |db| {
            let before = read_model_version(db, name, number)?.description;
            db.execute(
                "UPDATE model_versions SET description = ?3, last_updated_timestamp = ?4 WHERE name = ?1 AND version = ?2",
                params![name, number, description, now_ms()],
            )?;
            Ok((read_model_version(db, name, number)?, before, description.to_owned()))
        })
    }

    pub fn delete_model_version(
        &self,
        actor: &str,
        name: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let number = parse_version(version)?;
        self.write(actor, "delete_model_version", name, version, |db| {
            let before = read_model_version(db, name, number)?.source;
            db.execute(
                "DELETE FROM registered_model_aliases WHERE name = ?1 AND version = ?2",
                params![name, number],
            )?;
            db.execute(
                "DELETE FROM model_versions WHERE name = ?1 AND version = ?2",
                params![name, number],
            )?;
            Ok(((), before, String::new()))
        })
    }

    /// Versions matching a filter, by name then newest first.
    pub fn search_model_versions(
        &self,
        filter: &Filter,
        max_results: usize,
        offset: usize,
    ) -> Result<(Vec<ModelVersion>, Option<usize>), StoreError> {
        let (condition, values) =
            filter.to_sql("model_versions", "model_version_tags", &["name", "version"]);
        let sql = format!(
            "SELECT name, version FROM model_versions WHERE {condition} ORDER BY name, version DESC LIMIT ? OFFSET ?"
        );
        self.read(|db| {
            let rows = db.query(&sql, &page_values(&values, max_results, offset))?;
            let more = rows.len() > max_results;
            let versions = rows
                .iter()
                .take(max_results)
                .map(|r| read_model_version(db, &r.get::<String>(0)?, r.get(1)?))
                .collect::<Result<_, _>>()?;
            Ok((versions, more.then_some(offset + max_results)))
        })
    }

    pub fn set_model_version_tag(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        tag: &Tag,
    ) -> Result<(), StoreError> {
        let number = parse_version(version)?;
        self.write(actor, "set_model_version_tag", name, version, |db| {
            read_model_version(db, name, number)?;
            let before = version_tag(db, name, number, &tag.key)?;
            upsert_version_tag(db, name, number, tag)?;
            Ok((
                (),
                format!("{}={before}", tag.key),
                format!("{}={}", tag.key, tag.value),
            ))
        })
    }

    pub fn delete_model_version_tag(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let number = parse_version(version)?;
        self.write(actor, "delete_model_version_tag", name, version, |db| {
            read_model_version(db, name, number)?;
            let before = version_tag(db, name, number, key)?;
            db.execute(
                "DELETE FROM model_version_tags WHERE name = ?1 AND version = ?2 AND key = ?3",
                params![name, number, key],
            )?;
            Ok(((), format!("{key}={before}"), String::new()))
        })
    }

    pub fn transition_stage(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion, StoreError> {
        let number = parse_version(version)?;
        let stage = STAGES
            .iter()
            .find(|s| s.eq_ignore_ascii_case(stage))
            .ok_or_else(|| StoreError::InvalidParameter(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived.")))?;
        self.write(actor, "transition_stage", name, version, |db| {
            let before = read_model_version(db, name, number)?.current_stage;
            let now = now_ms();
            if archive_existing && (*stage == "Staging" || *stage == "Production") {
                db.execute(
                    "UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = ?3 WHERE name = ?1 AND version != ?2 AND current_stage = ?4",
                    params![name, number, now, *stage],
                )?;
            }
            db.execute(
                "UPDATE model_versions SET current_stage = ?3, last_updated_timestamp = ?4 WHERE name = ?1 AND version = ?2",
                params![name, number, *stage, now],
            )?;
            Ok((read_model_version(db, name, number)?, before, (*stage).to_owned()))
        })
    }
}

fn upsert_version_tag(
    db: &mut dyn Sql,
    name: &str,
    version: i64,
    tag: &Tag,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO model_version_tags (name, version, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
        params![name, version, &tag.key, &tag.value],
    )?;
    Ok(())
}

fn version_tag(
    db: &mut dyn Sql,
    name: &str,
    version: i64,
    key: &str,
) -> Result<String, StoreError> {
    Ok(db
        .query_value(
            "SELECT value FROM model_version_tags WHERE name = ?1 AND version = ?2 AND key = ?3",
            params![name, version, key],
        )?
        .unwrap_or_default())
}

pub(super) fn parse_version(version: &str) -> Result<i64, StoreError> {
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            StoreError::InvalidParameter(format!(
                "Model version must be a positive integer, got '{version}'"
            ))
        })
}

pub(super) fn read_model_version(
    db: &mut dyn Sql,
    name: &str,
    version: i64,
) -> Result<ModelVersion, StoreError> {
    let row = db
        .query_row(
            "SELECT creation_timestamp, last_updated_timestamp, user_id, current_stage, description, source, run_id, model_id, storage_location
             FROM model_versions WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "Model Version (name={name}, version={version}) not found"
            ))
        })?;
    let tags = tags(db.query(
        "SELECT key, value FROM model_version_tags WHERE name = ?1 AND version = ?2 ORDER BY key",
        params![name, version],
    )?)?;
    let aliases = db
        .query(
            "SELECT alias FROM registered_model_aliases WHERE name = ?1 AND version = ?2 ORDER BY alias",
            params![name, version],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    Ok(ModelVersion {
        name: name.to_owned(),
        version: version.to_string(),
        creation_timestamp: row.get(0)?,
        last_updated_timestamp: row.get(1)?,
        user_id: row.get(2)?,
        current_stage: row.get(3)?,
        description: row.get(4)?,
        source: row.get(5)?,
        run_id: row.get(6)?,
        model_id: row.get(7)?,
        storage_location: Some(row.get::<String>(8)?)
            .filter(|l| !l.is_empty())
            .unwrap_or(row.get(5)?),
        status: "READY".to_owned(),
        tags,
        aliases,
    })
}

#[cfg(test)]
mod tests;
