//! The registry's tables, as migrations `weir-sql` applies in order.

use weir_sql::Migration;

/// The registry's schema, step by step; steps are append-only.
pub(super) const SCHEMA: &[Migration] = &[
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
