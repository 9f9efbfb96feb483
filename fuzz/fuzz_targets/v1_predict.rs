//! KServe V1 `:predict` body (`instances` rows, named rows, or TensorFlow Serving's `inputs`
//! columns), through `weir_runtime::protocol::v1::decode_predict`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_models::Signature;
use weir_runtime::protocol::v1;

static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();

fuzz_target!(|body: &[u8]| {
    for signature in SIGNATURES.get_or_init(weir_fuzz::signatures) {
        let _ = v1::decode_predict(body, signature);
    }
});
