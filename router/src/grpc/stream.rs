//! `ModelStreamInfer` (Triton's bidirectional stream: `tritonclient.grpc`'s `start_stream`,
//! `perf_analyzer --streaming`, decoupled models) through the router. A stream cannot be held
//! whole as a unary call is: the client may wait for answers before sending more. So the router
//! reads the stream's first message (bounded) to learn the model and version, picks the version
//! and a replica by the unary rules, and then passes both directions through as they come, the
//! replica's trailers included. The whole stream goes to that replica. It is not retried (the
//! request is not held); its status is counted when its trailers pass.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};

use super::body::GrpcBody;
use super::forward::{choose_for_stream, refusal, Outgoing};
use super::{status, wire};
use crate::proxy::VERSION_HEADER;
use crate::random::with_fast_rng;
use crate::stats::{Outcome, VersionStats};
use crate::Router;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type StreamBody = http_body_util::Either<GrpcBody, Observed>;

pub const PATH: &str = "/inference.GRPCInferenceService/ModelStreamInfer";

/// The request body: the bytes read to find the first message, then the rest as it comes.
struct Prefixed<B> {
    head: Option<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }
}

/// The replica's answer stream, counted when it ends: by its `grpc-status` trailer, or as an
/// error when it breaks off or ends without one.
pub struct Observed {
    inner: Incoming,
    record: Option<Record>,
}

struct Record {
    router: Arc<Router>,
    stats: Arc<VersionStats>,
    model: String,
    version: String,
    started: Instant,
    /// The replica counts the stream as in flight (two choices) until it ends.
    _in_flight: crate::endpoint::InFlight,
}

impl Record {
    fn finish(self, code: u16) {
        let http = status::http_equivalent(code);
        let elapsed = self.started.elapsed();
        let outcome = crate::proxy::outcome_of(
            axum::http::StatusCode::from_u16(http)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        );
        self.stats.record(elapsed, outcome);
        self.router.metrics.observe_grpc(
            &self.model,
            &self.version,
            status::name(code),
            http,
            elapsed.as_secs_f64(),
        );
    }
}

impl Drop for Observed {
    /// A stream the client dropped before its end: cancelled, the client's doing.
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(1);
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|trailers| {
                trailers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(status::UNKNOWN)
            }),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Some(status::UNAVAILABLE),
            Poll::Pending => None,
        };
        if let Some(code) = code {
            if let Some(record) = self.record.take() {
                record.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Reads frames until the first message is whole (at most `limit` bytes).
async fn first_message<B>(body: &mut B, limit: usize) -> Result<Bytes, (u16, String)>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut head = Vec::new();
    loop {
        if head.len() >= 5 {
            let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if length > limit {
                return Err((
                    status::RESOURCE_EXHAUSTED,
                    format!("the stream's first message is larger than the limit of {limit} bytes"),
                ));
            }
            if head.len() >= 5 + length {
                return Ok(Bytes::from(head));
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            Some(Err(err)) => {
                return Err((
                    status::INVALID_ARGUMENT,
                    format!("cannot read the stream: {}", err.into()),
                ))
            }
            None => {
                return Err((
                    status::INVALID_ARGUMENT,
                    wire::WireError::Truncated.to_string(),
                ))
            }
        }
    }
}

pub async fn handle<B>(router: Arc<Router>, request: Request<B>) -> Response<StreamBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let left = |response: Response<GrpcBody>| response.map(http_body_util::Either::Left);
    let (parts, body) = request.into_parts();
    let mut body = body.map_err(Into::into).boxed_unsync();
    let table = router.table.load_full();
    let head = match first_message(&mut body, table.settings.max_body_bytes).await {
        Ok(head) => head,
        Err((code, message)) => return left(refusal(code, &message)),
    };
    let fields = wire::first_message(&head).and_then(wire::name_and_version);
    let (name, version) = match fields {
        Ok(fields) => fields,
        Err(err) => return left(refusal(status::INVALID_ARGUMENT, &err.to_string())),
    };
    let Some(route) = table.routes.get(&name).cloned() else {
        return left(refusal(
            status::NOT_FOUND,
            &format!("unknown model '{name}': the router has no route for it"),
        ));
    };
    let backend = match choose_for_stream(&route, version, &parts.headers) {
        Ok(backend) => backend,
        Err(response) => return left(*response),
    };
    if let Some(refused) = super::forward::without_grpc(&table.settings, backend) {
        return left(refused);
    }
    let port = table.settings.grpc_port;
    let Some(endpoint) =
        with_fast_rng(|rng| backend.pool.pick(None, rng, std::time::Instant::now()))
    else {
        return left(refusal(
            status::UNAVAILABLE,
            &format!(
                "model '{}' version {} has no replica",
                route.model, backend.version
            ),
        ));
    };
    let Some(authority) = super::forward::grpc_authority(&endpoint, port) else {
        return left(refusal(
            status::UNAVAILABLE,
            &super::forward::no_grpc_port(&endpoint),
        ));
    };
    let started = Instant::now();
    let in_flight = endpoint.start();
    let outgoing = Outgoing::new(PATH, &parts.headers, Bytes::new(), &table.settings);
    let uri = format!("http://{authority}{PATH}");
    let mut upstream = hyper::Request::post(uri);
    if let Some(headers) = upstream.headers_mut() {
        *headers = outgoing.headers;
    }
    let upstream = match upstream.body(
        Prefixed {
            head: Some(head),
            rest: body,
        }
        .boxed_unsync(),
    ) {
        Ok(upstream) => upstream,
        Err(err) => return left(refusal(status::INTERNAL, &err.to_string())),
    };
    let settings = table.settings;
    let answer = tokio::time::timeout(
        settings.request_timeout,
        super::stream_client().request(upstream),
    )
    .await;
    let version = backend.version.clone();
    let failed = |code: u16, message: String| {
        backend.stats.record(started.elapsed(), Outcome::Error);
        router.metrics.observe_grpc(
            &route.model,
            &version,
            status::name(code),
            0,
            started.elapsed().as_secs_f64(),
        );
        endpoint.record_failure(
            settings.ejection_failures,
            settings.ejection_base,
            Instant::now(),
        );
        left(refusal(code, &message))
    };
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            return failed(
                status::UNAVAILABLE,
                format!(
                    "no replica of model '{}' version {version} could be reached: {err}",
                    route.model
                ),
            )
        }
        Err(_) => {
            return failed(
                status::DEADLINE_EXCEEDED,
                format!(
                    "model '{}' version {version} did not answer within {} ms",
                    route.model,
                    settings.request_timeout.as_millis()
                ),
            )
        }
    };
    endpoint.record_success();
    let (mut parts, inner) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(value) = HeaderValue::from_str(&version) {
        parts.headers.insert(VERSION_HEADER, value);
    }
    let observed = Observed {
        inner,
        record: Some(Record {
            router: router.clone(),
            stats: backend.stats.clone(),
            model: route.model.clone(),
            version,
            started,
            _in_flight: in_flight,
        }),
    };
    Response::from_parts(parts, http_body_util::Either::Right(observed))
}
