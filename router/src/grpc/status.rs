//! gRPC status codes: their names (the metrics' `grpc_code` label), the HTTP code each stands
//! for (so a gRPC call is judged as the equivalent HTTP request would be: the rollout's error
//! rate, replica ejection), and the gRPC status an HTTP answer means when a replica answers a
//! gRPC call with something other than gRPC.

/// The codes of the gRPC specification (doc/statuscodes.md), by number.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub const OK: u16 = 0;
pub const UNKNOWN: u16 = 2;
pub const INVALID_ARGUMENT: u16 = 3;
pub const DEADLINE_EXCEEDED: u16 = 4;
pub const NOT_FOUND: u16 = 5;
pub const RESOURCE_EXHAUSTED: u16 = 8;
pub const UNIMPLEMENTED: u16 = 12;
pub const INTERNAL: u16 = 13;
pub const UNAVAILABLE: u16 = 14;

/// The name of a code; a code outside the specification is `UNKNOWN` (as gRPC reads it).
pub fn name(code: u16) -> &'static str {
    NAMES.get(usize::from(code)).copied().unwrap_or("UNKNOWN")
}

/// The HTTP code a gRPC status stands for (google.rpc.Code's documented mapping, as
/// grpc-gateway uses it). What matters for the router: `UNAVAILABLE` is 503 (a replica
/// shedding load, not a fault, as `weir serve` maps them), the client's mistakes are 4xx and
/// count as no error of the version, and the rest are 5xx errors.
pub fn http_equivalent(code: u16) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        // google.rpc says 501; 404 here, as an HTTP replica answers a path it lacks: a client
        // calling a method the replica does not have must not eject it or fail a canary.
        12 => 404,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The gRPC status of a replica's answer that is not gRPC (a non-200 HTTP status), as the
/// gRPC specification maps them (doc/http-grpc-status-mapping.md).
pub fn from_http(status: u16) -> u16 {
    match status {
        400 => INTERNAL,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502..=504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` as is, every other byte as
/// `%XX` (the gRPC HTTP/2 protocol spec), so any message is a valid header value.
pub fn encode_message(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_names_and_http_meanings() {
        assert_eq!(name(OK), "OK");
        assert_eq!(name(INTERNAL), "INTERNAL");
        assert_eq!(name(16), "UNAUTHENTICATED");
        assert_eq!(name(99), "UNKNOWN");
        assert_eq!(http_equivalent(OK), 200);
        assert_eq!(http_equivalent(INVALID_ARGUMENT), 400);
        assert_eq!(http_equivalent(NOT_FOUND), 404);
        assert_eq!(http_equivalent(UNAVAILABLE), 503);
        assert_eq!(http_equivalent(INTERNAL), 500);
        assert_eq!(http_equivalent(DEADLINE_EXCEEDED), 504);
        assert_eq!(http_equivalent(99), 500);
        assert_eq!(
            http_equivalent(UNIMPLEMENTED),
            404,
            "not the version's fault"
        );
        assert_eq!(from_http(503), UNAVAILABLE);
        assert_eq!(from_http(404), UNIMPLEMENTED);
        assert_eq!(from_http(500), UNKNOWN);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("plain text"), "plain text");
        assert_eq!(encode_message("100% ok"), "100%25 ok");
        assert_eq!(encode_message("é\n"), "%C3%A9%0A");
    }
}
