//! Alias handlers: `models:/NAME@ALIAS` pointers; a protected alias is refused for a version
//! weir cannot serve (and, in the store, for one not approved).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde_json::json;
use weir_mlflow_wire::request::{blocking, body, ok, query_param, required, Answer};

use super::requests::Named;
use super::serving::refuse_unservable;
use super::{Actor, Registry};

pub(super) async fn set_alias(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let (alias, version) = (
        required(request.alias, "alias")?,
        required(request.version, "version")?,
    );
    blocking(&registry, move |r| {
        if r.store.is_protected(&alias) {
            let what = format!("point the protected alias '{alias}' at");
            refuse_unservable(r, &request.name, &version, &what)?;
        }
        r.store.set_alias(&actor, &request.name, &alias, &version)
    })
    .await?;
    ok(json!({}))
}

pub(super) async fn get_alias(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (name, alias) = (
        query_param(&query, "name")?.to_owned(),
        query_param(&query, "alias")?.to_owned(),
    );
    let version = blocking(&registry, move |r| {
        r.store.get_version_by_alias(&name, &alias)
    })
    .await?;
    ok(json!({ "model_version": version }))
}

pub(super) async fn delete_alias(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let alias = required(request.alias, "alias")?;
    blocking(&registry, move |r| {
        r.store.delete_alias(&actor, &request.name, &alias)
    })
    .await?;
    ok(json!({}))
}
