//! The admin API under `/admin/v1/`: route status, canary percentage, promote, rollback,
//! explicit weights, replicas, and progressive rollouts. Served on its own listener
//! (`--admin-port`), never on the data port. With a token configured every call needs
//! `Authorization: Bearer TOKEN`.
//!
//! HTTP only: each handler checks the token, reads its body and calls the weight operations
//! ([`crate::control`]) or the rollout driver ([`crate::rollout`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::bearer_matches;
use crate::control::ControlError;
use crate::proxy::{error, json_response};
use crate::rollout::RolloutPlan;
use crate::Router;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("invalid request body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("the admin API needs Authorization: Bearer <token>")]
    Unauthorized,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::Control(ControlError::NotFound(_)) => StatusCode::NOT_FOUND,
            AdminError::Control(ControlError::Invalid(_)) | AdminError::Body(_) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::Control(ControlError::Conflict(_) | ControlError::Stale) => {
                StatusCode::CONFLICT
            }
            AdminError::Control(ControlError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        error(status, self.to_string())
    }
}

fn authorized(router: &Router, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &router.admin_token else {
        return Ok(());
    };
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if bearer_matches(token, given) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, AdminError> {
    Ok(serde_json::from_slice(bytes)?)
}

type Answer = Result<Response, AdminError>;

fn done(router: &Router, model: &str) -> Answer {
    Ok(json_response(StatusCode::OK, &router.status(model)?))
}

async fn list(State(router): State<Arc<Router>>, headers: HeaderMap) -> Answer {
    authorized(&router, &headers)?;
    Ok(json_response(StatusCode::OK, &router.routes_summary()))
}

async fn status(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    done(&router, &model)
}

#[derive(Deserialize)]
struct CanaryBody {
    percent: u32,
}

async fn canary(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: CanaryBody = body(&bytes)?;
    router.cancel_rollout(&model, "the canary was set by hand");
    router
        .set_canary(&model, request.percent, "canary set")
        .await?;
    done(&router, &model)
}

async fn promote(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "promoted by hand");
    router.promote(&model, "promoted").await?;
    done(&router, &model)
}

async fn rollback(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "rolled back by hand");
    router.rollback(&model).await?;
    done(&router, &model)
}

#[derive(Deserialize)]
struct WeightsBody {
    /// Version → weight; the order of a JSON object is not kept, so the stable version stays
    /// first when it is named.
    weights: HashMap<String, u32>,
}

async fn weights(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: WeightsBody = body(&bytes)?;
    let weights = router.in_route_order(&model, request.weights);
    router.cancel_rollout(&model, "weights were set by hand");
    router.set_weights(&model, weights, "weights set").await?;
    done(&router, &model)
}

async fn start_rollout(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let plan: RolloutPlan = body(&bytes)?;
    plan.validate()?;
    router.stable_and_true_canary(&model)?;
    router.cancel_rollout(&model, "a new rollout started");
    router.start_rollout(&model, plan).await?;
    done(&router, &model)
}

async fn stop_rollout(
    State(router): State<Arc<Router>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorized(&router, &headers)?;
    router.cancel_rollout(&model, "stopped by hand; weights stay where they are");
    router.publish_rollouts().await?;
    done(&router, &model)
}

#[derive(Deserialize)]
struct EndpointsBody {
    /// URLs, or `{"url": …, "grpc_port": …}` objects for replicas with a gRPC port of their own.
    #[serde(default)]
    add: Vec<crate::config::EndpointConfig>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn endpoints(
    State(router): State<Arc<Router>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    authorized(&router, &headers)?;
    let request: EndpointsBody = body(&bytes)?;
    router.change_endpoints(&model, &version, &request.add, &request.remove)?;
    done(&router, &model)
}

pub fn routes() -> axum::Router<Arc<Router>> {
    axum::Router::new()
        .route("/admin/v1/routes", get(list))
        .route("/admin/v1/routes/{model}", get(status))
        .route("/admin/v1/routes/{model}/canary", post(canary))
        .route("/admin/v1/routes/{model}/promote", post(promote))
        .route("/admin/v1/routes/{model}/rollback", post(rollback))
        .route("/admin/v1/routes/{model}/weights", post(weights))
        .route(
            "/admin/v1/routes/{model}/versions/{version}/endpoints",
            post(endpoints),
        )
        .route(
            "/admin/v1/routes/{model}/rollout",
            post(start_rollout).delete(stop_rollout),
        )
}
