//! Request bodies held under the server's memory budget: the budget and the reading live in
//! `weir_http::body` (the router holds bodies under one too); what the runtime adds is how a
//! refusal reads in its own error body.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;

pub use weir_http::body::{memory_limit, BodyBudget, Reservation};

use crate::error::ApiError;

impl From<weir_http::body::BodyError> for ApiError {
    fn from(refusal: weir_http::body::BodyError) -> Self {
        let mut error = ApiError::new(refusal.status(), refusal.to_string());
        error.retry_after = refusal
            .retry_after()
            .and_then(|seconds| u32::try_from(seconds).ok());
        error
    }
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
    Ok(weir_http::body::read_body(headers, body, limit, budget).await?)
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};

    use super::*;

    #[tokio::test]
    async fn refusals_keep_their_status_message_and_retry_hint() {
        let budget = BodyBudget::new(1024);
        let spent = read_body(
            &HeaderMap::new(),
            Body::from(vec![0u8; 4096]),
            1 << 20,
            Some(&budget),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(spent.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(spent.retry_after, Some(1));
        assert!(spent.message.contains("retry shortly"), "{}", spent.message);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "2000".parse().unwrap());
        let too_large = read_body(&headers, Body::empty(), 1000, None)
            .await
            .err()
            .unwrap();
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.retry_after, None);
    }
}
