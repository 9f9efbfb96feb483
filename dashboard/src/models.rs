//! The models pages: registered models, a model's versions, and a version's approval state and
//! audit trail with the approve / reject / request-approval / move-alias forms.
//!
//! The forms are shown only to a viewer holding the role the action needs (and approve/reject
//! not to the version's creator), but that is a courtesy: every POST goes through the same
//! access-layer role check and the same registry store calls, with the same extra rules, as the
//! MLflow API's handlers (`weir_registry::mlflow::{approvals, aliases}`), so a hand-made POST
//! can do no more than the API would allow.
//!
//! `pages` reads (GET handlers), `actions` writes (POST handlers), `view` turns store records
//! into what the templates show and decides which forms a viewer sees; the API's refusal of
//! versions weir cannot serve is the registry's own (`weir_registry::mlflow::refuse_unservable`).

use weir_mlflow_wire::{Access, Role, Routes};

use crate::State;

mod actions;
mod pages;
mod view;

/// The module's routes, each with the role it needs. Moving an alias needs what the MLflow API's
/// `POST /registered-models/alias` needs (approver): it is the same deployment decision.
pub(crate) fn routes() -> Routes<State> {
    let version = "/ui/models/{name}/versions/{version}";
    Routes::new()
        .get("/ui/models", Access::Needs(Role::Reader), pages::list)
        .get(
            "/ui/models/{name}",
            Access::Needs(Role::Reader),
            pages::model,
        )
        .get(version, Access::Needs(Role::Reader), pages::version)
        .post(
            &format!("{version}/approve"),
            Access::Needs(Role::Approver),
            actions::approve,
        )
        .post(
            &format!("{version}/reject"),
            Access::Needs(Role::Approver),
            actions::reject,
        )
        .post(
            &format!("{version}/request-approval"),
            Access::Needs(Role::Submitter),
            actions::request_approval,
        )
        .post(
            "/ui/models/{name}/aliases",
            Access::Needs(Role::Approver),
            actions::move_alias,
        )
}

/// The module's templates, by the names the handlers render them under.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    (
        "models/list.html",
        include_str!("../templates/models/list.html"),
    ),
    (
        "models/model.html",
        include_str!("../templates/models/model.html"),
    ),
    (
        "models/version.html",
        include_str!("../templates/models/version.html"),
    ),
    (
        "models/audit.html",
        include_str!("../templates/models/audit.html"),
    ),
];
