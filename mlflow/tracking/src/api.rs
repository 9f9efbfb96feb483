//! MLflow's tracking REST API over [`TrackingStore`], as the official client 3.x calls it.
//!
//! Numbers the client may send as JSON strings (protobuf's int64 and non-finite doubles) are
//! read either way; ids go back as strings. Errors are `{"error_code", "message"}` with MLflow's
//! codes ([`weir_mlflow_wire::MlflowError`]), and a client mistake is never a 5xx (the client
//! retries those). Requests are read and paged by [`weir_mlflow_wire::request`], as the
//! registry's are; the handlers live one file per part of the API.

mod experiments;
mod fields;
mod logged_models;
mod run_data;
mod runs;

use std::sync::Arc;

use axum::extract::State;
use axum::Router;
use serde::Serialize;
use serde_json::json;
use weir_mlflow_wire::request::{blocking, ok, Answer};
use weir_mlflow_wire::{Access, Endpoint, Role, Routes};

use crate::store::TrackingStore;
use crate::TrackingError;

/// The state every tracking handler shares.
pub struct Tracking {
    pub store: TrackingStore,
}

/// Runs `work` on the store off the async threads and answers `{ key: what it returned }`,
/// the shape of MLflow's answers that carry one object.
async fn answer<T: Serialize + Send + 'static>(
    tracking: &Arc<Tracking>,
    key: &str,
    work: impl FnOnce(&TrackingStore) -> Result<T, TrackingError> + Send + 'static,
) -> Answer {
    let value = blocking(tracking, move |t: &Tracking| work(&t.store)).await?;
    ok(json!({ key: value }))
}

/// Runs `work` on the store off the async threads and answers `{}`, as MLflow answers a change
/// (or a check) that returns nothing.
async fn done<T: Send + 'static>(
    tracking: &Arc<Tracking>,
    work: impl FnOnce(&TrackingStore) -> Result<T, TrackingError> + Send + 'static,
) -> Answer {
    blocking(tracking, move |t: &Tracking| work(&t.store)).await?;
    ok(json!({}))
}

/// The tracking routes with what each needs of its caller, state applied; the server puts one
/// [`weir_mlflow_wire::AccessLayer`] in front of these and the registry's together. Reading
/// needs a reader; everything that writes (runs, metrics, logged models, soft deletes that
/// `restore` undoes) a submitter.
pub fn routes(tracking: Arc<Tracking>) -> (Router, Vec<Endpoint>) {
    let read = Access::Needs(Role::Reader);
    let write = Access::Needs(Role::Submitter);
    let at = |path: &str| format!("/api/2.0/mlflow/{path}");
    let (router, endpoints) = Routes::new()
        .post(&at("experiments/create"), write, experiments::create)
        .get(&at("experiments/get"), read, experiments::get)
        .get(
            &at("experiments/get-by-name"),
            read,
            experiments::get_by_name,
        )
        .post(&at("experiments/search"), read, experiments::search)
        .get(&at("experiments/search"), read, experiments::search)
        .post(&at("experiments/update"), write, experiments::update)
        .post(&at("experiments/delete"), write, |State(t), bytes| {
            experiments::lifecycle(t, bytes, true)
        })
        .post(&at("experiments/restore"), write, |State(t), bytes| {
            experiments::lifecycle(t, bytes, false)
        })
        .post(
            &at("experiments/set-experiment-tag"),
            write,
            experiments::set_tag,
        )
        .post(
            &at("experiments/delete-experiment-tag"),
            write,
            experiments::delete_tag,
        )
        .post(&at("runs/create"), write, runs::create)
        .get(&at("runs/get"), read, runs::get)
        .post(&at("runs/update"), write, runs::update)
        .post(&at("runs/delete"), write, |State(t), bytes| {
            runs::lifecycle(t, bytes, true)
        })
        .post(&at("runs/restore"), write, |State(t), bytes| {
            runs::lifecycle(t, bytes, false)
        })
        .post(&at("runs/log-metric"), write, run_data::log_metric)
        .post(&at("runs/log-parameter"), write, run_data::log_param)
        .post(&at("runs/set-tag"), write, run_data::set_tag)
        .post(&at("runs/delete-tag"), write, run_data::delete_tag)
        .post(&at("runs/log-batch"), write, run_data::log_batch)
        .post(&at("runs/log-model"), write, runs::log_model)
        .post(&at("runs/log-inputs"), write, runs::log_inputs)
        .post(&at("runs/outputs"), write, runs::log_outputs)
        .post(&at("runs/search"), read, runs::search)
        .get(&at("metrics/get-history"), read, runs::metric_history)
        .post(&at("logged-models"), write, logged_models::create)
        .post(&at("logged-models/search"), read, logged_models::search)
        .get(&at("logged-models/{model_id}"), read, logged_models::get)
        .patch(
            &at("logged-models/{model_id}"),
            write,
            logged_models::finalize,
        )
        .delete(
            &at("logged-models/{model_id}"),
            write,
            logged_models::delete,
        )
        .patch(
            &at("logged-models/{model_id}/tags"),
            write,
            logged_models::set_tags,
        )
        .delete(
            &at("logged-models/{model_id}/tags/{key}"),
            write,
            logged_models::delete_tag,
        )
        .post(
            &at("logged-models/{model_id}/params"),
            write,
            logged_models::log_params,
        )
        .into_parts();
    (router.with_state(tracking), endpoints)
}

#[cfg(test)]
mod tests;
