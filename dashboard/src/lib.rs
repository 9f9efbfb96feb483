//! weir's web dashboard, served by `weir registry` at `/`: experiments and runs with their
//! charts, models with their approvals, and the canaries of the routers the registry watches.
//!
//! Pages are rendered on the server (minijinja templates, SVG charts) behind the registry's own
//! access layer: every route is declared with the role it needs, a browser signs in with a
//! token kept in an `HttpOnly`, `SameSite=Strict` cookie, and every form carries a CSRF token
//! derived from that cookie ([`session`]). One small script (no build step) maps MLflow's
//! `/#/…` links, switches the theme and refreshes the serving panels. See docs/dashboard.md.

mod chart;
mod models;
mod page;
mod render;
mod runs;
pub mod serving;
mod session;

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use minijinja::context;
use serde::Deserialize;
use weir_mlflow_wire::{Access, Authenticator, BrowserPages, Endpoint, Role, Routes};

use page::{Session, Viewer};

/// What the pages read and act on.
pub struct Dashboard {
    pub registry: Arc<weir_registry::Registry>,
    pub tracking: Arc<weir_tracking::Tracking>,
    /// The routers and autoscalers the registry watches (none unless configured).
    pub serving: Arc<serving::Serving>,
    /// No identities are configured: every caller holds every role, and actions ask for the
    /// name to act as.
    pub anonymous: bool,
    /// Signs browsers in (the same identities as the API).
    pub authenticator: Authenticator,
}

pub(crate) type State = Arc<Dashboard>;

/// Where pages live; the access layer reads the session cookie only below it.
pub const PAGES: &str = "/ui/";

/// The dashboard's routes, each with the role it needs, ready to merge into the registry's.
pub fn routes(dashboard: Dashboard) -> (Router, Vec<Endpoint>) {
    let core = Routes::new()
        .get("/", Access::Public, root)
        .get("/ui", Access::Public, || async { page::see_other(PAGES) })
        .get("/ui/", Access::Needs(Role::Reader), overview)
        .get("/ui/sign-in", Access::Public, sign_in_form)
        .post("/ui/sign-in", Access::Public, sign_in)
        .post("/ui/sign-out", Access::Public, sign_out)
        .get("/ui/static/{file}", Access::Public, static_file);
    let mut endpoints = Vec::new();
    let mut router = Router::new();
    for routes in [core, runs::routes(), models::routes(), serving::routes()] {
        let (part, table) = routes.into_parts();
        router = router.merge(part);
        endpoints.extend(table);
    }
    let router = router
        .with_state(Arc::new(dashboard))
        .layer(axum::middleware::map_response(page_headers));
    (router, endpoints)
}

/// How the access layer treats pages: the cookie's token as the credential, and refusals as
/// pages — a sign-in form for someone not signed in, a readable refusal otherwise.
pub fn browser_pages() -> BrowserPages {
    BrowserPages {
        prefix: PAGES.to_owned(),
        credential: Arc::new(session::token),
        refuse: Arc::new(|status, message, request| {
            if status == StatusCode::UNAUTHORIZED {
                let next = request.uri().path_and_query().map_or(PAGES, |p| p.as_str());
                return page::see_other(&format!("/ui/sign-in?next={}", encode(next)));
            }
            let session = Session::of(request.headers());
            add_page_headers(page::bare_error_page(&session, status, message))
        }),
    }
}

/// Pages are never framed, cached or allowed to run anything but our own script.
async fn page_headers(response: Response) -> Response {
    add_page_headers(response)
}

fn add_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `/`: MLflow's client prints links such as `/#/experiments/1/runs/ab12`; the fragment never
/// reaches a server, so this page's script reads it and goes to the matching page.
async fn root(headers: HeaderMap) -> Response {
    page::render_public(&Session::of(&headers), "core/root.html", context! {})
}

async fn overview(viewer: Viewer) -> Response {
    page::render(&viewer, "core/home.html", context! {})
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a path on this server: `//evil.example` or `https://…` would send the browser away.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => PAGES.to_owned(),
    }
}

async fn sign_in_form(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    Query(next): Query<Next>,
) -> Response {
    if state.anonymous {
        // Nothing to sign in to: every page is open on this (loopback) registry.
        return page::see_other(&local_path(next.next.as_deref()));
    }
    page::render_public(
        &Session::of(&headers),
        "core/sign_in.html",
        context! { next => local_path(next.next.as_deref()), failed => false },
    )
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// Checks the token against the identities and, when it names someone, keeps it in the
/// session cookie. The form carries the pre-sign-in session's CSRF token, so another site
/// cannot sign a browser in as someone else.
async fn sign_in(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    let session = Session::of(&headers);
    if let Some(refused) = foreign_form(&headers, &session, &form.csrf) {
        return refused;
    }
    let next = local_path(form.next.as_deref());
    let token = form.token.trim();
    match state.authenticator.authenticate_token(token) {
        Ok(identity) => {
            tracing::info!(user = %identity.name, "dashboard sign-in");
            let cookie = session::set_cookie(&session::signed_in_value(token), true, session.https);
            with_cookie(page::see_other(&next), &cookie)
        }
        Err(_) => {
            let mut response = page::render_public(
                &session,
                "core/sign_in.html",
                context! { next => next, failed => true },
            );
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

/// The refusal of a sign-in or sign-out form that did not come from this browser's own page
/// (these two run before anyone is known, so not through [`page::Posted`]).
fn foreign_form(headers: &HeaderMap, session: &Session, csrf: &str) -> Option<Response> {
    if page::same_origin(headers) && Session::csrf_matches(headers, csrf) {
        return None;
    }
    Some(page::bare_error_page(
        session,
        StatusCode::FORBIDDEN,
        "the form's CSRF token does not belong to this browser's session; reload the page and try again",
    ))
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Replaces the signed-in cookie with a fresh one that signs nobody in.
async fn sign_out(headers: HeaderMap, axum::Form(form): axum::Form<SignOut>) -> Response {
    let session = Session::of(&headers);
    if let Some(refused) = foreign_form(&headers, &session, &form.csrf) {
        return refused;
    }
    let cookie = session::set_cookie(&session::new_nonce(), false, session.https);
    with_cookie(page::see_other("/ui/sign-in"), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The stylesheet (each section's rules after the shared ones) and the one script.
async fn static_file(Path(file): Path<String>) -> Response {
    const CSS: &str = concat!(
        include_str!("../static/weir.css"),
        include_str!("../static/runs.css"),
        include_str!("../static/models.css"),
        include_str!("../static/serving.css"),
    );
    const JS: &str = include_str!("../static/weir.js");
    let (content_type, body) = match file.as_str() {
        "weir.css" => ("text/css; charset=utf-8", CSS),
        "weir.js" => ("text/javascript; charset=utf-8", JS),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Percent-encodes a path for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_returns_to_this_server() {
        assert_eq!(local_path(Some("/ui/models")), "/ui/models");
        assert_eq!(local_path(Some("//evil.example/x")), PAGES);
        assert_eq!(local_path(Some("https://evil.example")), PAGES);
        assert_eq!(local_path(Some("/\\evil.example")), PAGES);
        assert_eq!(local_path(None), PAGES);
    }

    #[test]
    fn next_paths_are_encoded_for_the_query() {
        assert_eq!(
            encode("/ui/experiments/1?filter=a b&x=1"),
            "/ui/experiments/1%3Ffilter%3Da%20b%26x%3D1"
        );
    }
}
