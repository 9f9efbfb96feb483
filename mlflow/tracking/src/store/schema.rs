//! The tracking tables, and how the search language maps onto the three searched ones.

use weir_sql::Migration;

use crate::filter::{Kind, Schema};

/// The tables, in SQL both engines read; `latest_metrics` is the searched copy of each run's
/// latest value per metric, so no search reads the history.
pub(super) const SCHEMA: &[Migration] = &[Migration::same(
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

/// What a run search may name (`start_time` is also `created`).
pub(super) const RUNS: Schema = Schema {
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

/// What an experiment search may name: attributes and tags (experiments have no metrics or
/// params).
pub(super) const EXPERIMENTS: Schema = Schema {
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

/// What a logged-model search may name, under MLflow 3's attribute names and aliases.
pub(super) const LOGGED_MODELS: Schema = Schema {
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
