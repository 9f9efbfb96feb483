//! Registered-model handlers: create, get, rename, describe, delete, search, tags, and the
//! legacy latest-versions-by-stage.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;
use weir_mlflow_wire::request::{blocking, body, ok, query_param, required, Answer};

use super::requests::{page, search_request, tags, Describe, Named, SetTag, TagBody};
use super::{Actor, Registry};

#[derive(Deserialize)]
struct CreateModel {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<TagBody>,
}

pub(super) async fn create_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: CreateModel = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store.create_registered_model(
            &actor,
            &request.name,
            request.description.as_deref().unwrap_or(""),
            &tags(request.tags),
        )
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

pub(super) async fn get_registered_model(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let name = query_param(&query, "name")?.to_owned();
    let model = blocking(&registry, move |r| r.store.get_registered_model(&name)).await?;
    ok(json!({ "registered_model": model }))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
    new_name: String,
}

pub(super) async fn rename_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Rename = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .rename_registered_model(&actor, &request.name, &request.new_name)
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

pub(super) async fn update_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Describe = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store
            .update_registered_model(&actor, &request.name, &request.description)
    })
    .await?;
    ok(json!({ "registered_model": model }))
}

pub(super) async fn delete_registered_model(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store.delete_registered_model(&actor, &request.name)
    })
    .await?;
    ok(json!({}))
}

pub(super) async fn search_registered_models(
    State(registry): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let (filter, max, offset) = search_request(&query)?;
    let (models, next) = blocking(&registry, move |r| {
        r.store.search_registered_models(&filter, max, offset)
    })
    .await?;
    ok(page("registered_models", json!(models), next))
}

pub(super) async fn set_registered_model_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: SetTag = body(&bytes)?;
    blocking(&registry, move |r| {
        r.store
            .set_registered_model_tag(&actor, &request.name, &request.tag())
    })
    .await?;
    ok(json!({}))
}

pub(super) async fn delete_registered_model_tag(
    State(registry): State<Arc<Registry>>,
    Actor(actor): Actor,
    bytes: Bytes,
) -> Answer {
    let request: Named = body(&bytes)?;
    let key = required(request.key, "key")?;
    blocking(&registry, move |r| {
        r.store
            .delete_registered_model_tag(&actor, &request.name, &key)
    })
    .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct LatestVersions {
    name: String,
    #[serde(default)]
    stages: Vec<String>,
}

pub(super) async fn get_latest_versions(
    State(registry): State<Arc<Registry>>,
    bytes: Bytes,
) -> Answer {
    let request: LatestVersions = body(&bytes)?;
    let model = blocking(&registry, move |r| {
        r.store.get_registered_model(&request.name)
    })
    .await?;
    let versions: Vec<_> = model
        .latest_versions
        .into_iter()
        .filter(|v| {
            request.stages.is_empty()
                || request
                    .stages
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&v.current_stage))
        })
        .collect();
    ok(json!({ "model_versions": versions }))
}
