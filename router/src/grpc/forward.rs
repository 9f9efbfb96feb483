//! A gRPC call through the router: which model and version it is for (the method in `:path`,
//! the model's name and version from the first message, `x-weir-version` and the sticky key
//! from metadata), the call forwarded whole to a replica of that version over HTTP/2 by the
//! attempt loop HTTP uses, its `grpc-status` counted, and the answer passed back with its
//! trailers unchanged and `x-weir-version` added to its metadata.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Body;

use super::body::GrpcBody;
use super::status;
use super::wire;
use crate::endpoint::Endpoint;
use crate::proxy::{outcome_of, VERSION_HEADER};
use crate::random::with_fast_rng;
use crate::send::{hop_by_hop, Attempt, Failure};
use crate::table::{Backend, Route};
use crate::Router;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SERVICE: &str = "/inference.GRPCInferenceService/";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// What a method asks of the router.
#[derive(Debug, PartialEq, Eq)]
enum Method {
    ServerLive,
    ServerReady,
    ServerMetadata,
    RepositoryIndex,
    HealthCheck,
    /// Per model, answered by the route's stable version (as HTTP's GETs are).
    ModelQuery,
    /// Per model, by weight (or pin, or sticky key).
    ModelInfer,
    Unsupported,
}

fn method(path: &str) -> Method {
    if path == HEALTH_CHECK {
        return Method::HealthCheck;
    }
    match path.strip_prefix(SERVICE) {
        Some("ServerLive") => Method::ServerLive,
        Some("ServerReady") => Method::ServerReady,
        Some("ServerMetadata") => Method::ServerMetadata,
        Some("RepositoryIndex") => Method::RepositoryIndex,
        Some("ModelReady" | "ModelMetadata" | "ModelConfig" | "ModelStatistics") => {
            Method::ModelQuery
        }
        Some("ModelInfer") => Method::ModelInfer,
        _ => Method::Unsupported,
    }
}

/// A "trailers-only" answer: the status in the headers, no message.
pub fn refusal(code: u16, message: &str) -> Response<GrpcBody> {
    let mut response = Response::new(GrpcBody::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(value) = HeaderValue::from_str(&status::encode_message(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// An answer the router gives itself: one message, status OK.
fn answer(message: &[u8]) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status::OK));
    let mut response = Response::new(GrpcBody::new(wire::frame(message), Some(trailers)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The gRPC listener's service.
pub async fn handle<B>(router: Arc<Router>, request: Request<B>) -> Response<GrpcBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        let mut response = refusal(
            status::INTERNAL,
            "the router's gRPC port takes content-type application/grpc; HTTP/JSON goes to its HTTP port",
        );
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return response;
    }
    let (parts, body) = request.into_parts();
    let method = method(parts.uri.path());
    if method == Method::Unsupported {
        return refusal(
            status::UNIMPLEMENTED,
            &format!(
                "the router does not forward {} (it routes inference and model metadata calls; \
                 repository and shared-memory calls go to a replica directly)",
                parts.uri.path()
            ),
        );
    }
    let limit = router.table.load().settings.max_body_bytes;
    let (body, _reservation) =
        match weir_http::body::read_body(&parts.headers, body, limit, Some(&router.body_budget))
            .await
        {
            Ok(read) => read,
            Err(refusal_reason) => {
                let code = match refusal_reason.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => status::RESOURCE_EXHAUSTED,
                    StatusCode::SERVICE_UNAVAILABLE => status::UNAVAILABLE,
                    StatusCode::REQUEST_TIMEOUT => status::DEADLINE_EXCEEDED,
                    _ => status::INVALID_ARGUMENT,
                };
                let mut response = refusal(code, &refusal_reason.to_string());
                if let Some(seconds) = refusal_reason.retry_after() {
                    response
                        .headers_mut()
                        .insert("retry-after", HeaderValue::from(seconds));
                }
                return response;
            }
        };
    let message = match wire::first_message(&body) {
        Ok(message) => message,
        Err(err) => return refusal(status::INVALID_ARGUMENT, &err.to_string()),
    };
    let (name, version) = match wire::name_and_version(message) {
        Ok(fields) => fields,
        Err(err) => return refusal(status::INVALID_ARGUMENT, &err.to_string()),
    };
    match method {
        Method::ServerLive => answer(&bool_message(true)),
        Method::ServerReady => answer(&bool_message(router.ready())),
        Method::HealthCheck => health(&router, &name),
        Method::ServerMetadata => {
            let mut metadata = Vec::new();
            wire::put_bytes(&mut metadata, 1, b"weir-router");
            wire::put_bytes(&mut metadata, 2, env!("CARGO_PKG_VERSION").as_bytes());
            answer(&metadata)
        }
        Method::RepositoryIndex => {
            let table = router.table.load();
            let mut models: Vec<&String> = table.routes.keys().collect();
            models.sort();
            let mut index = Vec::new();
            for model in models {
                let mut entry = Vec::new();
                wire::put_bytes(&mut entry, 1, model.as_bytes());
                wire::put_bytes(&mut entry, 3, b"READY");
                wire::put_bytes(&mut index, 1, &entry);
            }
            answer(&index)
        }
        Method::ModelQuery | Method::ModelInfer => {
            let call = Call {
                method: &method,
                name: &name,
                version,
                path: parts.uri.path(),
                headers: &parts.headers,
                body,
            };
            forward(&router, call).await
        }
        Method::Unsupported => refusal(status::UNIMPLEMENTED, "unsupported method"),
    }
}

fn bool_message(value: bool) -> Vec<u8> {
    let mut message = Vec::new();
    wire::put_varint_field(&mut message, 1, u64::from(value));
    message
}

/// `grpc.health.v1.Health/Check`, with `weir serve`'s service names: the empty name (what a
/// probe without a service asks) and the inference service are serving when every model can be
/// served (as `/v2/health/ready`); `live` while the router runs (as `/v2/health/live`: a
/// liveness probe must not restart a router whose replicas are down).
fn health(router: &Router, service: &str) -> Response<GrpcBody> {
    const SERVING: u64 = 1;
    const NOT_SERVING: u64 = 2;
    let serving = match service {
        "live" => true,
        "" | "inference.GRPCInferenceService" => router.ready(),
        other => {
            return refusal(
                status::NOT_FOUND,
                &format!("unknown service '{other}' (the router knows '', 'live' and 'inference.GRPCInferenceService')"),
            )
        }
    };
    let mut message = Vec::new();
    wire::put_varint_field(&mut message, 1, if serving { SERVING } else { NOT_SERVING });
    answer(&message)
}

/// A per-model call, its body held whole.
struct Call<'a> {
    method: &'a Method,
    name: &'a str,
    /// The version the message names (`model_version`), the most specific pin.
    version: Option<String>,
    path: &'a str,
    headers: &'a HeaderMap,
    body: Bytes,
}

async fn forward(router: &Arc<Router>, call: Call<'_>) -> Response<GrpcBody> {
    let started = Instant::now();
    let table = router.table.load_full();
    let Some(route) = table.routes.get(call.name).cloned() else {
        return refusal(
            status::NOT_FOUND,
            &format!(
                "unknown model '{}': the router has no route for it",
                call.name
            ),
        );
    };
    let backend = match choose(&route, &call) {
        Ok(backend) => backend,
        Err(response) => return *response,
    };
    if let Some(refused) = without_grpc(&table.settings, backend) {
        return refused;
    }
    let settings = table.settings;
    // A message naming the backend by its router name (a role) names the number its replicas
    // serve on the way, as an HTTP path does.
    let body = match (&call.version, &backend.registry_version) {
        (Some(named), Some(served)) if *named == backend.version && named != served => {
            match wire::with_version(&call.body, served) {
                Ok(body) => body,
                Err(err) => return refusal(status::INVALID_ARGUMENT, &err.to_string()),
            }
        }
        _ => call.body.clone(),
    };
    if let Some((shadow, slot)) =
        with_fast_rng(|rng| route.shadow_for_this_request(rng)).and_then(|shadow| {
            router
                .metrics
                .start_shadow(settings.max_shadow_in_flight)
                .map(|slot| (shadow, slot))
        })
    {
        let outgoing = Outgoing::new(call.path, call.headers, body.clone(), &settings);
        let (router, pool, stats, model) = (
            router.clone(),
            shadow.pool.clone(),
            shadow.stats.clone(),
            route.model.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let (code, _) = match send(&router, &pool, &outgoing).await {
                Ok(answer) => answer.status(),
                Err(_) => (status::UNAVAILABLE, None),
            };
            let http = status::http_equivalent(code);
            stats.record(started.elapsed(), outcome_of(http_status(http)));
            router.metrics.observe_grpc(
                &model,
                "shadow",
                status::name(code),
                http,
                started.elapsed().as_secs_f64(),
            );
        });
    }
    let outgoing = Outgoing::new(call.path, call.headers, body, &settings);
    let answer = send(router, &backend.pool, &outgoing).await;
    let elapsed = started.elapsed();
    let version = &backend.version;
    let mut response = match answer {
        Ok(answer) => {
            let (code, replaced) = answer.status();
            let http = status::http_equivalent(code);
            backend.stats.record(elapsed, outcome_of(http_status(http)));
            router.metrics.observe_grpc(
                &route.model,
                version,
                status::name(code),
                http,
                elapsed.as_secs_f64(),
            );
            match replaced {
                Some(response) => response,
                None => answer.into_response(),
            }
        }
        Err(failure) => {
            backend.stats.record(elapsed, crate::stats::Outcome::Error);
            let (code, message) = describe(&failure, &route.model, version);
            // No answer came: as for HTTP, the request counts under code 0.
            router.metrics.observe_grpc(
                &route.model,
                version,
                status::name(code),
                0,
                elapsed.as_secs_f64(),
            );
            let mut response = refusal(code, &message);
            if matches!(failure, Failure::NoReplica(_)) {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(version) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(VERSION_HEADER), value);
    }
    response
}

fn http_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The version a call goes to, by the rules HTTP follows (docs/router.md, "Choosing a
/// version"), with the same weights and sticky hash: the message's `model_version`, else
/// `x-weir-version` metadata pins; a metadata query goes to the stable version; an inference
/// call by sticky key or weight.
fn choose<'r>(route: &'r Route, call: &Call<'_>) -> Result<&'r Backend, Box<Response<GrpcBody>>> {
    choose_by(
        route,
        *call.method == Method::ModelQuery,
        call.version.clone(),
        call.headers,
    )
}

/// [`choose`] for a stream of inference calls: by weight unless pinned.
pub(super) fn choose_for_stream<'r>(
    route: &'r Route,
    version: Option<String>,
    headers: &HeaderMap,
) -> Result<&'r Backend, Box<Response<GrpcBody>>> {
    choose_by(route, false, version, headers)
}

fn choose_by<'r>(
    route: &'r Route,
    query: bool,
    version: Option<String>,
    headers: &HeaderMap,
) -> Result<&'r Backend, Box<Response<GrpcBody>>> {
    let pinned = version.or_else(|| {
        headers
            .get(VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let chosen = match &pinned {
        Some(version) => route.backend(version).ok_or_else(|| {
            format!(
                "model '{}' has no version '{version}' behind this router",
                route.model
            )
        }),
        None if query => route
            .backends
            .iter()
            .find(|b| b.weight > 0)
            .ok_or_else(|| format!("model '{}' has no version with traffic", route.model)),
        None => {
            let sticky = route
                .sticky_header
                .as_ref()
                .and_then(|name| headers.get(name.as_str()))
                .map(HeaderValue::as_bytes);
            with_fast_rng(|rng| route.choose(sticky, rng))
                .ok_or_else(|| format!("model '{}' has no version with weight", route.model))
        }
    };
    chosen.map_err(|message| {
        let code = if pinned.is_some() {
            status::NOT_FOUND
        } else {
            status::UNAVAILABLE
        };
        Box::new(refusal(code, &message))
    })
}

fn describe(failure: &Failure, model: &str, version: &str) -> (u16, String) {
    match failure {
        Failure::Unreachable(reason) => (
            status::UNAVAILABLE,
            format!("no replica of model '{model}' version {version} could be reached: {reason}"),
        ),
        Failure::TimedOut(after) => (
            status::DEADLINE_EXCEEDED,
            format!(
                "model '{model}' version {version} did not answer within {} ms",
                after.as_millis()
            ),
        ),
        Failure::NoReplica(waited) => (
            status::UNAVAILABLE,
            format!(
                "model '{model}' version {version} has no replica yet (waited {} ms for one to start)",
                waited.as_millis()
            ),
        ),
    }
}

/// A call as it goes to a replica (kept whole so that it can be retried).
pub(super) struct Outgoing {
    path: String,
    pub(super) headers: HeaderMap,
    body: Bytes,
    /// `[settings] grpc_port`, for replicas without a gRPC port of their own.
    port: Option<u16>,
    /// The answer is held whole up to `[settings] max_body_bytes`, the request's bound.
    max_answer: usize,
}

impl Outgoing {
    pub(super) fn new(
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        settings: &crate::config::Settings,
    ) -> Outgoing {
        let mut forwarded = HeaderMap::with_capacity(headers.len() + 1);
        for (name, value) in headers {
            if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
                forwarded.append(name.clone(), value.clone());
            }
        }
        // HTTP/2 allows only `te: trailers`, which gRPC servers expect.
        forwarded.insert(header::TE, HeaderValue::from_static("trailers"));
        Outgoing {
            path: path.to_owned(),
            headers: forwarded,
            body,
            port: settings.grpc_port,
            max_answer: settings.max_body_bytes,
        }
    }
}

/// A replica's answer, held whole: head, message bytes, trailers.
pub(super) struct Answer {
    pub(super) parts: axum::http::response::Parts,
    pub(super) data: Bytes,
    pub(super) trailers: Option<HeaderMap>,
}

impl Answer {
    /// Its gRPC status (from the trailers, or the headers of a trailers-only answer), and the
    /// answer to give instead when the replica did not answer in gRPC (a non-200 HTTP status).
    fn status(&self) -> (u16, Option<Response<GrpcBody>>) {
        if self.parts.status != StatusCode::OK {
            let code = status::from_http(self.parts.status.as_u16());
            let message = format!(
                "the replica answered HTTP {} instead of a gRPC answer",
                self.parts.status.as_u16()
            );
            return (code, Some(refusal(code, &message)));
        }
        let code = self
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok());
        match code {
            Some(code) => (code, None),
            None => (
                status::UNKNOWN,
                Some(refusal(
                    status::UNKNOWN,
                    "the replica's answer carried no grpc-status",
                )),
            ),
        }
    }

    fn into_response(self) -> Response<GrpcBody> {
        let mut parts = self.parts;
        let names: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|n| hop_by_hop(n) || *n == header::CONTENT_LENGTH)
            .cloned()
            .collect();
        for name in names {
            parts.headers.remove(name);
        }
        Response::from_parts(parts, GrpcBody::new(self.data, self.trailers))
    }
}

async fn send(
    router: &Router,
    pool: &crate::pool::Pool,
    outgoing: &Outgoing,
) -> Result<Answer, Failure> {
    router
        .attempt(
            pool,
            |endpoint| send_once(endpoint, outgoing),
            |answer: &Answer| {
                let http = status::http_equivalent(answer.status().0);
                http >= 500 && http != 503
            },
        )
        .await
}

const NO_GRPC_PORT: &str = "give the replicas' port as [settings] grpc_port, or each replica's as its endpoint's grpc_port";

/// Why a call cannot go to `endpoint`: it serves gRPC on no port the router knows.
pub(super) fn no_grpc_port(endpoint: &Endpoint) -> String {
    format!("replica {} has no gRPC port: {NO_GRPC_PORT}", endpoint.base)
}

/// A refusal when no replica of `backend` is known to serve gRPC: no port for all in
/// `[settings]`, and replicas (if any yet: scale from zero waits for one) without their own.
pub(super) fn without_grpc(
    settings: &crate::config::Settings,
    backend: &crate::table::Backend,
) -> Option<Response<GrpcBody>> {
    let endpoints = backend.pool.endpoints();
    let unknown = settings.grpc_port.is_none()
        && !endpoints.is_empty()
        && endpoints.iter().all(|e| e.grpc_port.is_none());
    unknown.then(|| {
        refusal(
            status::UNIMPLEMENTED,
            &format!(
                "version {} has no replica with a gRPC port: {NO_GRPC_PORT}",
                backend.version
            ),
        )
    })
}

/// `HOST:PORT` where a replica serves gRPC: its HTTP endpoint's host with its own gRPC port,
/// else with `default` (`[settings] grpc_port`); `None` when it has neither.
pub(crate) fn grpc_authority(endpoint: &Endpoint, default: Option<u16>) -> Option<String> {
    let port = endpoint.grpc_port.or(default)?;
    let authority = endpoint
        .base
        .strip_prefix("http://")
        .unwrap_or(&endpoint.base);
    let host = match authority.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host,
        _ => authority,
    };
    Some(format!("{host}:{port}"))
}

async fn send_once(endpoint: Arc<Endpoint>, outgoing: &Outgoing) -> Result<Answer, Attempt> {
    // Never sent, so another replica may be tried.
    let authority = grpc_authority(&endpoint, outgoing.port).ok_or_else(|| Attempt {
        reason: no_grpc_port(&endpoint),
        retry: true,
        replica_failed: false,
    })?;
    super::connections::send(
        &authority,
        &outgoing.path,
        &outgoing.headers,
        outgoing.body.clone(),
        outgoing.max_answer,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_recognised_by_path() {
        assert_eq!(
            method("/inference.GRPCInferenceService/ModelInfer"),
            Method::ModelInfer
        );
        assert_eq!(
            method("/inference.GRPCInferenceService/ModelMetadata"),
            Method::ModelQuery
        );
        assert_eq!(method("/grpc.health.v1.Health/Check"), Method::HealthCheck);
        assert_eq!(
            method("/inference.GRPCInferenceService/ModelStreamInfer"),
            Method::Unsupported
        );
        assert_eq!(
            method("/inference.GRPCInferenceService/RepositoryModelLoad"),
            Method::Unsupported
        );
        assert_eq!(method("/other.Service/ModelInfer"), Method::Unsupported);
    }

    #[test]
    fn the_grpc_address_is_the_replicas_host_with_the_grpc_port() {
        for (http, grpc) in [
            ("http://127.0.0.1:9001", "127.0.0.1:9000"),
            ("http://[::1]:9001", "[::1]:9000"),
            ("http://weir-runtime-v1:8080", "weir-runtime-v1:9000"),
        ] {
            assert_eq!(
                grpc_authority(&Endpoint::new(http), Some(9000)).as_deref(),
                Some(grpc)
            );
        }
        let own = Endpoint::with_grpc_port("http://127.0.0.1:9001", Some(9101));
        assert_eq!(
            grpc_authority(&own, Some(9000)).as_deref(),
            Some("127.0.0.1:9101"),
            "a replica's own gRPC port wins over [settings]"
        );
        assert_eq!(
            grpc_authority(&Endpoint::new("http://127.0.0.1:9001"), None),
            None
        );
    }
}
