//! The one place where failures become gRPC statuses: each [`ApiError`] keeps the meaning its
//! HTTP status has (the HTTP path's `error` module decides those), so a client sees the same
//! refusal over either protocol.

use axum::http::StatusCode;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::ApiError;

/// The gRPC code for an HTTP status, as the gRPC spec's HTTP mapping reads it the other way:
/// 400 INVALID_ARGUMENT, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 408
/// DEADLINE_EXCEEDED, 500 INTERNAL.
pub fn code_for(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Code::Unavailable,
        StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::METHOD_NOT_ALLOWED => Code::Unimplemented,
        status if status.is_server_error() => Code::Internal,
        _ => Code::Unknown,
    }
}

/// The status for a failed request, with `retry-after` (seconds) in its metadata when retrying
/// can help (shed, queue full, body budget spent): gRPC has no Retry-After header, and a
/// trailers-only answer carries the metadata where clients read it.
pub fn to_status(error: ApiError) -> Status {
    let mut status = Status::new(code_for(error.status), error.message);
    if let Some(seconds) = error.retry_after {
        status
            .metadata_mut()
            .insert("retry-after", MetadataValue::from(seconds));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_http_meaning_has_its_grpc_code() {
        for (http, grpc) in [
            (StatusCode::BAD_REQUEST, Code::InvalidArgument),
            (StatusCode::NOT_FOUND, Code::NotFound),
            (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
            (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            (StatusCode::REQUEST_TIMEOUT, Code::DeadlineExceeded),
            (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
        ] {
            assert_eq!(code_for(http), grpc, "{http}");
        }
    }

    #[test]
    fn shedding_carries_retry_after_and_the_message() {
        let mut shed = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "at its limit; retry");
        shed.retry_after = Some(1);
        let status = to_status(shed);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "at its limit; retry");
        assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
        let plain = to_status(ApiError::bad_request("bad shape"));
        assert_eq!(plain.code(), Code::InvalidArgument);
        assert!(plain.metadata().get("retry-after").is_none());
    }
}
