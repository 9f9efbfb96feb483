//! The data plane: every V2 and V1 request is matched to a model's route, given a version (pin
//! header, version in the path, sticky key, or weight), forwarded to a replica of that version
//! over pooled connections, and answered with `x-weir-version` added.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::random::with_fast_rng;
use crate::send::Outgoing;
use crate::stats::Outcome;
use crate::table::Route;
use crate::Router;

pub const VERSION_HEADER: &str = "x-weir-version";

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// What a data-plane path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    ServerLive,
    ServerReady,
    ServerMetadata,
    ModelList,
    /// A model, with the version the path names (if any).
    Model {
        model: &'a str,
        version: Option<&'a str>,
    },
    Unknown,
}

pub fn target(path: &str) -> Target<'_> {
    match path {
        "/v2/health/live" => return Target::ServerLive,
        "/v2/health/ready" => return Target::ServerReady,
        "/v2" | "/v2/" => return Target::ServerMetadata,
        "/v1/models" | "/v2/repository/index" => return Target::ModelList,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/v2/models/") {
        let mut parts = rest.split('/');
        let model = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let version = match rest.as_slice() {
            ["versions", version, ..] => Some(*version),
            _ => None,
        };
        if model.is_empty() {
            return Target::Unknown;
        }
        return Target::Model { model, version };
    }
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        let model = rest.split(':').next().unwrap_or_default();
        if !model.is_empty() && !model.contains('/') {
            return Target::Model {
                model,
                version: None,
            };
        }
    }
    Target::Unknown
}

impl Router {
    /// Every model has a version with traffic and an available replica (`/v2/health/ready`,
    /// and gRPC's ServerReady).
    pub fn ready(&self) -> bool {
        let table = self.table.load();
        let now = Instant::now();
        table.routes.values().all(|route| {
            route
                .backends
                .iter()
                .filter(|b| b.weight > 0)
                .any(|b| b.pool.endpoints().iter().any(|e| e.available(now)))
        })
    }
}

/// The data-plane entry point (the router's fallback route).
pub async fn handle(State(router): State<Arc<Router>>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    match target(&path) {
        Target::ServerLive => json_response(StatusCode::OK, &json!({ "live": true })),
        Target::ServerReady => {
            let ready = router.ready();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &json!({ "ready": ready }))
        }
        Target::ServerMetadata => json_response(
            StatusCode::OK,
            &json!({
                "name": "weir-router",
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": [],
            }),
        ),
        Target::ModelList => {
            let table = router.table.load();
            let mut models: Vec<&String> = table.routes.keys().collect();
            models.sort();
            json_response(StatusCode::OK, &json!({ "models": models }))
        }
        Target::Unknown => error(StatusCode::NOT_FOUND, format!("no route for {path}")),
        Target::Model { model, version } => {
            let route = router.table.load().routes.get(model).cloned();
            match route {
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("unknown model '{model}': the router has no route for it"),
                ),
                Some(route) => {
                    let version = version.map(str::to_owned);
                    forward_to_route(&router, &route, version, request).await
                }
            }
        }
    }
}

async fn forward_to_route(
    router: &Arc<Router>,
    route: &Arc<Route>,
    path_version: Option<String>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    // The version in the path is the most specific thing a request can say (a KServe or
    // Triton client builds it on purpose), so it wins over the header.
    let pinned = path_version.clone().or_else(|| {
        request
            .headers()
            .get(VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let backend = match &pinned {
        Some(version) => match route.backend(version) {
            Some(backend) => backend,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "model '{}' has no version '{version}' behind this router",
                        route.model
                    ),
                )
            }
        },
        // Readiness and metadata (GETs) answer for the route as a whole: the stable version,
        // the first with traffic.
        None if request.method() == Method::GET => {
            match route.backends.iter().find(|b| b.weight > 0) {
                Some(backend) => backend,
                None => return error(StatusCode::SERVICE_UNAVAILABLE, "no version has traffic"),
            }
        }
        None => {
            let sticky = route
                .sticky_header
                .as_ref()
                .and_then(|name| request.headers().get(name.as_str()))
                .map(HeaderValue::as_bytes);
            match with_fast_rng(|rng| route.choose(sticky, rng)) {
                Some(backend) => backend,
                None => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("model '{}' has no version with weight", route.model),
                    )
                }
            }
        }
    };
    let (parts, body) = request.into_parts();
    // Held whole (a retry resends it), drawn on the router's body budget as it arrives and
    // given back once the answer is on its way: see weir_http::body.
    let limit = router.table.load().settings.max_body_bytes;
    let (body, _reservation) =
        match weir_http::body::read_body(&parts.headers, body, limit, Some(&router.body_budget))
            .await
        {
            Ok(read) => read,
            Err(refusal) => {
                let mut response = error(refusal.status(), refusal.to_string());
                if let Some(seconds) = refusal.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                return response;
            }
        };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let path_and_query = match (&path_version, &backend.registry_version) {
        (Some(named), Some(served)) if *named == backend.version && named != served => {
            with_path_version(&path_and_query, &route.model, named, served)
        }
        _ => path_and_query,
    };
    let shadow = with_fast_rng(|rng| route.shadow_for_this_request(rng)).and_then(|shadow| {
        let cap = router.table.load().settings.max_shadow_in_flight;
        router.metrics.start_shadow(cap).map(|slot| (shadow, slot))
    });
    if let Some((shadow, slot)) = shadow {
        let copy = Outgoing {
            method: parts.method.clone(),
            path_and_query: path_and_query.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        let (router, pool, stats, model) = (
            router.clone(),
            shadow.pool.clone(),
            shadow.stats.clone(),
            route.model.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let shadow_started = Instant::now();
            let (code, outcome) = match router.send(&pool, &copy).await {
                Ok(response) => (response.status().as_u16(), outcome_of(response.status())),
                Err(_) => (0, Outcome::Error),
            };
            stats.record(shadow_started.elapsed(), outcome);
            router.metrics.observe(
                &model,
                "shadow",
                code,
                shadow_started.elapsed().as_secs_f64(),
            );
        });
    }
    let outgoing = Outgoing {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
    };
    let answer = router.send(&backend.pool, &outgoing).await;
    let elapsed = started.elapsed();
    let version = backend.version.clone();
    let mut response = match answer {
        Ok(response) => {
            backend.stats.record(elapsed, outcome_of(response.status()));
            router.metrics.observe(
                &route.model,
                &version,
                response.status().as_u16(),
                elapsed.as_secs_f64(),
            );
            response
        }
        Err(failure) => {
            backend.stats.record(elapsed, Outcome::Error);
            router
                .metrics
                .observe(&route.model, &version, 0, elapsed.as_secs_f64());
            failure.into_response(&route.model, &version)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&version) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(VERSION_HEADER), value);
    }
    response
}

/// `/v2/models/M/versions/NAME/…` with NAME replaced by `served`: a path that pins a backend
/// by its router name (a role such as `canary`) reaches the replica as the version number it
/// serves, which is all a replica knows.
fn with_path_version(path_and_query: &str, model: &str, named: &str, served: &str) -> String {
    let prefix = format!("/v2/models/{model}/versions/{named}");
    match path_and_query.strip_prefix(&prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
            format!("/v2/models/{model}/versions/{served}{rest}")
        }
        _ => path_and_query.to_owned(),
    }
}

pub(crate) fn outcome_of(status: StatusCode) -> Outcome {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        Outcome::Overloaded
    } else if status.is_server_error() {
        Outcome::Error
    } else if status.is_client_error() {
        Outcome::ClientError
    } else {
        Outcome::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_model_and_version() {
        assert_eq!(
            target("/v2/models/iris/versions/2/infer"),
            Target::Model {
                model: "iris",
                version: Some("2")
            }
        );
        assert_eq!(
            target("/v2/models/iris/ready"),
            Target::Model {
                model: "iris",
                version: None
            }
        );
        assert_eq!(
            target("/v1/models/iris:predict"),
            Target::Model {
                model: "iris",
                version: None
            }
        );
        assert_eq!(target("/v2/health/ready"), Target::ServerReady);
        assert_eq!(target("/v2/models/"), Target::Unknown);
        assert_eq!(target("/etc/passwd"), Target::Unknown);
    }

    /// With `max_shadow_in_flight = 1` and a shadow that never answers, the first copy keeps
    /// the only place: the next requests' copies are dropped and counted, and every primary
    /// request is answered all the same.
    #[tokio::test]
    async fn a_full_shadow_queue_drops_copies_without_holding_the_primary() {
        let primary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let primary_address = primary.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().fallback(|| async { "ok" });
            axum::serve(primary, app).await
        });
        // Connections land in the kernel's backlog and are never answered.
        let shadow = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let folder = std::env::temp_dir().join(format!("weir-shadow-cap-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let config = folder.join("routes.toml");
        std::fs::write(
            &config,
            format!(
                "[settings]\nmax_shadow_in_flight = 1\n\
                 [[route]]\nmodel = \"iris\"\n\
                 [[route.backend]]\nversion = \"1\"\nendpoints = [\"http://{primary_address}\"]\nweight = 100\n\
                 [route.shadow]\nendpoints = [\"http://{}\"]\npercent = 100\n",
                shadow.local_addr().unwrap()
            ),
        )
        .unwrap();
        let router = Router::new(&config, Some(folder.join("state.json")), None).unwrap();
        for _ in 0..3 {
            let request = Request::post("/v2/models/iris/infer")
                .body(Body::from("{}"))
                .unwrap();
            let response = handle(State(router.clone()), request).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert_eq!(router.metrics.shadow_dropped(), 2);
        let text = router.metrics.encode();
        assert!(text.contains("weir_router_shadow_in_flight 1"), "{text}");
    }
}
