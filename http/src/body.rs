//! Reading a whole request body under a memory budget, shared by the servers that must hold
//! bodies (`weir serve` to decode them, `weir route` to retry them): every body byte held is
//! drawn from one pool as it arrives and given back when the request is answered. The connection
//! cap bounds how many clients can be reading at once, but not what they declare; drawing on
//! arrival (not on the declared length) means a client that announces 60 MiB and stalls costs
//! nothing it has not sent, while the bytes that did arrive can never add up past the budget.
//! Past it a request is refused at once (503 with `Retry-After`), like a concurrency limit.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::server::BodyTooSlow;

/// Budget units are KiB: a semaphore takes at most `u32` permits at once, and KiB keep a 4 TiB
/// budget within that.
const UNIT: u64 = 1024;

/// The pool in-flight bodies draw on; cheap to clone.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    bytes: u64,
}

/// Body bytes held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation(Option<OwnedSemaphorePermit>);

/// Why a body could not be read whole; [`BodyError::status`] is the answer a server gives.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The listener cut the body off for arriving slower than its minimum rate.
    #[error("cannot read the request body: {0}")]
    TooSlow(String),
    #[error(
        "the server's memory for request bodies ({} MiB) is in use; retry shortly",
        budget_bytes >> 20
    )]
    BudgetSpent { budget_bytes: u64 },
    #[error("cannot read the request body: {0}")]
    Unreadable(String),
}

impl BodyError {
    /// 413, 408, 503 (retry) or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::BudgetSpent { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Seconds a client should wait before retrying, when retrying can help.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, BodyError::BudgetSpent { .. }).then_some(1)
    }
}

impl BodyBudget {
    pub fn new(bytes: u64) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX)) as usize;
        BodyBudget {
            units: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            bytes,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Draws what `held_bytes` now needs beyond what `reservation` holds.
    fn grow(&self, reservation: &mut Reservation, held_bytes: u64) -> Result<(), BodyError> {
        let spent = || BodyError::BudgetSpent {
            budget_bytes: self.bytes,
        };
        let needed = held_bytes.div_ceil(UNIT);
        let have = reservation.0.as_ref().map_or(0, |p| p.num_permits() as u64);
        if needed <= have {
            return Ok(());
        }
        let more = u32::try_from(needed - have).map_err(|_| spent())?;
        let permit = self
            .units
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| spent())?;
        match &mut reservation.0 {
            Some(held) => held.merge(permit),
            None => reservation.0 = Some(permit),
        }
        Ok(())
    }
}

/// The memory a weir server may use: `explicit` (`--max-memory`) when given, else the cgroup's
/// limit (a container's memory limit), else the machine's memory; with where the number came
/// from, for the start-up log.
pub fn memory_limit(explicit: Option<u64>) -> (u64, &'static str) {
    if let Some(bytes) = explicit {
        return (bytes, "--max-memory");
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    // cgroup v2 says "max" when unlimited (which does not parse); v1 gives a huge number.
    if let Some(bytes) = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .filter(|&b| b < 1 << 60)
    {
        return (bytes, "the cgroup memory limit");
    }
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
        });
    (total.unwrap_or(4 << 30), "the machine's memory")
}

/// Reads a whole body of at most `limit` bytes, drawing on `budget` as it arrives (no budget:
/// only the limit applies). Too large is refused before reading when the declared length says
/// so, else as soon as the bytes pass the limit.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: Option<&BodyBudget>,
) -> Result<(Bytes, Reservation), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let unreadable = |err: Box<dyn std::error::Error + Send + Sync>| {
        if err.is::<http_body_util::LengthLimitError>() {
            BodyError::TooLarge { limit }
        } else if BodyTooSlow::is_cause_of(&*err) {
            BodyError::TooSlow(err.to_string())
        } else {
            BodyError::Unreadable(err.to_string())
        }
    };
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut reservation = Reservation(None);
    // What arrived, as it arrived: one chunk needs no copy, several are joined once at the end.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut held: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        held += data.len() as u64;
        if let Some(budget) = budget {
            budget.grow(&mut reservation, held)?;
        }
        chunks.push(data);
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = Vec::with_capacity(held as usize);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            Bytes::from(joined)
        }
    };
    Ok((bytes, reservation))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;

    use super::*;

    /// A body that arrives in the given chunks.
    struct Chunked(VecDeque<Bytes>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn chunked(parts: &[&'static [u8]]) -> Chunked {
        Chunked(parts.iter().map(|p| Bytes::from_static(p)).collect())
    }

    #[tokio::test]
    async fn bodies_draw_on_the_budget_as_they_arrive_and_give_it_back() {
        let budget = BodyBudget::new(8 * 1024);
        let headers = HeaderMap::new();
        let (first, held) = read_body(
            &headers,
            chunked(&[&[1; 3000], &[2; 3000]]),
            1 << 20,
            Some(&budget),
        )
        .await
        .unwrap();
        assert_eq!(first.len(), 6000);
        assert_eq!(&first[..3000], &[1; 3000][..]);
        // 6000 bytes hold 6 of the 8 KiB: a second body of 3000 bytes does not fit...
        let refused = read_body(&headers, chunked(&[&[3; 3000]]), 1 << 20, Some(&budget))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after(), Some(1));
        // ...until the first request is answered.
        drop(held);
        let (again, _held) = read_body(&headers, chunked(&[&[3; 3000]]), 1 << 20, Some(&budget))
            .await
            .unwrap();
        assert_eq!(again.len(), 3000);
    }

    #[tokio::test]
    async fn a_declared_length_costs_nothing_until_bytes_arrive() {
        let budget = BodyBudget::new(4 * 1024);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "900000".parse().unwrap());
        // Declares 900 kB, sends 100 bytes (a body that ends early is the transport's concern):
        // only what arrived is drawn.
        let (bytes, _held) = read_body(&headers, chunked(&[&[0; 100]]), 1 << 20, Some(&budget))
            .await
            .unwrap();
        assert_eq!(bytes.len(), 100);
        assert_eq!(budget.units.available_permits(), 3);
    }

    #[tokio::test]
    async fn limits_refuse_413_before_and_while_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "2000".parse().unwrap());
        let declared = read_body(&headers, chunked(&[]), 1000, None)
            .await
            .unwrap_err();
        assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(declared.to_string().contains("1000 bytes"), "{declared}");
        let streamed = read_body(
            &HeaderMap::new(),
            chunked(&[&[0; 800], &[0; 800]]),
            1000,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(streamed.retry_after(), None);
    }

    #[test]
    fn the_memory_limit_prefers_the_flag_then_the_cgroup_then_the_machine() {
        assert_eq!(memory_limit(Some(123)), (123, "--max-memory"));
        let (bytes, source) = memory_limit(None);
        assert!(bytes > 0, "{source}");
    }
}
