//! Open Inference Protocol V2 JSON inference request: the body of `POST /v2/models/M/infer`
//! without the binary extension, through `weir_runtime::protocol::v2::decode_request`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_models::Signature;
use weir_runtime::protocol::v2;

static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();

fuzz_target!(|body: &[u8]| {
    for signature in SIGNATURES.get_or_init(weir_fuzz::signatures) {
        let _ = v2::decode_request(body, &[], signature);
    }
});
