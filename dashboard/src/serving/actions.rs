//! The serving forms (POST, admin): set a canary's percentage, promote, roll back. Each sends
//! the router's admin API the same call `weir canary` sends, with the registry's router token;
//! the router's refusal is shown on the route's page in its own words.

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use weir_mlflow_wire::Role;

use super::pages::{no_route, route_page, router_index};
use super::sampler::{segment, CallError, ACTION_DEADLINE};
use super::status::RouteStatus;
use super::view::route_path;
use super::Serving;
use crate::page::{acting_name, error_page, see_other, Posted, Viewer};
use crate::State;

/// What a form asks the router to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    Canary(u32),
    Promote,
    Rollback,
}

impl Serving {
    /// Sends `action` for `model` to router `index`; its answer (the route's new status) is
    /// recorded at once.
    pub(crate) async fn act(
        &self,
        index: usize,
        model: &str,
        action: Action,
    ) -> Result<(), CallError> {
        let Some(base) = self.routers.get(index).map(|r| r.url.clone()) else {
            return Err(CallError {
                status: Some(404),
                message: format!("no router number {index}"),
            });
        };
        let (verb, body) = match action {
            Action::Canary(percent) => ("canary", Some(json!({ "percent": percent }))),
            Action::Promote => ("promote", None),
            Action::Rollback => ("rollback", None),
        };
        let path = format!("routes/{}/{verb}", segment(model));
        let answer = self
            .call_router(&base, "POST", &path, body, ACTION_DEADLINE)
            .await?;
        if let Ok(status) = serde_json::from_value::<RouteStatus>(answer) {
            let mut status = status.bounded();
            if status.model.is_empty() {
                status.model = model.to_owned();
            }
            self.record_status(index, status);
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CanaryForm {
    pub percent: Option<String>,
    pub router: Option<String>,
    #[serde(rename = "as")]
    pub acting_as: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RouteForm {
    pub router: Option<String>,
    #[serde(rename = "as")]
    pub acting_as: Option<String>,
}

/// The percentage a form gives: a whole number from 0 to 100.
fn percent(given: Option<&str>) -> Result<u32, String> {
    let text = given.map(str::trim).unwrap_or_default();
    match text.parse::<u32>() {
        Ok(percent) if percent <= 100 => Ok(percent),
        _ => Err(format!(
            "invalid canary percent '{text}': give a whole number from 0 to 100"
        )),
    }
}

/// The status a page answers with when the router refused: the router's own for the caller's
/// mistakes (400, 404, 409), 502 when the router is away or refused the registry itself.
fn page_status(error: &CallError) -> StatusCode {
    match error.status {
        Some(status @ (400 | 404 | 409 | 503)) => {
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

async fn perform(
    state: &State,
    viewer: &Viewer,
    model: &str,
    router: Option<&str>,
    acting_as: Option<&str>,
    action: Action,
) -> Response {
    // The access layer refused anyone else already; this keeps the handler safe on its own.
    if !viewer.can(Role::Admin) {
        return error_page(
            viewer,
            StatusCode::FORBIDDEN,
            "changing a route needs the admin role",
        );
    }
    let who = match acting_name(viewer, acting_as) {
        Ok(who) => who,
        Err(refused) => return *refused,
    };
    let preferred = match router_index(router) {
        Ok(preferred) => preferred,
        Err(message) => return error_page(viewer, StatusCode::BAD_REQUEST, &message),
    };
    let Some(index) = state.serving.locate(model, preferred) else {
        return no_route(viewer, state, model);
    };
    match state.serving.act(index, model, action).await {
        Ok(()) => {
            tracing::info!(
                user = %who,
                model,
                router = %state.serving.routers[index].url,
                action = ?action,
                "dashboard: route changed"
            );
            see_other(&route_path(model, index))
        }
        Err(error) => {
            tracing::warn!(user = %who, model, action = ?action, error = %error.message, "dashboard: route change refused");
            route_page(
                viewer,
                state,
                model,
                Some(index),
                Some((page_status(&error), error.message)),
            )
        }
    }
}

pub(crate) async fn canary(
    Extract(state): Extract<State>,
    Path(model): Path<String>,
    Posted(viewer, form): Posted<CanaryForm>,
) -> Response {
    let percent = match percent(form.percent.as_deref()) {
        Ok(percent) => percent,
        Err(message) => return error_page(&viewer, StatusCode::BAD_REQUEST, &message),
    };
    perform(
        &state,
        &viewer,
        &model,
        form.router.as_deref(),
        form.acting_as.as_deref(),
        Action::Canary(percent),
    )
    .await
}

pub(crate) async fn promote(
    Extract(state): Extract<State>,
    Path(model): Path<String>,
    Posted(viewer, form): Posted<RouteForm>,
) -> Response {
    perform(
        &state,
        &viewer,
        &model,
        form.router.as_deref(),
        form.acting_as.as_deref(),
        Action::Promote,
    )
    .await
}

pub(crate) async fn rollback(
    Extract(state): Extract<State>,
    Path(model): Path<String>,
    Posted(viewer, form): Posted<RouteForm>,
) -> Response {
    perform(
        &state,
        &viewer,
        &model,
        form.router.as_deref(),
        form.acting_as.as_deref(),
        Action::Rollback,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_numbers_up_to_100() {
        assert_eq!(percent(Some(" 25 ")), Ok(25));
        assert_eq!(percent(Some("0")), Ok(0));
        assert_eq!(percent(Some("100")), Ok(100));
        for bad in ["101", "-1", "12.5", "ten", ""] {
            let err = percent(Some(bad)).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        assert!(percent(None).is_err());
    }

    #[test]
    fn refusals_keep_the_routers_status_for_the_callers_mistakes() {
        let refused = |status| CallError {
            status,
            message: String::new(),
        };
        assert_eq!(page_status(&refused(Some(409))), StatusCode::CONFLICT);
        assert_eq!(page_status(&refused(Some(404))), StatusCode::NOT_FOUND);
        assert_eq!(page_status(&refused(Some(401))), StatusCode::BAD_GATEWAY);
        assert_eq!(page_status(&refused(None)), StatusCode::BAD_GATEWAY);
    }
}
