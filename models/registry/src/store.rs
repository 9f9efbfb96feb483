//! Registry storage on SQLite: registered models, versions, tags and aliases.
//!
//! Durability first: WAL journal with `synchronous = FULL`, so a write the API acknowledged is on
//! disk before the answer leaves, and a `kill -9` loses nothing acknowledged. Names cascade on
//! rename through foreign keys, so a rename is one statement.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::Serialize;

use crate::filter::Filter;

/// Why a registry operation failed, by MLflow's error classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("registry storage failed: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Internal(err.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    pub alias: String,
    /// MLflow sends versions as strings.
    pub version: String,
}

/// A model version as MLflow's REST API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: String,
    pub current_stage: String,
    pub description: String,
    pub source: String,
    pub run_id: String,
    /// Always `READY` once stored: the client polls anything else for minutes.
    pub status: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<String>,
}

/// A registered model as MLflow's REST API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<Alias>,
    pub latest_versions: Vec<ModelVersion>,
}

/// What a new version carries.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub source: String,
    pub run_id: String,
    pub description: String,
    pub user_id: String,
    pub tags: Vec<Tag>,
    /// Digest of the artifact files (see `artifacts::digest`); empty when the source is not in
    /// this registry's artifact store.
    pub sha256: String,
}

const SCHEMA: &[&str] = &[
    // 1: the registry tables.
    "CREATE TABLE registered_models (
        name TEXT PRIMARY KEY,
        creation_timestamp INTEGER NOT NULL,
        last_updated_timestamp INTEGER NOT NULL,
        description TEXT NOT NULL DEFAULT '');
     CREATE TABLE registered_model_tags (
        name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name, key));
     CREATE TABLE model_versions (
        name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
        version INTEGER NOT NULL,
        creation_timestamp INTEGER NOT NULL,
        last_updated_timestamp INTEGER NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        current_stage TEXT NOT NULL DEFAULT 'None',
        description TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        run_id TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (name, version));
     CREATE TABLE model_version_tags (
        name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (name, version, key),
        FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE ON UPDATE CASCADE);
     CREATE TABLE registered_model_aliases (
        name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
        alias TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name, alias));",
    // 2: approvals and the append-only audit log.
    "CREATE TABLE approval_policies (
        name TEXT PRIMARY KEY REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
        required_approvals INTEGER NOT NULL);
     CREATE TABLE approval_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL, version INTEGER NOT NULL, user_id TEXT NOT NULL,
        decision TEXT NOT NULL, comment TEXT NOT NULL, timestamp INTEGER NOT NULL,
        FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE ON UPDATE CASCADE);
     CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp INTEGER NOT NULL, user_id TEXT NOT NULL, action TEXT NOT NULL,
        model TEXT NOT NULL, version TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL);
     CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 3: the digest of each version's artifact files, computed by the registry at registration.
    "ALTER TABLE model_versions ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''",
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The stages MLflow's (legacy) stage transitions know.
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

pub struct Store {
    db: Mutex<Connection>,
    /// Aliases that may point only at approved versions.
    protected_aliases: Vec<String>,
}

/// Where a version stands in the approval workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalStatus {
    pub name: String,
    pub version: String,
    pub creator: String,
    pub required_approvals: u32,
    /// People whose latest decision is an approval.
    pub approved_by: Vec<String>,
    /// People whose latest decision is a rejection; any one blocks approval.
    pub rejected_by: Vec<String>,
    pub requested_by: Vec<String>,
    pub approved: bool,
}

impl ApprovalStatus {
    /// What stands between the version and approval, for refusals.
    pub fn explain(&self) -> String {
        if !self.rejected_by.is_empty() {
            return format!("rejected by {}", self.rejected_by.join(", "));
        }
        let who = if self.approved_by.is_empty() {
            "nobody yet".to_owned()
        } else {
            self.approved_by.join(", ")
        };
        format!(
            "{} of {} required approvals (approved by {who}; approvers must not be its creator {})",
            self.approved_by.len(),
            self.required_approvals,
            if self.creator.is_empty() {
                "(unknown)"
            } else {
                &self.creator
            }
        )
    }
}

/// A decision in the approval workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Request,
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Request => "request",
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        [Decision::Request, Decision::Approve, Decision::Reject]
            .into_iter()
            .find(|d| d.as_str() == text)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "unknown approval action '{text}'; use request, approve or reject"
                ))
            })
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: i64,
    pub user: String,
    pub action: String,
    pub model: String,
    pub version: String,
    pub before: String,
    pub after: String,
}

impl Store {
    /// Opens (creating if needed) a SQLite registry and brings its schema up to date.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA case_sensitive_like = ON;")?;
        migrate(&db)?;
        Ok(Store {
            db: Mutex::new(db),
            protected_aliases: vec!["production".to_owned(), "champion".to_owned()],
        })
    }

    /// Replaces the default protected aliases (`production`, `champion`).
    pub fn with_protected_aliases(mut self, aliases: Vec<String>) -> Store {
        self.protected_aliases = aliases;
        self
    }

    /// Records a decision on a version: a request for review, an approval (never by its
    /// creator), or a rejection (which stands until the same person approves).
    pub fn decide(
        &self,
        actor: &str,
        name: &str,
        version: &str,
        decision: Decision,
        comment: &str,
    ) -> Result<ApprovalStatus, StoreError> {
        let number = parse_version(version)?;
        self.write(actor, decision.as_str(), name, version, |db| {
            let creator = read_model_version(db, name, number)?.user_id;
            if decision == Decision::Approve && !creator.is_empty() && creator == actor {
                return Err(StoreError::PermissionDenied(format!(
                    "{actor} created version {version} of '{name}' and cannot approve it; another person must"
                )));
            }
            db.execute(
                "INSERT INTO approval_decisions (name, version, user_id, decision, comment, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, number, actor, decision.as_str(), comment, now_ms()],
            )?;
            Ok((approval_status(db, name, number)?, String::new(), comment.to_owned()))
        })
    }

    pub fn approval_status(&self, name: &str, version: &str) -> Result<ApprovalStatus, StoreError> {
        let number = parse_version(version)?;
        self.with(|db| approval_status(db, name, number))
    }

    /// The recorded artifact digest of a version.
    pub fn artifact_sha256(&self, name: &str, version: &str) -> Result<String, StoreError> {
        let number = parse_version(version)?;
        self.with(|db| {
            read_model_version(db, name, number)?;
            Ok(db.query_row(
                "SELECT sha256 FROM model_versions WHERE name = ?1 AND version = ?2",
                params![name, number],
                |r| r.get(0),
            )?)
        })
    }

    /// Sets how many approvals (from people other than the creator) a model's versions need.
    pub fn set_required_approvals(
        &self,
        actor: &str,
        name: &str,
        required: u32,
    ) -> Result<(), StoreError> {
        if required == 0 {
            return Err(StoreError::InvalidParameter(
                "required_approvals must be at least 1".to_owned(),
            ));
        }
        self.write(actor, "set_approval_policy", name, "", |db| {
            require_model(db, name)?;
            let before = required_approvals(db, name)?;
            db.execute("INSERT OR REPLACE INTO approval_policies (name, required_approvals) VALUES (?1, ?2)", params![name, required])?;
            Ok(((), before.to_string(), required.to_string()))
        })
    }

    /// Audit entries, newest first, optionally for one model, action or user.
    pub fn audit(
        &self,
        model: Option<&str>,
        action: Option<&str>,
        user: Option<&str>,
        max_results: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|db| {
            let mut statement = db.prepare(
                "SELECT id, timestamp, user_id, action, model, version, before, after FROM audit_log
                 WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR user_id = ?3)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = statement.query_map(params![model, action, user, max_results as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    timestamp: r.get(1)?,
                    user: r.get(2)?,
                    action: r.get(3)?,
                    model: r.get(4)?,
                    version: r.get(5)?,
                    before: r.get(6)?,
                    after: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Runs a change and appends its audit entry in one transaction: the log holds exactly the
    /// changes that happened. `work` returns its result and the entry's before/after.
    fn write<T>(
        &self,
        actor: &str,
        action: &str,
        model: &str,
        version: &str,
        work: impl FnOnce(&rusqlite::Transaction) -> Result<(T, String, String), StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let (result, before, after) = work(&tx)?;
            tx.execute(
                "INSERT INTO audit_log (timestamp, user_id, action, model, version, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![now_ms(), actor, action, model, version, before, after],
            )?;
            tx.commit()?;
            Ok(result)
        })
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut db)
    }

    pub fn create_registered_model(
        &self,
        actor: &str,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel, StoreError> {
        check_name(name)?;
        self.write(actor, "create_registered_model", name, "", |tx| {
            let inserted = tx.execute(
                "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (?1, ?2, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name, now_ms(), description],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("Registered Model (name={name}) already exists.")));
            }
            for tag in tags {
                tx.execute("INSERT OR REPLACE INTO registered_model_tags (name, key, value) VALUES (?1, ?2, ?3)", params![name, tag.key, tag.value])?;
            }
            Ok(((), String::new(), description.to_owned()))
        })?;
        self.get_registered_model(name)
    }

    pub fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, StoreError> {
        self.with(|db| read_registered_model(db, name))
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
            if db.query_row("SELECT 1 FROM registered_models WHERE name = ?1", [new_name], |_| Ok(())).optional()?.is_some() {
                return Err(StoreError::AlreadyExists(format!("Registered Model (name={new_name}) already exists.")));
            }
            db.execute("UPDATE registered_models SET name = ?2, last_updated_timestamp = ?3 WHERE name = ?1", params![name, new_name, now_ms()])?;
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
            db.execute("UPDATE registered_models SET description = ?2, last_updated_timestamp = ?3 WHERE name = ?1", params![name, description, now_ms()])?;
            Ok((read_registered_model(db, name)?, before, description.to_owned()))
        })
    }

    pub fn delete_registered_model(&self, actor: &str, name: &str) -> Result<(), StoreError> {
        self.write(actor, "delete_registered_model", name, "", |db| {
            require_model(db, name)?;
            db.execute("DELETE FROM registered_models WHERE name = ?1", [name])?;
            Ok(((), name.to_owned(), String::new()))
        })
    }

    /// Registered models whose name matches a SQL LIKE pattern (MLflow's `name LIKE '…'` and
    /// `name = '…'` filters), in name order, paged by offset tokens.
    /// Registered models matching a filter, in name order, paged by offset tokens.
    pub fn search_registered_models(
        &self,
        filter: &Filter,
        max_results: usize,
        offset: usize,
    ) -> Result<(Vec<RegisteredModel>, Option<usize>), StoreError> {
        let (condition, mut values) =
            filter.to_sql("registered_models", "registered_model_tags", &["name"]);
        values.extend([(max_results + 1).to_string(), offset.to_string()]);
        self.with(|db| {
            let sql = format!("SELECT name FROM registered_models WHERE {condition} ORDER BY name LIMIT ? OFFSET ?");
            let names: Vec<String> = db.prepare(&sql)?.query_map(params_from_iter(&values), |row| row.get(0))?.collect::<Result<_, _>>()?;
            let more = names.len() > max_results;
            let models = names.iter().take(max_results).map(|n| read_registered_model(db, n)).collect::<Result<_, _>>()?;
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
            let before = tag_value(db, "SELECT value FROM registered_model_tags WHERE name = ?1 AND key = ?2", params![name, tag.key])?;
            db.execute("INSERT OR REPLACE INTO registered_model_tags (name, key, value) VALUES (?1, ?2, ?3)", params![name, tag.key, tag.value])?;
            Ok(((), format!("{}={before}", tag.key), format!("{}={}", tag.key, tag.value)))
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
            let before = tag_value(
                db,
                "SELECT value FROM registered_model_tags WHERE name = ?1 AND key = ?2",
                params![name, key],
            )?;
            db.execute(
                "DELETE FROM registered_model_tags WHERE name = ?1 AND key = ?2",
                params![name, key],
            )?;
            Ok(((), format!("{key}={before}"), String::new()))
        })
    }

    pub fn create_model_version(
        &self,
        actor: &str,
        name: &str,
        new: &NewVersion,
    ) -> Result<ModelVersion, StoreError> {
        let version = self.with(|db| {
            require_model(db, name)?;
            Ok(db.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )?)
        })?;
        self.write(actor, "create_model_version", name, &version.to_string(), |tx| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO model_versions (name, version, creation_timestamp, last_updated_timestamp, user_id, description, source, run_id, sha256)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![name, version, now, actor, new.description, new.source, new.run_id, new.sha256],
            )?;
            for tag in &new.tags {
                tx.execute("INSERT OR REPLACE INTO model_version_tags (name, version, key, value) VALUES (?1, ?2, ?3, ?4)", params![name, version, tag.key, tag.value])?;
            }
            tx.execute("UPDATE registered_models SET last_updated_timestamp = ?2 WHERE name = ?1", params![name, now])?;
            Ok(((), String::new(), new.source.clone()))
        })?;
        self.get_model_version(name, &version.to_string())
    }

    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion, StoreError> {
        self.with(|db| read_model_version(db, name, parse_version(version)?))
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
            db.execute("UPDATE model_versions SET description = ?3, last_updated_timestamp = ?4 WHERE name = ?1 AND version = ?2", params![name, number, description, now_ms()])?;
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

    /// Versions of the models named like `pattern` (LIKE), newest first.
    /// Versions matching a filter, by name then newest first.
    pub fn search_model_versions(
        &self,
        filter: &Filter,
        max_results: usize,
        offset: usize,
    ) -> Result<(Vec<ModelVersion>, Option<usize>), StoreError> {
        let (condition, mut values) =
            filter.to_sql("model_versions", "model_version_tags", &["name", "version"]);
        values.extend([(max_results + 1).to_string(), offset.to_string()]);
        self.with(|db| {
            let sql = format!("SELECT name, version FROM model_versions WHERE {condition} ORDER BY name, version DESC LIMIT ? OFFSET ?");
            let keys: Vec<(String, i64)> = db
                .prepare(&sql)?
                .query_map(params_from_iter(&values), |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let more = keys.len() > max_results;
            let versions = keys.iter().take(max_results).map(|(n, v)| read_model_version(db, n, *v)).collect::<Result<_, _>>()?;
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
            let before = tag_value(db, "SELECT value FROM model_version_tags WHERE name = ?1 AND version = ?2 AND key = ?3", params![name, number, tag.key])?;
            db.execute("INSERT OR REPLACE INTO model_version_tags (name, version, key, value) VALUES (?1, ?2, ?3, ?4)", params![name, number, tag.key, tag.value])?;
            Ok(((), format!("{}={before}", tag.key), format!("{}={}", tag.key, tag.value)))
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
            let before = tag_value(db, "SELECT value FROM model_version_tags WHERE name = ?1 AND version = ?2 AND key = ?3", params![name, number, key])?;
            db.execute("DELETE FROM model_version_tags WHERE name = ?1 AND version = ?2 AND key = ?3", params![name, number, key])?;
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
                    params![name, number, now, stage],
                )?;
            }
            db.execute("UPDATE model_versions SET current_stage = ?3, last_updated_timestamp = ?4 WHERE name = ?1 AND version = ?2", params![name, number, stage, now])?;
            Ok((read_model_version(db, name, number)?, before, (*stage).to_owned()))
        })
    }

    /// Points an alias at a version. A protected alias may point only at an approved version; the
    /// refusal says what approval is missing.
    pub fn set_alias(
        &self,
        actor: &str,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let number = parse_version(version)?;
        if alias.is_empty() || alias.parse::<u64>().is_ok() || alias.eq_ignore_ascii_case("latest")
        {
            return Err(StoreError::InvalidParameter(format!(
                "alias '{alias}' is reserved or empty; aliases cannot be numbers or 'latest'"
            )));
        }
        let protected = self.protected_aliases.iter().any(|p| p == alias);
        self.write(actor, "set_alias", name, version, |db| {
            read_model_version(db, name, number)?;
            if protected {
                let status = approval_status(db, name, number)?;
                if !status.approved {
                    return Err(StoreError::PermissionDenied(format!(
                        "alias '{alias}' is protected and version {version} of '{name}' is not approved: {}",
                        status.explain()
                    )));
                }
            }
            let before: Option<i64> = db
                .query_row("SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2", params![name, alias], |r| r.get(0))
                .optional()?;
            db.execute("INSERT OR REPLACE INTO registered_model_aliases (name, alias, version) VALUES (?1, ?2, ?3)", params![name, alias, number])?;
            Ok(((), format!("{alias}={}", before.map(|v| v.to_string()).unwrap_or_default()), format!("{alias}={number}")))
        })
    }

    pub fn get_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, StoreError> {
        self.with(|db| {
            require_model(db, name)?;
            let version: Option<i64> = db
                .query_row(
                    "SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()?;
            let version = version.ok_or_else(|| {
                StoreError::InvalidParameter(format!("Registered model alias {alias} not found."))
            })?;
            read_model_version(db, name, version)
        })
    }

    pub fn delete_alias(&self, actor: &str, name: &str, alias: &str) -> Result<(), StoreError> {
        self.write(actor, "delete_alias", name, "", |db| {
            require_model(db, name)?;
            let before: Option<i64> = db
                .query_row(
                    "SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()?;
            db.execute(
                "DELETE FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
                params![name, alias],
            )?;
            Ok((
                (),
                format!(
                    "{alias}={}",
                    before.map(|v| v.to_string()).unwrap_or_default()
                ),
                String::new(),
            ))
        })
    }
}

fn migrate(db: &Connection) -> Result<(), StoreError> {
    db.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let applied: i64 = db.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for (index, step) in SCHEMA.iter().enumerate().skip(applied as usize) {
        db.execute_batch(&format!(
            "BEGIN; {step}; INSERT INTO schema_version (version) VALUES ({}); COMMIT;",
            index + 1
        ))?;
    }
    Ok(())
}

fn tag_value(
    db: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> Result<String, StoreError> {
    Ok(db
        .query_row(sql, values, |r| r.get::<_, String>(0))
        .optional()?
        .unwrap_or_default())
}

fn required_approvals(db: &Connection, name: &str) -> Result<u32, StoreError> {
    Ok(db
        .query_row(
            "SELECT required_approvals FROM approval_policies WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(1))
}

/// Each person's latest decision counts; the creator's approvals never do.
fn approval_status(
    db: &Connection,
    name: &str,
    version: i64,
) -> Result<ApprovalStatus, StoreError> {
    let creator = read_model_version(db, name, version)?.user_id;
    let mut latest: Vec<(String, String)> = Vec::new();
    let mut requested_by = Vec::new();
    let mut statement = db.prepare("SELECT user_id, decision FROM approval_decisions WHERE name = ?1 AND version = ?2 ORDER BY id")?;
    for row in statement.query_map(params![name, version], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })? {
        let (user, decision) = row?;
        if decision == "request" {
            if !requested_by.contains(&user) {
                requested_by.push(user);
            }
            continue;
        }
        latest.retain(|(u, _)| *u != user);
        latest.push((user, decision));
    }
    let approved_by: Vec<String> = latest
        .iter()
        .filter(|(u, d)| d == "approve" && *u != creator)
        .map(|(u, _)| u.clone())
        .collect();
    let rejected_by: Vec<String> = latest
        .iter()
        .filter(|(_, d)| d == "reject")
        .map(|(u, _)| u.clone())
        .collect();
    let required = required_approvals(db, name)?;
    Ok(ApprovalStatus {
        name: name.to_owned(),
        version: version.to_string(),
        approved: rejected_by.is_empty() && approved_by.len() >= required as usize,
        creator,
        required_approvals: required,
        approved_by,
        rejected_by,
        requested_by,
    })
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

fn parse_version(version: &str) -> Result<i64, StoreError> {
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

fn require_model(db: &Connection, name: &str) -> Result<(), StoreError> {
    db.query_row(
        "SELECT 1 FROM registered_models WHERE name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("Registered Model with name={name} not found")))
}

fn read_registered_model(db: &Connection, name: &str) -> Result<RegisteredModel, StoreError> {
    let row = db
        .query_row(
            "SELECT name, creation_timestamp, last_updated_timestamp, description FROM registered_models WHERE name = ?1",
            [name],
            |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("Registered Model with name={name} not found")))?;
    let tags = db
        .prepare("SELECT key, value FROM registered_model_tags WHERE name = ?1 ORDER BY key")?
        .query_map([name], |r| {
            Ok(Tag {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let aliases = db
        .prepare(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?1 ORDER BY alias",
        )?
        .query_map([name], |r| {
            Ok(Alias {
                alias: r.get(0)?,
                version: r.get::<_, i64>(1)?.to_string(),
            })
        })?
        .collect::<Result<_, _>>()?;
    // MLflow's latest_versions: the newest version in each stage.
    let latest: Vec<i64> = db
        .prepare("SELECT MAX(version) FROM model_versions WHERE name = ?1 GROUP BY current_stage")?
        .query_map([name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let latest_versions = latest
        .into_iter()
        .map(|v| read_model_version(db, name, v))
        .collect::<Result<_, _>>()?;
    Ok(RegisteredModel {
        name: row.0,
        creation_timestamp: row.1,
        last_updated_timestamp: row.2,
        description: row.3,
        tags,
        aliases,
        latest_versions,
    })
}

fn read_model_version(
    db: &Connection,
    name: &str,
    version: i64,
) -> Result<ModelVersion, StoreError> {
    let missing = || {
        StoreError::NotFound(format!(
            "Model Version (name={name}, version={version}) not found"
        ))
    };
    let mut model_version = db
        .query_row(
            "SELECT creation_timestamp, last_updated_timestamp, user_id, current_stage, description, source, run_id
             FROM model_versions WHERE name = ?1 AND version = ?2",
            params![name, version],
            |r| {
                Ok(ModelVersion {
                    name: name.to_owned(),
                    version: version.to_string(),
                    creation_timestamp: r.get(0)?,
                    last_updated_timestamp: r.get(1)?,
                    user_id: r.get(2)?,
                    current_stage: r.get(3)?,
                    description: r.get(4)?,
                    source: r.get(5)?,
                    run_id: r.get(6)?,
                    status: "READY".to_owned(),
                    tags: Vec::new(),
                    aliases: Vec::new(),
                })
            },
        )
        .optional()?
        .ok_or_else(missing)?;
    model_version.tags = db
        .prepare("SELECT key, value FROM model_version_tags WHERE name = ?1 AND version = ?2 ORDER BY key")?
        .query_map(params![name, version], |r| Ok(Tag { key: r.get(0)?, value: r.get(1)? }))?
        .collect::<Result<_, _>>()?;
    model_version.aliases = db
        .prepare("SELECT alias FROM registered_model_aliases WHERE name = ?1 AND version = ?2 ORDER BY alias")?
        .query_map(params![name, version], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(model_version)
}

#[cfg(test)]
mod tests;
