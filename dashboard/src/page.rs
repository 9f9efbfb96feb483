//! What every page handler shares: who is looking ([`Viewer`]), turning a template into a
//! response, and forms that prove they came from our own pages ([`Posted`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{context, Value};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use weir_mlflow_wire::{Identity, Role};

use crate::{session, State};

/// Largest form a page posts (a comment, a percentage); more is refused before parsing.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The person a page is rendered for: their identity (from the access layer), and the CSRF token
/// their forms carry.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub identity: Identity,
    /// No identities are configured: every caller holds every role, and actions ask for the
    /// name to act as.
    pub anonymous: bool,
    pub csrf: String,
    /// The browser had no session cookie yet: this one is sent with the page.
    new_cookie: Option<String>,
}

impl Viewer {
    pub fn can(&self, role: Role) -> bool {
        self.identity.holds(role)
    }

    fn me(&self) -> Value {
        context! {
            name => self.identity.name,
            anonymous => self.anonymous,
            can_submit => self.can(Role::Submitter),
            can_approve => self.can(Role::Approver),
            can_admin => self.can(Role::Admin),
        }
    }
}

/// A browser's session before anyone is known: for the sign-in page and the refusal pages.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub csrf: String,
    new_cookie: Option<String>,
    /// Whether a sent cookie should carry `Secure`.
    pub https: bool,
}

impl Session {
    pub fn of(headers: &HeaderMap) -> Session {
        let https = session::over_https(headers);
        match session::cookie_value(headers) {
            Some(value) => Session {
                csrf: session::csrf_token(&value),
                new_cookie: None,
                https,
            },
            None => {
                let value = session::new_nonce();
                Session {
                    csrf: session::csrf_token(&value),
                    new_cookie: Some(session::set_cookie(&value, false, https)),
                    https,
                }
            }
        }
    }

    /// Whether `given` is this session's CSRF token (a fresh session has none to match).
    pub fn csrf_matches(headers: &HeaderMap, given: &str) -> bool {
        session::cookie_value(headers).is_some_and(|value| session::csrf_matches(&value, given))
    }
}

impl FromRequestParts<State> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Viewer, Response> {
        let identity = Identity::from_request_parts(parts, state).await?;
        let session = Session::of(&parts.headers);
        Ok(Viewer {
            identity,
            anonymous: state.anonymous,
            csrf: session.csrf,
            new_cookie: session.new_cookie,
        })
    }
}

/// A whole page: `template` extends `base.html`; `context` is merged with `me`, `csrf` and
/// `anonymous`.
pub(crate) fn render(viewer: &Viewer, template: &str, context: Value) -> Response {
    let context = context! {
        me => viewer.me(),
        csrf => viewer.csrf,
        anonymous => viewer.anonymous,
        ..context
    };
    respond(
        StatusCode::OK,
        template,
        context,
        viewer.new_cookie.as_deref(),
    )
}

/// A part of a page, without the layout (what an auto-refreshing element fetches).
pub(crate) fn fragment(viewer: &Viewer, template: &str, context: Value) -> Response {
    render(viewer, template, context)
}

/// A page that says what went wrong, with the layout so the reader can go on from it.
pub(crate) fn error_page(viewer: &Viewer, status: StatusCode, message: &str) -> Response {
    with_status(
        render(viewer, "core/error.html", problem(status, message)),
        status,
    )
}

/// The same page for someone not signed in (refusals of the access layer, bad forms).
pub(crate) fn bare_error_page(session: &Session, status: StatusCode, message: &str) -> Response {
    with_status(
        render_public(session, "core/error.html", problem(status, message)),
        status,
    )
}

fn problem(status: StatusCode, message: &str) -> Value {
    context! {
        status => status.as_u16(),
        reason => status.canonical_reason().unwrap_or("Error"),
        message => message,
    }
}

/// A rendered page answered with `status` (a page that failed to render keeps its 500).
fn with_status(mut response: Response, status: StatusCode) -> Response {
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

/// A page for someone not signed in (the sign-in form).
pub(crate) fn render_public(session: &Session, template: &str, context: Value) -> Response {
    let context = context! {
        me => Value::from(()),
        csrf => session.csrf,
        anonymous => false,
        ..context
    };
    respond(
        StatusCode::OK,
        template,
        context,
        session.new_cookie.as_deref(),
    )
}

fn respond(status: StatusCode, template: &str, context: Value, cookie: Option<&str>) -> Response {
    let mut response = match crate::render::render(template, context) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "dashboard page cannot be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this page cannot be rendered; the registry's log says why",
            )
                .into_response()
        }
    };
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// After a form did what it asked: back to a page with GET, so reloading repeats nothing.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Who an action is done as: the signed-in identity, or, without identities, the name the
/// form gives (as the CLI's `--as`), so the audit log names a person rather than `anonymous`.
/// The refusal is boxed: a `Response` is large, and the name is the common case.
pub(crate) fn acting_name(viewer: &Viewer, form_as: Option<&str>) -> Result<String, Box<Response>> {
    if !viewer.anonymous {
        return Ok(viewer.identity.name.clone());
    }
    let name = form_as.map(str::trim).unwrap_or_default();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Box::new(error_page(
            viewer,
            StatusCode::BAD_REQUEST,
            "say who you are acting as: this registry has no identities, so every action names its person (like the CLI's --as)",
        )));
    }
    Ok(name.to_owned())
}

/// A form posted from one of our pages: its Origin is ours and its CSRF token matches the
/// browser's session. Anything else is refused before the handler runs.
pub(crate) struct Posted<T>(pub Viewer, pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<State> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &State) -> Result<Posted<T>, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers) {
            return Err(error_page(
                &viewer,
                StatusCode::FORBIDDEN,
                "this form was sent from another site; open the page here and send it again",
            ));
        }
        let headers = parts.headers;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                error_page(
                    &viewer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form is too large",
                )
            })?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !Session::csrf_matches(&headers, &field.csrf) {
            return Err(error_page(
                &viewer,
                StatusCode::FORBIDDEN,
                "the form's CSRF token does not belong to this browser's session; reload the page and send it again",
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|err| {
            error_page(
                &viewer,
                StatusCode::BAD_REQUEST,
                &format!("the form cannot be read: {err}"),
            )
        })?;
        Ok(Posted(viewer, form))
    }
}

/// Whether a request's `Origin` (when the browser sends one) is the host it was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_form_from_another_site_is_not_same_origin() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:5000")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://127.0.0.1:5000")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "null")
        ])));
    }
}
