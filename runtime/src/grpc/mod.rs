//! The Open Inference Protocol over gRPC (`weir serve --grpc-port`): KServe's
//! `inference.GRPCInferenceService` with the Triton extensions `tritonclient.grpc` uses, and
//! the standard `grpc.health.v1.Health` for Kubernetes' gRPC probes: tonic's services (and a
//! direct path for `ModelInfer`) on weir-http's own HTTP/2 listener.
//!
//! Nothing here decides what a request means: [`service`] resolves models in the same store,
//! validates through the same signatures, queues on the same schedulers (an HTTP and a gRPC
//! request may share a batch) and accounts through the same `observe::account`, under the
//! `protocol="grpc"` label; [`admission`] applies the HTTP path's body limit, memory budget and
//! concurrency slots; [`status`] maps the HTTP path's errors to gRPC codes. Shutdown is the
//! HTTP listener's: stop accepting, GOAWAY, let accepted calls finish.

pub mod admission;
pub mod config;
pub mod framing;
pub mod health;
pub mod service;
pub mod status;
pub mod tensors;

/// The messages and service compiled from `proto/*.proto` by `build.rs`.
#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Layer;

use crate::app::App;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// Serves gRPC on `listener` under `server`'s caps and deadlines (the HTTP listener's, shared
/// with it: one count of connections per peer across both ports) until `stop` turns true,
/// then drains: no new connections, GOAWAY to open ones, and accepted calls run to their end
/// (the caller bounds the wait).
pub async fn serve(
    app: Arc<App>,
    server: weir_http::server::Server,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let health = health::service(app.clone(), stop.clone()).await;
    let limit = app.config.max_body_bytes;
    let inference = GrpcInferenceServiceServer::new(service::Inference::new(app.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let routes = tonic::service::Routes::new(health)
        .add_service(inference)
        .prepare();
    let service = admission::AdmissionLayer::new(
        service::Inference::new(app.clone()),
        app.admission.clone(),
        app.metrics.panics.clone(),
    )
    .layer(routes);
    server
        .serve_http2(listener, service, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await;
}
