//! gRPC's length-prefixed message framing for a unary call held whole: one message in, one out.
//! Used by the `ModelInfer` short way (`service::Inference::infer_framed`); every other call
//! goes through tonic's codec.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::Status;

/// The prefix of every message: a compressed flag and a big-endian length.
const PREFIX: usize = 5;

/// The one message of a unary request body.
pub fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX>() else {
        return Err(Status::invalid_argument(format!(
            "a gRPC request needs one length-prefixed message; the body has {} bytes",
            body.len()
        )));
    };
    if prefix[0] != 0 {
        // No grpc-encoding is accepted (none is advertised), as tonic answers too.
        return Err(Status::unimplemented(
            "the message is compressed; weir accepts uncompressed messages only (no grpc-encoding)",
        ));
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    match rest.len().cmp(&length) {
        std::cmp::Ordering::Equal => Ok(rest),
        std::cmp::Ordering::Less => Err(Status::invalid_argument(format!(
            "the message announces {length} bytes but the call ended after {}",
            rest.len()
        ))),
        std::cmp::Ordering::Greater => Err(Status::invalid_argument(
            "a unary call carries one message; this one carries more",
        )),
    }
}

/// A successful unary answer: `message` framed, then `grpc-status: 0` in the trailers.
pub fn answer(message: &impl prost::Message) -> http::Response<Body> {
    let length = message.encoded_len();
    let mut framed = BytesMut::with_capacity(PREFIX + length);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    // Cannot fail: the buffer was sized for the message.
    let _ = message.encode(&mut framed);
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(framed))
        .with_trailers(std::future::ready(Some(Ok(trailers))));
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn framed(flag: u8, announced: u32, message: &[u8]) -> Vec<u8> {
        let mut body = vec![flag];
        body.extend_from_slice(&announced.to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    #[test]
    fn one_whole_uncompressed_message_is_taken_and_anything_else_refused() {
        assert_eq!(unframe(&framed(0, 3, b"abc")).unwrap(), b"abc");
        assert_eq!(unframe(&framed(0, 0, b"")).unwrap(), b"");
        for (body, code, says) in [
            (vec![0, 0, 0], Code::InvalidArgument, "has 3 bytes"),
            (
                framed(0, 9, b"abc"),
                Code::InvalidArgument,
                "announces 9 bytes",
            ),
            (framed(0, 2, b"abc"), Code::InvalidArgument, "carries more"),
            (framed(1, 3, b"abc"), Code::Unimplemented, "compressed"),
        ] {
            let refusal = unframe(&body).unwrap_err();
            assert_eq!(refusal.code(), code, "{body:?}");
            assert!(refusal.message().contains(says), "{}", refusal.message());
        }
    }

    #[tokio::test]
    async fn an_answer_is_one_framed_message_and_an_ok_trailer() {
        let message = crate::grpc::proto::ServerLiveResponse { live: true };
        let response = answer(&message);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes().as_ref(), [0, 0, 0, 0, 2, 8, 1]);
    }
}
