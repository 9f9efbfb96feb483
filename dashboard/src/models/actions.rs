//! The models pages' writes: approve, reject and request approval of a version, and move an
//! alias. Each runs the same store call with the same extra rules as its MLflow API handler
//! (`weir_registry::mlflow::{approvals::decide, aliases::set_alias}`): an approval, or a
//! protected alias, is refused for a version weir cannot serve; the store refuses the creator's
//! approval and a protected alias on an unapproved version. A refusal re-renders the version
//! page with the store's message and the API's status; success answers 303 to the version page.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use weir_mlflow_wire::request::blocking;
use weir_mlflow_wire::{ErrorCode, MlflowError, Role};
use weir_registry::store::Decision;

use super::pages::{failure, load_version, unknown_version, version_page, Refused};
use super::view::{version_href, version_number};
use crate::page::{acting_name, error_page, see_other, Posted, Viewer};
use crate::{Dashboard, State as AppState};
use weir_registry::mlflow::refuse_unservable;

/// The approve, reject and request-approval forms.
#[derive(Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    comment: String,
    /// Who acts, in anonymous mode (the CLI's `--as`).
    #[serde(rename = "as")]
    acting: Option<String>,
}

/// The move-alias form.
#[derive(Deserialize)]
pub(crate) struct AliasForm {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    version: String,
    #[serde(rename = "as")]
    acting: Option<String>,
}

/// `POST /ui/models/{name}/versions/{version}/approve` (approver).
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Posted(viewer, form): Posted<DecisionForm>,
) -> Response {
    decide(state, viewer, name, version, Decision::Approve, form).await
}

/// `POST /ui/models/{name}/versions/{version}/reject` (approver).
pub(crate) async fn reject(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Posted(viewer, form): Posted<DecisionForm>,
) -> Response {
    decide(state, viewer, name, version, Decision::Reject, form).await
}

/// `POST /ui/models/{name}/versions/{version}/request-approval` (submitter).
pub(crate) async fn request_approval(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Posted(viewer, form): Posted<DecisionForm>,
) -> Response {
    decide(state, viewer, name, version, Decision::Request, form).await
}

/// The role an action needs, as its route declares it; checked again here so that no form
/// handler relies on the route table alone.
fn needs(decision: Decision) -> Role {
    match decision {
        Decision::Request => Role::Submitter,
        Decision::Approve | Decision::Reject => Role::Approver,
    }
}

fn lacks(viewer: &Viewer, role: Role) -> Option<Response> {
    (!viewer.can(role)).then(|| {
        failure(
            viewer,
            &MlflowError::new(
                ErrorCode::PermissionDenied,
                format!("{} lacks the {role} role", viewer.identity.name),
            ),
        )
    })
}

async fn decide(
    state: AppState,
    viewer: Viewer,
    name: String,
    version: String,
    decision: Decision,
    form: DecisionForm,
) -> Response {
    if let Some(refused) = lacks(&viewer, needs(decision)) {
        return refused;
    }
    let Some(number) = version_number(&version) else {
        return unknown_version(&viewer, &name, &version);
    };
    let actor = match acting_name(&viewer, form.acting.as_deref()) {
        Ok(actor) => actor,
        Err(refused) => return *refused,
    };
    let comment = form.comment;
    let (model, typed) = (name.clone(), comment.clone());
    let done = blocking(&state, move |d: &Dashboard| {
        let version = number.to_string();
        if decision == Decision::Approve {
            refuse_unservable(&d.registry, &model, &version, "approve")?;
        }
        d.registry
            .store
            .decide(&actor, &model, &version, decision, &typed)
    })
    .await;
    match done {
        Ok(_) => see_other(&version_href(&name, &number.to_string())),
        Err(error) => {
            let refused = Refused {
                comment,
                ..Refused::default()
            };
            refusal(&state, &viewer, name, number, error, refused).await
        }
    }
}

/// `POST /ui/models/{name}/aliases` (approver): points `alias` at `version`.
pub(crate) async fn move_alias(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Posted(viewer, form): Posted<AliasForm>,
) -> Response {
    if let Some(refused) = lacks(&viewer, Role::Approver) {
        return refused;
    }
    let actor = match acting_name(&viewer, form.acting.as_deref()) {
        Ok(actor) => actor,
        Err(refused) => return *refused,
    };
    // A stray space would make another alias than the one meant (and dodge no protection:
    // " production" is simply not `production`), so the typed name is trimmed.
    let alias = form.alias.trim().to_owned();
    let version = form.version.trim().to_owned();
    let (model, target, typed) = (name.clone(), version.clone(), alias.clone());
    let done = blocking(&state, move |d: &Dashboard| {
        if d.registry.store.is_protected(&typed) {
            let what = format!("point the protected alias '{typed}' at");
            refuse_unservable(&d.registry, &model, &target, &what)?;
        }
        d.registry.store.set_alias(&actor, &model, &typed, &target)
    })
    .await;
    match (done, version_number(&version)) {
        (Ok(()), _) => see_other(&version_href(&name, &version)),
        (Err(error), Some(number)) => {
            let refused = Refused {
                alias,
                ..Refused::default()
            };
            refusal(&state, &viewer, name, number, error, refused).await
        }
        // No version page to return to: the store's message alone.
        (Err(error), None) => failure(&viewer, &error),
    }
}

/// The version page again with the refusal's message and status; an unknown model or version
/// is the plain 404 page.
async fn refusal(
    state: &AppState,
    viewer: &Viewer,
    name: String,
    number: u64,
    error: MlflowError,
    mut refused: Refused,
) -> Response {
    if error.code == ErrorCode::ResourceDoesNotExist {
        return failure(viewer, &error);
    }
    refused.message = error.message.clone();
    match load_version(state, name, number).await {
        Ok(data) => version_page(viewer, data, Some((error.code.status(), refused))),
        Err(_) => error_page(viewer, error.code.status(), &error.message),
    }
}
