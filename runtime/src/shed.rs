//! Server-wide admission control: a fixed number of inference requests in flight, and an
//! immediate 503 with `Retry-After` for the rest rather than an unbounded wait.
//!
//! Per-model queues bound the work each model holds; this bounds the requests the server works
//! on in total, whatever the number of models or clients. A request is admitted once its whole
//! body has arrived: a client that sends headers and stalls must not hold a slot (520 of them
//! used to answer every real request with 503). The body deadline of the listener
//! (`weir_http::server`) ends such a client; the connection cap bounds how many wait at once.
//! Health and metadata routes sit outside it, so an overloaded server still answers its probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::budget::BodyBudget;
use crate::error::ApiError;

/// Layer that reads each request's body (up to `max_body_bytes`), then sheds requests beyond
/// `limit` in flight.
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    max_body_bytes: usize,
    /// Where the bytes of bodies being read and worked on come from (crate::budget).
    budget: Option<BodyBudget>,
    shed: Counter,
}

impl LoadShedLayer {
    pub fn new(limit: usize, max_body_bytes: usize, shed: Counter) -> Self {
        LoadShedLayer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            max_body_bytes,
            budget: None,
            shed,
        }
    }

    /// Draws every body on `budget` while it is read and until its request is answered.
    pub fn with_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Reads a whole body under the limit and the budget; a refusal for lack of room (the
    /// budget spent) is counted as shed. Shared with the gRPC listener (`crate::grpc`), so both
    /// protocols draw on one budget.
    pub(crate) async fn read<B>(
        &self,
        headers: &axum::http::HeaderMap,
        body: B,
    ) -> Result<(bytes::Bytes, crate::budget::Reservation), ApiError>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        weir_http::body::read_body(headers, body, self.max_body_bytes, self.budget.as_ref())
            .await
            .map_err(|refusal| {
                let refusal = ApiError::from(refusal);
                if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
                    self.shed.inc();
                }
                refusal
            })
    }

    /// Takes one of the server-wide inference slots, or refuses at once (counted as shed) with
    /// 503 and `Retry-After`. The HTTP and gRPC listeners share the slots.
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            self.shed.inc();
            let mut refusal = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is at its limit of {} concurrent inference requests; retry shortly",
                    self.limit
                ),
            );
            refusal.retry_after = Some(1);
            refusal
        })
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S> Service<Request<Body>> for LoadShed<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service polled ready is the one called; a clone stays for the next request.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (body, reservation) = match layer.read(&parts.headers, body).await {
                Ok(read) => read,
                Err(refusal) => return Ok(refusal.into_response()),
            };
            let permit = match layer.admit() {
                Ok(permit) => permit,
                Err(refusal) => return Ok(refusal.into_response()),
            };
            let response = inner
                .call(Request::from_parts(parts, Body::from(body)))
                .await;
            drop(permit);
            drop(reservation);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn request(body: Body) -> Request<Body> {
        Request::post("/v2/models/m/infer").body(body).unwrap()
    }

    /// A body whose client sent the headers and stalled.
    struct Stalled;

    impl hyper::body::Body for Stalled {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn requests_over_the_limit_get_503_with_retry_after_and_are_counted() {
        let (release, released) = tokio::sync::watch::channel(false);
        let slow = tower::service_fn(move |_: Request<Body>| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, std::convert::Infallible>(StatusCode::OK.into_response())
            }
        });
        let shed = Counter::default();
        let service = LoadShedLayer::new(2, 1024, shed.clone()).layer(slow);
        let first = tokio::spawn(service.clone().oneshot(request(Body::empty())));
        let second = tokio::spawn(service.clone().oneshot(request(Body::empty())));
        while service.layer.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = service
            .clone()
            .oneshot(request(Body::empty()))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(shed.get(), 1);
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(
            service
                .oneshot(request(Body::empty()))
                .await
                .unwrap()
                .status(),
            StatusCode::OK,
            "permits come back"
        );
    }

    #[tokio::test]
    async fn a_stalled_body_holds_no_slot_and_the_handler_gets_the_whole_body() {
        let echo = tower::service_fn(|request: Request<Body>| async move {
            let body = axum::body::to_bytes(request.into_body(), 1024)
                .await
                .unwrap();
            Ok::<_, std::convert::Infallible>(body.into_response())
        });
        let shed = Counter::default();
        let service = LoadShedLayer::new(1, 1024, shed.clone()).layer(echo);
        let stalled: Vec<_> = (0..8)
            .map(|_| tokio::spawn(service.clone().oneshot(request(Body::new(Stalled)))))
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(service.layer.permits.available_permits(), 1);
        let answer = service
            .clone()
            .oneshot(request(Body::from("whole")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body = axum::body::to_bytes(answer.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(body, "whole");
        assert_eq!(shed.get(), 0);
        for waiting in stalled {
            assert!(!waiting.is_finished());
            waiting.abort();
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_get_413_without_a_slot() {
        let never = tower::service_fn(|_: Request<Body>| async move {
            Ok::<_, std::convert::Infallible>(StatusCode::OK.into_response())
        });
        let service = LoadShedLayer::new(1, 4, Counter::default()).layer(never);
        let answer = service.oneshot(request(Body::from("12345"))).await.unwrap();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
