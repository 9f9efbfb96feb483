//! A memory budget for request bodies: every body byte the server holds is drawn from one pool,
//! as it arrives, and given back when the request is answered. The connection cap bounds how many
//! clients can be reading at once, but not what they declare; drawing on arrival (not on the
//! declared length) means a client that announces 60 MiB and stalls costs nothing it has not
//! sent, while the bytes that did arrive can never add up past the budget. Past it a request is
//! answered 503 with `Retry-After` at once, like the concurrency limit.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

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
pub struct Reservation(Option<OwnedSemaphorePermit>);

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
    fn grow(&self, reservation: &mut Reservation, held_bytes: u64) -> Result<(), ApiError> {
        let needed = held_bytes.div_ceil(UNIT);
        let have = reservation.0.as_ref().map_or(0, |p| p.num_permits() as u64);
        if needed <= have {
            return Ok(());
        }
        let more = u32::try_from(needed - have).map_err(|_| self.exhausted())?;
        let permit = self
            .units
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| self.exhausted())?;
        match &mut reservation.0 {
            Some(held) => held.merge(permit),
            None => reservation.0 = Some(permit),
        }
        Ok(())
    }

    fn exhausted(&self) -> ApiError {
        let mut refusal = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server's memory for request bodies ({} MiB) is in use; retry shortly",
                self.bytes >> 20
            ),
        );
        refusal.retry_after = Some(1);
        refusal
    }
}

/// The memory weir may use: `--max-memory` when given, else the cgroup's limit (a container's
/// memory limit), else the machine's memory; with where the number came from.
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
/// only the limit applies). 413 past the limit (at once when the declared length says so), 408
/// when the client sends too slowly for the listener, 503 when the budget is spent, 400 else.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: Option<&BodyBudget>,
) -> Result<(Bytes, Reservation), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let unreadable = |err: Box<dyn std::error::Error + Send + Sync>| {
        if err.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else if weir_http::server::BodyTooSlow::is_cause_of(&*err) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("cannot read the request body: {err}"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {err}"))
        }
    };
    let mut body = http_body_util::Limited::new(body, limit);
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
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::convert::Infallible>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(tokio_stream::iter(frames))
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
            .err()
            .unwrap();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
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
    async fn limits_answer_413_before_and_while_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "2000".parse().unwrap());
        let declared = read_body(&headers, chunked(&[]), 1000, None)
            .await
            .err()
            .unwrap();
        assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
        let streamed = read_body(
            &HeaderMap::new(),
            chunked(&[&[0; 800], &[0; 800]]),
            1000,
            None,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn the_memory_limit_prefers_the_flag_then_the_cgroup_then_the_machine() {
        assert_eq!(memory_limit(Some(123)), (123, "--max-memory"));
        let (bytes, source) = memory_limit(None);
        assert!(bytes > 0, "{source}");
    }
}
