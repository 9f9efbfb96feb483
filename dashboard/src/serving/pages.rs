//! The serving pages (GET): every route, one route, and the panel a route's page refreshes.
//! They read only what the sampler recorded, so a slow router never slows a page.

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{context, Value};
use serde::Deserialize;

use super::view::{overview, route_view};
use crate::page::{error_page, fragment, render, Viewer};
use crate::State;

/// `?router=N` (which watched router, by its place in `--router`), `?view=card` (the panel in
/// its overview form).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Where {
    pub router: Option<String>,
    pub view: Option<String>,
}

/// The router index a query or form names, or why it is not one (for a 400 page).
pub(super) fn router_index(given: Option<&str>) -> Result<Option<usize>, String> {
    match given.map(str::trim).filter(|g| !g.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse::<usize>().map(Some).map_err(|_| {
            format!("invalid router '{text}': give the router's number on /ui/serving")
        }),
    }
}

/// 404 for a model no watched router (or not the named one) has a route for.
pub(super) fn no_route(viewer: &Viewer, state: &State, model: &str) -> Response {
    let message = if state.serving.routers.is_empty() {
        format!("no route for model '{model}': this registry watches no router (start it with --router URL)")
    } else {
        format!("no route for model '{model}' on the routers this registry watches")
    };
    error_page(viewer, StatusCode::NOT_FOUND, &message)
}

pub(crate) async fn index(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let overview = overview(&state.serving);
    render(
        &viewer,
        "serving/index.html",
        context! { serving => Value::from_serialize(&overview) },
    )
}

/// A route's whole page; `error` is what a refused action says (shown above the forms).
pub(super) fn route_page(
    viewer: &Viewer,
    state: &State,
    model: &str,
    router: Option<usize>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let Some(index) = state.serving.locate(model, router) else {
        return no_route(viewer, state, model);
    };
    let Some(route) = route_view(&state.serving, index, model) else {
        return no_route(viewer, state, model);
    };
    let (status, message) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let mut response = render(
        viewer,
        "serving/route.html",
        context! {
            route => Value::from_serialize(&route),
            action_error => message,
        },
    );
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

pub(crate) async fn route(
    Extract(state): Extract<State>,
    Path(model): Path<String>,
    Query(place): Query<Where>,
    viewer: Viewer,
) -> Response {
    match router_index(place.router.as_deref()) {
        Ok(router) => route_page(&viewer, &state, &model, router, None),
        Err(message) => error_page(&viewer, StatusCode::BAD_REQUEST, &message),
    }
}

/// The part of a route's page (or of its overview card) that refreshes itself.
pub(crate) async fn panel(
    Extract(state): Extract<State>,
    Path(model): Path<String>,
    Query(place): Query<Where>,
    viewer: Viewer,
) -> Response {
    let router = match router_index(place.router.as_deref()) {
        Ok(router) => router,
        Err(message) => return error_page(&viewer, StatusCode::BAD_REQUEST, &message),
    };
    let route = state
        .serving
        .locate(&model, router)
        .and_then(|index| route_view(&state.serving, index, &model));
    let Some(route) = route else {
        return no_route(&viewer, &state, &model);
    };
    let template = match place.view.as_deref() {
        Some("card") => "serving/card.html",
        _ => "serving/panel.html",
    };
    fragment(
        &viewer,
        template,
        context! { route => Value::from_serialize(&route) },
    )
}
