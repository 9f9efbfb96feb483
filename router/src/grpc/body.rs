//! A gRPC body held whole: its data, then its trailers (where gRPC puts `grpc-status`). The
//! router holds each call's request (a retry resends it) and its answer (so the status is known
//! before the answer leaves, for the stats) whole, both bounded.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> GrpcBody {
        GrpcBody {
            data: Some(data).filter(|d| !d.is_empty()),
            trailers,
        }
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let length = self.data.as_ref().map_or(0, |d| d.len() as u64);
        match self.trailers {
            // With trailers to come the stream does not end with the data: no exact length.
            Some(_) => {
                let mut hint = SizeHint::new();
                hint.set_lower(length);
                hint
            }
            None => SizeHint::with_exact(length),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn data_then_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let collected = GrpcBody::new(Bytes::from_static(b"abc"), Some(trailers.clone()))
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"abc"));
        assert!(GrpcBody::default().is_end_stream());
    }
}
