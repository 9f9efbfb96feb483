//! Server-wide admission control: a fixed number of inference requests in flight, and an
//! immediate 503 with `Retry-After` for the rest rather than an unbounded wait.
//!
//! Per-model queues bound the work each model holds; this bounds what the server holds in total
//! (bodies included: at most `limit × --max-body-bytes`), whatever the number of models or
//! clients. Health and metadata routes sit outside it, so an overloaded server still answers
//! its probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::error::ApiError;

/// Layer that sheds requests beyond `limit` in flight.
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    shed: Counter,
}

impl LoadShedLayer {
    pub fn new(limit: usize, shed: Counter) -> Self {
        LoadShedLayer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            shed,
        }
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

impl<S, R> Service<R> for LoadShed<S>
where
    S: Service<R, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.layer.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                self.layer.shed.inc();
                let mut refusal = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the server is at its limit of {} concurrent inference requests; retry shortly", self.layer.limit),
                );
                refusal.retry_after = Some(1);
                Box::pin(std::future::ready(Ok(refusal.into_response())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_over_the_limit_get_503_with_retry_after_and_are_counted() {
        let (release, released) = tokio::sync::watch::channel(false);
        let slow = tower::service_fn(move |_: ()| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, std::convert::Infallible>(StatusCode::OK.into_response())
            }
        });
        let shed = Counter::default();
        let service = LoadShedLayer::new(2, shed.clone()).layer(slow);
        let first = tokio::spawn(service.clone().oneshot(()));
        let second = tokio::spawn(service.clone().oneshot(()));
        while service.layer.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = service.clone().oneshot(()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(shed.get(), 1);
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(
            service.oneshot(()).await.unwrap().status(),
            StatusCode::OK,
            "permits come back"
        );
    }
}
