//! A request body that must keep arriving. A deadline on the whole body would cut off a large
//! upload on a slow link; none at all lets a client that sends headers and stalls hold its
//! connection (and whatever the handler reserved for it) forever. So the body gets a grace
//! period, and after it must have averaged at least a minimum rate: every byte received buys
//! `1 / min_rate` seconds more.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body read failed: it arrived too slowly. Handlers answer it with 408.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived slower than {min_rate} bytes/s ({received} bytes in {elapsed_ms} ms)"
)]
pub struct BodyTooSlow {
    pub min_rate: u64,
    pub received: u64,
    pub elapsed_ms: u128,
}

impl BodyTooSlow {
    /// Whether `err` is, or was caused by, a [`BodyTooSlow`]: frameworks wrap body errors
    /// (axum twice, once more through `Limited`), so the whole chain is searched.
    pub fn is_cause_of(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(err);
        while let Some(current) = cause {
            if current.is::<BodyTooSlow>() {
                return true;
            }
            cause = current.source();
        }
        false
    }
}

/// `inner`, failing with [`BodyTooSlow`] when, after `grace`, fewer than `min_rate` bytes per
/// second (on average since the request arrived) have come. A `min_rate` of 0 never fails.
pub struct MinRateBody<B> {
    inner: B,
    min_rate: u64,
    grace: Duration,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    failed: bool,
    too_slow: Option<Arc<AtomicU64>>,
}

impl<B> MinRateBody<B> {
    pub fn new(inner: B, min_rate: u64, grace: Duration) -> MinRateBody<B> {
        MinRateBody {
            inner,
            min_rate,
            grace,
            started: Instant::now(),
            received: 0,
            timer: None,
            failed: false,
            too_slow: None,
        }
    }

    /// Counts each body that fails in `counter`.
    pub(crate) fn counting(mut self, counter: Arc<AtomicU64>) -> Self {
        self.too_slow = Some(counter);
        self
    }

    /// When the bytes received so far stop being enough.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        self.started + self.grace + earned
    }

    fn fail(&mut self) -> BoxError {
        self.failed = true;
        self.timer = None;
        if let Some(counter) = &self.too_slow {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Box::new(BodyTooSlow {
            min_rate: self.min_rate,
            received: self.received,
            elapsed_ms: self.started.elapsed().as_millis(),
        })
    }
}

impl<B> Body for MinRateBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += bytes::Buf::remaining(data) as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.min_rate == 0 => Poll::Pending,
            Poll::Pending => {
                let deadline = this.deadline();
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(this.fail())));
                }
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.fail()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields `chunks` and then never ends.
    struct Stalling(Vec<&'static [u8]>);

    impl Body for Stalling {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            match self.0.pop() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(bytes::Bytes::from_static(chunk))))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_grace_and_is_counted() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = MinRateBody::new(Stalling(vec![b"0123456789"]), 1000, Duration::from_secs(5))
            .counting(counter.clone());
        let err = body.collect().await.err().unwrap();
        assert!(BodyTooSlow::is_cause_of(&*err), "{err}");
        let slow = err.downcast_ref::<BodyTooSlow>().unwrap();
        assert_eq!(slow.received, 10);
        // 5 s of grace plus 10 ms earned by ten bytes at 1000 bytes/s (the paused clock jumps
        // to the timer, which rounds up to the next millisecond).
        assert!((5010..=5011).contains(&slow.elapsed_ms), "{slow:?}");
        assert_eq!(counter.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_rate_never_fails_and_complete_bodies_pass() {
        let body = MinRateBody::new(Stalling(vec![]), 0, Duration::ZERO);
        let waited = tokio::time::timeout(Duration::from_secs(3600), body.collect()).await;
        assert!(waited.is_err(), "no deadline with a zero rate");
        let whole = MinRateBody::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"abc")),
            1,
            Duration::ZERO,
        );
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "abc");
    }

    /// An error that names its cause, as axum's and hyper's do.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn the_cause_is_found_through_wrappers() {
        let slow = BodyTooSlow {
            min_rate: 1,
            received: 0,
            elapsed_ms: 0,
        };
        let wrapped: BoxError = Box::new(Wrapper(Box::new(Wrapper(Box::new(slow)))));
        assert!(BodyTooSlow::is_cause_of(&*wrapped));
        let other: BoxError = Box::new(Wrapper("other".into()));
        assert!(!BodyTooSlow::is_cause_of(&*other));
    }
}
