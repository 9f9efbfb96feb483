//! Per-request accounting, in one place: every inference request (V2 or V1) goes through
//! [`observe`], and nothing else counts requests. The scheduler accounts only for what is its
//! own: its queue (depth, refusals) and each model execution (compute time, batch size), which
//! a batch shares among its requests.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::stats::Execution;
use crate::store::LoadedVersion;

/// A successful answer and what its model call cost, for the statistics.
pub struct Answered {
    pub response: Response,
    /// How long the request waited before its model started on it.
    pub queued: Duration,
    pub execution: Execution,
}

/// Runs one inference request's `work` on `loaded` and accounts for it:
/// - in flight while it runs (`weir_inflight_requests`), given back by a guard, so a request
///   whose client went away (its future dropped mid-way) is not left counted;
/// - then its status (`weir_inference_requests_total`) and time from `arrived` to its answer
///   (`weir_inference_request_duration_seconds`);
/// - a success's queue wait (`weir_inference_queue_duration_seconds`) and Triton's success
///   statistics; a failure's Triton fail statistics.
pub async fn observe(
    loaded: &LoadedVersion,
    arrived: Instant,
    work: impl Future<Output = Result<Answered, ApiError>>,
) -> Response {
    struct InFlight<'a>(&'a LoadedVersion);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.metrics.inflight.dec();
        }
    }
    loaded.metrics.inflight.inc();
    let guard = InFlight(loaded);
    let response = match work.await {
        Ok(answered) => {
            loaded
                .metrics
                .queue_duration
                .observe(answered.queued.as_secs_f64());
            loaded
                .stats
                .succeeded(arrived.elapsed(), answered.queued, &answered.execution);
            answered.response
        }
        Err(err) => err.into_response(),
    };
    drop(guard);
    let status = response.status();
    loaded.metrics.count(status.as_u16());
    loaded
        .metrics
        .request_duration
        .observe(arrived.elapsed().as_secs_f64());
    if !status.is_success() {
        loaded.stats.failed(arrived.elapsed());
    }
    response
}
