//! MLflow's REST API for the model registry and artifacts (`/api/2.0/mlflow/…`,
//! `/api/2.0/mlflow-artifacts/…`); the official `mlflow` client is the judge of compatibility.
//!
//! Wire rules the client relies on (PROTOCOLS.md): versions are JSON strings, success bodies are
//! objects, errors are `{"error_code", "message"}` with MLflow's statuses, and a client mistake is
//! never a 5xx (the client retries those seven times, which looks like a hang).
//!
//! The handlers live by concern, as the store's operations do: `models`, `versions`, `aliases`,
//! `approvals`, `audit`, `serving` (what a server needs to serve a version) and `artifacts`;
//! `requests` holds the request shapes several of them read. MLflow's error answer, request
//! reading, paging and the blocking-store bridge are `weir_mlflow_wire`'s, shared with
//! tracking.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use weir_mlflow_wire::{Access, ErrorCode, Identity, MlflowError, Role};

use crate::artifacts::ArtifactStore;
use crate::error::StoreError;
use crate::store::{Decision, Store};

mod aliases;
mod approvals;
mod artifacts;
mod audit;
mod models;
mod requests;
mod serving;

/// The API's refusal of a version weir cannot serve, for other front ends (the dashboard's
/// forms) that must refuse exactly what the API refuses.
pub use serving::refuse_unservable;
mod versions;

/// The registry behind the API.
pub struct Registry {
    pub store: Store,
    pub artifacts: ArtifactStore,
    /// Finds where a source that is not a plain artifact location keeps its files: the tracking
    /// server beside the registry maps `models:/<model_id>` to the logged model's
    /// `mlflow-artifacts:/…` location. `None` when the registry runs alone.
    pub sources: Option<SourceResolver>,
}

/// Maps a version's source to the `mlflow-artifacts:/` location of its files, if it knows it.
pub type SourceResolver = Arc<dyn Fn(&str) -> Result<Option<String>, StoreError> + Send + Sync>;

/// Who is making a request: the identity the access layer (weir-mlflow-wire) established
/// for it, by its name, for the audit log and the approval rules.
pub struct Actor(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Actor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        let identity = Identity::from_request_parts(parts, state).await?;
        Ok(Actor(identity.name))
    }
}

/// Artifact sources in this registry's store.
const ARTIFACT_SCHEME: &str = "mlflow-artifacts:/";

/// Largest request body held in memory: the JSON requests. Artifact uploads (and multipart
/// parts) are streamed to the store and bounded by `ArtifactStore::max_file_bytes` instead.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The registry's routes with what each needs of its caller (docs/security.md has the table),
/// state applied; the server puts one [`weir_mlflow_wire::AccessLayer`] in front of these and
/// tracking's routes together.
pub fn routes(registry: Arc<Registry>) -> (Router, Vec<weir_mlflow_wire::Endpoint>) {
    use Role::{Admin, Approver, Reader, Submitter};
    let needs = Access::Needs;
    let api = "/api/2.0/mlflow";
    let model_api = |path: &str| format!("{api}/registered-models/{path}");
    let version_api = |path: &str| format!("{api}/model-versions/{path}");
    let decision = |decision: Decision| {
        move |State(r): State<Arc<Registry>>, actor: Actor, bytes: Bytes| {
            approvals::decide(r, decision, actor, bytes)
        }
    };
    let (router, endpoints) = weir_mlflow_wire::Routes::new()
        .get("/health", Access::Public, || async { "OK" })
        .get("/version", Access::Public, || async {
            env!("CARGO_PKG_VERSION")
        })
        .post(
            &model_api("create"),
            needs(Submitter),
            models::create_registered_model,
        )
        .get(
            &model_api("get"),
            needs(Reader),
            models::get_registered_model,
        )
        // A rename changes what every `models:/NAME@…` reference resolves to.
        .post(
            &model_api("rename"),
            needs(Admin),
            models::rename_registered_model,
        )
        .patch(
            &model_api("update"),
            needs(Submitter),
            models::update_registered_model,
        )
        .delete(
            &model_api("delete"),
            needs(Admin),
            models::delete_registered_model,
        )
        .get(
            &model_api("search"),
            needs(Reader),
            models::search_registered_models,
        )
        .post(
            &model_api("set-tag"),
            needs(Submitter),
            models::set_registered_model_tag,
        )
        .delete(
            &model_api("delete-tag"),
            needs(Submitter),
            models::delete_registered_model_tag,
        )
        // Moving an alias is a deployment decision: what `models:/NAME@ALIAS` serves.
        .post(&model_api("alias"), needs(Approver), aliases::set_alias)
        .get(&model_api("alias"), needs(Reader), aliases::get_alias)
        .delete(&model_api("alias"), needs(Approver), aliases::delete_alias)
        .post(
            &model_api("get-latest-versions"),
            needs(Reader),
            models::get_latest_versions,
        )
        .post(
            &version_api("create"),
            needs(Submitter),
            versions::create_model_version,
        )
        .get(
            &version_api("get"),
            needs(Reader),
            versions::get_model_version,
        )
        .get(
            &version_api("get-download-uri"),
            needs(Reader),
            versions::get_download_uri,
        )
        .patch(
            &version_api("update"),
            needs(Submitter),
            versions::update_model_version,
        )
        .delete(
            &version_api("delete"),
            needs(Admin),
            versions::delete_model_version,
        )
        .get(
            &version_api("search"),
            needs(Reader),
            versions::search_model_versions,
        )
        .post(
            &version_api("set-tag"),
            needs(Submitter),
            versions::set_model_version_tag,
        )
        .delete(
            &version_api("delete-tag"),
            needs(Submitter),
            versions::delete_model_version_tag,
        )
        .post(
            &version_api("transition-stage"),
            needs(Approver),
            versions::transition_stage,
        )
        .get(
            "/api/2.0/weir/approvals/get",
            needs(Reader),
            approvals::approval_status,
        )
        .post(
            "/api/2.0/weir/approvals/policy",
            needs(Admin),
            approvals::set_policy,
        )
        .post(
            "/api/2.0/weir/approvals/request",
            needs(Submitter),
            decision(Decision::Request),
        )
        .post(
            "/api/2.0/weir/approvals/approve",
            needs(Approver),
            decision(Decision::Approve),
        )
        .post(
            "/api/2.0/weir/approvals/reject",
            needs(Approver),
            decision(Decision::Reject),
        )
        .get("/api/2.0/weir/audit/list", needs(Reader), audit::audit)
        .get("/api/2.0/weir/resolve", needs(Reader), serving::resolve)
        .get(
            "/api/2.0/mlflow-artifacts/artifacts",
            needs(Reader),
            artifacts::list_artifacts,
        )
        .get(ARTIFACT_ROUTE, needs(Reader), artifacts::download_artifact)
        .put(ARTIFACT_ROUTE, needs(Submitter), artifacts::upload_artifact)
        .delete(ARTIFACT_ROUTE, needs(Admin), artifacts::delete_artifact)
        // MLflow's multipart uploads: writes, like an upload; the parts come back to weir.
        .post(
            "/api/2.0/mlflow-artifacts/mpu/create/{*path}",
            needs(Submitter),
            artifacts::create_upload,
        )
        .put(
            "/api/2.0/mlflow-artifacts/mpu/part/{*path}",
            needs(Submitter),
            artifacts::upload_part,
        )
        .post(
            "/api/2.0/mlflow-artifacts/mpu/complete/{*path}",
            needs(Submitter),
            artifacts::complete_upload,
        )
        .post(
            "/api/2.0/mlflow-artifacts/mpu/abort/{*path}",
            needs(Submitter),
            artifacts::abort_upload,
        )
        .into_parts();
    let router = router
        .fallback(|| async {
            MlflowError::new(ErrorCode::ResourceDoesNotExist, "no such endpoint").into_response()
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry);
    (router, endpoints)
}

const ARTIFACT_ROUTE: &str = "/api/2.0/mlflow-artifacts/artifacts/{*path}";

/// The registry alone behind its own access layer: for tests and for embedding without
/// tracking.
pub fn router(registry: Arc<Registry>, authenticator: weir_mlflow_wire::Authenticator) -> Router {
    let (router, endpoints) = routes(registry);
    router.layer(weir_mlflow_wire::AccessLayer::new(
        weir_mlflow_wire::EndpointTable::new(endpoints),
        authenticator,
    ))
}

#[cfg(test)]
mod tests;
