//! Per-request accounting, in one place: every inference request (V2 or V1, HTTP or gRPC) goes
//! through [`Accounting`] ([`observe`] for HTTP, which wraps it), and nothing else counts
//! requests. The scheduler accounts only for what is its own: its queue (depth, refusals) and
//! each model execution (compute time, batch size), which a batch shares among its requests.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::stats::Execution;
use crate::store::LoadedVersion;

/// A successful answer (an HTTP response, or a gRPC message) and what its model call cost,
/// for the statistics.
pub struct Answered<R = Response> {
    pub response: R,
    /// How long the request waited before its model started on it.
    pub queued: Duration,
    pub execution: Execution,
}

/// Runs one HTTP inference request's `work` on `loaded` and accounts for it (see [`account`]);
/// a failure becomes its JSON error answer.
pub async fn observe(
    loaded: &LoadedVersion,
    arrived: Instant,
    work: impl Future<Output = Result<Answered, ApiError>>,
) -> Response {
    match account(loaded, Protocol::Http, arrived, work).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// Runs one inference request's `work` on `loaded`, whichever protocol it came over, and
/// accounts for it ([`Accounting`]).
pub async fn account<R>(
    loaded: &LoadedVersion,
    protocol: Protocol,
    arrived: Instant,
    work: impl Future<Output = Result<Answered<R>, ApiError>>,
) -> Result<R, ApiError> {
    let accounting = Accounting::start(loaded, protocol, arrived);
    accounting.finish(work.await)
}

/// One inference request's accounting, from [`Accounting::start`] to [`Accounting::finish`]:
/// - in flight meanwhile (`weir_inflight_requests`), given back on drop, so a request whose
///   client went away (its future dropped mid-way) is not left counted;
/// - then its protocol and status (`weir_inference_requests_total`; a failure under its
///   error's HTTP status) and time from `arrived` to its answer
///   (`weir_inference_request_duration_seconds`);
/// - a success's queue wait (`weir_inference_queue_duration_seconds`) and Triton's success
///   statistics; a failure's Triton fail statistics.
///
/// A guard rather than only a wrapping future ([`account`]): a future passed to an async fn is
/// kept twice in the caller's state, and gRPC's `ModelInfer` keeps its state small enough for
/// glibc's per-thread cache (`grpc::service`).
pub struct Accounting<'a> {
    loaded: &'a LoadedVersion,
    protocol: Protocol,
    arrived: Instant,
}

impl<'a> Accounting<'a> {
    pub fn start(loaded: &'a LoadedVersion, protocol: Protocol, arrived: Instant) -> Self {
        loaded.metrics.inflight.inc();
        Accounting {
            loaded,
            protocol,
            arrived,
        }
    }

    /// Accounts for the request's outcome and hands over its answer.
    pub fn finish<R>(self, result: Result<Answered<R>, ApiError>) -> Result<R, ApiError> {
        let (loaded, protocol, arrived) = (self.loaded, self.protocol, self.arrived);
        let result = result.map(|answered| {
            loaded
                .metrics
                .queue_duration
                .observe(answered.queued.as_secs_f64());
            loaded
                .stats
                .succeeded(arrived.elapsed(), answered.queued, &answered.execution);
            answered.response
        });
        drop(self);
        let code = match &result {
            Ok(_) => 200,
            Err(err) => err.status.as_u16(),
        };
        loaded.metrics.count(protocol, code);
        loaded
            .metrics
            .observe_duration(protocol, arrived.elapsed().as_secs_f64());
        if result.is_err() {
            loaded.stats.failed(arrived.elapsed());
        }
        result
    }
}

impl Drop for Accounting<'_> {
    fn drop(&mut self) {
        self.loaded.metrics.inflight.dec();
    }
}
