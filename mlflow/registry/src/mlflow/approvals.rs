//! The approval workflow's handlers (`/api/2.0/weir/approvals/…`): request, approve (refused for
//! a version weir cannot serve), reject, status and the per-model policy.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;
use weir_mlflow_wire::request::{blocking, body, ok, Answer};

use super::requests::name_and_version;
use super::serving::refuse_unservable;
use super::{Actor, Registry};
use crate::store::Decision;

#[derive(Deserialize)]
struct DecisionBody {
    name: String,
    version: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/2.0/weir/approvals/{request|approve|reject}` → the version's approval status.
pub(super) async fn decide(
    registry: Arc<Registry>,
    decision: Decision,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: DecisionBody = body(&bytes)?;
    let status = blocking(&registry, move |r| {
        if decision == Decision::Approve {
            refuse_unservable(r, &request.name, &request.version, "approve")?;
        }
        r.store.decide(
            &actor,
            &request.name,
            &request.version,
            decision,
            &request.comment,
        )
    })
    .await?;
    ok(json!({ "approval": status }))
}

pub(super) async fn approval_status(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, version) = name_and_version(&query)?;
    let status = blocking(&registry, move |r| r.store.approval_status(&name, &version)).await?;
    ok(json!({ "approval": status }))
}

#[derive(Deserialize)]
struct Policy {
    name: String,
    required_approvals: u32,
}

pub(super) async fn set_policy(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Policy = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store
            .set_required_approvals(&actor, &request.name, request.required_approvals)
    })
    .await?;
    ok(json!({}))
}
