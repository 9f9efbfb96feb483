//! The little of the gRPC wire format the router reads and writes. It never decodes a whole
//! message: it reads the frame header (5 bytes: a compressed flag and a length), then scans the
//! first message's top-level fields for fields 1 and 2, which every per-model request of the
//! Open Inference Protocol uses for the model's name and version (ModelInferRequest,
//! ModelMetadataRequest, ModelReadyRequest, and Triton's ModelConfigRequest and
//! ModelStatisticsRequest). The path alone does not name the model, unlike HTTP's. It writes
//! the few answers the router gives itself (liveness, readiness, health, metadata, the model
//! list), which are a handful of bytes each.

use axum::body::Bytes;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the request holds no complete gRPC message")]
    Truncated,
    #[error(
        "the request's message is compressed (grpc-encoding); the router routes by the model name inside it, so send it uncompressed"
    )]
    Compressed,
    #[error("the request's message is not a valid protobuf message: {0}")]
    Malformed(&'static str),
}

/// The first message of a request body: the bytes after its 5-byte frame header.
pub fn first_message(body: &[u8]) -> Result<&[u8], WireError> {
    let (header, rest) = body.split_at_checked(5).ok_or(WireError::Truncated)?;
    match header[0] {
        0 => {}
        1 => return Err(WireError::Compressed),
        _ => {
            return Err(WireError::Malformed(
                "the frame's compressed flag is neither 0 nor 1",
            ))
        }
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let length = usize::try_from(length).map_err(|_| WireError::Truncated)?;
    rest.get(..length).ok_or(WireError::Truncated)
}

/// The name (field 1) and version (field 2) of a per-model request, as text; a field given
/// twice counts by its last value, as protobuf reads it.
pub fn name_and_version(message: &[u8]) -> Result<(String, Option<String>), WireError> {
    let mut rest = message;
    let (mut name, mut version) = (String::new(), None);
    while !rest.is_empty() {
        let tag = varint(&mut rest)?;
        let (field, wire_type) = (tag >> 3, tag & 7);
        match wire_type {
            0 => {
                varint(&mut rest)?;
            }
            1 => rest = skip(rest, 8)?,
            5 => rest = skip(rest, 4)?,
            2 => {
                let length = usize::try_from(varint(&mut rest)?)
                    .map_err(|_| WireError::Malformed("a length beyond the message"))?;
                let value = rest
                    .get(..length)
                    .ok_or(WireError::Malformed("a length beyond the message"))?;
                rest = &rest[length..];
                let text = || {
                    std::str::from_utf8(value)
                        .map(str::to_owned)
                        .map_err(|_| WireError::Malformed("a model name or version is not UTF-8"))
                };
                match field {
                    1 => name = text()?,
                    2 => version = Some(text()?).filter(|v| !v.is_empty()),
                    _ => {}
                }
            }
            _ => return Err(WireError::Malformed("an unsupported wire type")),
        }
    }
    Ok((name, version))
}

/// The body with its first message's version (field 2) replaced by `version`, everything else
/// as it was: a call that pins a backend by its router name (a role such as `canary`) reaches
/// the replica naming the version number it serves, which is all a replica knows (as HTTP's
/// path is rewritten).
pub fn with_version(body: &[u8], version: &str) -> Result<Bytes, WireError> {
    let message = first_message(body)?;
    let after = body.get(5 + message.len()..).unwrap_or_default();
    let mut rewritten = Vec::with_capacity(message.len() + version.len());
    let mut rest = message;
    let mut replaced = false;
    while !rest.is_empty() {
        let field_start = rest;
        let tag = varint(&mut rest)?;
        let (field, wire_type) = (tag >> 3, tag & 7);
        match wire_type {
            0 => {
                varint(&mut rest)?;
            }
            1 => rest = skip(rest, 8)?,
            5 => rest = skip(rest, 4)?,
            2 => {
                let length = usize::try_from(varint(&mut rest)?)
                    .map_err(|_| WireError::Malformed("a length beyond the message"))?;
                rest = skip(rest, length)?;
            }
            _ => return Err(WireError::Malformed("an unsupported wire type")),
        }
        let field_bytes = &field_start[..field_start.len() - rest.len()];
        if field == 2 && wire_type == 2 {
            if !replaced {
                put_bytes(&mut rewritten, 2, version.as_bytes());
                replaced = true;
            }
        } else {
            rewritten.extend_from_slice(field_bytes);
        }
    }
    if !replaced {
        put_bytes(&mut rewritten, 2, version.as_bytes());
    }
    let mut framed = frame(&rewritten).to_vec();
    framed.extend_from_slice(after);
    Ok(Bytes::from(framed))
}

fn skip(rest: &[u8], count: usize) -> Result<&[u8], WireError> {
    rest.get(count..)
        .ok_or(WireError::Malformed("a field beyond the message"))
}

fn varint(rest: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&byte, tail) = rest
            .split_first()
            .ok_or(WireError::Malformed("a varint beyond the message"))?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed("a varint longer than 10 bytes"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field (a string, bytes or a message).
pub fn put_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    put_varint(out, u64::from(field) << 3 | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A varint field (bool, enum, integer); proto3 leaves out zero values.
pub fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_varint(out, u64::from(field) << 3);
        put_varint(out, value);
    }
}

/// One uncompressed message in its frame.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn infer_request(name: &str, version: &str) -> Vec<u8> {
        let mut message = Vec::new();
        put_bytes(&mut message, 1, name.as_bytes());
        put_bytes(&mut message, 2, version.as_bytes());
        put_bytes(&mut message, 3, b"request-id");
        // inputs: a nested message whose own field 1 must not be taken for the model's name.
        let mut input = Vec::new();
        put_bytes(&mut input, 1, b"features");
        put_varint_field(&mut input, 3, 4);
        put_bytes(&mut message, 5, &input);
        put_varint_field(&mut message, 9, 300);
        message
    }

    #[test]
    fn the_model_and_version_are_read_from_the_first_message() {
        let body = frame(&infer_request("iris", "2"));
        let message = first_message(&body).unwrap();
        assert_eq!(
            name_and_version(message).unwrap(),
            ("iris".to_owned(), Some("2".to_owned()))
        );
        let unversioned = frame(&infer_request("iris", ""));
        assert_eq!(
            name_and_version(first_message(&unversioned).unwrap()).unwrap(),
            ("iris".to_owned(), None)
        );
    }

    #[test]
    fn the_version_is_replaced_and_nothing_else() {
        let rewritten = with_version(&frame(&infer_request("iris", "canary")), "2").unwrap();
        assert_eq!(rewritten, frame(&infer_request("iris", "2")));
        let mut unversioned = Vec::new();
        put_bytes(&mut unversioned, 1, b"iris");
        let added = with_version(&frame(&unversioned), "2").unwrap();
        assert_eq!(
            name_and_version(first_message(&added).unwrap()).unwrap(),
            ("iris".to_owned(), Some("2".to_owned()))
        );
        assert_eq!(with_version(&[0, 0], "2"), Err(WireError::Truncated));
    }

    #[test]
    fn broken_frames_and_messages_are_refused() {
        assert_eq!(first_message(&[0, 0, 0]), Err(WireError::Truncated));
        assert_eq!(
            first_message(&[0, 0, 0, 0, 9, 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(first_message(&[1, 0, 0, 0, 0]), Err(WireError::Compressed));
        assert!(matches!(
            first_message(&[7, 0, 0, 0, 0]),
            Err(WireError::Malformed(_))
        ));
        for broken in [
            &[0x0a, 0x05, b'i'][..],
            &[0x08][..],
            &[0x0b][..],
            &[0x0a, 0x01, 0xff][..],
        ] {
            assert!(
                matches!(name_and_version(broken), Err(WireError::Malformed(_))),
                "{broken:?}"
            );
        }
    }

    proptest! {
        /// Whatever bytes arrive, the scan ends (never panics, never reads past the end).
        #[test]
        fn any_bytes_are_scanned_safely(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = first_message(&bytes);
            let _ = name_and_version(&bytes);
        }

        #[test]
        fn names_round_trip(name in "[a-zA-Z0-9_.-]{1,40}", version in "[0-9a-z]{0,8}") {
            let (read, read_version) = name_and_version(&infer_request(&name, &version)).unwrap();
            prop_assert_eq!(read, name);
            prop_assert_eq!(read_version, Some(version).filter(|v| !v.is_empty()));
        }
    }
}
