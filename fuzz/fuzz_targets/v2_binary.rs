//! Triton's binary tensor extension: a body split by its `Inference-Header-Content-Length`
//! into a JSON header and raw tensor bytes, through `weir_runtime::protocol::v2::split_body`
//! and `decode_request`, as the server calls them.
//!
//! Input layout: the header's value up to the first `\n` (no newline: no header at all),
//! then the body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_models::Signature;
use weir_runtime::protocol::v2;

static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    // An HTTP header value reaches the server as text or not at all.
    let header = match header.map(std::str::from_utf8) {
        Some(Ok(text)) => Some(text),
        Some(Err(_)) => return,
        None => None,
    };
    let Ok((json, binary)) = v2::split_body(body, header) else {
        return;
    };
    for signature in SIGNATURES.get_or_init(weir_fuzz::signatures) {
        let _ = v2::decode_request(json, binary, signature);
    }
});
