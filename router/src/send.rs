//! Sending a request to one of a version's replicas: two choices among them, one retry on a
//! connection failure, ejection of replicas that keep failing, and the failures' answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Full};

use crate::endpoint::Endpoint;
use crate::pool::Pool;
use crate::proxy::error;
use crate::random::with_fast_rng;
use crate::Router;

/// A request as it will be sent to a replica (kept whole so it can be retried).
pub struct Outgoing {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A failed attempt at one replica: why, and whether the request may go to another one (only
/// when it cannot have reached this one).
#[derive(Clone)]
pub struct Attempt {
    pub reason: String,
    pub retry: bool,
    /// The replica failed (counted towards its ejection), as opposed to not being one this
    /// request can use at all (a replica without a gRPC port, for a gRPC call).
    pub replica_failed: bool,
}

pub enum Failure {
    Unreachable(String),
    TimedOut(Duration),
    /// No replica arrived while the request was held.
    NoReplica(Duration),
}

impl Failure {
    pub(crate) fn into_response(self, model: &str, version: &str) -> Response {
        match self {
            Failure::Unreachable(reason) => error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "no replica of model '{model}' version {version} could be reached: {reason}"
                ),
            ),
            Failure::NoReplica(waited) => {
                let mut response = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "model '{model}' version {version} has no replica yet (waited {} ms for one to start)",
                        waited.as_millis()
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Failure::TimedOut(after) => error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "model '{model}' version {version} did not answer within {} ms",
                    after.as_millis()
                ),
            ),
        }
    }
}

/// Headers that describe one connection, not the message: never forwarded.
pub(crate) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

impl Router {
    /// Sends to a replica picked by two choices. When no answer comes back because the
    /// connection failed (refused, reset, closed by a replica that died), the request is sent
    /// once more to another replica: inference has no side effects, so a second try is safe.
    /// Timeouts and error answers are not retried.
    pub async fn send(&self, pool: &Pool, outgoing: &Outgoing) -> Result<Response, Failure> {
        self.attempt(
            pool,
            |endpoint| async move {
                self.send_once(&endpoint, outgoing)
                    .await
                    .map_err(|reason| Attempt {
                        reason,
                        retry: true,
                        replica_failed: true,
                    })
            },
            |response: &Response| {
                let status = response.status();
                status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE
            },
        )
        .await
    }

    /// The one attempt loop behind HTTP and gRPC forwarding (so both protocols pick, retry
    /// and eject by the same rules): `once` sends to the replica it is given, `faulty` says
    /// whether an answer counts toward the replica's ejection (a 5xx other than 503, or its
    /// gRPC equivalent). A failed attempt is retried on another replica only when it says so.
    pub(crate) async fn attempt<T, F, Fut>(
        &self,
        pool: &Pool,
        mut once: F,
        faulty: impl Fn(&T) -> bool,
    ) -> Result<T, Failure>
    where
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let settings = self.table.load().settings;
        let timeout = settings.request_timeout;
        let ejection_base = settings.ejection_base;
        if pool.endpoints().is_empty() {
            let hold = settings.hold_timeout;
            if !pool.wait_for_replica(hold, settings.max_held).await {
                return Err(Failure::NoReplica(hold));
            }
        }
        let mut tried: Option<Arc<Endpoint>> = None;
        for attempt in 0..2 {
            let picked = with_fast_rng(|rng| pool.pick(tried.as_ref(), rng, Instant::now()));
            let Some(endpoint) = picked else {
                break;
            };
            let result = {
                let _inflight = endpoint.start();
                tokio::time::timeout(timeout, once(endpoint.clone())).await
            };
            match result {
                Ok(Ok(response)) => {
                    if faulty(&response) {
                        endpoint.record_failure(
                            settings.ejection_failures,
                            ejection_base,
                            Instant::now(),
                        );
                    } else {
                        endpoint.record_success();
                        endpoint.forgive(Instant::now());
                    }
                    return Ok(response);
                }
                Ok(Err(Attempt {
                    reason,
                    retry,
                    replica_failed,
                })) => {
                    if replica_failed {
                        endpoint.record_failure(
                            settings.ejection_failures,
                            ejection_base,
                            Instant::now(),
                        );
                    }
                    if !retry || attempt == 1 || pool.endpoints().len() < 2 {
                        return Err(Failure::Unreachable(reason));
                    }
                    tried = Some(endpoint);
                }
                Err(_) => {
                    endpoint.record_failure(
                        settings.ejection_failures,
                        ejection_base,
                        Instant::now(),
                    );
                    return Err(Failure::TimedOut(timeout));
                }
            }
        }
        Err(Failure::Unreachable("no replica is configured".to_owned()))
    }

    async fn send_once(
        &self,
        endpoint: &Endpoint,
        outgoing: &Outgoing,
    ) -> Result<Response, String> {
        let uri = format!("{}{}", endpoint.base, outgoing.path_and_query);
        let mut request = hyper::Request::builder()
            .method(outgoing.method.clone())
            .uri(uri);
        if let Some(headers) = request.headers_mut() {
            for (name, value) in &outgoing.headers {
                if !hop_by_hop(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let request = request
            .body(Full::new(outgoing.body.clone()))
            .map_err(|e| e.to_string())?;
        let response = crate::client().request(request).await.map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e).map_or(String::new(), ToString::to_string)
            )
        })?;
        let (mut parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("the replica's answer broke off: {e}"))?
            .to_bytes();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }
}

/// Drops connection-level headers from a replica's answer (the body is re-framed here).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}
