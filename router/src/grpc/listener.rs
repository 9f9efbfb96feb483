//! The gRPC listener: HTTP/2 with prior knowledge (as gRPC clients speak it in the clear) on
//! the listener every weir server shares (`weir_http::server::Server::serve_http2`), under the
//! data port's caps (one count of connections per peer across both ports) and deadlines: the
//! header deadline until a connection's first call, the idle deadline after its last, the body
//! rate per call, PINGs for peers that vanished, and on stop GOAWAY while the calls in flight
//! finish.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Either;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir_http::panic::GrpcAnswerPanics;
use weir_http::server::{Http2Body, MinRateBody};

use super::GrpcBody;
use crate::Router;

impl Router {
    /// Serves gRPC on `listener` (on the caller's runtime) until `stop` turns true; then sends
    /// GOAWAY on every connection and returns when the calls in flight have finished. `weir
    /// route` serves it on its workers instead (`Router::serve_on_workers`).
    pub fn serve_grpc(
        self: &Arc<Self>,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let (service, server) = (self.grpc_service(), self.listener.clone());
        tokio::spawn(async move {
            server
                .serve_http2(listener, service, async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await;
        })
    }

    /// The gRPC port's service: streams pass through (`stream`), other calls are held whole
    /// (`forward`). A call that panics (a bug) is answered INTERNAL and counted in
    /// `weir_panics_total`, as the data port answers a panic 500.
    pub(crate) fn grpc_service(
        self: &Arc<Self>,
    ) -> impl weir_http::server::Serves<super::stream::StreamBody, Http2Body> {
        let router = self.clone();
        tower::service_fn(move |request: hyper::Request<MinRateBody<Http2Body>>| {
            let router = router.clone();
            let panics = router.metrics.panics.clone();
            let call = async move {
                if request.uri().path() == super::stream::PATH {
                    return Ok::<_, Infallible>(super::stream::handle(router, request).await);
                }
                let response = super::handle(router, request).await;
                Ok(response.map(Either::Left))
            };
            GrpcAnswerPanics::new(call, panics, || Either::Left(GrpcBody::default()))
        })
    }
}
