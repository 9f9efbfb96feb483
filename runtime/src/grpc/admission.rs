//! The gRPC listener's outer layer: admission for inference, and panics caught.
//!
//! Admission is the HTTP path's limits on the gRPC listener. A `ModelInfer`
//! call's body is read whole under the server's body limit and memory budget, takes one of
//! the server-wide inference slots and is answered from the bytes read
//! (`Inference::infer_framed`) — the same `LoadShedLayer` state the HTTP routes use, so
//! the two protocols share one limit rather than each having their own. Refusals are gRPC
//! statuses (RESOURCE_EXHAUSTED past the size limit, UNAVAILABLE with `retry-after` when
//! shed). Health, metadata and control calls pass straight through, as on HTTP, so an
//! overloaded server still answers its probes.
//!
//! A panic while a call is handled (a bug in weir) is answered INTERNAL with the message the HTTP
//! panic layer gives, logged and counted in `weir_panics_total`, as over HTTP
//! (`weir_http::panic::GrpcAnswerPanics`): left to the HTTP/2 connection it would only reset the
//! call's stream, which a gRPC client reports as CANCELLED.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use prometheus_client::metrics::counter::Counter;
use tonic::body::Body;
use tower::{Layer, Service};
use weir_http::panic::GrpcAnswerPanics;

use super::service::Inference;
use super::status::to_status;
use crate::shed::LoadShedLayer;

/// The path of the one call admission applies to.
pub const INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

#[derive(Clone)]
pub struct AdmissionLayer {
    inference: Inference,
    shed: LoadShedLayer,
    panics: Counter,
}

impl AdmissionLayer {
    /// `inference` answers the admitted `ModelInfer` calls; `shed`: the HTTP routes' admission
    /// state; `panics`: the server's `weir_panics_total`.
    pub fn new(inference: Inference, shed: LoadShedLayer, panics: Counter) -> AdmissionLayer {
        AdmissionLayer {
            inference,
            shed,
            panics,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            inference: self.inference.clone(),
            shed: self.shed.clone(),
            panics: self.panics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    inference: Inference,
    shed: LoadShedLayer,
    panics: Counter,
}

impl<S, B> Service<Request<B>> for Admission<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service polled ready is the one called; a clone stays for the next request.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let panics = self.panics.clone();
        if request.uri().path() != INFER_PATH {
            let call = inner.call(request.map(Body::new));
            return Box::pin(GrpcAnswerPanics::new(call, panics, Body::default));
        }
        let (shed, inference) = (self.shed.clone(), self.inference.clone());
        // Only the headers and the body go into the call's state: an async block keeps what
        // it captures for its whole life, and the rest of the request is not needed.
        let (parts, body) = request.into_parts();
        let headers = parts.headers;
        let admitted = async move {
            let arrived = std::time::Instant::now();
            let (body, reservation) = match shed.read(&headers, body).await {
                Ok(read) => read,
                Err(refusal) => return Ok(to_status(refusal).into_http()),
            };
            let permit = match shed.admit() {
                Ok(permit) => permit,
                Err(refusal) => return Ok(to_status(refusal).into_http()),
            };
            // The call's own state in an allocation of its own: this block and the call each
            // fit glibc's per-thread cache (blocks up to 1,032 bytes), where the two together
            // would take the arena's slow path (benches/README.md).
            let response = Box::pin(inference.infer_framed(arrived, &body)).await;
            drop(permit);
            drop(reservation);
            Ok(response)
        };
        Box::pin(GrpcAnswerPanics::new(admitted, panics, Body::default))
    }
}
