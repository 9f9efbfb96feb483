//! The wire formats weir speaks: Open Inference Protocol V2 (with Triton's binary tensor
//! extension) and KServe V1. Decoding and encoding are pure functions from bytes to tensors and
//! back; each protocol's one async entry (`v2::infer`, `v1::predict`) reads a request's body,
//! runs the model through its scheduler and answers in the request's form.

pub mod json_data;
pub mod v1;
pub mod v2;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A JSON answer with its content type.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Bodies at least this large are decoded on a blocking thread. Parsing a few megabytes of
/// JSON takes milliseconds of CPU; on an async worker that time would delay every other
/// connection it serves — health probes included, so a loaded server would look dead. Small
/// bodies decode in microseconds, less than the hand-off would cost.
pub const OFF_THREAD_BYTES: usize = 64 * 1024;

/// Runs `work` (CPU work proportional to `size` bytes: decoding a body, encoding an answer)
/// where it cannot stall the async threads: inline when small, else on tokio's blocking pool.
/// A panic in it is resumed here, so the server's panic layer answers and counts it as for any
/// other.
///
/// Small work runs at once, when this is called (callers await the result straight away); the
/// future then only hands the result over. Large work goes to the pool behind a box. Neither
/// the closure nor the pool's handle is then kept in the state of every request's future,
/// which would grow the future of each small request past glibc's per-thread cache (1,032
/// bytes): an arena allocation per request (benches/README.md).
pub fn off_thread<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> OffThread<T> {
    if size < OFF_THREAD_BYTES {
        return OffThread::Done(std::future::ready(Ok(work())));
    }
    OffThread::Blocking(Box::pin(on_blocking_pool(work)))
}

/// [`off_thread`] for a decoding that can refuse its input.
pub fn decode_off_thread<T: Send + 'static>(
    size: usize,
    decode: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> OffThread<T> {
    if size < OFF_THREAD_BYTES {
        return OffThread::Done(std::future::ready(decode()));
    }
    OffThread::Blocking(Box::pin(async move { on_blocking_pool(decode).await? }))
}

async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(ApiError::internal(
            "the request's work was cancelled (the server is shutting down)",
        )),
    }
}

/// The result of [`off_thread`]: already there, or coming from the blocking pool.
pub enum OffThread<T> {
    Done(std::future::Ready<Result<T, ApiError>>),
    Blocking(Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send>>),
}

impl<T> Future for OffThread<T> {
    type Output = Result<T, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OffThread::Done(result) => Pin::new(result).poll(cx),
            OffThread::Blocking(work) => work.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_bodies_decode_on_a_blocking_thread_and_small_ones_inline() {
        let here = std::thread::current().id();
        let small = decode_off_thread(10, move || Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(small, here);
        let large = decode_off_thread(OFF_THREAD_BYTES, || Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(
            large, here,
            "decoded on the blocking pool, not the caller's thread"
        );
        let refused: Result<(), _> =
            decode_off_thread(OFF_THREAD_BYTES, || Err(ApiError::bad_request("no"))).await;
        assert_eq!(refused.unwrap_err().message, "no");
    }

    #[tokio::test]
    async fn a_panic_while_decoding_reaches_the_panic_layer() {
        let caught = tokio::spawn(decode_off_thread(OFF_THREAD_BYTES, || -> Result<(), _> {
            panic!("decoder bug")
        }))
        .await;
        assert!(caught.unwrap_err().is_panic());
    }
}
