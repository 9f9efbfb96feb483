//! Registry storage: registered models, versions, tags, aliases, approvals and the audit log,
//! on SQLite (embedded default) or PostgreSQL through `weir-sql`.
//!
//! Every change and its audit entry commit in one transaction, so the log holds exactly the
//! changes that happened, and a change is acknowledged only once it is durable: a `kill -9`
//! loses nothing acknowledged. Names cascade on rename through foreign keys, so a rename is one
//! statement.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_sql::{params, Database, Migration, Row, Sql, SqlError, Value};

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

impl From<SqlError> for StoreError {
    fn from(err: SqlError) -> Self {
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
    /// The MLflow 3 logged model this version was registered from, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model_id: String,
    /// Where the files are: the source itself, or for a `models:/<model_id>` source the logged
    /// model's artifact location.
    pub storage_location: String,
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
    pub model_id: String,
    /// Where the files are, when that differs from `source` (see [`ModelVersion`]).
    pub storage_location: String,
    /// The files copied into content-addressed storage at registration (see `versions`);
    /// recorded with the version in one transaction. Empty for sources outside the store.
    pub files: Vec<VersionFile>,
}

/// One file of a registered version: where it sits in the version, and the blob (by sha256)
/// holding its bytes, which no artifact write can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// The registry's schema, step by step; steps are append-only.
const SCHEMA: &[Migration] = &[
    // 1: the registry tables.
    Migration::same(
        "CREATE TABLE registered_models (
            name TEXT PRIMARY KEY,
            creation_timestamp BIGINT NOT NULL,
            last_updated_timestamp BIGINT NOT NULL,
            description TEXT NOT NULL DEFAULT '');
         CREATE TABLE registered_model_tags (
            name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
            key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name, key));
         CREATE TABLE model_versions (
            name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
            version BIGINT NOT NULL,
            creation_timestamp BIGINT NOT NULL,
            last_updated_timestamp BIGINT NOT NULL,
            user_id TEXT NOT NULL DEFAULT '',
            current_stage TEXT NOT NULL DEFAULT 'None',
            description TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            run_id TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (name, version));
         CREATE TABLE model_version_tags (
            name TEXT NOT NULL, version BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (name, version, key),
            FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE registered_model_aliases (
            name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
            alias TEXT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (name, alias));",
    ),
    // 2: approvals and the append-only audit log.
    Migration {
        sqlite: "CREATE TABLE approval_policies (
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
        postgres: "CREATE TABLE approval_policies (
            name TEXT PRIMARY KEY REFERENCES registered_models(name) ON DELETE CASCADE ON UPDATE CASCADE,
            required_approvals BIGINT NOT NULL);
         CREATE TABLE approval_decisions (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL, version BIGINT NOT NULL, user_id TEXT NOT NULL,
            decision TEXT NOT NULL, comment TEXT NOT NULL, timestamp BIGINT NOT NULL,
            FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE audit_log (
            id BIGSERIAL PRIMARY KEY,
            timestamp BIGINT NOT NULL, user_id TEXT NOT NULL, action TEXT NOT NULL,
            model TEXT NOT NULL, version TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL);
         CREATE FUNCTION weir_audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
         CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION weir_audit_log_is_append_only();
         CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION weir_audit_log_is_append_only();",
    },
    // 3: the digest of each version's artifact files, computed by the registry at registration.
    Migration::same("ALTER TABLE model_versions ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''"),
    // 4: versions registered from MLflow 3 logged models (`models:/<model_id>`).
    Migration::same(
        "ALTER TABLE model_versions ADD COLUMN model_id TEXT NOT NULL DEFAULT '';
         ALTER TABLE model_versions ADD COLUMN storage_location TEXT NOT NULL DEFAULT '';",
    ),
    // 5: each version's files, by the content-addressed blob holding them: downloads of a
    // version read these, never the (mutable) source path. Renames and deletes cascade.
    Migration::same(
        "CREATE TABLE version_files (
            name TEXT NOT NULL, version BIGINT NOT NULL, path TEXT NOT NULL,
            sha256 TEXT NOT NULL, size BIGINT NOT NULL,
            PRIMARY KEY (name, version, path),
            FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE INDEX version_files_by_sha256 ON version_files (sha256);",
    ),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The stages MLflow's (legacy) stage transitions know.
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

pub struct Store {
    db: Arc<Database>,
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
    /// Opens (creating if needed) the registry at a database URL (`sqlite://PATH`,
    /// `postgres://…`) and brings its schema up to date.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::new(Arc::new(Database::open(url)?))
    }

    /// The registry on a database other stores (tracking) share.
    pub fn new(db: Arc<Database>) -> Result<Store, StoreError> {
        db.migrate("schema_version", SCHEMA)?;
        Ok(Store {
            db,
            protected_aliases: vec!["production".to_owned(), "champion".to_owned()],
        })
    }

    /// Replaces the default protected aliases (`production`, `champion`).
    pub fn with_protected_aliases(mut self, aliases: Vec<String>) -> Store {
        self.protected_aliases = aliases;
        self
    }

    /// Whether an alias may point only at approved (and servable) versions.
    pub fn is_protected(&self, alias: &str) -> bool {
        self.protected_aliases.iter().any(|p| p == alias)
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
        self.read(|db| approval_status(db, name, number))
    }

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
            db.execute(
                "INSERT INTO approval_policies (name, required_approvals) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET required_approvals = excluded.required_approvals",
                params![name, required],
            )?;
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
        self.read(|db| {
            let rows = db.query(
                "SELECT id, timestamp, user_id, action, model, version, before, after FROM audit_log
                 WHERE (CAST(?1 AS TEXT) IS NULL OR model = ?1) AND (CAST(?2 AS TEXT) IS NULL OR action = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR user_id = ?3)
                 ORDER BY id DESC LIMIT ?4",
                params![model, action, user, max_results],
            )?;
            rows.iter()
                .map(|r| {
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
                })
                .collect()
        })
    }

    /// Appends an audit entry for something that is not a registry change in itself: an
    /// artifact write or delete, or a refused request, so the log shows who tried what.
    pub fn record_event(
        &self,
        actor: &str,
        action: &str,
        model: &str,
        version: &str,
        before: &str,
        after: &str,
    ) -> Result<(), StoreError> {
        self.db.transaction(|db: &mut dyn Sql| {
            append_audit(db, actor, action, model, version, before, after)
        })
    }

    /// Runs a change and appends its audit entry in one transaction. `work` returns its result
    /// and the entry's before/after.
    fn write<T>(
        &self,
        actor: &str,
        action: &str,
        model: &str,
        version: &str,
        work: impl FnOnce(&mut dyn Sql) -> Result<(T, String, String), StoreError>,
    ) -> Result<T, StoreError> {
        self.db.transaction(|db: &mut dyn Sql| {
            let (result, before, after) = work(db)?;
            append_audit(db, actor, action, model, version, &before, &after)?;
            Ok(result)
        })
    }

    fn read<T>(
        &self,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.db.transaction(work)
    }

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
            let rows = db.query(&sql, &page_values(values, max_results, offset))?;
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

    /// Adds the next version number; numbering and the audit entry commit together, so two
    /// registrations at once get distinct numbers.
    pub fn create_model_version(
        &self,
        actor: &str,
        name: &str,
        new: &NewVersion,
    ) -> Result<ModelVersion, StoreError> {
        self.db.transaction(|db: &mut dyn Sql| {
            require_model(db, name)?;
            let version: i64 = db
                .query_value(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                    params![name],
                )?
                .unwrap_or(1);
            let now = now_ms();
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
            db.execute(
                "UPDATE registered_models SET last_updated_timestamp = ?2 WHERE name = ?1",
                params![name, now],
            )?;
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
            let rows = db.query(&sql, &page_values(values, max_results, offset))?;
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
        let protected = self.is_protected(alias);
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
            let before = alias_version(db, name, alias)?;
            db.execute(
                "INSERT INTO registered_model_aliases (name, alias, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                params![name, alias, number],
            )?;
            Ok(((), format!("{alias}={}", before.map(|v| v.to_string()).unwrap_or_default()), format!("{alias}={number}")))
        })
    }

    pub fn get_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, StoreError> {
        self.read(|db| {
            require_model(db, name)?;
            let version = alias_version(db, name, alias)?.ok_or_else(|| {
                StoreError::InvalidParameter(format!("Registered model alias {alias} not found."))
            })?;
            read_model_version(db, name, version)
        })
    }

    pub fn delete_alias(&self, actor: &str, name: &str, alias: &str) -> Result<(), StoreError> {
        self.write(actor, "delete_alias", name, "", |db| {
            require_model(db, name)?;
            let before = alias_version(db, name, alias)?;
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

fn append_audit(
    db: &mut dyn Sql,
    actor: &str,
    action: &str,
    model: &str,
    version: &str,
    before: &str,
    after: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO audit_log (timestamp, user_id, action, model, version, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![now_ms(), actor, action, model, version, before, after],
    )?;
    Ok(())
}

/// A filter's values followed by the page's LIMIT (one extra row tells whether more follow) and
/// OFFSET.
fn page_values(filter_values: Vec<String>, max_results: usize, offset: usize) -> Vec<Value> {
    let mut values: Vec<Value> = filter_values.into_iter().map(Value::from).collect();
    values.extend([Value::from(max_results + 1), Value::from(offset)]);
    values
}

fn upsert_model_tag(db: &mut dyn Sql, name: &str, tag: &Tag) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO registered_model_tags (name, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
        params![name, &tag.key, &tag.value],
    )?;
    Ok(())
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

fn registered_model_tag(db: &mut dyn Sql, name: &str, key: &str) -> Result<String, StoreError> {
    Ok(db
        .query_value(
            "SELECT value FROM registered_model_tags WHERE name = ?1 AND key = ?2",
            params![name, key],
        )?
        .unwrap_or_default())
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

fn alias_version(db: &mut dyn Sql, name: &str, alias: &str) -> Result<Option<i64>, StoreError> {
    Ok(db.query_value(
        "SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2",
        params![name, alias],
    )?)
}

fn required_approvals(db: &mut dyn Sql, name: &str) -> Result<u32, StoreError> {
    Ok(db
        .query_value(
            "SELECT required_approvals FROM approval_policies WHERE name = ?1",
            params![name],
        )?
        .unwrap_or(1))
}

/// Each person's latest decision counts; the creator's approvals never do.
fn approval_status(
    db: &mut dyn Sql,
    name: &str,
    version: i64,
) -> Result<ApprovalStatus, StoreError> {
    let creator = read_model_version(db, name, version)?.user_id;
    let mut latest: Vec<(String, String)> = Vec::new();
    let mut requested_by = Vec::new();
    let rows = db.query(
        "SELECT user_id, decision FROM approval_decisions WHERE name = ?1 AND version = ?2 ORDER BY id",
        params![name, version],
    )?;
    for row in &rows {
        let (user, decision): (String, String) = (row.get(0)?, row.get(1)?);
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

fn model_exists(db: &mut dyn Sql, name: &str) -> Result<bool, StoreError> {
    Ok(db
        .query_row(
            "SELECT 1 FROM registered_models WHERE name = ?1",
            params![name],
        )?
        .is_some())
}

fn require_model(db: &mut dyn Sql, name: &str) -> Result<(), StoreError> {
    if model_exists(db, name)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!(
            "Registered Model with name={name} not found"
        )))
    }
}

fn tags(rows: Vec<Row>) -> Result<Vec<Tag>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Tag {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })
        .collect()
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

fn read_model_version(
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
