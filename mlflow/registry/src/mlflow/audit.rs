//! The audit log's handler (`/api/2.0/weir/audit/list`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use serde_json::json;
use weir_mlflow_wire::request::{blocking, ok, Answer};

use super::requests::page_size;
use super::Registry;

/// `GET /api/2.0/weir/audit/list?name=&action=&user=&max_results=`, newest first.
pub(super) async fn audit(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let max = page_size(&query)?;
    let events = blocking(&registry, move |r| {
        r.store.audit(
            query.get("name").map(String::as_str),
            query.get("action").map(String::as_str),
            query.get("user").map(String::as_str),
            max,
        )
    })
    .await?;
    ok(json!({ "events": events }))
}
