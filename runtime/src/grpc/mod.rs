//! The Open Inference Protocol over gRPC (`weir serve --grpc-port`): KServe's
//! `inference.GRPCInferenceService` with the Triton extensions `tritonclient.grpc` uses, and
//! the standard `grpc.health.v1.Health` for Kubernetes' gRPC probes, on tonic over hyper's
//! HTTP/2.
//!
//! Nothing here decides what a request means: [`service`] resolves models in the same store,
//! validates through the same signatures, queues on the same schedulers (an HTTP and a gRPC
//! request may share a batch) and accounts through the same `observe::account`, under the
//! `protocol="grpc"` label; [`admission`] applies the HTTP path's body limit, memory budget and
//! concurrency slots; [`status`] maps the HTTP path's errors to gRPC codes. Shutdown is the
//! HTTP listener's: stop accepting, GOAWAY, let accepted calls finish.

pub mod admission;
pub mod config;
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

use crate::app::App;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// HTTP/2 pings on idle connections: a peer that vanished (a node gone, a NAT that dropped the
/// flow) is noticed and its connection closed rather than kept open forever.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Calls one connection may have open at once: far past any client's pipelining (tritonclient
/// and the router multiplex tens), low enough that one connection cannot hold the server's
/// memory in stream state. Inference itself is bounded by the shared concurrency slots.
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Metadata per call (gRPC headers): a few hundred bytes in practice.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Serves gRPC on `listener` until `stop` turns true, then drains: no new connections, GOAWAY
/// to open ones, and accepted calls run to their end (the caller bounds the wait).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let health = health::service(app.clone(), stop.clone()).await;
    let limit = app.config.max_body_bytes;
    let inference = GrpcInferenceServiceServer::new(service::Inference::new(app.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(admission::AdmissionLayer::new(
            app.admission.clone(),
            app.metrics.panics.clone(),
        ))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .add_service(health)
        .add_service(inference)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
}
