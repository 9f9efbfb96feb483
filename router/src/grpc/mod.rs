//! gRPC through the router (`weir route --grpc-port`): the Open Inference Protocol's
//! `GRPCInferenceService` (what `tritonclient.grpc`, `perf_analyzer` and KServe clients speak),
//! proxied at the HTTP/2 level on a port of its own.
//!
//! A port of its own rather than detecting the protocol on the data port: the data listener is
//! HTTP/1 with its own deadlines (weir_http::server), a mesh or ingress tells protocols apart by
//! port (the Helm Service names it `grpc`), and a client that speaks HTTP/2 with prior
//! knowledge to a detecting port would be guessed at from its first bytes. The rules are HTTP's:
//! the same routing table, weights, pins, sticky hash and shadow (`forward`), the same attempt
//! loop (retries, ejection: `Router::attempt`), the same per-version stats. Unary calls are
//! held whole (`forward`); `ModelStreamInfer` streams pass through (`stream`).

mod body;
mod connections;
mod forward;
mod listener;
pub mod status;
mod stream;
pub mod wire;

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use body::GrpcBody;
pub use forward::handle;

/// Per-stream and per-connection flow-control windows towards the replicas: HTTP/2's defaults
/// (64 KiB) would let a multi-megabyte tensor cross in dozens of round trips.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;
/// A PING after this long without frames, and the connection is dropped when its answer does
/// not come within [`KEEP_ALIVE_TIMEOUT`]: a replica or client that vanished is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

type StreamClient =
    Client<HttpConnector, http_body_util::combinators::UnsyncBoxBody<axum::body::Bytes, BoxError>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

thread_local! {
    /// Connections for streams, whose requests pass through as they come.
    static STREAM_CLIENT: StreamClient = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector)
    };
}

fn stream_client() -> StreamClient {
    STREAM_CLIENT.with(Clone::clone)
}
