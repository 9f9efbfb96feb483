//! Authorization written once: every route is declared together with the role it needs
//! ([`Routes`]), and one layer ([`AccessLayer`]) in front of the whole server checks the caller
//! against that table before any handler runs. A route cannot be added without an entry, and a
//! request the table does not know (unknown path or method) still needs a known caller, so with
//! identities configured nothing but the public endpoints answers anonymously.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::authenticator::{Authenticator, Unauthenticated};
use crate::error::mlflow_error;
use crate::identity::{Identity, Role};

/// What an endpoint asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Answers anyone: health and version probes.
    Public,
    /// Needs an identity holding this role.
    Needs(Role),
}

/// One row of the table: a method, a route pattern in axum's syntax, what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: Method,
    pub path: String,
    pub access: Access,
}

/// A router whose every route carries its [`Access`].
pub struct Routes<S> {
    router: Router<S>,
    endpoints: Vec<Endpoint>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` for `method` on `path`, needing `access`.
    pub fn add<H, T>(mut self, method: Method, path: &str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(method.clone()) {
            Ok(filter) => filter,
            // Only the standard methods are used; a typo here is a programming error caught by
            // the table test, not something a request can cause.
            Err(_) => MethodFilter::GET,
        };
        self.router = self.router.route(path, on(filter, handler));
        self.endpoints.push(Endpoint {
            method,
            path: path.to_owned(),
            access,
        });
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, access: Access, h: H) -> Self {
        self.add(Method::GET, path, access, h)
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, access: Access, h: H) -> Self {
        self.add(Method::POST, path, access, h)
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &str, access: Access, h: H) -> Self {
        self.add(Method::PATCH, path, access, h)
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, access: Access, h: H) -> Self {
        self.add(Method::PUT, path, access, h)
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &str, access: Access, h: H) -> Self {
        self.add(Method::DELETE, path, access, h)
    }

    /// The axum router (for fallbacks, body limits, state) and the table of what it serves.
    pub fn into_parts(self) -> (Router<S>, Vec<Endpoint>) {
        (self.router, self.endpoints)
    }
}

/// The routes of a whole server, looked up by method and raw path the way axum matches them.
#[derive(Debug, Clone, Default)]
pub struct EndpointTable {
    endpoints: Vec<Endpoint>,
}

impl EndpointTable {
    pub fn new(endpoints: Vec<Endpoint>) -> EndpointTable {
        EndpointTable { endpoints }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// What a request needs: its route's access, static routes before parameterised ones (as
    /// axum prefers them), and for anything the table does not know, a reader — so unknown
    /// paths answer 404 only to known callers.
    pub fn access(&self, method: &Method, path: &str) -> Access {
        let candidates = || self.endpoints.iter().filter(|e| e.method == method);
        candidates()
            .find(|e| e.path == path)
            .or_else(|| candidates().find(|e| pattern_matches(&e.path, path)))
            .map_or(Access::Needs(Role::Reader), |e| e.access)
    }
}

/// Matches axum's route syntax: `{name}` is one non-empty segment, `{*name}` the non-empty rest.
/// Public so that whatever labels requests by their route (the registry's metrics) reads
/// routes exactly as the access layer does.
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut segments = path.split('/');
    for expected in pattern.split('/') {
        if expected.starts_with("{*") {
            return segments.any(|s| !s.is_empty());
        }
        match segments.next() {
            Some(actual) if expected.starts_with('{') => {
                if actual.is_empty() {
                    return false;
                }
            }
            Some(actual) if actual == expected => {}
            _ => return false,
        }
    }
    segments.next().is_none()
}

/// A request the access layer turned away, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The identity that asked, or `anonymous`.
    pub who: String,
    pub method: String,
    pub path: String,
    /// The role it lacked; `None` when it had no valid credential.
    pub needed: Option<Role>,
    pub status: u16,
}

/// Where refusals go. It must not block: it runs on the request path.
pub type RefusalSink = Arc<dyn Fn(Refusal) + Send + Sync>;

/// A sink that hands refusals to `write` on a thread of its own through a bounded queue: a flood
/// of refused requests costs at most `capacity` queued entries, and the ones past that are
/// dropped and counted in the log rather than slowing the server or growing its memory.
pub fn queued_sink(
    capacity: usize,
    mut write: impl FnMut(Refusal) + Send + 'static,
) -> RefusalSink {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Refusal>(capacity.max(1));
    let spawned = std::thread::Builder::new()
        .name("weir-refusals".to_owned())
        .spawn(move || {
            while let Ok(refusal) = receiver.recv() {
                write(refusal);
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "refused requests will not be audited: no thread for them");
    }
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move |refusal| {
        if sender.try_send(refusal).is_err() {
            let n = dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "refused requests arrive faster than the audit log takes them; not all are audited");
            }
        }
    })
}

/// Where a browser page (the dashboard) keeps its credential and how its refusals look.
///
/// Browsers cannot send `Authorization` from a link or a form, so pages under `prefix` may carry
/// the token in a cookie instead — and only they: the API keeps to headers, so a cross-site
/// form can never reach it with a browser's ambient credential. Pages answer refusals as pages
/// (a sign-in form, a readable 403) rather than MLflow's JSON.
#[derive(Clone)]
pub struct BrowserPages {
    /// Paths starting with this (`/ui/`) are pages.
    pub prefix: String,
    /// The token a page request carries in its cookie, if any.
    pub credential: PageCredential,
    /// The answer to a refused page request: its status, the reason, the request refused.
    pub refuse: PageRefusal,
}

/// Reads a page request's credential from its headers.
pub type PageCredential = Arc<dyn Fn(&HeaderMap) -> Option<String> + Send + Sync>;

/// Answers a refused page request: its status, the reason, the request.
pub type PageRefusal = Arc<dyn Fn(StatusCode, &str, &Request) -> Response + Send + Sync>;

/// Checks every request against the [`EndpointTable`]; see the module docs.
#[derive(Clone)]
pub struct AccessLayer {
    table: Arc<EndpointTable>,
    authenticator: Authenticator,
    refusals: Option<RefusalSink>,
    pages: Option<BrowserPages>,
}

impl AccessLayer {
    pub fn new(table: EndpointTable, authenticator: Authenticator) -> AccessLayer {
        AccessLayer {
            table: Arc::new(table),
            authenticator,
            refusals: None,
            pages: None,
        }
    }

    /// Lets the pages `pages` describes authenticate by cookie and answer refusals as pages.
    pub fn with_browser_pages(mut self, pages: BrowserPages) -> AccessLayer {
        self.pages = Some(pages);
        self
    }

    /// Sends every refusal to `sink` (the registry writes them to its audit log).
    pub fn with_refusals(mut self, sink: RefusalSink) -> AccessLayer {
        self.refusals = Some(sink);
        self
    }

    /// The refusal for one request, or `None` to let it through (with the caller in its
    /// extensions).
    fn check(&self, request: &mut Request) -> Option<Response> {
        let access = self.table.access(request.method(), request.uri().path());
        let Access::Needs(role) = access else {
            return None;
        };
        let page = self
            .pages
            .as_ref()
            .filter(|pages| request.uri().path().starts_with(&pages.prefix));
        let refuse = |who: String, needed: Option<Role>, status: StatusCode, message: &str| {
            let response = match page {
                Some(pages) => (pages.refuse)(status, message, request),
                None => api_refusal(status, message),
            };
            if let Some(sink) = &self.refusals {
                sink(Refusal {
                    who,
                    method: request.method().to_string(),
                    path: request.uri().path().to_owned(),
                    needed,
                    status: status.as_u16(),
                });
            }
            Some(response)
        };
        let cookie_token = page
            .filter(|_| !request.headers().contains_key(header::AUTHORIZATION))
            .filter(|_| self.authenticator.requires_credentials())
            .and_then(|pages| (pages.credential)(request.headers()));
        let authenticated = match cookie_token {
            Some(token) => self.authenticator.authenticate_token(&token),
            None => self.authenticator.authenticate(request.headers()),
        };
        match authenticated {
            Ok(identity) if identity.holds(role) => {
                request.extensions_mut().insert(identity);
                None
            }
            Ok(identity) => {
                let message = format!(
                    "'{}' may not {} {}: it needs the {role} role",
                    identity.name,
                    request.method(),
                    request.uri().path()
                );
                refuse(identity.name, Some(role), StatusCode::FORBIDDEN, &message)
            }
            Err(why) => {
                let who = match why {
                    Unauthenticated::Missing => "anonymous",
                    Unauthenticated::Invalid | Unauthenticated::Malformed => "invalid credential",
                };
                refuse(
                    who.to_owned(),
                    None,
                    StatusCode::UNAUTHORIZED,
                    &why.to_string(),
                )
            }
        }
    }
}

/// MLflow's error body for a refusal; a 401 also names the scheme to answer with.
fn api_refusal(status: StatusCode, message: &str) -> Response {
    if status != StatusCode::UNAUTHORIZED {
        return mlflow_error(status, "PERMISSION_DENIED", message);
    }
    let mut response = mlflow_error(status, "UNAUTHENTICATED", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"weir\""),
    );
    response
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> AccessService<S> {
        AccessService {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    layer: AccessLayer,
    inner: S,
}

impl<S> tower::Service<Request> for AccessService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if let Some(refused) = self.layer.check(&mut request) {
            return Box::pin(async move { Ok(refused) });
        }
        // The clone that was polled ready serves this call; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}

/// Handlers name their caller by taking an [`Identity`]; the layer put it there. A handler
/// reached without the layer (a wiring mistake) refuses rather than act for nobody.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Identity {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Identity, Response> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            mlflow_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "no caller identified for this request",
            )
        })
    }
}

#[cfg(test)]
mod tests;
