//! The models pages' reads: `/ui/models` (registered models), `/ui/models/{name}` (its versions
//! and audit trail) and `/ui/models/{name}/versions/{version}` (approval state, decisions with
//! comments, audit trail and the forms the viewer may use).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::Value;
use serde::{Deserialize, Serialize};
use weir_mlflow_wire::request::blocking;
use weir_mlflow_wire::MlflowError;
use weir_registry::filter::{Clause, Field, Filter, Operator};
use weir_registry::store::{ApprovalStatus, AuditEntry, ModelVersion, RegisteredModel, Tag};
use weir_registry::StoreError;

use super::view::{self, AliasView, Badge, DecisionView, RunLink, VersionRow};
use crate::page::{error_page, render, Viewer};
use crate::{Dashboard, State as AppState};

/// Models per page of `/ui/models`, versions per page of a model.
const PAGE: usize = 50;
/// Audit entries read for a model or version page.
const AUDIT_ENTRIES: usize = 200;
/// Audit entries a page shows.
const AUDIT_SHOWN: usize = 50;

/// A store refusal or failure as a page with MLflow's status for it (404 unknown, 400 bad
/// value, 403 refused).
pub(super) fn failure(viewer: &Viewer, error: &MlflowError) -> Response {
    error_page(viewer, error.code.status(), &error.message)
}

pub(super) fn unknown_version(viewer: &Viewer, name: &str, version: &str) -> Response {
    error_page(
        viewer,
        StatusCode::NOT_FOUND,
        &format!("model '{name}' has no version '{version}'"),
    )
}

/// A page offset from the query string; anything but a number is the caller's mistake, and
/// the message (for a 400 page) names it.
fn offset(text: Option<&str>) -> Result<usize, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t
            .parse()
            .map_err(|_| format!("offset must be a whole number, not '{t}'")),
    }
}

fn name_is(name: &str) -> Filter {
    Filter {
        clauses: vec![Clause {
            field: Field::Name,
            operator: Operator::Equal,
            value: name.to_owned(),
        }],
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    q: Option<String>,
    offset: Option<String>,
}

#[derive(Serialize)]
struct ModelRow {
    name: String,
    href: String,
    description: String,
    aliases: Vec<AliasView>,
    latest: Vec<VersionLink>,
    updated: i64,
}

#[derive(Serialize)]
struct VersionLink {
    version: String,
    href: String,
}

fn aliases(d: &Dashboard, model: &RegisteredModel) -> Vec<AliasView> {
    model
        .aliases
        .iter()
        .map(|a| AliasView {
            alias: a.alias.clone(),
            version: a.version.clone(),
            href: view::version_href(&model.name, &a.version),
            protected: d.registry.store.is_protected(&a.alias),
        })
        .collect()
}

/// `GET /ui/models?q=NAME-PART&offset=N`: registered models in name order.
pub(crate) async fn list(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Response {
    let offset = match offset(query.offset.as_deref()) {
        Ok(offset) => offset,
        Err(message) => return error_page(&viewer, StatusCode::BAD_REQUEST, &message),
    };
    let q = query.q.unwrap_or_default().trim().to_owned();
    let filter = if q.is_empty() {
        Filter::default()
    } else {
        Filter {
            clauses: vec![Clause {
                field: Field::Name,
                operator: Operator::ILike,
                value: format!("%{q}%"),
            }],
        }
    };
    let found = blocking(&state, move |d: &Dashboard| {
        let (models, next) = d
            .registry
            .store
            .search_registered_models(&filter, PAGE, offset)?;
        let rows: Vec<ModelRow> = models
            .iter()
            .map(|m| ModelRow {
                name: m.name.clone(),
                href: view::model_href(&m.name),
                description: m.description.clone(),
                aliases: aliases(d, m),
                latest: m
                    .latest_versions
                    .iter()
                    .map(|v| VersionLink {
                        version: v.version.clone(),
                        href: view::version_href(&m.name, &v.version),
                    })
                    .collect(),
                updated: m.last_updated_timestamp,
            })
            .collect();
        Ok::<_, StoreError>((rows, next))
    })
    .await;
    match found {
        Ok((models, next)) => {
            let next_href = next.map(|n| format!("/ui/models?q={}&offset={n}", view::segment(&q)));
            render(
                &viewer,
                "models/list.html",
                minijinja::context! { models, q, next_href },
            )
        }
        Err(error) => failure(&viewer, &error),
    }
}

/// One version as the model page's table shows it; reads its approval, digest and source run.
fn version_row(d: &Dashboard, version: &ModelVersion) -> Result<VersionRow, StoreError> {
    let store = &d.registry.store;
    let approval = store.approval_status(&version.name, &version.version)?;
    let (run, run_id) = source_run(d, version);
    Ok(VersionRow {
        version: version.version.clone(),
        href: view::version_href(&version.name, &version.version),
        source: version.source.clone(),
        run,
        run_id,
        digest: store.artifact_sha256(&version.name, &version.version)?,
        status: version.status.clone(),
        creator: version.user_id.clone(),
        created: version.creation_timestamp,
        approval: view::approval_badge(&approval),
        aliases: version.aliases.clone(),
    })
}

/// The version's source run: a link when it is a run of this server's tracking store, else
/// its bare id (a run of another server, or one since deleted).
fn source_run(d: &Dashboard, version: &ModelVersion) -> (Option<RunLink>, Option<String>) {
    match view::source_run_id(version) {
        None => (None, None),
        Some(run_id) => match d.tracking.store.get_run(&run_id) {
            Ok(run) => (Some(RunLink::new(&run.info.experiment_id, &run_id)), None),
            Err(_) => (None, Some(run_id)),
        },
    }
}

#[derive(Serialize)]
struct ModelPage {
    name: String,
    href: String,
    description: String,
    created: i64,
    updated: i64,
    tags: Vec<Tag>,
    aliases: Vec<AliasView>,
    versions: Vec<VersionRow>,
    next_href: Option<String>,
    audit: Vec<AuditRow>,
}

/// An audit entry with a link to the version it is about, if any.
#[derive(Serialize)]
pub(super) struct AuditRow {
    #[serde(flatten)]
    entry: AuditEntry,
    version_href: Option<String>,
}

fn audit_rows(entries: Vec<AuditEntry>) -> Vec<AuditRow> {
    entries
        .into_iter()
        .take(AUDIT_SHOWN)
        .map(|entry| AuditRow {
            version_href: view::version_number(&entry.version)
                .map(|_| view::version_href(&entry.model, &entry.version)),
            entry,
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct ModelQuery {
    offset: Option<String>,
}

/// `GET /ui/models/{name}?offset=N`: the model, its versions (newest first) and audit trail.
pub(crate) async fn model(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ModelQuery>,
) -> Response {
    let offset = match offset(query.offset.as_deref()) {
        Ok(offset) => offset,
        Err(message) => return error_page(&viewer, StatusCode::BAD_REQUEST, &message),
    };
    let found = blocking(&state, move |d: &Dashboard| {
        let store = &d.registry.store;
        let model = store.get_registered_model(&name)?;
        let (versions, next) = store.search_model_versions(&name_is(&name), PAGE, offset)?;
        let versions = versions
            .iter()
            .map(|v| version_row(d, v))
            .collect::<Result<Vec<_>, _>>()?;
        let audit = store.audit(Some(&name), None, None, AUDIT_SHOWN)?;
        Ok::<_, StoreError>(ModelPage {
            href: view::model_href(&model.name),
            next_href: next.map(|n| format!("{}?offset={n}", view::model_href(&model.name))),
            aliases: aliases(d, &model),
            name: model.name,
            description: model.description,
            created: model.creation_timestamp,
            updated: model.last_updated_timestamp,
            tags: model.tags,
            versions,
            audit: audit_rows(audit),
        })
    })
    .await;
    match found {
        Ok(page) => render(&viewer, "models/model.html", Value::from_serialize(&page)),
        Err(error) => failure(&viewer, &error),
    }
}

/// Everything a version page shows but the viewer-dependent parts.
#[derive(Serialize)]
pub(super) struct VersionData {
    model_name: String,
    model_href: String,
    href: String,
    version: ModelVersion,
    digest: String,
    run: Option<RunLink>,
    run_id: Option<String>,
    approval: ApprovalStatus,
    badge: Badge,
    decisions: Vec<DecisionView>,
    /// The model's aliases, for the move-alias form.
    aliases: Vec<AliasView>,
    audit: Vec<AuditRow>,
}

impl VersionData {
    pub(super) fn creator(&self) -> &str {
        &self.approval.creator
    }
}

/// Reads a version page's data; the store's not-found for an unknown model or version.
pub(super) async fn load_version(
    state: &AppState,
    name: String,
    number: u64,
) -> Result<VersionData, MlflowError> {
    blocking(state, move |d: &Dashboard| {
        let store = &d.registry.store;
        let version_text = number.to_string();
        let version = store.get_model_version(&name, &version_text)?;
        let model = store.get_registered_model(&name)?;
        let approval = store.approval_status(&name, &version_text)?;
        let digest = store.artifact_sha256(&name, &version_text)?;
        let (run, run_id) = source_run(d, &version);
        let audit: Vec<AuditEntry> = store
            .audit(Some(&name), None, None, AUDIT_ENTRIES)?
            .into_iter()
            .filter(|e| view::about_version(e, number))
            .collect();
        Ok::<_, StoreError>(VersionData {
            model_href: view::model_href(&name),
            href: view::version_href(&name, &version_text),
            badge: view::approval_badge(&approval),
            decisions: view::decisions(&audit),
            aliases: aliases(d, &model),
            audit: audit_rows(audit),
            model_name: name,
            version,
            digest,
            run,
            run_id,
            approval,
        })
    })
    .await
}

/// What a refused form leaves on the page: the store's message and what was typed.
#[derive(Default, Serialize)]
pub(super) struct Refused {
    pub message: String,
    pub comment: String,
    pub alias: String,
}

/// Renders a version page for `viewer`, with the forms their roles allow, and after a refused
/// action its message (the page then answers with the refusal's status).
pub(super) fn version_page(
    viewer: &Viewer,
    data: VersionData,
    refused: Option<(StatusCode, Refused)>,
) -> Response {
    let signed_in = (!viewer.anonymous).then_some(viewer.identity.name.as_str());
    let actions = view::actions(
        viewer.can(weir_mlflow_wire::Role::Approver),
        viewer.can(weir_mlflow_wire::Role::Submitter),
        signed_in,
        data.creator(),
    );
    let (status, refused) = match refused {
        Some((status, refused)) => (Some(status), Some(refused)),
        None => (None, None),
    };
    let mut response = render(
        viewer,
        "models/version.html",
        minijinja::context! { actions, refused, ..Value::from_serialize(&data) },
    );
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    response
}

/// `GET /ui/models/{name}/versions/{version}`.
pub(crate) async fn version(
    viewer: Viewer,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let Some(number) = view::version_number(&version) else {
        return unknown_version(&viewer, &name, &version);
    };
    match load_version(&state, name, number).await {
        Ok(data) => version_page(&viewer, data, None),
        Err(error) => failure(&viewer, &error),
    }
}
